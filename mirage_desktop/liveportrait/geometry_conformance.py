"""The geometry kit (``../shared/liveportrait/geometry``) run through the app's own crop, landmark, ratio and
paste-back functions.

Each kit file has a case-checker in :data:`CASES`: a function of a :class:`GeometryRun` that returns the arrays it
computed, per scope (``module``: each step fed the kit's stored inputs of that step; ``end_to_end``: the chain from
the landmark sets and images alone). ``drive_options.npz`` is checked by the motion maths' own provider,
``mirage_desktop.liveportrait.option_cases.drive_option_arrays(kit_dir, golden_dir, weights_dir)``, when that module
exists; otherwise the run says so and fails.

The stand-in landmark models are written by the kit's own generator (``synth_landmark_models.py``) with the salt
its tolerances.json names, into a temporary folder, and loaded by :mod:`mirage_desktop.vision.landmarks`, the
classes the app loads the real files with.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import tempfile
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from mirage_desktop.liveportrait import crop as geo
from mirage_desktop.liveportrait import ratios
from mirage_desktop.liveportrait.cropper import Cropper, track
from mirage_desktop.liveportrait.kit_compare import SCOPES, Arrays, Check, Kit, Report, compare
from mirage_desktop.liveportrait.loader import LivePortraitLoadError
from mirage_desktop.liveportrait.paste_back import PasteBack
from mirage_desktop.vision.landmarks import Landmark106, Landmark203

GENERATOR = "synth_landmark_models.py"
OPTION_CASES = "mirage_desktop.liveportrait.option_cases"
ScopedArrays = dict[str, dict[str, np.ndarray]]  # scope -> array name -> values


@dataclass
class GeometryRun:
    kit: Kit
    cropper: Cropper
    golden_dir: Path
    weights_dir: Path
    device: str = "cpu"


def load_generator(kit_dir: Path) -> types.ModuleType:
    """The kit's synth_landmark_models.py, imported from its file (it is not a package)."""
    path = Path(kit_dir) / GENERATOR
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: --geometry must be the geometry kit folder")
    spec = importlib.util.spec_from_file_location("geometry_kit_synth_landmark_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stand_in_cropper(kit_dir: Path, salt: str, out_dir: Path, device: str = "cpu") -> Cropper:
    """Write the stand-in landmark models (kit generator, ``salt``) and load them as the app loads the real ones."""
    paths = load_generator(kit_dir).write_models(str(out_dir), salt=salt)
    return Cropper(Landmark106(Path(paths["2d106det.onnx"]), device), Landmark203(Path(paths["landmark.onnx"]), device))


def _both(arrays: dict[str, np.ndarray]) -> ScopedArrays:
    """Cases whose inputs are the stored landmark sets and images: the module step is the chain."""
    return {"module": arrays, "end_to_end": arrays}


# ------------------------------------------------------------------------------------------------ crop.npz
_CROP_GROUPS = {
    "src_": ("lmk106", geo.SOURCE),
    "norot_": ("lmk106", geo.CropSettings(geo.SOURCE.dsize, geo.SOURCE.scale, geo.SOURCE.vy_ratio, rotate=False)),
    "src203_": ("lmk203", geo.SOURCE),
    "lmr106_": ("lmk106", geo.LANDMARK_RUNNER),
    "lmr203_": ("lmk203", geo.LANDMARK_RUNNER),
}


def crop_case(run: GeometryRun) -> ScopedArrays:
    k = run.kit["crop.npz"]
    out: dict[str, np.ndarray] = {}
    for prefix, (points, settings) in _CROP_GROUPS.items():
        crops = [geo.crop_geometry(p, settings) for p in k[points]]
        rects = [c.rect for c in crops if c.rect is not None]
        out[prefix + "pt2"] = np.stack([r.pt2 for r in rects])
        out[prefix + "center"] = np.stack([r.center for r in rects])
        out[prefix + "size"] = np.stack([r.size for r in rects])
        out[prefix + "angle"] = np.array([r.angle for r in rects], np.float64)
        out[prefix + "M_o2c"] = np.stack([c.M_o2c for c in crops])
        out[prefix + "M_c2o"] = np.stack([c.M_c2o for c in crops])
        out[prefix + "pt_crop"] = np.stack([c.points for c in crops])
    images = [geo.crop_image(k["image"], k["lmk106"][i], geo.SOURCE).pixels() for i in k["src_image_sets"]]
    out["src_img_crop"] = np.stack(images)
    out["src_img_crop_256"] = np.stack([geo.half_size(im) for im in images])
    # vx_ratio is not forwarded by the official crop_image: our settings have no vx at all
    out["src_vx_ratio_ignored"] = np.array(not hasattr(geo.SOURCE, "vx_ratio"))

    boxes = [geo.driving_box(p) for p in k["drv_lmk203"]]
    out["drv_center"] = np.stack([b.center for b in boxes])
    out["drv_size"] = np.stack([b.size for b in boxes])
    out["drv_angle"] = np.array([b.angle for b in boxes], np.float64)
    out["drv_bbox_rot"] = np.stack([b.bbox_rot for b in boxes])
    out["drv_bbox"] = np.stack([b.bbox for b in boxes])
    out["drv_global_bbox"] = geo.average_boxes([b.bbox for b in boxes])
    crops = [geo.crop_by_box(k["image"], out["drv_global_bbox"], p) for p in k["drv_lmk203"]]
    out["drv_M_o2c"] = np.stack([c.M_o2c for c in crops])
    out["drv_M_c2o"] = np.stack([c.M_c2o for c in crops])
    out["drv_lmk_crop"] = np.stack([c.points for c in crops])
    assert crops[0].image is not None
    out["drv_img_crop"] = crops[0].image
    out["drv_img_crop_256"] = geo.half_size(crops[0].image, cv2.INTER_LINEAR)
    return _both(out)


# ------------------------------------------------------------------------------------------------ ratios.npz
def ratios_case(run: GeometryRun) -> ScopedArrays:
    k = run.kit["ratios.npz"]
    lmk, drv = k["lmk203"], k["drv_lmk203"]
    drv_eye = np.concatenate([ratios.eye_ratio(p) for p in drv])
    drv_lip = np.concatenate([ratios.lip_ratio(p) for p in drv])
    out = {
        "eye_ratio": ratios.eye_ratio(lmk),
        "lip_ratio": ratios.lip_ratio(lmk),
        "eye_ratio_with_target": np.concatenate(
            [ratios.eye_ratio(p, k["target_eye_ratio"][i : i + 1]) for i, p in enumerate(lmk)]
        ),
        "drv_eye_ratio": drv_eye,
        "drv_lip_ratio": drv_lip,
        "combined_eye_ratio": np.concatenate([ratios.combined_eye_ratio(e[None], lmk[0]) for e in drv_eye]),
        "combined_lip_ratio": np.concatenate([ratios.combined_lip_ratio(v, lmk[0]) for v in drv_lip]),
    }
    return _both(out)


# ------------------------------------------------------------------------------------------------ paste_back.npz
def _paste(photo: np.ndarray, m_c2o: np.ndarray, face: np.ndarray, device: str) -> dict[str, np.ndarray]:
    pb = PasteBack(photo, m_c2o, device=device)
    face_t = torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)[None]
    with torch.inference_mode():
        return {
            "mask_ori_u8": pb.mask_levels[0, 0].to(torch.uint8).cpu().numpy(),
            "warped_face": pb.warp_face(face_t)[0].permute(1, 2, 0).to(torch.uint8).cpu().numpy(),
            "result": pb.compose(face_t).cpu().numpy(),
        }


def paste_back_case(run: GeometryRun) -> ScopedArrays:
    k = run.kit["paste_back.npz"]
    crop_sets = run.kit["crop.npz"]["lmk106"]
    # end to end: M_c2o from the landmarks the kit names (crop.npz src sets 0 and 1, then paste_lmk106)
    lmks = [crop_sets[0], crop_sets[1], k["paste_lmk106"]]
    scoped: ScopedArrays = {}
    for scope, matrices in (
        ("module", list(k["M_c2o"])),
        ("end_to_end", [geo.crop_geometry(p, geo.SOURCE).M_c2o for p in lmks]),
    ):
        cases = [_paste(k["image"], m, face, run.device) for m, face in zip(matrices, k["face"])]
        scoped[scope] = {name: np.stack([c[name] for c in cases]) for name in cases[0]}
    return scoped


# ------------------------------------------------------------------------------------------------ landmarks.npz
def landmarks_case(run: GeometryRun) -> ScopedArrays:
    k = run.kit["landmarks.npz"]
    m106, m203 = run.cropper.lmk106, run.cropper.lmk203
    image = k["image"]
    bgr = np.ascontiguousarray(image[..., ::-1])
    mod: dict[str, np.ndarray] = {}
    e2e: dict[str, np.ndarray] = {}

    aligned = [Landmark106.align(bgr, box) for box in k["det_boxes"]]
    crops = np.stack([a[0] for a in aligned])
    mats = np.stack([a[1] for a in aligned])
    blobs = [m106.blob(c, bgr=True).copy() for c in crops]
    raws = np.concatenate([m106.run(b) for b in blobs])
    for d in (mod, e2e):
        d["det_aimg_bgr"], d["det_M"], d["det_blob0"] = crops, mats, blobs[0]
    # the kit stores only box 0's model input; boxes 1 and 2 run from our own (checked) inputs
    mod["det_raw"] = np.concatenate([m106.run(k["det_blob0"]), raws[1:]])
    e2e["det_raw"] = raws
    mod["det_lmk106"] = np.stack([m106.points(r, m) for r, m in zip(k["det_raw"], k["det_M"])])
    e2e["det_lmk106"] = np.stack([m106.detect(bgr, box) for box in k["det_boxes"]])

    inputs = [k[f"lmr_lmk_in_{i}"] for i in range(len(k["lmr_input_lmk"]))]
    steps = [track(m203, image, p) for p in inputs]
    for d in (mod, e2e):
        d["lmr_img_crop"] = np.stack([s.crop_image for s in steps])
        d["lmr_M_c2o"] = np.stack([s.crop.M_c2o for s in steps if s.crop is not None])
    mod["lmr_input0"] = m203.blob(k["lmr_img_crop"][0]).copy()
    e2e["lmr_input0"] = m203.blob(steps[0].crop_image).copy()
    module_outs = [m203.run(m203.blob(c)) for c in k["lmr_img_crop"]]
    for name, i in (("lmr_out_output", 0), ("lmr_out_853", 1), ("lmr_out_856", 2)):
        mod[name] = np.concatenate([o[i] for o in module_outs])
        e2e[name] = np.concatenate([s.outputs[i] for s in steps])
    mod["lmr_lmk203"] = np.stack(
        [geo.transform_points(k["lmr_out_856"][i].reshape(-1, 2) * np.float32(224), k["lmr_M_c2o"][i])
         for i in range(len(steps))]
    )
    e2e["lmr_lmk203"] = np.stack([s.points for s in steps])
    whole = track(m203, image, None)
    for d in (mod, e2e):
        d["lmr_nolmk_lmk203"], d["lmr_nolmk_resize"] = whole.points, whole.crop_image

    src = run.cropper.source(image, k["det_boxes"][0])
    drv = run.cropper.driving_video(list(k["chain_drv_frames"]), k["det_boxes"][0])
    chain = {
        "chain_src_img_crop": src.image_512,
        "chain_src_img_crop_256x256": src.image_256,
        "chain_src_lmk_crop": src.lmk203,
        "chain_src_M_o2c": src.M_o2c,
        "chain_src_M_c2o": src.M_c2o,
        "chain_src_pt_crop": src.pt_crop,
        "chain_drv_lmk203": np.stack(drv.lmk203),
        "chain_drv_frame_crop": np.stack([c.pixels() for c in drv.crops]),
        "chain_drv_lmk_crop": np.stack([c.points for c in drv.crops]),
        "chain_drv_frame_crop_256": np.stack(drv.images_256),
    }
    mod.update(chain)
    e2e.update(chain)
    return {"module": mod, "end_to_end": e2e}


# ------------------------------------------------------------------------------------------------ drive_options.npz
class NotChecked(Exception):
    """A case that cannot run here; the message says why."""


def drive_options_case(run: GeometryRun) -> ScopedArrays:
    try:
        provider = importlib.import_module(OPTION_CASES)
    except ImportError as exc:
        raise NotChecked(f"{OPTION_CASES} is not available ({exc})") from exc
    try:
        arrays = provider.drive_option_arrays(run.kit.dir, run.golden_dir, run.weights_dir)
    except LivePortraitLoadError as exc:  # the option maths run M on the networks kit's inputs: weights needed
        raise NotChecked(f"needs the kit's synthetic weights in --weights ({exc})") from exc
    # the provider runs from the networks kit's inputs.npz through M: the end-to-end scope
    return {"end_to_end": {name: np.asarray(v) for name, v in arrays.items()}}


#: kit file -> its case-checker
CASES: dict[str, Callable[[GeometryRun], ScopedArrays]] = {
    "crop.npz": crop_case,
    "landmarks.npz": landmarks_case,
    "ratios.npz": ratios_case,
    "paste_back.npz": paste_back_case,
    "drive_options.npz": drive_options_case,
}


def run_geometry(
    kit_dir: Path | str,
    weights_dir: Path | str,
    golden_dir: Path | str | None = None,
    device: str = "cpu",
    cases: dict[str, Callable[[GeometryRun], ScopedArrays]] | None = None,
) -> Report:
    """Every case of the geometry kit; ``report.end_to_end`` holds what ``--dump`` writes (the kit's names)."""
    kit = Kit(Path(kit_dir), flag="--geometry", what="the geometry kit folder")
    golden = Path(golden_dir) if golden_dir is not None else Path(kit_dir).parent / "golden"
    salt = str(kit.raw.get("stand_in_salt", ""))
    report = Report()
    onnx_device = "cpu" if device == "cpu" else "auto"
    with tempfile.TemporaryDirectory(prefix="mirage-landmark-stand-ins-") as tmp:
        cropper = stand_in_cropper(Path(kit_dir), salt, Path(tmp), onnx_device)
        run = GeometryRun(kit, cropper, golden, Path(weights_dir), device)
        for file, case in (cases or CASES).items():
            try:
                scoped = case(run)
            except NotChecked as why:
                report.checks.append(Check("end_to_end", file, math.inf, f"not checked: {why}", False))
                continue
            _check_file(kit, file, scoped, report)
    return report


def _check_file(kit: Kit, file: str, scoped: ScopedArrays, report: Report) -> None:
    outputs = [n for n in kit.outputs() if n.startswith(file + ":")]
    # the dump: the kit's inputs as given, then what we computed (end to end where both scopes exist)
    given = {k: v for k, v in kit[file].items() if kit.tolerances.get(f"{file}:{k}", {}).get("role") != "output"}
    given = {k: v for k, v in given.items() if kit.tolerances.get(f"{file}:{k}", {}).get("role") != "fact"}
    report.end_to_end[file] = {**given, **scoped.get("module", {}), **scoped.get("end_to_end", {})}
    for name in outputs:
        array = name.split(":", 1)[1]
        for scope in SCOPES:
            if scope not in scoped:
                continue
            if array in scoped[scope]:
                report.checks.append(compare(kit, scope, name, scoped[scope][array], half=False))
            else:
                report.checks.append(Check(scope, name, math.inf, "not computed", False))
    # facts and constants compare exactly
    for name, spec in kit.tolerances.items():
        array = name.split(":", 1)[1]
        if name.startswith(file + ":") and spec.get("role") == "fact" and array in scoped.get("module", {}):
            same = bool(np.array_equal(scoped["module"][array], kit[file][array]))
            report.checks.append(Check("module", name, 0.0 if same else math.inf, "exact", same))

