"""The LivePortrait chain as the live stage and the conformance command both run it: one copy of the maths.

Per frame: :meth:`LivePortrait.motion_info` (M) on the driving crop, :meth:`LivePortrait.drive` (relative motion,
stitching, multiplier: a few small tensor ops and one MLP) and :meth:`LivePortrait.render` (W then G). Everything stays
on the device; :meth:`LivePortrait.to_uint8` is the only host copy. The expression-friendly multiplier needs a convex
hull on the host; it is computed once per (source, reference) pair and cached.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mirage_desktop.liveportrait import motion
from mirage_desktop.liveportrait.backends import BackendNetworks, Progress, build_networks
from mirage_desktop.liveportrait.backends.torch_backend import check_device
from mirage_desktop.liveportrait.loader import LivePortraitNetworks, load_networks
from mirage_desktop.liveportrait.motion import KpInfo
from mirage_desktop.liveportrait.warping import WarpOutput

logger = logging.getLogger(__name__)

#: where the chain's intermediate tensors go when the caller asks for them (conformance); keys are the kit's names
Trace = MutableMapping[str, torch.Tensor]

DRIVING_OPTIONS = ("expression-friendly", "pose-friendly")
ANIMATION_REGIONS = ("all",)


@dataclass(frozen=True)
class DriveOptions:
    """How driving motion moves the source; the defaults are the official CLI's (``inference.py``)."""

    relative_motion: bool = True
    driving_option: str = "expression-friendly"
    stitching: bool = True
    driving_multiplier: float = 1.0
    eye_retargeting: bool = False
    lip_retargeting: bool = False
    animation_region: str = "all"

    def __post_init__(self) -> None:
        if self.driving_option not in DRIVING_OPTIONS:
            raise ValueError(f'Invalid driving option "{self.driving_option}": use one of {", ".join(DRIVING_OPTIONS)}')
        if self.animation_region not in ANIMATION_REGIONS:
            raise ValueError(
                f'Invalid animation region "{self.animation_region}": only {", ".join(ANIMATION_REGIONS)} is supported'
            )


@dataclass(frozen=True)
class SourceState:
    """What the chain keeps of the source portrait: f_s (1, 32, 16, 64, 64), its motion, and x_s (1, 21, 3)."""

    feature: torch.Tensor
    info: KpInfo
    x_s: torch.Tensor


@dataclass(frozen=True)
class _ReferenceCache:
    """The expression-friendly state of one (source, reference) pair."""

    source: SourceState
    reference: KpInfo
    relative: bool
    x_d0_new: torch.Tensor
    multiplier: torch.Tensor  # float32, on the device
    multiplier64: float


def rgb_to_tensor(rgb: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [0, 1] on ``device``; the scaling runs on the device."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).to(device, non_blocking=True)
    return (t.permute(2, 0, 1)[None].float() / 255.0).clamp_(0, 1)


class LivePortrait:
    """Loaded networks plus the chain. Build with :meth:`load`."""

    def __init__(
        self, networks: LivePortraitNetworks | BackendNetworks, device: torch.device, half: bool = False
    ) -> None:
        if half and device.type != "cuda":
            raise ValueError(f"half precision needs a CUDA device, not {device}; drop --half or use --device cuda")
        if isinstance(networks, LivePortraitNetworks):  # the networks as loaded: PyTorch, fp16 W and G with half
            networks = build_networks(networks, device, "torch", "fp16" if half else "fp32")
        #: one runner per network (backends/): the chain below calls them and never knows which backend runs which
        self.networks: BackendNetworks = networks
        self.device = device
        self.half = half or any(networks.runner(m).precision != "fp32" for m in ("W", "G"))
        self._expr_cache: _ReferenceCache | None = None

    @classmethod
    def load(
        cls,
        weights_dir: Path | str,
        device: str = "cpu",
        half: bool = False,
        *,
        backend: str = "torch",
        precision: str | None = None,
        progress: Progress | None = None,
        cache_dir: Path | str | None = None,
    ) -> LivePortrait:
        """Load the official files (tree or flat folder) through the one loader and put each network on ``backend``.

        ``precision`` (fp32, bf16, fp16, auto) applies to W and G; ``half`` is the older spelling of fp16 on CUDA.
        ``progress`` hears about one-time work (ONNX export, measuring for ``auto``).
        """
        dev = check_device(device)
        if half and dev.type != "cuda":
            raise ValueError(f"half precision needs a CUDA device, not {device}; drop --half or use --device cuda")
        if dev.type == "cuda":
            # as the official code: the shapes never change, so let cuDNN pick its fastest kernels once
            torch.backends.cudnn.benchmark = True
        nets = load_networks(weights_dir, dev)
        precision = precision or ("fp16" if half else "fp32")
        kwargs = {"progress": progress} if progress is not None else {}
        return cls(build_networks(nets, dev, backend, precision, cache_dir=cache_dir, **kwargs), dev)

    def backend_status(self) -> tuple[dict[str, str], list[str]]:
        """(module -> "backend precision" running it now, reasons to show): for the stage's reason and /health."""
        return self.networks.choices(), self.networks.all_reasons()

    @torch.inference_mode()
    def prepare_source(self, image: torch.Tensor, trace: Trace | None = None) -> SourceState:
        """F and M on the source crop (1, 3, 256, 256) in [0, 1]; done once per portrait."""
        feature = self.networks.appearance(image)
        info = self.motion_info(image, trace=trace)
        x_s = motion.keypoints(info)
        if trace is not None:
            trace["feature_3d"] = feature
            trace["x_s"] = x_s
        return SourceState(feature=feature, info=info, x_s=x_s)

    @torch.inference_mode()
    def motion_info(self, image: torch.Tensor, trace: Trace | None = None) -> KpInfo:
        """M plus the official get_kp_info refinement (degrees, (B, 21, 3) shapes) and the rotation."""
        raw = self.networks.motion(image)
        if trace is not None:
            for name, value in raw._asdict().items():
                trace[f"raw_{name}"] = value
        return motion.kp_info_from_raw(raw)

    def _reference_keypoints(
        self, source: SourceState, reference: KpInfo, options: DriveOptions
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(x_d0_new, m as a float32 device tensor, m as float64), computed once per (source, reference) pair.

        The cache holds the two objects themselves (compared by identity), so a new reference frame or portrait
        always recomputes; the hull volume is the only host round trip of the chain.
        """
        cache = self._expr_cache
        if (
            cache is not None
            and cache.source is source
            and cache.reference is reference
            and cache.relative == options.relative_motion
        ):
            return cache.x_d0_new, cache.multiplier, cache.multiplier64
        if options.relative_motion:
            x_d0_new = motion.relative_motion(source.info, reference, reference).x_d
        else:
            x_d0_new = motion.absolute_motion(source.info, reference).x_d
        m = motion.motion_multiplier(source.x_s, x_d0_new)
        m_tensor = torch.tensor(m, dtype=torch.float32, device=self.device)
        self._expr_cache = _ReferenceCache(source, reference, options.relative_motion, x_d0_new, m_tensor, m)
        logger.debug("expression-friendly multiplier %.9f for a new reference frame", m)
        return x_d0_new, m_tensor, m

    @torch.inference_mode()
    def drive(
        self,
        source: SourceState,
        driving: KpInfo,
        reference: KpInfo,
        options: DriveOptions = DriveOptions(),
        *,
        eye_ratio: torch.Tensor | None = None,
        lip_ratio: torch.Tensor | None = None,
        trace: Trace | None = None,
    ) -> torch.Tensor:
        """The driven keypoints x_final (1, 21, 3) that W warps the source to.

        ``eye_ratio`` (1, 3) = [source eye ratios (2), driving eye ratio] and ``lip_ratio`` (1, 2) = [source, driving]
        are needed only with eye/lip retargeting, which (as in the official pipeline) then replaces the relative
        motion by x_s plus the retargeting deltas.
        """
        x_s = source.x_s
        if options.relative_motion:
            rel = motion.relative_motion(source.info, driving, reference)
        else:
            rel = motion.absolute_motion(source.info, driving)
        x_d = rel.x_d
        if trace is not None:
            trace.update(R_s=source.info.rotation, R_new=rel.rotation, delta_new=rel.exp)
            trace.update(scale_new=rel.scale, t_new=rel.t, x_d_new=x_d)
        if options.driving_option == "expression-friendly":
            x_d0_new, m, m64 = self._reference_keypoints(source, reference, options)
            x_d = motion.expression_friendly(x_d, x_d0_new, m, x_s)
            if trace is not None:
                trace.update(motion_multiplier=torch.tensor(m64, dtype=torch.float64), x_d_new_expr=x_d)

        if options.eye_retargeting or options.lip_retargeting:
            deltas = []
            if options.eye_retargeting:
                if eye_ratio is None:
                    raise ValueError("eye retargeting is on but no eye_ratio (1, 3) was given")
                deltas.append(motion.retarget_eye(self.networks.eye, x_s, eye_ratio))
            if options.lip_retargeting:
                if lip_ratio is None:
                    raise ValueError("lip retargeting is on but no lip_ratio (1, 2) was given")
                deltas.append(motion.retarget_lip(self.networks.lip, x_s, lip_ratio))
            x_d = x_s if options.relative_motion else x_d
            for delta in deltas:
                x_d = x_d + delta

        if options.stitching:
            feat = motion.stitch_input(x_s, x_d)
            delta = self.networks.stitching(feat)
            x_d = motion.apply_stitching_delta(x_d, delta)
            if trace is not None:
                trace.update(stitch_input=feat, stitch_delta=delta, x_d_stitched=x_d)
        x_final = motion.apply_driving_multiplier(x_s, x_d, options.driving_multiplier)
        if trace is not None:
            trace["x_d_final"] = x_final
        return x_final

    @torch.inference_mode()
    def warp(self, feature: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> WarpOutput:
        """W on its backend; outputs float32."""
        return self.networks.warping(feature, kp_source, kp_driving)

    @torch.inference_mode()
    def decode(self, feature: torch.Tensor) -> torch.Tensor:
        """G on its backend: (B, 256, 64, 64) -> (B, 3, 512, 512) float32 in [0, 1]."""
        return self.networks.generator(feature)

    @torch.inference_mode()
    def render(self, source: SourceState, x_final: torch.Tensor, trace: Trace | None = None) -> torch.Tensor:
        """W then G: the source warped to the driven keypoints, (1, 3, 512, 512) in [0, 1]."""
        warped = self.warp(source.feature, source.x_s, x_final)
        if trace is not None:
            trace.update(out=warped.out, occlusion_map=warped.occlusion_map, deformation=warped.deformation)
        return self.decode(warped.out)

    @torch.inference_mode()
    def warm_up(self) -> None:
        """One throw-away frame, so kernel selection (cuDNN benchmark) and allocations happen before the first real one.

        Call it off the per-frame path (the stage's ``prepare``); on a CPU it costs one frame, several seconds.
        """
        image = torch.full((1, 3, 256, 256), 0.5, device=self.device)
        source = self.prepare_source(image)
        info = self.motion_info(image)
        self.render(source, self.drive(source, info, info, DriveOptions(driving_option="pose-friendly")))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @staticmethod
    def to_uint8(image: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8 RGB (official parse_output, truncating); the one host copy."""
        return motion.parse_output(image)


@contextlib.contextmanager
def strict_float32() -> Iterator[None]:
    """IEEE float32 for conformance runs on CUDA (TF32 alone causes errors around 1e-3) and cuDNN's benchmark off
    (its kernel choice varies run to run, which a 1e-6 comparison sees); restored afterwards.

    Uses the ``fp32_precision`` API where torch has it: torch 2.9+ raises when the legacy ``allow_tf32`` flags are
    mixed with it.
    """
    cudnn = torch.backends.cudnn
    benchmark = cudnn.benchmark
    cudnn.benchmark = False
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        saved = (torch.backends.cuda.matmul.fp32_precision, cudnn.conv.fp32_precision)
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        cudnn.conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.fp32_precision, cudnn.conv.fp32_precision = saved
            cudnn.benchmark = benchmark
        return
    matmul, conv = torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        cudnn.allow_tf32 = conv
        cudnn.benchmark = benchmark
