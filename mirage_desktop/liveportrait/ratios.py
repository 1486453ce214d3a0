"""Eye and lip opening ratios from LivePortrait's 203 landmarks: the inputs of the retargeting MLPs.

Officially (``retargeting_utils.py`` and the wrapper's ``calc_combined_*``) the source's ratios come from its own
203 points and the driver's from each frame's, both in the landmarks' dtype (float32). The combined eye input is
[source left, source right, driving LEFT eye]: the driving right eye is never used.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6
#: Lip normalisation applies when the source's lip ratio is at least this (LivePortrait's lip_normalize_threshold).
LIP_NORMALIZE_THRESHOLD = 0.03

# (upper lid, lower lid, corner, corner) of each eye; (upper mid-lip, lower mid-lip, corner, corner) of the mouth
LEFT_EYE = (6, 18, 0, 12)
RIGHT_EYE = (30, 42, 24, 36)
LIP = (90, 102, 48, 66)


def distance_ratio(lmk: np.ndarray, i1: int, i2: int, i3: int, i4: int) -> np.ndarray:
    """|p_i1 - p_i2| / (|p_i3 - p_i4| + 1e-6) per set: (N, 203, 2) -> (N, 1)."""
    return np.linalg.norm(lmk[:, i1] - lmk[:, i2], axis=1, keepdims=True) / (
        np.linalg.norm(lmk[:, i3] - lmk[:, i4], axis=1, keepdims=True) + EPS
    )


def _sets(lmk: np.ndarray) -> np.ndarray:
    lmk = np.asarray(lmk)
    if lmk.ndim == 2:
        lmk = lmk[None]
    if lmk.shape[1:] != (203, 2):
        raise ValueError(f"eye and lip ratios need LivePortrait's 203 landmarks, got shape {lmk.shape}")
    return lmk


def eye_ratio(lmk: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
    """(N, 2) [left, right] eye openings, or (N, 3) with a (N, 1) target appended."""
    lmk = _sets(lmk)
    cols = [distance_ratio(lmk, *LEFT_EYE), distance_ratio(lmk, *RIGHT_EYE)]
    if target is not None:
        cols.append(np.asarray(target))
    return np.concatenate(cols, axis=1)


def lip_ratio(lmk: np.ndarray) -> np.ndarray:
    """(N, 1) inner-lip opening over the mouth width."""
    return distance_ratio(_sets(lmk), *LIP)


def combined_eye_ratio(driving_eye: np.ndarray, source_lmk: np.ndarray) -> np.ndarray:
    """(1, 3) float32 [source left, source right, driving left] for the eye retargeting MLP."""
    src = eye_ratio(source_lmk).astype(np.float32)
    drv = np.float32(np.asarray(driving_eye).reshape(-1)[0])
    return np.concatenate([src, np.full((1, 1), drv, np.float32)], axis=1)


def combined_lip_ratio(driving_lip: np.ndarray | float, source_lmk: np.ndarray) -> np.ndarray:
    """(1, 2) float32 [source lip, driving lip] for the lip retargeting MLP (lip normalisation passes 0.0)."""
    src = lip_ratio(source_lmk).astype(np.float32)
    drv = np.float32(np.asarray(driving_lip).reshape(-1)[0])
    return np.concatenate([src, np.full((1, 1), drv, np.float32)], axis=1)
