"""The one loader for LivePortrait's official checkpoint files, used for downloaded and synthetic weights alike.

It accepts the official download tree (``liveportrait/base_models/*.pth``,
``liveportrait/retargeting_models/stitching_retargeting_module.pth``, with or without the leading ``liveportrait/``)
and a flat folder holding the five files. Files are read with ``torch.load(weights_only=True)`` and loaded strictly;
every failure raises :class:`LivePortraitLoadError` naming the file, what is wrong and the fix.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import nn

from mirage_desktop.liveportrait.appearance import AppearanceFeatureExtractor
from mirage_desktop.models.registry import download_hint
from mirage_desktop.liveportrait.generator import SPADEGenerator
from mirage_desktop.liveportrait.motion_extractor import MotionExtractor
from mirage_desktop.liveportrait.retargeting import RetargetingMLP, eye_mlp, lip_mlp, stitching_mlp
from mirage_desktop.liveportrait.warping import WarpingModule

logger = logging.getLogger(__name__)

FIX = f"To fetch the official files again, {download_hint('liveportrait')}."

APPEARANCE_FILE = "appearance_feature_extractor.pth"
MOTION_FILE = "motion_extractor.pth"
WARPING_FILE = "warping_module.pth"
GENERATOR_FILE = "spade_generator.pth"
STITCHING_FILE = "stitching_retargeting_module.pth"

#: file name -> folder inside the official ``liveportrait/`` tree
OFFICIAL_FOLDERS: dict[str, str] = {
    APPEARANCE_FILE: "base_models",
    MOTION_FILE: "base_models",
    WARPING_FILE: "base_models",
    GENERATOR_FILE: "base_models",
    STITCHING_FILE: "retargeting_models",
}

#: entries of the stitching file, by name, and the prefix the official training left on their keys
STITCHING_ENTRIES = ("retarget_shoulder", "retarget_mouth", "retarget_eye")
DDP_PREFIX = "module."

_MAX_LISTED = 5


class LivePortraitLoadError(RuntimeError):
    """A LivePortrait weight file is missing or unusable; the message names the file and the fix."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class LivePortraitNetworks:
    """The loaded networks, in eval mode, on one device."""

    appearance: AppearanceFeatureExtractor
    motion: MotionExtractor
    warping: WarpingModule
    generator: SPADEGenerator
    stitching: RetargetingMLP
    lip: RetargetingMLP
    eye: RetargetingMLP

    def modules(self) -> dict[str, nn.Module]:
        return {
            "appearance": self.appearance,
            "motion": self.motion,
            "warping": self.warping,
            "generator": self.generator,
            "stitching": self.stitching,
            "lip": self.lip,
            "eye": self.eye,
        }

    def to(self, device: str | torch.device) -> LivePortraitNetworks:
        """Move every network; the generator's spectral-normalised weights are recomputed on the new device."""
        for module in self.modules().values():
            module.to(device)
        self.generator.refresh()
        return self


def candidate_paths(weights_dir: Path, file_name: str) -> list[Path]:
    """Where a file may be: the official tree (with or without ``liveportrait/``) first, then flat."""
    folder = OFFICIAL_FOLDERS[file_name]
    return [
        weights_dir / "liveportrait" / folder / file_name,
        weights_dir / folder / file_name,
        weights_dir / file_name,
    ]


def locate(weights_dir: Path, file_name: str) -> Path:
    """The first existing candidate path, or a :class:`LivePortraitLoadError` listing where we looked."""
    candidates = candidate_paths(weights_dir, file_name)
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise LivePortraitLoadError(f"LivePortrait weight file {file_name} not found (looked in {looked}). {FIX}")


def read_checkpoint(path: Path) -> object:
    """``torch.load(weights_only=True)`` with errors that say truncated, not a checkpoint, or unsafe content."""
    size = path.stat().st_size
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise LivePortraitLoadError(
                f"{path} holds Python objects other than tensors, which a weights-only load refuses "
                f"({_first_line(exc)}); it is not an official weight file. {FIX}",
                path,
            ) from exc
        raise LivePortraitLoadError(
            f"{path} is not a PyTorch checkpoint ({size} bytes: {_first_line(exc)}). {FIX}", path
        ) from exc
    except Exception as exc:  # torch raises RuntimeError/EOFError/zipfile errors for damaged files
        if size and (zipfile.is_zipfile(path) or _starts_with_zip_magic(path)):
            what = f"is damaged or truncated ({size} bytes)"
        else:
            what = f"is not a PyTorch checkpoint ({size} bytes; a truncated or interrupted download?)"
        raise LivePortraitLoadError(f"{path} {what}: {_first_line(exc)}. {FIX}", path) from exc


def _starts_with_zip_magic(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"PK\x03\x04"


def _first_line(exc: BaseException) -> str:
    """The useful line of an exception; torch's weights-only errors put it after a long preamble."""
    text = str(exc).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _as_state_dict(obj: object, path: Path, what: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__
        raise LivePortraitLoadError(
            f"{path} holds a {kind}, not the state dict of {what}; it is the wrong file for this slot. {FIX}", path
        )
    return obj


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], path: Path, what: str) -> None:
    """Strict load with a readable report of missing/unexpected keys and wrong shapes before torch's own check."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: {tuple(state[k].shape)} != expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} tensors of the wrong shape ({_listed(wrong)})")
    if problems:
        raise LivePortraitLoadError(
            f"{path} does not match the official {what} layout: {'; '.join(problems)}. "
            f"Is it the right file from the official release? {FIX}",
            path,
        )
    # assign=True: the modules are built on the meta device, so the loaded tensors become the parameters (no copy)
    module.load_state_dict(state, strict=True, assign=True)


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


#: file name -> (network builder, what it is); built on the meta device, the checkpoint supplies every tensor
NETWORKS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    APPEARANCE_FILE: (AppearanceFeatureExtractor, "appearance feature extractor (F)"),
    MOTION_FILE: (MotionExtractor, "motion extractor (M)"),
    WARPING_FILE: (WarpingModule, "warping module (W)"),
    GENERATOR_FILE: (SPADEGenerator, "SPADE generator (G)"),
}


def load_network(weights_dir: Path | str, file_name: str) -> nn.Module:
    """Find, read and strictly load one of the four base networks (on the CPU, eval mode)."""
    if file_name not in NETWORKS:
        raise ValueError(f'Unknown LivePortrait network file "{file_name}": use one of {", ".join(NETWORKS)}')
    build, what = NETWORKS[file_name]
    path = locate(Path(weights_dir), file_name)
    state = _as_state_dict(read_checkpoint(path), path, what)
    with torch.device("meta"):  # no memory for random initial values that the checkpoint replaces anyway
        module = build()
    load_strict(module, state, path, what)
    if isinstance(module, SPADEGenerator):
        module.refresh()  # its derived weights are still on the meta device
    logger.debug("loaded %s from %s", what, path)
    return module.eval().requires_grad_(False)


def load_retargeting(weights_dir: Path | str) -> tuple[RetargetingMLP, RetargetingMLP, RetargetingMLP]:
    """The stitching file's three MLPs (stitching, lip, eye), read by entry name; other top-level entries are ignored."""
    path = locate(Path(weights_dir), STITCHING_FILE)
    obj = read_checkpoint(path)
    if not isinstance(obj, Mapping):
        raise LivePortraitLoadError(
            f"{path} holds a {type(obj).__name__}, not the stitching file's dict of {', '.join(STITCHING_ENTRIES)}. "
            f"{FIX}",
            path,
        )
    absent = [name for name in STITCHING_ENTRIES if name not in obj]
    if absent:
        found = ", ".join(str(k) for k in list(obj)[:_MAX_LISTED]) or "nothing"
        raise LivePortraitLoadError(
            f"{path} lacks the entries {', '.join(absent)} (found {found}); it is not the official "
            f"{STITCHING_FILE}. {FIX}",
            path,
        )
    with torch.device("meta"):
        nets = (stitching_mlp(), lip_mlp(), eye_mlp())
    for name, net in zip(STITCHING_ENTRIES, nets):
        sub = _as_state_dict(obj[name], path, f"the {name} entry")
        # the official loader removes the DDP prefix from every key before its strict load
        state = {k.replace(DDP_PREFIX, ""): v for k, v in sub.items()}
        load_strict(net, state, path, f"{name} entry")
        net.eval().requires_grad_(False)
    return nets


def load_networks(weights_dir: Path | str, device: str | torch.device = "cpu") -> LivePortraitNetworks:
    """Load all five official files strictly and put the networks, in eval mode, on ``device``."""
    weights_dir = Path(weights_dir)
    if not weights_dir.is_dir():
        raise LivePortraitLoadError(f"LivePortrait weights folder {weights_dir} does not exist. {FIX}", weights_dir)
    stitching, lip, eye = load_retargeting(weights_dir)
    nets = LivePortraitNetworks(
        appearance=cast(AppearanceFeatureExtractor, load_network(weights_dir, APPEARANCE_FILE)),
        motion=cast(MotionExtractor, load_network(weights_dir, MOTION_FILE)),
        warping=cast(WarpingModule, load_network(weights_dir, WARPING_FILE)),
        generator=cast(SPADEGenerator, load_network(weights_dir, GENERATOR_FILE)),
        stitching=stitching,
        lip=lip,
        eye=eye,
    )
    return nets.to(device)
