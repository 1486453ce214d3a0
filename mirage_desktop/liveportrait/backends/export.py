"""ONNX export of our own networks from the loaded weights, cached in the user cache dir.

The cache entry of a module is keyed by the weights' digest (its state dict, so synthetic and official weights, or
two releases, never share a file), the exporter (torch) version and the opset. A stale entry is never found (its key
differs); a broken one (missing file, digest mismatch, unreadable manifest, a session that cannot load it) is
exported again, never trusted. Files are written to a temporary name and renamed, so an interrupted export leaves
nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mirage_desktop.liveportrait.backends.base import BackendUnavailable, Progress, no_progress

logger = logging.getLogger(__name__)

#: ONNX opset: 20 is the first with N-D GridSample (W samples a 5-D volume)
OPSET = 20
APP_NAME = "mirage-desktop"


@dataclass(frozen=True)
class ExportSpec:
    """What a module's graph looks like at its boundary: example input shapes, names, and the batch-dynamic flag."""

    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    outputs: tuple[str, ...]
    dynamic_batch: bool = False

    def example(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
        """Deterministic example inputs in the ranges the chain feeds (images in [0, 1], keypoints near 0)."""
        gen = torch.Generator().manual_seed(0)
        out = []
        for name, shape in self.inputs:
            t = torch.rand(shape, generator=gen)
            if name.startswith("kp") or name == "x":
                t = (t - 0.5) * 0.6
            out.append(t.to(device))
        return tuple(out)


SPECS: dict[str, ExportSpec] = {
    "F": ExportSpec((("image", (1, 3, 256, 256)),), ("feature_3d",)),
    "M": ExportSpec((("image", (1, 3, 256, 256)),), ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")),
    "W": ExportSpec(
        (("feature", (1, 32, 16, 64, 64)), ("kp_source", (1, 21, 3)), ("kp_driving", (1, 21, 3))),
        ("out", "occlusion_map", "deformation"),
    ),
    "G": ExportSpec((("feature", (1, 256, 64, 64)),), ("image",)),
    "stitching": ExportSpec((("x", (1, 126)),), ("delta",), dynamic_batch=True),
    "lip": ExportSpec((("x", (1, 65)),), ("delta",), dynamic_batch=True),
    "eye": ExportSpec((("x", (1, 66)),), ("delta",), dynamic_batch=True),
}


def cache_root(override: Path | str | None = None) -> Path:
    """``override``, else ``$MIRAGE_CACHE_DIR``, else the platform's user cache dir (platformdirs)."""
    if override:
        return Path(override)
    env = os.environ.get("MIRAGE_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def weights_digest(module: nn.Module) -> str:
    """sha256 of the state dict (names, dtypes, shapes, bytes): what the exported graph's constants come from."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def cache_key(digest: str, opset: int = OPSET) -> str:
    return hashlib.sha256(f"{digest}|torch {torch.__version__}|opset {opset}".encode()).hexdigest()[:20]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def cached_model(entry: Path) -> Path | None:
    """The entry's model.onnx when its manifest is readable and the file's digest matches it; else None."""
    model, manifest = entry / "model.onnx", entry / "manifest.json"
    try:
        meta = json.loads(manifest.read_text())
        if model.is_file() and meta.get("sha256") == _file_sha256(model):
            return model
    except (OSError, ValueError):
        pass
    return None


def export(name: str, module: nn.Module, path: Path, opset: int = OPSET) -> None:
    """Export one module (float32, on the CPU, batch 1 unless its spec says dynamic) to ``path``."""
    spec = SPECS[name]
    dynamic = {n: {0: "batch"} for n, _ in spec.inputs} | {n: {0: "batch"} for n in spec.outputs}
    device = next(module.parameters()).device
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript tracer's warnings about constant shapes are expected
        torch.onnx.export(
            module.eval(),
            spec.example(device),
            str(path),
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency, 5-D GridSample at opset 20
            input_names=[n for n, _ in spec.inputs],
            output_names=list(spec.outputs),
            dynamic_axes=dynamic if spec.dynamic_batch else None,
            do_constant_folding=True,
        )


def ensure_onnx(
    name: str,
    module: nn.Module,
    cache_dir: Path | str | None = None,
    progress: Progress = no_progress,
    digest: str | None = None,
    rebuild: bool = False,
) -> Path:
    """The cached ONNX file of ``module``, exported now if missing, stale or broken; raises BackendUnavailable."""
    digest = digest or weights_digest(module)
    entry = cache_root(cache_dir) / "liveportrait-onnx" / f"{name}-{cache_key(digest)}"
    if not rebuild and (found := cached_model(entry)) is not None:
        return found
    entry.mkdir(parents=True, exist_ok=True)
    tmp = entry / f"model.onnx.tmp{os.getpid()}"
    progress(f"Preparing the {name} network for ONNX Runtime (one time)", 0.0)
    start = time.perf_counter()
    try:
        with torch.inference_mode(False), torch.no_grad():
            export(name, module, tmp)
        model = entry / "model.onnx"
        os.replace(tmp, model)
        meta = {
            "module": name,
            "weights_sha256": digest,
            "torch": torch.__version__,
            "opset": OPSET,
            "sha256": _file_sha256(model),
            "export_s": round(time.perf_counter() - start, 2),
        }
        (entry / "manifest.json.tmp").write_text(json.dumps(meta, indent=1))
        os.replace(entry / "manifest.json.tmp", entry / "manifest.json")
    except Exception as exc:  # noqa: BLE001 - any exporter failure makes the backend unavailable, with the reason
        tmp.unlink(missing_ok=True)
        raise BackendUnavailable(f"ONNX export of {name} failed ({exc}); running it in PyTorch instead") from exc
    logger.info("exported %s to ONNX in %.1f s (%s)", name, meta["export_s"], model)
    progress(f"Prepared the {name} network for ONNX Runtime", 1.0)
    return model
