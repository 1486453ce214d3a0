"""Our LivePortrait against the official numbers: the conformance command on the public kit, once per test run."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from liveportrait_fixtures import KIT, kit_available, liveportrait_kit, synth_module, synth_weights_dir  # noqa: F401

from mirage_desktop.liveportrait import conformance, motion
from mirage_desktop.liveportrait.runner import DriveOptions, LivePortrait, SourceState, rgb_to_tensor

pytestmark = pytest.mark.slow


def _expected_checks() -> list[tuple[str, str]]:
    """(scope, "file:array") for every output array of the kit; collected before any fixture runs."""
    if not kit_available():
        return [("module", "kit-missing")]
    arrays = json.loads((KIT / "golden" / "tolerances.json").read_text())["arrays"]
    out = []
    for name, spec in arrays.items():
        if spec.get("role") != "output":
            continue
        out.append(("module", name))
        if not name.startswith(("camera.npz", "retargeting.npz")):  # inputs are fixed numbers, not images
            out.append(("end_to_end", name))
    return out


@dataclass
class Run:
    lp: LivePortrait
    report: conformance.Report
    dump_dir: Path


@pytest.fixture(scope="session")
def liveportrait(synth_weights_dir: Path) -> LivePortrait:  # noqa: F811
    torch.set_num_threads(2)
    return LivePortrait.load(synth_weights_dir, device="cpu")


@pytest.fixture(scope="session")
def conformance_run(
    liveportrait: LivePortrait,
    liveportrait_kit: Path,  # noqa: F811
    synth_weights_dir: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Run:
    """Every module case and the end-to-end chain, run once and shared by the tests below."""
    report = conformance.run_conformance(liveportrait_kit / "golden", synth_weights_dir, lp=liveportrait)
    dump_dir = tmp_path_factory.mktemp("conformance_dump")
    conformance.dump(report.end_to_end, dump_dir)
    return Run(liveportrait, report, dump_dir)


@pytest.mark.parametrize(("scope", "name"), _expected_checks())
def test_array_matches_golden(conformance_run: Run, scope: str, name: str) -> None:
    found = [c for c in conformance_run.report.checks if c.scope == scope and c.name == name]
    assert len(found) == 1, f"{scope} {name}: computed {len(found)} times"
    assert found[0].passed, found[0].line()


def test_every_check_passes_and_none_is_extra(conformance_run: Run) -> None:
    names = {(c.scope, c.name) for c in conformance_run.report.checks}
    assert names == set(_expected_checks())
    assert conformance_run.report.passed


def test_dump_has_the_kit_files_names_shapes_and_dtypes(conformance_run: Run, liveportrait_kit: Path) -> None:  # noqa: F811
    written = sorted(p.name for p in conformance_run.dump_dir.glob("*.npz"))
    image_free = {"inputs.npz", "camera.npz", "retargeting.npz"}
    expected = sorted(p.name for p in (liveportrait_kit / "golden").glob("*.npz") if p.name not in image_free)
    assert written == expected
    for name in written:
        with np.load(conformance_run.dump_dir / name) as ours, np.load(liveportrait_kit / "golden" / name) as gold:
            assert set(ours.files) == set(gold.files), name
            for array in gold.files:
                assert ours[array].shape == gold[array].shape, f"{name}:{array}"
                assert ours[array].dtype == gold[array].dtype, f"{name}:{array}"


def test_finish_prints_one_line_per_array_and_sets_the_exit_status(conformance_run: Run, tmp_path: Path) -> None:
    report = conformance_run.report
    out = io.StringIO()
    assert conformance.finish(report, tmp_path / "dump", out) == 0
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("PASS") for line in lines) == len(report.checks)
    assert (tmp_path / "dump" / "warping_module.npz").is_file()

    broken = replace(report, checks=[replace(report.checks[0], passed=False), *report.checks[1:]])
    out = io.StringIO()
    assert conformance.finish(broken, None, out) == 1
    assert out.getvalue().startswith("FAIL")


def test_main_reports_unusable_weights_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = conformance.main(["--golden", str(KIT / "golden"), "--weights", str(tmp_path / "nothing")])
    assert code == 2
    assert "mirage-models download liveportrait" in capsys.readouterr().err


@pytest.fixture(scope="module")
def chain(liveportrait: LivePortrait, liveportrait_kit: Path) -> tuple[SourceState, list]:  # noqa: F811
    with np.load(liveportrait_kit / "golden" / "inputs.npz") as data:
        src, drv = data["source_rgb"], data["driving_rgb"]
    source = liveportrait.prepare_source(rgb_to_tensor(src, "cpu"))
    return source, [liveportrait.motion_info(rgb_to_tensor(rgb, "cpu")) for rgb in drv]


def test_reference_frame_keeps_the_source_and_zero_multiplier_is_still(
    liveportrait: LivePortrait, chain: tuple[SourceState, list]
) -> None:
    source, (d0, d1, _) = chain
    trace: dict[str, torch.Tensor] = {}
    liveportrait.drive(source, d0, d0, DriveOptions(), trace=trace)
    assert torch.equal(trace["x_d_new_expr"], source.x_s)  # the README: for frame 0, x' = x_s exactly
    still = liveportrait.drive(source, d1, d0, DriveOptions(driving_multiplier=0.0))
    assert torch.equal(still, source.x_s)
    moved = liveportrait.drive(source, d1, d0, DriveOptions(stitching=False))
    assert not torch.equal(moved, source.x_s)


def test_expression_multiplier_is_computed_once_per_reference(
    liveportrait: LivePortrait, chain: tuple[SourceState, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, (d0, d1, d2) = chain
    source = replace(source)  # a new portrait for the runner's cache, whatever earlier tests drove
    calls = []
    real = motion.motion_multiplier
    monkeypatch.setattr(motion, "motion_multiplier", lambda *a: calls.append(1) or real(*a))
    for frame in (d1, d2, d1):
        liveportrait.drive(source, frame, d0)
    assert len(calls) == 1
    liveportrait.drive(source, d1, d2)
    assert len(calls) == 2
    liveportrait.drive(source, d1, d2, DriveOptions(driving_option="pose-friendly"))
    assert len(calls) == 2


def test_retargeting_adds_the_mlp_deltas_to_the_source_before_stitching(
    liveportrait: LivePortrait, chain: tuple[SourceState, list]
) -> None:
    source, (d0, d1, _) = chain
    nets = liveportrait.networks
    eye = torch.tensor([[0.3, 0.3, 0.1]])
    lip = torch.tensor([[0.0, 0.4]])
    options = DriveOptions(eye_retargeting=True, lip_retargeting=True)
    got = liveportrait.drive(source, d1, d0, options, eye_ratio=eye, lip_ratio=lip)
    x = source.x_s + motion.retarget_eye(nets.eye, source.x_s, eye) + motion.retarget_lip(nets.lip, source.x_s, lip)
    assert torch.equal(got, source.x_s + (motion.stitch(nets.stitching, source.x_s, x) - source.x_s) * 1.0)
    with pytest.raises(ValueError, match="eye_ratio"):
        liveportrait.drive(source, d1, d0, options, lip_ratio=lip)


def test_to_uint8_truncates_like_the_official_parse_output() -> None:
    image = torch.tensor([-0.5, 0.0, 0.999, 1.0, 2.0, 100.6 / 255]).reshape(1, 3, 1, 2)
    out = LivePortrait.to_uint8(image)
    assert out.shape == (1, 1, 2, 3) and out.dtype == np.uint8
    assert out.transpose(0, 3, 1, 2).ravel().tolist() == [0, 0, 254, 255, 255, 100]


def test_options_and_half_are_validated(synth_weights_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="driving option"):
        DriveOptions(driving_option="pose")
    with pytest.raises(ValueError, match="CUDA"):
        LivePortrait.load(synth_weights_dir, device="cpu", half=True)
