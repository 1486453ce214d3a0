"""The Mirage Microphone on a real PulseAudio server (user mode, no hardware): the device apps list, its removal
(also of one a crashed run left), ``--microphone list``, and what happens when the world changes under it: the
user removes it, the microphone is unplugged, the sound server restarts. The drivers of Windows and macOS are
checked by what they say when missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from av_sync_helpers import MIC_SINK, MIC_SOURCE, PrivatePulseAudio, private_pulseaudio, pulseaudio_missing, wait_for

from mirage_desktop.audio import virtual_mic
from mirage_desktop.audio.devices import StreamDevice
from mirage_desktop.audio.output import MicrophoneOutput
from mirage_desktop.audio.pipe import RUNNING, WAITING
from mirage_desktop.audio.pulse import SINK_NAME, SOURCE_NAME, SoundServer
from mirage_desktop.audio.virtual_mic import VirtualMicUnavailable, virtual_microphone
from mirage_desktop.api.metrics import audio_metrics

REPO = Path(__file__).resolve().parents[1]
needs_pulse = pytest.mark.skipif(bool(pulseaudio_missing()), reason=pulseaudio_missing())


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePulseAudio]:
    if pulseaudio_missing():
        pytest.skip(pulseaudio_missing())
    with private_pulseaudio(tmp_path_factory.mktemp("pulse")) as server:
        yield server


def mirage_sources(pulse: PrivatePulseAudio) -> list[tuple[str, str]]:
    """(name, description) of every source whose name contains "mirage", read with pactl (not the app's code)."""
    out, name = [], None
    for line in pulse.pactl("list", "sources").splitlines():
        line = line.strip()
        if line.startswith("Name:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("Description:") and name and "mirage" in name and not name.endswith(".monitor"):
            out.append((name, line.split(":", 1)[1].strip()))
    return out


def microphone(spec: str = MIC_SOURCE, delay: float = 0.1) -> MicrophoneOutput:
    return MicrophoneOutput(spec, lambda: delay, server=SoundServer())


@needs_pulse
def test_apps_see_one_mirage_microphone_while_it_is_on(pulse: PrivatePulseAudio) -> None:
    assert mirage_sources(pulse) == []
    output = microphone()
    output.start()
    try:
        assert mirage_sources(pulse) == [(SOURCE_NAME, "Mirage Microphone")]
        assert wait_for(lambda: output.pipe.status == RUNNING, 20.0), output.stats()
        defaults = pulse.pactl("info")
        assert f"Default Sink: {MIC_SINK}" in defaults  # the user's default output stays theirs
    finally:
        output.close()
    assert mirage_sources(pulse) == []
    assert SINK_NAME not in pulse.pactl("list", "short", "sinks")


@needs_pulse
def test_one_left_by_a_crashed_run_is_removed_on_the_next_start(pulse: PrivatePulseAudio) -> None:
    crashed = virtual_microphone(server=SoundServer())
    crashed.ensure()  # and never removed, as after a crash
    left = pulse.pactl("list", "short", "modules")
    assert left.count(f"source_name={SOURCE_NAME} ") == 1
    output = microphone()
    output.start()
    try:
        assert mirage_sources(pulse) == [(SOURCE_NAME, "Mirage Microphone")]
        assert pulse.pactl("list", "short", "modules").count(f"sink_name={SINK_NAME}") == 1
    finally:
        output.close()
    assert mirage_sources(pulse) == []


@needs_pulse
def test_microphone_list_prints_the_choices_and_exits_0(pulse: PrivatePulseAudio) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "mirage_desktop.app", "--microphone", "list"], capture_output=True,
                       text=True, timeout=120, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert MIC_SOURCE in r.stdout and "Test microphone" in r.stdout
    assert SOURCE_NAME not in r.stdout  # Mirage's own microphone is no input for it


@needs_pulse
def test_removed_by_the_user_it_comes_back(pulse: PrivatePulseAudio) -> None:
    output = microphone()
    output.start()
    try:
        assert wait_for(lambda: output.pipe.status == RUNNING, 20.0), output.stats()
        for line in pulse.pactl("list", "short", "modules").splitlines():
            if SOURCE_NAME in line or SINK_NAME in line:
                pulse.pactl("unload-module", line.split()[0])
        assert mirage_sources(pulse) == []
        assert wait_for(lambda: mirage_sources(pulse) == [(SOURCE_NAME, "Mirage Microphone")], 20.0)
        assert wait_for(lambda: output.pipe.status == RUNNING, 20.0), output.stats()
    finally:
        output.close()


@needs_pulse
def test_an_unplugged_microphone_is_waited_for_and_taken_again(pulse: PrivatePulseAudio) -> None:
    output = microphone()
    output.start()
    try:
        assert wait_for(lambda: output.pipe.status == RUNNING, 20.0), output.stats()
        module = next(line.split()[0] for line in pulse.pactl("list", "short", "modules").splitlines()
                      if f"sink_name={MIC_SINK}" in line)
        pulse.pactl("unload-module", module)  # the microphone goes away
        assert wait_for(lambda: output.pipe.status == WAITING, 20.0), output.stats()
        assert "microphone" in output.pipe.message.lower()
        assert mirage_sources(pulse) == [(SOURCE_NAME, "Mirage Microphone")]  # apps keep their (silent) device
        pulse.pactl("load-module", "module-null-sink", f"sink_name={MIC_SINK}", "rate=48000", "channels=1",
                    "channel_map=mono")
        assert wait_for(lambda: output.pipe.status == RUNNING, 20.0), output.stats()
    finally:
        output.close()


@needs_pulse
def test_a_sound_server_restart_is_ridden_out(pulse: PrivatePulseAudio) -> None:
    output = microphone()
    output.start()
    try:
        assert wait_for(lambda: output.pipe.status == RUNNING, 20.0), output.stats()
        pulse.restart()  # the devices Mirage made are gone with the old server
        assert wait_for(lambda: mirage_sources(pulse) == [(SOURCE_NAME, "Mirage Microphone")], 30.0)
        assert wait_for(lambda: output.pipe.status == RUNNING, 30.0), output.stats()
    finally:
        output.close()
    assert mirage_sources(pulse) == []


@needs_pulse
def test_no_such_microphone_leaves_the_device_silent_and_says_why(pulse: PrivatePulseAudio) -> None:
    output = microphone("no-such-microphone")
    output.start()
    try:
        assert wait_for(lambda: output.pipe.status == WAITING and "no-such-microphone" in output.pipe.message, 20.0)
        assert MIC_SOURCE in output.pipe.message  # the choices are named
        assert mirage_sources(pulse) == [(SOURCE_NAME, "Mirage Microphone")]
    finally:
        output.close()


@needs_pulse
def test_headless_run_reports_the_microphone_in_stats_json(pulse: PrivatePulseAudio, tmp_path: Path) -> None:
    stats_path = tmp_path / "s.json"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "mirage_desktop.app", "--headless", "--source", "demo", "--seconds", "6",
                        "--width", "320", "--height", "240", "--quiet", "--virtual-microphone", "--microphone",
                        MIC_SOURCE, "--audio-offset-ms", "40", "--stats-json", str(stats_path)],
                       capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    audio = json.loads(stats_path.read_text())["outputs"]["microphone"]
    assert {"delay_target_ms", "delay_actual_ms", "underruns", "overruns", "dropped_blocks"} <= set(audio)
    assert audio["offset_ms"] == 40.0 and audio["delay_target_ms"] >= 40.0
    assert mirage_sources(pulse) == []  # removed on exit


def test_audio_metrics_carry_the_mirage_audio_names() -> None:
    stats = {"status": "running", "delay_target_ms": 62.0, "delay_actual_ms": 61.5, "underruns": 2, "overruns": 0,
             "dropped_blocks": 3}
    families = {f.name: f.samples[0].value for f in audio_metrics(stats)}
    assert families["mirage_audio_delay_target_seconds"] == pytest.approx(0.062)
    assert families["mirage_audio_delay_actual_seconds"] == pytest.approx(0.0615)
    assert families["mirage_audio_underruns"] == 2 and families["mirage_audio_dropped_blocks"] == 3
    assert families["mirage_audio_running"] == 1.0
    assert list(audio_metrics(None)) == []


@pytest.mark.parametrize("platform, needles", [
    ("win32", ("VB-CABLE", "CABLE Output", "https://vb-audio.com/Cable/")),
    ("darwin", ("BlackHole 2ch", "brew install blackhole-2ch")),
])
def test_a_missing_driver_is_named_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch, platform: str,
                                                          needles: tuple[str, ...]) -> None:
    monkeypatch.setattr(virtual_mic, "find_output", lambda part: None)
    device = virtual_microphone(platform)
    with pytest.raises(VirtualMicUnavailable) as info:
        device.ensure()
    for needle in needles:
        assert needle in str(info.value)
    found = StreamDevice(7, "CABLE Input (VB-Audio Virtual Cable)")
    monkeypatch.setattr(virtual_mic, "find_output", lambda part: found if part in found.label + "BlackHole 2ch"
                        else None)
    assert device.ensure() == found


def test_an_os_without_a_virtual_microphone_says_so() -> None:
    with pytest.raises(VirtualMicUnavailable, match="Linux, Windows and macOS"):
        virtual_microphone("sunos5")
