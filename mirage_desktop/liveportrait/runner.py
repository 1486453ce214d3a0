"""The LivePortrait chain as the live stage and the conformance command both run it: one copy of the maths.

Per frame: :meth:`LivePortrait.motion_info` (M) on the driving crop, :meth:`LivePortrait.drive` (the motion of the
:class:`~.options.DriveOptions`, stitching, retargeting, multiplier: a few small tensor ops and up to three MLPs) and
:meth:`LivePortrait.render` (W then G). Everything stays on the device; :meth:`LivePortrait.to_uint8` is the only host
copy. The expression-friendly multiplier needs a convex hull on the host; it is computed once per (source, reference,
region) and cached, as is the lip-normalisation delta per portrait.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from mirage_desktop.liveportrait import motion
from mirage_desktop.liveportrait.backends import BackendNetworks, Progress, build_networks, no_progress
from mirage_desktop.liveportrait.backends.torch_backend import check_device
from mirage_desktop.liveportrait.loader import LivePortraitNetworks, load_networks
from mirage_desktop.liveportrait.motion import KpInfo
from mirage_desktop.liveportrait.options import DriveOptions, FaceRatios, driven_motion
from mirage_desktop.liveportrait.warping import WarpOutput

logger = logging.getLogger(__name__)

#: where the chain's intermediate tensors go when the caller asks for them (conformance); keys are the kit's names
Trace = MutableMapping[str, torch.Tensor]

@dataclass(frozen=True)
class SourceState:
    """What the chain keeps of the source portrait: f_s (1, 32, 16, 64, 64), its motion, and x_s (1, 21, 3).

    ``eye_ratio`` (1, 2) and ``lip_ratio`` (1, 1) are the portrait's measured openings (from its 203 landmarks, as
    float32 device tensors); retargeting and lip normalisation need them.
    """

    feature: torch.Tensor
    info: KpInfo
    x_s: torch.Tensor
    eye_ratio: torch.Tensor | None = None
    lip_ratio: torch.Tensor | None = None

    def with_ratios(self, ratios: FaceRatios) -> SourceState:
        """The same source with its measured eye and lip ratios (device tensors)."""
        dev = self.x_s.device
        return replace(
            self,
            eye_ratio=torch.as_tensor(np.asarray(ratios.eyes, np.float32).reshape(1, 2), device=dev),
            lip_ratio=torch.as_tensor(np.asarray(ratios.lip, np.float32).reshape(1, 1), device=dev),
        )


@dataclass(frozen=True)
class _ReferenceCache:
    """The expression-friendly state of one (source, reference, region) triple."""

    source: SourceState
    reference: KpInfo
    region: str
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
        self._lip_cache: tuple[SourceState, float, torch.Tensor | None] | None = None
        self._target_cache: dict[float, torch.Tensor] = {}

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
        return cls(build_networks(nets, dev, backend, precision, cache_dir=cache_dir,
                                  progress=progress if progress is not None else no_progress), dev)

    def backend_status(self) -> tuple[dict[str, str], list[str]]:
        """(module -> "backend precision" running it now, reasons to show): for the stage's reason and /health."""
        return self.networks.choices(), self.networks.all_reasons()

    @torch.inference_mode()
    def prepare_source(
        self, image: torch.Tensor, landmarks: np.ndarray | None = None, trace: Trace | None = None
    ) -> SourceState:
        """F and M on the source crop (1, 3, 256, 256) in [0, 1]; done once per portrait.

        ``landmarks``: the portrait's 203 LivePortrait landmarks (any pixel frame), whose eye and lip ratios
        retargeting and lip normalisation need.
        """
        feature = self.networks.appearance(image)
        info = self.motion_info(image, trace=trace)
        x_s = motion.keypoints(info)
        if trace is not None:
            trace["feature_3d"] = feature
            trace["x_s"] = x_s
        state = SourceState(feature=feature, info=info, x_s=x_s)
        return state if landmarks is None else state.with_ratios(FaceRatios.from_landmarks(landmarks))

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
        """(x_d0_new, m as a float32 device tensor, m as float64), computed once per (source, reference, region).

        The cache holds the two objects themselves (compared by identity), so a new reference frame or portrait
        always recomputes; the hull volume is the only host round trip of the chain.
        """
        cache = self._expr_cache
        region = options.animation_region
        if cache is not None and cache.source is source and cache.reference is reference and cache.region == region:
            return cache.x_d0_new, cache.multiplier, cache.multiplier64
        x_d0_new = driven_motion(source.info, reference, reference, options).x_d
        m = motion.motion_multiplier(source.x_s, x_d0_new)
        m_tensor = torch.tensor(m, dtype=torch.float32, device=self.device)
        self._expr_cache = _ReferenceCache(source, reference, region, x_d0_new, m_tensor, m)
        logger.debug("expression-friendly multiplier %.9f for a new reference frame", m)
        return x_d0_new, m_tensor, m

    def _lip_normalization(self, source: SourceState, threshold: float) -> torch.Tensor | None:
        """The official "lip_delta_before_animation": R_lip(x_s, [source lip, 0]) when the source's mouth is open
        (lip ratio >= threshold), else None; computed once per (source, threshold)."""
        cache = self._lip_cache
        if cache is not None and cache[0] is source and cache[1] == threshold:
            return cache[2]
        if source.lip_ratio is None:
            raise ValueError(
                "lip normalisation needs the portrait's lip ratio: prepare the source with its 203 landmarks "
                "(prepare_source(image, landmarks=...) or SourceState.with_ratios)"
            )
        ratio = torch.cat([source.lip_ratio, torch.zeros_like(source.lip_ratio)], dim=1)
        # the comparison reads one float back to the host, once per portrait
        delta = motion.retarget_lip(self.networks.lip, source.x_s, ratio) if float(ratio[0, 0]) >= threshold else None
        self._lip_cache = (source, threshold, delta)
        return delta

    def _target_ratio(self, value: float) -> torch.Tensor:
        """A user's target ratio as a (1, 1) device tensor, made once per value."""
        tensor = self._target_cache.get(value)
        if tensor is None:
            if len(self._target_cache) > 64:  # a slider dragged through many values
                self._target_cache.clear()
            tensor = self._target_cache[value] = torch.tensor([[value]], dtype=torch.float32, device=self.device)
        return tensor

    def _driving_ratio(self, target: float | None, measured: np.ndarray | None, what: str) -> torch.Tensor:
        """The driving column of a retargeting input: the user's target, else the driver's measured ratio."""
        if target is not None:
            return self._target_ratio(target)
        if measured is None:
            raise ValueError(
                f"{what} retargeting follows the driver but no driver ratios were given: pass driver=FaceRatios "
                f"from the driver's 203 landmarks, or set {what}_target"
            )
        return torch.tensor(np.asarray(measured, np.float32).reshape(1, 1), device=self.device)

    def _retargeting_inputs(
        self, source: SourceState, options: DriveOptions, driver: FaceRatios | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The MLP ratio inputs: eye [source left, source right, driving LEFT eye], lip [source lip, driving lip]."""
        eye = lip = None
        if options.eye_retargeting:
            if source.eye_ratio is None:
                raise ValueError("eye retargeting needs the portrait's eye ratios: prepare the source with landmarks")
            drv = self._driving_ratio(options.eye_target, None if driver is None else driver.eyes[..., 0], "eye")
            eye = torch.cat([source.eye_ratio, drv], dim=1)
        if options.lip_retargeting:
            if source.lip_ratio is None:
                raise ValueError("lip retargeting needs the portrait's lip ratio: prepare the source with landmarks")
            drv = self._driving_ratio(options.lip_target, None if driver is None else driver.lip[..., 0], "lip")
            lip = torch.cat([source.lip_ratio, drv], dim=1)
        return eye, lip

    @torch.inference_mode()
    def drive(
        self,
        source: SourceState,
        driving: KpInfo,
        reference: KpInfo,
        options: DriveOptions = DriveOptions(),
        *,
        driver: FaceRatios | None = None,
        eye_ratio: torch.Tensor | None = None,
        lip_ratio: torch.Tensor | None = None,
        image_reference_exp: torch.Tensor | None = None,
        trace: Trace | None = None,
    ) -> torch.Tensor:
        """The driven keypoints x_final (1, 21, 3) that W warps the source to, in the official pipeline's order:
        motion (mode and region), expression-friendly rescaling, then "Algorithm 1" (stitching, lip normalisation or
        retargeting), then the driving multiplier.

        Retargeting takes the driver's measured ``driver`` ratios (from its 203 landmarks, per frame) or the options'
        targets, and the source's ratios from ``source``; ``eye_ratio`` (1, 3) and ``lip_ratio`` (1, 2) give the
        MLP inputs directly instead. ``image_reference_exp`` is the official ``lip_array`` for single-image driving.
        """
        x_s = source.x_s
        mo = driven_motion(source.info, driving, reference, options, image_reference_exp)
        x_d = mo.x_d
        if trace is not None:
            trace.update(R_s=source.info.rotation, R_new=mo.rotation, delta_new=mo.exp, exp_new=mo.exp)
            trace.update(scale_new=mo.scale, t_new=mo.t, x_d_new=x_d, x_d_motion=x_d)
        if options.expression_friendly:
            x_d0_new, m, m64 = self._reference_keypoints(source, reference, options)
            x_d = motion.expression_friendly(x_d, x_d0_new, m, x_s)
            if trace is not None:
                trace.update(motion_multiplier=torch.tensor(m64, dtype=torch.float64), x_d_new_expr=x_d)
        if trace is not None:
            trace["x_d_after_expr"] = x_d
        lip_norm = None
        if options.lip_normalization:
            lip_norm = self._lip_normalization(source, options.lip_normalize_threshold)
        if trace is not None and lip_norm is not None:
            trace["lip_delta_before_animation"] = lip_norm

        if options.retargeting:
            # the official branch: the lip-normalisation delta is not added here
            if eye_ratio is None and lip_ratio is None:
                eye_ratio, lip_ratio = self._retargeting_inputs(source, options, driver)
            x_d = x_s if options.retarget_onto_source() else x_d
            if options.eye_retargeting:
                if eye_ratio is None:
                    raise ValueError("eye retargeting is on but no eye_ratio (1, 3) was given")
                eyes_delta = motion.retarget_eye(self.networks.eye, x_s, eye_ratio)
                x_d = x_d + eyes_delta
                if trace is not None:
                    trace.update(eye_ratio_input=eye_ratio, eyes_delta=eyes_delta)
            if options.lip_retargeting:
                if lip_ratio is None:
                    raise ValueError("lip retargeting is on but no lip_ratio (1, 2) was given")
                lip_delta = motion.retarget_lip(self.networks.lip, x_s, lip_ratio)
                x_d = x_d + lip_delta
                if trace is not None:
                    trace.update(lip_ratio_input=lip_ratio, lip_delta=lip_delta)
            if options.stitching:
                x_d = self._stitch(x_s, x_d, trace)
        else:
            if options.stitching:
                x_d = self._stitch(x_s, x_d, trace)
            if lip_norm is not None:
                x_d = x_d + lip_norm
        x_final = motion.apply_driving_multiplier(x_s, x_d, options.driving_multiplier)
        if trace is not None:
            trace.update(x_d_pre_mult=x_d, x_d_final=x_final)
        return x_final

    def _stitch(self, x_s: torch.Tensor, x_d: torch.Tensor, trace: Trace | None) -> torch.Tensor:
        feat = motion.stitch_input(x_s, x_d)
        delta = self.networks.stitching(feat)
        x_d = motion.apply_stitching_delta(x_d, delta)
        if trace is not None:
            trace.update(stitch_input=feat, stitch_delta=delta, x_d_stitched=x_d)
        return x_d

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
        # torch swaps the cudnn module for an object that has ``conv``; the module's source, all mypy reads, lacks it
        conv = cudnn.conv  # type: ignore[attr-defined]
        saved = (torch.backends.cuda.matmul.fp32_precision, conv.fp32_precision)
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.fp32_precision, conv.fp32_precision = saved
            cudnn.benchmark = benchmark
        return
    matmul, conv_tf32 = torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        cudnn.allow_tf32 = conv_tf32
        cudnn.benchmark = benchmark
