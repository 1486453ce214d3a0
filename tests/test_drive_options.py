"""Every official option's motion maths against the geometry kit's ``drive_options.npz`` (the official numbers).

Each of the 28 cases runs through :meth:`LivePortrait.drive`, the call the avatar stage makes, at both of the kit's
levels: ``module`` (fed the stored keypoint info and ratios) and ``end_to_end`` (F and M on ``golden/inputs.npz``,
source ratios measured from the landmarks). Every output array must be within ``tolerances.json``, and exactly the
arrays the official pipeline produced must come out (a step that runs where it should not, or is skipped, fails).
The live-only choices (retargeting added to the driven keypoints, a user's target) are checked against sums of the
kit's own golden arrays.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from liveportrait_fixtures import KIT, kit_available

from mirage_desktop.liveportrait import option_cases
from mirage_desktop.liveportrait.option_cases import FILE, Level, options_from_flags
from mirage_desktop.liveportrait.options import DriveOptions, FaceRatios
from mirage_desktop.liveportrait.runner import LivePortrait, SourceState

pytestmark = pytest.mark.slow

GEOMETRY = KIT / "geometry"
LEVELS: tuple[Level, ...] = ("module", "end_to_end")


def _outputs() -> list[str]:
    if not (GEOMETRY / "tolerances.json").is_file() or not kit_available():
        return ["kit-missing"]
    arrays = json.loads((GEOMETRY / "tolerances.json").read_text())["arrays"]
    return [k.split(":", 1)[1] for k, v in arrays.items() if k.startswith(f"{FILE}:") and v["role"] == "output"]


@pytest.fixture(scope="module")
def geometry_kit(liveportrait_kit: Path) -> Path:
    if not (GEOMETRY / FILE).is_file():
        pytest.skip(f"the geometry kit is not at {GEOMETRY}")
    return GEOMETRY


@pytest.fixture(scope="module")
def lp(synth_weights_dir: Path) -> LivePortrait:
    torch.set_num_threads(2)
    return LivePortrait.load(synth_weights_dir, device="cpu")


@pytest.fixture(scope="module")
def golden(geometry_kit: Path) -> dict[str, np.ndarray]:
    with np.load(geometry_kit / FILE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def checks(lp: LivePortrait, geometry_kit: Path, liveportrait_kit: Path) -> dict[Level, dict]:
    out: dict[Level, dict] = {}
    for level in LEVELS:
        arrays = option_cases.drive_option_arrays(geometry_kit, liveportrait_kit / "golden", Path(), level=level, lp=lp)
        results = option_cases.check_drive_options(geometry_kit, liveportrait_kit / "golden", Path(), arrays=arrays,
                                                   level=level)
        out[level] = {"arrays": arrays, "checks": {c.name: c for c in results}, "extra": results}
    return out


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", _outputs())
def test_array_within_tolerance(checks: dict, level: Level, name: str) -> None:
    c = checks[level]["checks"][name]
    assert c.passed, f"{level} {name}: max error {c.error:.3e} > atol {c.atol:g}"


@pytest.mark.parametrize("level", LEVELS)
def test_exactly_the_official_arrays_come_out(checks: dict, level: Level) -> None:
    assert set(checks[level]["arrays"]) == set(_outputs())
    assert all(c.passed for c in checks[level]["extra"])
    for name, value in checks[level]["arrays"].items():
        assert value.dtype == (np.float64 if name.endswith("motion_multiplier") else np.float32), name


def test_defaults_are_the_official_cli_defaults(golden: dict[str, np.ndarray]) -> None:
    about = json.loads(str(golden["_about"]))
    assert options_from_flags(about["cases"]["base"]["flags"], "video") == DriveOptions()


def _module_source(golden: dict[str, np.ndarray]) -> tuple[SourceState, list, list[FaceRatios]]:
    dev = torch.device("cpu")
    source = SourceState(
        feature=torch.empty(0),
        info=option_cases._stored_info(golden, "src_", 0, dev),
        x_s=torch.from_numpy(golden["x_s"]),
    ).with_ratios(FaceRatios(golden["src_eye_ratio_open"], golden["src_lip_ratio_open"]))
    driving = [option_cases._stored_info(golden, "drv_", i, dev) for i in range(3)]
    drivers = [FaceRatios(golden["c_d_eyes"][i : i + 1], golden["c_d_lip"][i : i + 1]) for i in range(3)]
    return source, driving, drivers


def _pre_mult(lp: LivePortrait, golden: dict, options: DriveOptions, **kw: object) -> np.ndarray:
    source, driving, drivers = _module_source(golden)
    out = []
    for i in range(3):
        trace: dict[str, torch.Tensor] = {}
        lp.drive(source, driving[i], driving[0], options, driver=drivers[i], trace=trace, **kw)  # type: ignore[arg-type]
        out.append(trace["x_d_pre_mult"].numpy())
    return np.concatenate(out)


def test_follow_the_driver_keeps_the_head_moving(lp: LivePortrait, golden: dict[str, np.ndarray]) -> None:
    """Relative motion with the deltas added to the driven keypoints = the kit's base motion plus its deltas."""
    options = DriveOptions(stitching=False, eye_retargeting=True, lip_retargeting=True, retargeting_base="driven")
    got = _pre_mult(lp, golden, options)
    case = "eye_lip_retargeting_no_stitching"
    want = golden["base.x_d_after_expr"] + golden[f"{case}.eyes_delta"] + golden[f"{case}.lip_delta"]
    assert np.abs(got - want).max() <= 5e-6
    # the official relative branch (retargeting only) discards the head motion; this one does not
    assert np.abs(got - golden[f"{case}.x_d_pre_mult"]).max() > 1e-3


def test_retargeting_only_in_absolute_mode_moves_only_eyes_and_lips(lp: LivePortrait, golden: dict) -> None:
    """retargeting_base="source": x_s plus the deltas, whatever the motion mode (the official relative formula)."""
    options = DriveOptions(
        relative_motion=False, stitching=False, eye_retargeting=True, lip_retargeting=True, retargeting_base="source"
    )
    got = _pre_mult(lp, golden, options)
    assert np.abs(got - golden["eye_lip_retargeting_no_stitching.x_d_pre_mult"]).max() <= 5e-6


def test_a_user_target_replaces_the_drivers_ratio(lp: LivePortrait, golden: dict[str, np.ndarray]) -> None:
    source, driving, drivers = _module_source(golden)
    left = float(golden["c_d_eyes"][1, 0])
    lip = float(golden["c_d_lip"][2, 0])
    options = DriveOptions(eye_retargeting=True, lip_retargeting=True, eye_target=left, lip_target=lip)
    for i in range(3):
        trace: dict[str, torch.Tensor] = {}
        lp.drive(source, driving[i], driving[0], options, driver=drivers[0], trace=trace)
        assert np.abs(trace["eyes_delta"].numpy() - golden["eye_retargeting.eyes_delta"][1:2]).max() <= 1e-6
        assert np.abs(trace["lip_delta"].numpy() - golden["lip_retargeting.lip_delta"][2:3]).max() <= 1e-6
        assert trace["eye_ratio_input"].tolist() == [[*golden["src_eye_ratio_open"][0].tolist(), left]]


def test_missing_ratios_are_named_with_the_fix(lp: LivePortrait, golden: dict[str, np.ndarray]) -> None:
    source, driving, _ = _module_source(golden)
    with pytest.raises(ValueError, match="driver=FaceRatios"):
        lp.drive(source, driving[1], driving[0], DriveOptions(eye_retargeting=True))
    bare = SourceState(feature=source.feature, info=source.info, x_s=source.x_s)
    with pytest.raises(ValueError, match="landmarks"):
        lp.drive(bare, driving[1], driving[0], DriveOptions(normalize_lip=True))
    with pytest.raises(ValueError, match="animation region"):
        DriveOptions(animation_region="mouth")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eye_target"):
        DriveOptions(eye_target=-1.0)
