"""The geometry kit's ``drive_options.npz`` cases, run through the runner the avatar stage calls.

:func:`drive_option_arrays` computes every output array of ``drive_options.npz`` (named ``<case>.<array>`` as in the
kit) from the kit's inputs only: each case's official flags become a :class:`DriveOptions`, and every frame goes
through :meth:`LivePortrait.drive` with a trace. Two levels, as the kit's tolerances define them:

- ``module``: the stored keypoint info (``src_*``, ``drv_*``, ``x_s``) and the stored source ratios are fed in;
- ``end_to_end``: F and M run on ``../golden/inputs.npz`` and the source ratios are measured from its 203 landmarks.

The driving eye and lip ratios (``c_d_eyes``, ``c_d_lip``) are given directly at both levels, as the kit says.
:func:`check_drive_options` compares the arrays with the golden ones under ``tolerances.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from mirage_desktop.liveportrait.motion import KpInfo
from mirage_desktop.liveportrait.options import DriveOptions, FaceRatios
from mirage_desktop.liveportrait.runner import LivePortrait, SourceState, rgb_to_tensor

Level = Literal["module", "end_to_end"]
FILE = "drive_options.npz"
#: arrays held once per case (from the first frame), not stacked over frames
PER_CASE = ("motion_multiplier", "lip_delta_before_animation")
#: the kit's per-case array names, as the runner's trace writes them
CASE_ARRAYS = (
    "R_new",
    "exp_new",
    "scale_new",
    "t_new",
    "x_d_motion",
    "x_d_after_expr",
    "x_d_pre_mult",
    "x_d_final",
    "motion_multiplier",
    "stitch_input",
    "stitch_delta",
    "lip_delta_before_animation",
    "eye_ratio_input",
    "eyes_delta",
    "lip_ratio_input",
    "lip_delta",
)


class ArrayCheck(NamedTuple):
    """One array against the golden one: max |ours - golden| and the level's atol."""

    name: str  # "<case>.<array>"
    error: float
    atol: float
    passed: bool


def options_from_flags(flags: Mapping[str, Any], driving: str) -> DriveOptions:
    """The official ``InferenceConfig`` flags of a kit case as our options."""
    return DriveOptions(
        relative_motion=bool(flags["flag_relative_motion"]),
        driving_option=flags["driving_option"],
        animation_region=flags["animation_region"],
        stitching=bool(flags["flag_stitching"]),
        driving_multiplier=float(flags["driving_multiplier"]),
        normalize_lip=bool(flags["flag_normalize_lip"]),
        eye_retargeting=bool(flags["flag_eye_retargeting"]),
        lip_retargeting=bool(flags["flag_lip_retargeting"]),
        driving_input="image" if driving == "image" else "video",
    )


def _load(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass the geometry kit folder and the networks kit's golden/")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


def _stored_info(kit: Mapping[str, np.ndarray], prefix: str, i: int, device: torch.device) -> KpInfo:
    """One frame's keypoint info from the stored arrays. The driving template stores no angles: the maths reads only
    its rotation, so they are zeros here."""

    def t(name: str) -> torch.Tensor:
        return _tensor(kit[f"{prefix}{name}"][i : i + 1], device)

    zero = torch.zeros(1, 1, device=device)
    pitch, yaw, roll = (t(a) if f"{prefix}{a}" in kit else zero for a in ("pitch", "yaw", "roll"))
    return KpInfo(pitch, yaw, roll, t=t("t"), exp=t("exp"), scale=t("scale"), kp=t("kp"), rotation=t("R"))


def load_liveportrait(weights_dir: Path, device: str = "cpu") -> LivePortrait:
    return LivePortrait.load(weights_dir, device=device)


def drive_option_arrays(
    kit_dir: Path,
    golden_dir: Path,
    weights_dir: Path,
    *,
    level: Level = "end_to_end",
    lp: LivePortrait | None = None,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Every output array of ``kit_dir/drive_options.npz`` ("<case>.<array>" -> values, the kit's dtypes), computed
    at ``level`` from the kit's inputs through :meth:`LivePortrait.drive`. ``lp``: already loaded networks (else
    loaded from ``weights_dir``, the synthetic weights of salt ``lp_weights_salt``)."""
    kit = _load(Path(kit_dir) / FILE)
    about = json.loads(str(kit["_about"]))
    lp = lp if lp is not None else load_liveportrait(Path(weights_dir), device)
    dev = lp.device
    lip_array = _tensor(kit["lip_array"], dev).float()  # the official code converts it to float32 before use
    image_frame = int(kit["image_driving_frame"])
    n_frames = kit["drv_exp"].shape[0]

    with torch.inference_mode():
        if level == "module":
            base = SourceState(
                feature=torch.empty(0, device=dev),
                info=_stored_info(kit, "src_", 0, dev),
                x_s=_tensor(kit["x_s"], dev),
            )
            sources = {
                name: base.with_ratios(FaceRatios(kit[f"src_eye_ratio_{name}"], kit[f"src_lip_ratio_{name}"]))
                for name in ("open", "closed")
            }
            driving = [_stored_info(kit, "drv_", i, dev) for i in range(n_frames)]
        elif level == "end_to_end":
            inputs = _load(Path(golden_dir) / "inputs.npz")
            base = lp.prepare_source(rgb_to_tensor(inputs["source_rgb"], dev))
            sources = {
                name: base.with_ratios(FaceRatios.from_landmarks(kit[f"src_lmk203_{name}"]))
                for name in ("open", "closed")
            }
            driving = [lp.motion_info(rgb_to_tensor(rgb, dev)) for rgb in inputs["driving_rgb"]]
        else:
            raise ValueError(f'level "{level}": use "module" or "end_to_end"')
        driver = [FaceRatios(kit["c_d_eyes"][i : i + 1], kit["c_d_lip"][i : i + 1]) for i in range(n_frames)]

        out: dict[str, np.ndarray] = {}
        for case in (str(c) for c in kit["case_names"]):
            spec = about["cases"][case]
            options = options_from_flags(spec["flags"], spec["driving"])
            source = sources[spec["source_landmarks"].rsplit("_", 1)[-1]]
            frames = [image_frame] if options.driving_input == "image" else list(range(n_frames))
            reference = driving[frames[0]]
            traces: list[dict[str, torch.Tensor]] = []
            for i in frames:
                trace: dict[str, torch.Tensor] = {}
                lp.drive(
                    source, driving[i], reference, options, driver=driver[i], image_reference_exp=lip_array, trace=trace
                )
                traces.append(trace)
            for name in CASE_ARRAYS:
                if name not in traces[0]:
                    continue
                if name in PER_CASE:
                    value = traces[0][name].detach().cpu().numpy()
                else:
                    value = np.concatenate([tr[name].detach().cpu().numpy() for tr in traces], axis=0)
                out[f"{case}.{name}"] = value.astype(np.float64 if name == "motion_multiplier" else np.float32)
    return out


def check_drive_options(
    kit_dir: Path,
    golden_dir: Path,
    weights_dir: Path,
    *,
    level: Level = "end_to_end",
    lp: LivePortrait | None = None,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> list[ArrayCheck]:
    """Each output array of ``drive_options.npz`` against the golden one at ``level``; an array the kit lists but we
    did not compute (or one we computed that the kit does not have) fails with an infinite error."""
    kit_dir = Path(kit_dir)
    gold = _load(kit_dir / FILE)
    tolerances = json.loads((kit_dir / "tolerances.json").read_text())["arrays"]
    if arrays is None:
        arrays = drive_option_arrays(kit_dir, golden_dir, weights_dir, level=level, lp=lp)
    outputs = [k.split(":", 1)[1] for k, v in tolerances.items() if k.startswith(f"{FILE}:") and v["role"] == "output"]
    checks = []
    for name in outputs:
        atol = float(tolerances[f"{FILE}:{name}"][level]["atol"])
        ours = arrays.get(name)
        if ours is None or np.shape(ours) != gold[name].shape:
            checks.append(ArrayCheck(name, float("inf"), atol, False))
            continue
        err = float(np.abs(np.asarray(ours, np.float64) - gold[name].astype(np.float64)).max())
        checks.append(ArrayCheck(name, err, atol, err <= atol))
    checks.extend(ArrayCheck(name, float("inf"), 0.0, False) for name in arrays if name not in set(outputs))
    return checks
