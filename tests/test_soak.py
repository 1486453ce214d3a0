"""The short soak: about a minute of the real headless app in its own process under viewers joining and leaving,
a driving peer, toggles, swaps and every kind of fault, injected by the soak's own code in the app's process (see
benchmarks/soak.py; the hour is a benchmark).

LivePortrait is left out here: on a 2-core CPU its synthetic-weight frames take tens of seconds, so a minute would
hold one or two of its frames and none of the fault cycles; the benchmark runs both stages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
KEYS = {"minutes", "rss_mb", "quiet_rss_slope_mb_per_h", "threads", "handles", "fps_out_min", "e2e_p95_ms_max",
        "faults", "stalls", "crashes"}
FAULTS = {"stage_burst", "cuda_oom", "model_truncated", "source_lost", "disk_full"}


def test_short_soak_has_no_crash_no_stall_and_every_fault_recovers(tmp_path: Path, shared_dir: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("the soak stops the app and asks for its stacks with POSIX signals")
    cache = tmp_path / "cache"  # no LivePortrait weights are written: the stage stays off
    out = tmp_path / "soak.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--minutes", "1", "--enable", "scrfd",
                        "--stay", "8", "--json", str(out), "--workdir", str(tmp_path / "work"), "--cache", str(cache),
                        "--width", "320", "--height", "240"],
                       capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    summary = json.loads(out.read_text())
    assert set(summary) == KEYS
    assert summary["crashes"] == 0 and summary["stalls"] == 0, r.stdout[-4000:]
    assert set(summary["faults"]) == FAULTS, r.stdout[-4000:]
    for name, tally in summary["faults"].items():
        assert tally["injected"] >= 1 and tally["recovered"] == tally["injected"], (name, tally)
    assert len(summary["rss_mb"]) == len(summary["threads"]) == len(summary["handles"]) >= 5
    details = json.loads((tmp_path / "work" / "details.json").read_text())
    assert details["viewer_frames"] > 0 and details["uncaught_in_log"] == []
    assert all("frames" in line and not line.startswith("rec-1.mp4: 0 ") for line in details["recordings"])
