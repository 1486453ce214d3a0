"""Latency of one driven frame of the live avatar at 720p in: crop, M, motion, W, G, paste-back, plus face tracking
(SCRFD and the landmark runner).

Uses the weights in --models-dir (the app's layout), or writes the conformance kit's synthetic weights and the
geometry kit's stand-in landmark models to a temp folder (weight values do not change the speed). Timings are medians over --runs frames after --warmup frames; on
CUDA each step is synchronised so its time is its own.

    python benchmarks/animate.py [--device cpu|cuda] [--backend torch|onnxruntime|auto] [--precision fp32|bf16|fp16] [--models-dir DIR] [--runs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mirage_desktop.config import Settings
from mirage_desktop.liveportrait.geometry_conformance import load_generator
from mirage_desktop.models.registry import landmark_paths
from mirage_desktop.stages.avatar.stage import AvatarStage
from mirage_desktop.stages.face import FaceDetectionStage
from mirage_desktop.engine.frame import Frame
from mirage_desktop.liveportrait.runner import rgb_to_tensor
from mirage_desktop.liveportrait.backends import build_networks
from mirage_desktop.engine.sources import DemoSource

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def synthetic_models(folder: Path) -> Path:
    spec = importlib.util.spec_from_file_location("synth_weights", SHARED / "liveportrait" / "synth_weights.py")
    assert spec is not None and spec.loader is not None
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    synth.write_checkpoints(folder, salt="", tree=True)
    (folder / "scrfd").mkdir(exist_ok=True)
    (folder / "scrfd" / "scrfd_2.5g_bnkps.onnx").write_bytes((SHARED / "models" / "scrfd_2.5g.onnx").read_bytes())
    written = load_generator(SHARED / "liveportrait" / "geometry").write_models(str(folder / "stand_ins"), salt="")
    for name, target in landmark_paths(folder).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        Path(written[name]).replace(target)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models-dir", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--half", action="store_true", help="float16 W and G (CUDA); without it (or --precision) fp32")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "auto"))
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16", "auto"), help="W and G precision")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = None
    models = args.models_dir
    if models is None:
        tmp = tempfile.TemporaryDirectory()
        models = synthetic_models(Path(tmp.name))
    settings = Settings(models_dir=models, enable_scrfd=True, enable_liveportrait=True, device=args.device)
    detector = FaceDetectionStage(settings)
    stage = AvatarStage(settings, detector)
    t = time.perf_counter()
    assert detector.ensure_ready() and stage.ensure_ready(), (detector.reason, stage.reason)
    model = stage.model
    assert model is not None and stage._avatar is not None
    # the stage picks its own precision; rebuild the networks' backends so what is asked is what is measured
    precision = args.precision or ("fp16" if args.half else "fp32")
    model.networks = build_networks(model.networks.torch_networks, model.device, args.backend, precision)
    model.half = precision != "fp32"
    print("modules: " + ", ".join(f"{m}={c}" for m, c in model.networks.choices().items()))
    print(f"loaded models and prepared the avatar in {time.perf_counter() - t:.1f} s on {model.device}")
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)

    demo = DemoSource(1280, 720, 30, paced=False)
    demo.open()
    steps: dict[str, list[float]] = {k: [] for k in ("track", "crop", "M", "motion", "W", "G", "paste", "total")}
    reference = None
    avatar = stage._avatar
    for i in range(args.warmup + args.runs):
        image = demo.render(i * 7)
        image.flags.writeable = False
        sync()
        t0 = time.perf_counter()
        frame = detector.process(Frame(image=image, index=i, t_capture=t0, camera=image))
        t1 = time.perf_counter()
        assert frame.face is not None and frame.face.lmk203 is not None, "no face (or no landmarks) in the demo frame"
        tensor = rgb_to_tensor(stage._driving_crop(image, frame.face.lmk203), model.device)
        sync()
        t2 = time.perf_counter()
        info = model.motion_info(tensor)
        sync()
        t3 = time.perf_counter()
        if reference is None:
            reference = info
        keypoints = stage._drive(model, avatar.source, info, reference)
        sync()
        t4 = time.perf_counter()
        warped = model.warp(avatar.source.feature, avatar.source.x_s, keypoints)
        sync()
        t5 = time.perf_counter()
        face = model.decode(warped.out)
        sync()
        t6 = time.perf_counter()
        out = avatar.paste.compose(face)
        t7 = time.perf_counter()
        assert out.shape == (720, 1280, 3)
        if i >= args.warmup:
            for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t7 - t0)):
                steps[key].append(value * 1000)
    print(f"one driven frame, 720p in, {args.device} {args.backend} {precision} W+G, "
          f"{args.threads} threads, median of {args.runs} after {args.warmup} warm-up")
    print(f"{'step':>8} | {'median ms':>10} | {'min ms':>8} | {'max ms':>8}")
    for key, values in steps.items():
        print(f"{key:>8} | {statistics.median(values):10.2f} | {min(values):8.2f} | {max(values):8.2f}")
    if model.device.type == "cuda":
        print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
