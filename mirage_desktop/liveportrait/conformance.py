"""Check our LivePortrait against the official numbers of a conformance kit (``golden/`` + synthetic weights).

    python -m mirage_desktop.liveportrait.conformance --golden DIR --weights DIR [--device cpu|cuda] [--half]
        [--backend torch|onnxruntime|auto] [--precision fp32|bf16|fp16] [--dump DIR] [--threads N]
    python -m mirage_desktop.liveportrait.conformance --geometry DIR --weights DIR [--dump DIR]

``--geometry`` runs the geometry kit (crops, landmark models on their stand-ins, ratios, option maths, paste-back)
through :mod:`mirage_desktop.liveportrait.geometry_conformance`; with ``--golden`` too, both kits run.

Two scopes, each compared with its own tolerance from ``tolerances.json``:

- ``module``: every network and maths step fed the kit's golden inputs (the README's "Feed" lines);
- ``end_to_end``: the whole chain run from ``inputs.npz`` alone, with the same functions the live stage calls.
  Arrays whose inputs are fixed numbers rather than images (``camera.npz``, ``retargeting.npz``) are module-only;
  ``warp_stress.npz`` is rebuilt end to end from our own x_s and f_s.

One line per array; exit status 0 only when every array passes (1 when one fails, 2 when the kit or weights cannot
be read). ``--dump DIR`` writes every array of the end-to-end run as ``DIR/<kit file>.npz`` with the kit's names,
pass or fail. ``--backend`` runs the networks in PyTorch, ONNX Runtime (exported once, cached) or each on its
fastest (``auto``); every backend at fp32 must meet the kit's float32 tolerances. ``--precision bf16|fp16`` (``--half``
is fp16) runs W and G at reduced precision and judges their arrays by the loose tolerance: mean |error| <= 0.01
(``LOOSE_MEAN_ABS``; uint8 images: mean |error| / 255) instead of the max error.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from mirage_desktop.liveportrait import motion
from mirage_desktop.liveportrait.backends import BackendUnavailable
from mirage_desktop.liveportrait.kit_compare import SCOPES, Arrays, Check, Kit, Report, compare
from mirage_desktop.liveportrait.loader import LivePortraitLoadError
from mirage_desktop.liveportrait.motion import KpInfo
from mirage_desktop.liveportrait.runner import DriveOptions, LivePortrait, SourceState, strict_float32

logger = logging.getLogger(__name__)

#: warp_stress.npz's driving keypoints: x_s rotated by these angles (pitch, yaw, roll, degrees) and shifted
STRESS_ANGLES = (8.0, 15.0, -5.0)
STRESS_SHIFT = (0.06, -0.04, 0.0)
#: arrays the kit stores as float16 to halve their size; compared in float32, dumped as float16 like the kit
FLOAT16_ARRAYS = {("spade_generator.npz", "image"), ("warp_stress.npz", "out")}
#: spade_generator.npz's image_center_f32 window
CENTER = slice(224, 288)



def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy() if t.dtype != torch.float64 else t.detach().cpu().numpy()


def _stack(items: Sequence[torch.Tensor]) -> np.ndarray:
    return np.concatenate([_np(t) for t in items], axis=0)


def _image(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float32 = uint8 / 255 (the kit's image feed)."""
    t = torch.from_numpy(np.ascontiguousarray(rgb)).to(device)
    return (t.permute(2, 0, 1)[None].float() / 255.0).clamp(0, 1)


def _info_arrays(infos: Sequence[KpInfo], traces: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, np.ndarray]:
    out = {name: _stack([tr[name] for tr in traces]) for name in traces[0] if name.startswith("raw_")}
    for name in ("pitch", "yaw", "roll", "t", "exp", "scale", "kp"):
        out[name] = _stack([getattr(info, name) for info in infos])
    return out


def _info_from_golden(me: Mapping[str, np.ndarray], rotation: np.ndarray, i: int, device: torch.device) -> KpInfo:
    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[i : i + 1])).to(device)

    return KpInfo(
        pitch=t(me["pitch"]),
        yaw=t(me["yaw"]),
        roll=t(me["roll"]),
        t=t(me["t"]),
        exp=t(me["exp"]),
        scale=t(me["scale"]),
        kp=t(me["kp"]),
        rotation=t(rotation),
    )


def _stress_keypoints(x_s: torch.Tensor) -> torch.Tensor:
    """warp_stress.npz's kp_driving = x_s . R(8, 15, -5 degrees) + (0.06, -0.04, 0)."""
    angles = [torch.tensor([[a]], dtype=x_s.dtype, device=x_s.device) for a in STRESS_ANGLES]
    shift = torch.tensor(STRESS_SHIFT, dtype=x_s.dtype, device=x_s.device)
    return x_s @ motion.rotation_matrix(*angles) + shift


def _decode_arrays(lp: LivePortrait, images: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    full = _stack(images)
    return {
        "image": full,
        "image_center_f32": np.ascontiguousarray(full[:, :, CENTER, CENTER]),
        "image_uint8": np.concatenate([lp.to_uint8(img) for img in images], axis=0),
    }


def run_module_cases(lp: LivePortrait, kit: Kit, check: Callable[[str, str, np.ndarray], None]) -> None:
    """Every module and maths step fed the golden inputs named in the kit README."""
    dev = lp.device
    nets = lp.networks

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

    inputs = kit["inputs.npz"]
    frames = [inputs["source_rgb"], *inputs["driving_rgb"]]
    with torch.inference_mode():
        check("appearance_feature_extractor.npz", "feature_3d", _np(nets.appearance(_image(frames[0], dev))))

        traces: list[dict[str, torch.Tensor]] = [{} for _ in frames]
        infos = [lp.motion_info(_image(rgb, dev), trace=tr) for rgb, tr in zip(frames, traces)]
        for name, value in _info_arrays(infos, traces).items():
            check("motion_extractor.npz", name, value)

        cam = kit["camera.npz"]
        check("camera.npz", "bin_degrees", _np(motion.bins_to_degrees(tensor(cam["bin_logits"]))))
        ang = tensor(cam["angles_deg"])
        check("camera.npz", "rotation", _np(motion.rotation_matrix(ang[:, 0], ang[:, 1], ang[:, 2])))
        rot = motion.rotation_matrix(tensor(cam["tk_pitch"]), tensor(cam["tk_yaw"]), tensor(cam["tk_roll"]))
        tk_x = motion.transform_keypoint(
            tensor(cam["tk_kp"]), tensor(cam["tk_exp"]), tensor(cam["tk_t"]), tensor(cam["tk_scale"]), rot
        )
        check("camera.npz", "tk_x", _np(tk_x))

        me = kit["motion_extractor.npz"]
        rotations = motion.rotation_matrix(tensor(me["pitch"]), tensor(me["yaw"]), tensor(me["roll"]))
        check("keypoints.npz", "rotation", _np(rotations))
        kp_in = motion.transform_keypoint(
            tensor(me["kp"]), tensor(me["exp"]), tensor(me["t"]), tensor(me["scale"]), rotations
        )
        check("keypoints.npz", "x_s", _np(kp_in[:1]))
        check("keypoints.npz", "x_d", _np(kp_in[1:]))

        kpz = kit["keypoints.npz"]
        golden_infos = [_info_from_golden(me, kpz["rotation"], i, dev) for i in range(len(frames))]
        source = SourceState(feature=torch.empty(0, device=dev), info=golden_infos[0], x_s=tensor(kpz["x_s"]))
        reference = golden_infos[1]
        motion_traces: list[dict[str, torch.Tensor]] = [{} for _ in golden_infos[1:]]
        for info, tr in zip(golden_infos[1:], motion_traces):
            lp.drive(source, info, reference, DriveOptions(stitching=False), trace=tr)
        check("motion.npz", "R_s", _np(golden_infos[0].rotation))
        for name in ("R_new", "delta_new", "scale_new", "t_new", "x_d_new", "x_d_new_expr"):
            check("motion.npz", name, _stack([tr[name] for tr in motion_traces]))
        check("motion.npz", "motion_multiplier", _np(motion_traces[0]["motion_multiplier"]))

        st = kit["stitching.npz"]
        mz = kit["motion.npz"]
        check("stitching.npz", "stitch_delta", _np(nets.stitching(tensor(st["stitch_input"]))))
        check("stitching.npz", "stitch_delta_pose", _np(nets.stitching(tensor(st["stitch_input_pose"]))))
        x_s = tensor(kpz["x_s"])
        stitched = [motion.stitch(nets.stitching, x_s, tensor(mz["x_d_new_expr"][i : i + 1])) for i in range(3)]
        check("stitching.npz", "x_d_stitched", _stack(stitched))
        mult = DriveOptions().driving_multiplier
        check("stitching.npz", "x_d_final", _stack([motion.apply_driving_multiplier(x_s, x, mult) for x in stitched]))
        pose = [motion.stitch(nets.stitching, x_s, tensor(mz["x_d_new"][i : i + 1])) for i in range(3)]
        check("stitching.npz", "x_d_stitched_pose", _stack(pose))

        rt = kit["retargeting.npz"]
        lips, eyes = [], []
        for i in range(rt["kp"].shape[0]):
            kp = tensor(rt["kp"][i : i + 1])
            lips.append(motion.retarget_lip(nets.lip, kp, tensor(rt["lip_ratio"][i : i + 1])))
            eyes.append(motion.retarget_eye(nets.eye, kp, tensor(rt["eye_ratio"][i : i + 1])))
        check("retargeting.npz", "lip_delta", _stack(lips))
        check("retargeting.npz", "eye_delta", _stack(eyes))

        feature = tensor(kit["appearance_feature_extractor.npz"]["feature_3d"])
        for file in ("warping_module.npz", "warp_stress.npz"):
            wz = kit[file]
            warps = [
                lp.warp(feature, tensor(wz["kp_source"]), tensor(wz["kp_driving"][i : i + 1]))
                for i in range(wz["kp_driving"].shape[0])
            ]
            for name in ("out", "occlusion_map", "deformation"):
                check(file, name, _stack([getattr(w, name) for w in warps]))
            del warps

        outs = kit["warping_module.npz"]["out"]
        images = [lp.decode(tensor(outs[i : i + 1])) for i in range(outs.shape[0])]
        for name, value in _decode_arrays(lp, images).items():
            check("spade_generator.npz", name, value)


def run_end_to_end(lp: LivePortrait, inputs: Mapping[str, np.ndarray]) -> Arrays:
    """The whole chain from the images alone, through the runner API the live stage uses; returns every array."""
    dev = lp.device
    options = DriveOptions()
    pose_options = DriveOptions(driving_option="pose-friendly")
    with torch.inference_mode():
        src_trace: dict[str, torch.Tensor] = {}
        source = lp.prepare_source(_image(inputs["source_rgb"], dev), trace=src_trace)
        drv_traces: list[dict[str, torch.Tensor]] = [{} for _ in inputs["driving_rgb"]]
        driving = [lp.motion_info(_image(rgb, dev), trace=tr) for rgb, tr in zip(inputs["driving_rgb"], drv_traces)]
        reference = driving[0]

        expr = [dict[str, torch.Tensor]() for _ in driving]
        pose = [dict[str, torch.Tensor]() for _ in driving]
        finals = []
        for info, tr, tr_pose in zip(driving, expr, pose):
            finals.append(lp.drive(source, info, reference, options, trace=tr))
            lp.drive(source, info, reference, pose_options, trace=tr_pose)

        render = [dict[str, torch.Tensor]() for _ in driving]
        images = [lp.render(source, x, trace=tr) for x, tr in zip(finals, render)]

        kp_stress = _stress_keypoints(source.x_s)
        stress = lp.warp(source.feature, source.x_s, kp_stress)

    def stacked(traces: Sequence[Mapping[str, torch.Tensor]], name: str) -> np.ndarray:
        return _stack([tr[name] for tr in traces])

    arrays: Arrays = {
        "appearance_feature_extractor.npz": {"feature_3d": _np(src_trace["feature_3d"])},
        "motion_extractor.npz": _info_arrays([source.info, *driving], [src_trace, *drv_traces]),
        "keypoints.npz": {
            "rotation": _stack([info.rotation for info in (source.info, *driving)]),
            "x_s": _np(source.x_s),
            "x_d": _stack([motion.keypoints(info) for info in driving]),
        },
        "motion.npz": {
            "R_s": _np(source.info.rotation),
            **{n: stacked(expr, n) for n in ("R_new", "delta_new", "scale_new", "t_new", "x_d_new", "x_d_new_expr")},
            "motion_multiplier": _np(expr[0]["motion_multiplier"]),
        },
        "stitching.npz": {
            **{n: stacked(expr, n) for n in ("stitch_input", "stitch_delta", "x_d_stitched", "x_d_final")},
            "stitch_input_pose": stacked(pose, "stitch_input"),
            "stitch_delta_pose": stacked(pose, "stitch_delta"),
            "x_d_stitched_pose": stacked(pose, "x_d_stitched"),
        },
        "warping_module.npz": {
            "kp_source": _np(source.x_s),
            "kp_driving": _stack(finals),
            **{n: stacked(render, n) for n in ("out", "occlusion_map", "deformation")},
        },
        "spade_generator.npz": _decode_arrays(lp, images),
        "warp_stress.npz": {
            "kp_source": _np(source.x_s),
            "kp_driving": _np(kp_stress),
            "out": _np(stress.out),
            "occlusion_map": _np(stress.occlusion_map),
            "deformation": _np(stress.deformation),
        },
    }
    return arrays


def run_conformance(
    golden_dir: Path | str,
    weights_dir: Path | str,
    device: str = "cpu",
    half: bool = False,
    lp: LivePortrait | None = None,
    backend: str = "torch",
    precision: str | None = None,
    cache_dir: Path | str | None = None,
) -> Report:
    """Load the weights through the app's loader, run both scopes, and compare every output array of the kit."""
    kit = Kit(Path(golden_dir))
    lp = lp or LivePortrait.load(
        weights_dir, device=device, half=half, backend=backend, precision=precision, cache_dir=cache_dir
    )
    half = lp.half  # any reduced precision of W or G: their arrays get the loose tolerance
    report = Report()
    seen: dict[str, set[str]] = {scope: set() for scope in SCOPES}

    def check_in(scope: str) -> Callable[[str, str, np.ndarray], None]:
        def check(file: str, array: str, value: np.ndarray) -> None:
            name = f"{file}:{array}"
            if name in kit.tolerances and kit.tolerances[name].get("role") == "output":
                report.checks.append(compare(kit, scope, name, value, half))
                seen[scope].add(name)

        return check

    with strict_float32():
        run_module_cases(lp, kit, check_in("module"))
        report.end_to_end = run_end_to_end(lp, kit["inputs.npz"])
    check_e2e = check_in("end_to_end")
    for file, arrays in report.end_to_end.items():
        for array, value in arrays.items():
            check_e2e(file, array, value)
    # an output the kit lists but no case computed is a failure, not a silent gap
    image_free = ("camera.npz", "retargeting.npz")
    for name in kit.outputs():
        if name not in seen["module"]:
            report.checks.append(Check("module", name, math.inf, "not computed", False))
        if name not in seen["end_to_end"] and not name.startswith(image_free):
            report.checks.append(Check("end_to_end", name, math.inf, "not computed", False))
    return report


def dump(arrays: Arrays, out_dir: Path) -> None:
    """Write ``out_dir/<kit file>.npz`` with the kit's array names and dtypes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for file, values in arrays.items():
        stored: dict[str, Any] = {
            k: v.astype(np.float16) if (file, k) in FLOAT16_ARRAYS else v for k, v in values.items()
        }
        np.savez(out_dir / file, **stored)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mirage_desktop.liveportrait.conformance",
        description="Compare our LivePortrait networks and maths with a conformance kit's golden arrays.",
    )
    ap.add_argument("--golden", type=Path, help="the networks kit's golden/ folder (tolerances.json, *.npz)")
    ap.add_argument("--geometry", type=Path, metavar="DIR",
                    help="the geometry kit folder (crops, landmarks, ratios, options, paste-back); with or without --golden")
    ap.add_argument("--weights", required=True, type=Path, help="the weights: official tree or flat folder")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (TF32 is switched off for the run)")
    ap.add_argument("--half", action="store_true", help="float16 autocast for W and G (CUDA), loose tolerances")
    ap.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "auto"),
                    help="which backend runs the networks (auto: each on its fastest conformant one)")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="W and G precision (default fp32)")
    ap.add_argument("--dump", type=Path, metavar="DIR", help="write every end-to-end array as DIR/<kit file>.npz")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for torch (default 2, as the kit)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device}: torch sees no CUDA device; use --device cpu", file=sys.stderr)
        return 2
    if args.golden is None and args.geometry is None:
        ap.error("give --golden (the networks kit), --geometry (the geometry kit) or both")
    report = Report()
    try:
        if args.golden is not None:
            report = run_conformance(args.golden, args.weights, device=args.device, half=args.half,
                                     backend=args.backend, precision=args.precision)
        if args.geometry is not None:
            from mirage_desktop.liveportrait.geometry_conformance import run_geometry

            geometry = run_geometry(args.geometry, args.weights, golden_dir=args.golden, device=args.device)
            report.checks.extend(geometry.checks)
            report.end_to_end.update(geometry.end_to_end)
    except (LivePortraitLoadError, BackendUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return finish(report, args.dump, sys.stdout)


def finish(report: Report, dump_dir: Path | None, out: TextIO) -> int:
    """Write the dump (pass or fail), print one line per array and a summary; return the exit status."""
    if dump_dir is not None:
        dump(report.end_to_end, dump_dir)
    for c in report.checks:
        print(c.line(), file=out)
    failed = sum(not c.passed for c in report.checks)
    print(
        f"{len(report.checks) - failed}/{len(report.checks)} arrays pass" + (f", {failed} FAIL" if failed else ""),
        file=out,
    )
    if dump_dir is not None:
        print(f"end-to-end arrays written to {dump_dir}", file=out)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
