"""``mirage doctor`` and ``mirage-doctor`` on this machine: the report's shape and interface (names, statuses, a fix
for every problem, the exit status), the same settings, variables and flags as ``mirage``, and nothing written."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mirage_desktop.app import main as mirage_main
from mirage_desktop.doctor.check import FAIL, NAMES, OK, SKIP, STATUSES, WARN, Check, Report
from mirage_desktop.doctor.cli import main as doctor_main

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = doctor_main(argv, out=out)
    return code, out.getvalue()


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders`` with its size and mtime: what "changes nothing" is checked against."""
    found = {}
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else []:
            st = path.stat()
            found[str(path)] = (st.st_size, st.st_mtime_ns)
    return found


def test_the_report_renders_one_line_per_check_and_the_fix_under_a_problem() -> None:
    report = Report.of([Check("system", OK, "Linux"), Check("gpu", WARN, "No driver", "install it"),
                        Check("models", FAIL, "missing", "download them"), Check("cameras", SKIP, "not probed")])
    assert report.blocking
    assert report.text() == (
        "ok    system  Linux\n"
        "warn  gpu     No driver\n"
        "      fix: install it\n"
        "fail  models  missing\n"
        "      fix: download them\n"
        "skip  cameras not probed\n"
        "1 ok, 1 warn, 1 fail, 1 skip: a check that blocks the live avatar failed: apply its fix\n")
    assert report.to_json()["checks"][1] == {"name": "gpu", "status": "warn", "detail": "No driver", "fix": "install it"}
    assert not Report.of([Check("gpu", WARN, "x", "y")]).blocking


def test_json_has_every_check_a_fix_for_each_problem_and_the_exit_status_follows_blocking() -> None:
    code, out = run(["--json"])
    data = json.loads(out)
    assert set(data) == {"checks", "blocking"}
    names = [c["name"] for c in data["checks"]]
    assert names == list(NAMES)  # no remote configured here
    for c in data["checks"]:
        assert set(c) == {"name", "status", "detail", "fix"} and c["status"] in STATUSES and c["detail"]
        assert c["fix"] or c["status"] not in (WARN, FAIL), c
    assert data["blocking"] == any(c["status"] == FAIL for c in data["checks"])
    assert code == (1 if data["blocking"] else 0)
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["models"]["status"] == FAIL  # the test home has no models: the avatar cannot run
    assert "mirage-models download all" in by_name["models"]["fix"]


def test_text_prints_each_check_on_its_line(tmp_path: Path) -> None:
    code, out = run(["--models-dir", str(tmp_path / "m")])
    lines = out.splitlines()
    for name in NAMES:
        assert any(line.split()[1:2] == [name] and line.split()[0] in STATUSES for line in lines), name
    problems = [line for line in lines if line.split()[0] in (WARN, FAIL)]
    fixes = [line for line in lines if line.startswith("      fix: ")]
    assert len(fixes) == len(problems) and code == 1


def test_models_dir_settings_and_variables_are_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIRAGE_MODELS_DIR")  # the test home's, which would win over the file
    settings = tmp_path / "custom.json"
    settings.write_text(json.dumps({"models_dir": str(tmp_path / "from-file")}))
    by = {c["name"]: c for c in json.loads(run(["--json", "--settings", str(settings)])[1])["checks"]}
    assert str(settings) in by["settings"]["detail"] and str(tmp_path / "from-file") in by["models"]["detail"]
    flag = {c["name"]: c for c in json.loads(run(["--json", "--settings", str(settings), "--models-dir",
                                                  str(tmp_path / "flag")])[1])["checks"]}
    assert str(tmp_path / "flag") in flag["models"]["detail"]
    assert f"--models-dir {tmp_path / 'flag'}" in flag["models"]["fix"]
    monkeypatch.setenv("MIRAGE_MODELS_DIR", str(tmp_path / "env"))
    env = {c["name"]: c for c in json.loads(run(["--json", "--settings", str(settings)])[1])["checks"]}
    assert str(tmp_path / "env") in env["models"]["detail"] and "MIRAGE_MODELS_DIR" in env["settings"]["detail"]


def test_nothing_is_written_and_a_bad_settings_file_stays(tmp_path: Path) -> None:
    settings = Path(os.environ["MIRAGE_SETTINGS"])
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"fps": "fast"}')
    models = Path(os.environ["MIRAGE_MODELS_DIR"])
    (models / "scrfd").mkdir(parents=True, exist_ok=True)
    (models / "scrfd" / "scrfd_2.5g_bnkps.onnx").write_bytes(b"not the model")
    watched = (settings.parent, models, Path(os.environ["MIRAGE_LOG_DIR"]), Path(os.environ["MIRAGE_CACHE_DIR"]))
    before = snapshot(*watched)
    code, out = run([])
    assert snapshot(*watched) == before  # no settings backup, no hash cache, no log file
    assert "warn  settings" in out and "Invalid value for fps" in out and code == 1


def test_a_configured_remote_engine_is_checked_last(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MIRAGE_REMOTE_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MIRAGE_REMOTE_TOKEN", "t")
    code, out = run(["--json", "--no-cameras"])
    data = json.loads(out)
    assert [c["name"] for c in data["checks"]] == [*NAMES, "remote"]
    remote = data["checks"][-1]
    assert remote["status"] == FAIL and "does not answer" in remote["detail"] and code == 1
    assert data["checks"][1]["status"] == SKIP  # no local GPU needed: the animation runs there


def test_mirage_doctor_and_the_standalone_entry_point() -> None:
    """``mirage doctor`` goes through the app's entry point; ``mirage-doctor`` is a console script of its own."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mirage-doctor"] == "mirage_desktop.doctor.cli:standalone"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    via_app = subprocess.run([sys.executable, "-m", "mirage_desktop.app", "doctor", "--json", "--no-cameras"],
                             capture_output=True, text=True, env=env, timeout=300)
    data = json.loads(via_app.stdout)  # stdout is the JSON alone, whatever the runtimes log
    assert [c["name"] for c in data["checks"]] == list(NAMES) and via_app.returncode == int(data["blocking"])
    standalone = subprocess.run([sys.executable, "-c", "import sys; from mirage_desktop.doctor.cli import standalone; "
                                 "sys.argv = ['mirage-doctor', '--help']; sys.exit(standalone())"],
                                capture_output=True, text=True, env=env, timeout=120)
    assert standalone.returncode == 0 and standalone.stdout.startswith("usage: mirage-doctor")
    with pytest.raises(SystemExit) as exit_info:
        mirage_main(["doctor", "--bogus"])
    assert exit_info.value.code == 2
