"""The real downloader against a fake hub on 127.0.0.1 (the internet is the one boundary faked here)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hub_helpers import FakeHub, make_entry, payload, hub_serving

from mirage_desktop.models import transfer
from mirage_desktop.models.download import ProgressEvent, download
from mirage_desktop.models.errors import (
    DiskFullError,
    HubUnreachableError,
    IntegrityError,
    RemoteFileMissingError,
    TargetNotWritableError,
)
from mirage_desktop.models.status import missing_for, status, verify
from mirage_desktop.models.registry import DEFAULT_SCRFD_FILE, REGISTRY, entries_for, scrfd_path

BIG = payload(3 * 1024 * 1024 + 123, seed=1)
SMALL = payload(70_000, seed=2)
DET = payload(50_000, seed=3)

E_BIG = make_entry("liveportrait/base_models/warping_module.pth", BIG)
E_SMALL = make_entry("liveportrait/retargeting_models/stitching_retargeting_module.pth", SMALL)
E_DET = make_entry(f"scrfd/{DEFAULT_SCRFD_FILE}", DET, feature="scrfd", remote="2.5g_bnkps.onnx")
REG = (E_DET, E_BIG, E_SMALL)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    yield from hub_serving(monkeypatch, (E_DET, DET), (E_BIG, BIG), (E_SMALL, SMALL))


def test_full_download_then_status_present(hub: FakeHub, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    report = download("all", tmp_path, events.append, registry=REG, backoff=0.01)
    assert report.ok, report.failed
    assert [e.local_path for e in report.downloaded] == [e.local_path for e in REG]
    assert E_BIG.target(tmp_path).read_bytes() == BIG
    assert (tmp_path / "scrfd" / DEFAULT_SCRFD_FILE).read_bytes() == DET
    assert [s.state for s in status(tmp_path, REG)] == ["present"] * 3
    assert not any((tmp_path / ".downloads").rglob("*.part"))
    big = [e for e in events if e.entry is E_BIG and e.phase == "download"]
    assert big[-1].bytes_done == big[-1].bytes_total == len(BIG)
    assert events[-1].phase == "done" and events[-1].overall_done == events[-1].overall_total == len(BIG + SMALL + DET)
    # A second run downloads nothing.
    again = download("all", tmp_path, registry=REG)
    assert again.ok and not again.downloaded and len(again.skipped) == 3


def test_group_selects_feature(hub: FakeHub, tmp_path: Path) -> None:
    report = download("scrfd", tmp_path, registry=REG)
    assert [e.local_path for e in report.downloaded] == [E_DET.local_path]
    assert missing_for("scrfd", tmp_path, REG) == []
    assert missing_for("liveportrait", tmp_path, REG) == [E_BIG, E_SMALL]


def test_cut_connection_resumes_with_range(hub: FakeHub, tmp_path: Path) -> None:
    served = hub.files[f"{E_BIG.repo_id}/resolve/{E_BIG.revision}/{E_BIG.remote_path}"]
    served.cut_after = 1_000_000
    report = download("liveportrait", tmp_path, registry=REG, backoff=0.01)
    assert report.ok, report.failed
    assert E_BIG.target(tmp_path).read_bytes() == BIG
    assert served.gets[0] is None
    assert served.gets[1] is not None and int(served.gets[1].split("=")[1].rstrip("-")) > 0


def test_cancel_keeps_partial_and_next_run_resumes(hub: FakeHub, tmp_path: Path) -> None:
    cancel = threading.Event()

    def stop_midway(ev: ProgressEvent) -> None:
        if ev.entry is E_BIG and ev.phase == "download" and ev.bytes_done >= 1024 * 1024:
            cancel.set()

    report = download("liveportrait", tmp_path, stop_midway, cancel, registry=REG)
    assert report.cancelled and not report.ok
    assert not E_BIG.target(tmp_path).exists()
    (st,) = [s for s in status(tmp_path, REG) if s.entry is E_BIG]
    assert st.state == "partial" and 0 < st.partial_bytes < len(BIG)
    assert st.bytes_to_download == len(BIG) - st.partial_bytes

    report = download("liveportrait", tmp_path, registry=REG)
    assert report.ok, report.failed
    assert E_BIG.target(tmp_path).read_bytes() == BIG
    served = hub.files[f"{E_BIG.repo_id}/resolve/{E_BIG.revision}/{E_BIG.remote_path}"]
    assert served.gets[-1] == f"bytes={st.partial_bytes}-"


def test_digest_mismatch_rejected_and_nothing_replaced(hub: FakeHub, tmp_path: Path) -> None:
    bad = bytearray(SMALL)
    bad[1000] ^= 0xFF
    # The server claims the pinned digest but sends other bytes of the same size.
    hub.add(E_SMALL, bytes(bad), etag=E_SMALL.sha256)
    target = E_SMALL.target(tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old file the user had")
    report = download("liveportrait", tmp_path, registry=(E_SMALL,), backoff=0.01)
    assert not report.ok
    ((_entry, err),) = report.failed
    assert isinstance(err, IntegrityError)
    assert E_SMALL.sha256 in str(err) and hashlib.sha256(bad).hexdigest() in str(err)
    assert "left unchanged" in str(err)
    assert target.read_bytes() == b"old file the user had"
    assert not list((tmp_path / ".downloads").rglob("*.part"))
    assert [s.state for s in status(tmp_path, (E_SMALL,))] == ["corrupt"]


def test_hub_announcing_other_digest_downloads_nothing(hub: FakeHub, tmp_path: Path) -> None:
    served = hub.add(E_SMALL, payload(len(SMALL), seed=9))
    report = download("liveportrait", tmp_path, registry=(E_SMALL,))
    ((_, err),) = report.failed
    assert isinstance(err, IntegrityError) and "not the pinned" in str(err)
    assert served.gets == []
    assert not E_SMALL.target(tmp_path).exists()


def test_missing_file_on_server_is_clear(hub: FakeHub, tmp_path: Path) -> None:
    ghost = make_entry("liveportrait/base_models/spade_generator.pth", b"x" * 10)
    report = download("all", tmp_path, registry=(ghost, E_SMALL), backoff=0.01)
    ((entry, err),) = report.failed
    assert entry is ghost and isinstance(err, RemoteFileMissingError)
    assert ghost.remote_path in str(err) and hub.endpoint in str(err)
    # Not fatal: the next file still came down.
    assert report.downloaded == [E_SMALL]


def test_target_that_cannot_be_a_folder_is_clear(hub: FakeHub, tmp_path: Path) -> None:
    # Tests run as root, which ignores permission bits; a file where a folder must go fails for everyone.
    (tmp_path / "liveportrait").write_text("not a folder")
    report = download("liveportrait", tmp_path, registry=REG, backoff=0.01)
    ((_entry, err),) = report.failed
    assert isinstance(err, TargetNotWritableError)
    assert "liveportrait" in str(err) and "--models-dir" in str(err)
    assert report.not_attempted == [E_SMALL]  # same cause would fail the rest: stop
    assert (tmp_path / "liveportrait").read_text() == "not a folder"


def test_models_dir_is_a_file(hub: FakeHub, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.write_text("oops")
    report = download("scrfd", models, registry=REG)
    ((_, err),) = report.failed
    assert isinstance(err, TargetNotWritableError) and str(models) in str(err)


def test_unreachable_hub_retries_then_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeHub() as closed:
        endpoint = closed.endpoint
    monkeypatch.setenv("HF_ENDPOINT", endpoint)  # nothing listens there any more
    events: list[ProgressEvent] = []
    report = download("all", tmp_path, events.append, registry=REG, retries=2, backoff=0.01)
    ((_entry, err),) = report.failed
    assert isinstance(err, HubUnreachableError) and endpoint in str(err) and "internet" in str(err)
    assert sum(e.phase == "retry" for e in events) == 2
    assert report.not_attempted == [E_BIG, E_SMALL]


def test_not_enough_disk_space(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transfer, "disk_free", lambda path: 1000)  # a full disk cannot be made safely here
    report = download("liveportrait", tmp_path, registry=REG)
    ((_, err),) = report.failed
    assert isinstance(err, DiskFullError) and "disk space" in str(err)
    assert not E_BIG.target(tmp_path).exists()


def test_verify_detects_tampering_after_cached_ok(hub: FakeHub, tmp_path: Path) -> None:
    assert download("all", tmp_path, registry=REG).ok
    path = E_SMALL.target(tmp_path)
    data = bytearray(path.read_bytes())
    data[5] ^= 1
    path.write_bytes(bytes(data))
    states = {s.entry.local_path: s.state for s in verify(tmp_path, REG)}
    assert states[E_SMALL.local_path] == "corrupt" and states[E_BIG.local_path] == "present"


def test_unverified_entry_downloads_and_is_flagged(hub: FakeHub, tmp_path: Path) -> None:
    loose = make_entry(f"scrfd/{DEFAULT_SCRFD_FILE}", None, feature="scrfd", remote="2.5g_bnkps.onnx")
    report = download("scrfd", tmp_path, registry=(loose,))
    assert report.ok
    (st,) = status(tmp_path, (loose,))
    assert st.state == "present" and not st.verified


def test_real_registry_layout_and_pins() -> None:
    paths = {e.local_path for e in REGISTRY}
    assert paths == {
        "scrfd/scrfd_2.5g_bnkps.onnx",
        "liveportrait/base_models/appearance_feature_extractor.pth",
        "liveportrait/base_models/motion_extractor.pth",
        "liveportrait/base_models/warping_module.pth",
        "liveportrait/base_models/spade_generator.pth",
        "liveportrait/retargeting_models/stitching_retargeting_module.pth",
        "liveportrait/landmark.onnx",
        "insightface/models/buffalo_l/2d106det.onnx",
    }
    assert scrfd_path(Path("/m")) == Path("/m/scrfd/scrfd_2.5g_bnkps.onnx")
    for e in entries_for("liveportrait"):
        assert e.repo_id == "KwaiVGI/LivePortrait" and e.remote_path == e.local_path
        assert e.verified and len(e.revision) == 40 and e.size and e.size > 1_000_000
    with pytest.raises(ValueError, match="choose from"):
        entries_for("stylegan")
