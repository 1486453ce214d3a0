"""The window's Audio card on a real PulseAudio server: the switch makes the Mirage Microphone, the card says how
much the voice is delayed, the chooser lists the microphones, the offset reaches the audio thread, all of it is
remembered, and the latency graph draws the audio delay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from av_sync_helpers import MIC_SOURCE, PrivatePulseAudio, private_pulseaudio, pulseaudio_missing
from ui_helpers import WAIT_MS, open_window, saved_settings, window_settings

from mirage_desktop.audio.pulse import SOURCE_NAME
from mirage_desktop.ui.audio_panel import delay_text
from mirage_desktop.ui.latency_panel import AUDIO_SERIES

pytestmark = pytest.mark.skipif(bool(pulseaudio_missing()), reason=pulseaudio_missing())


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePulseAudio]:
    with private_pulseaudio(tmp_path_factory.mktemp("pulse")) as server:
        yield server


def test_the_audio_card_switches_the_mirage_microphone_and_remembers(qtbot, pulse: PrivatePulseAudio,  # type: ignore[no-untyped-def]
                                                                     tmp_path: Path) -> None:
    settings = window_settings(tmp_path)
    settings.microphone = MIC_SOURCE
    window = open_window(qtbot, settings)
    card = window.audio.card
    choices = [card.microphone.itemData(i) for i in range(card.microphone.count())]
    assert MIC_SOURCE in choices and SOURCE_NAME not in choices
    assert card.microphone.currentData() == MIC_SOURCE

    card.enabled.click()
    qtbot.waitUntil(lambda: card.status.text().startswith("Voice delayed"), timeout=WAIT_MS)
    assert SOURCE_NAME in pulse.pactl("list", "short", "sources")
    card.offset.setValue(40)
    assert window.session.microphone is not None and window.session.microphone.pipe.offset_ms == 40.0
    qtbot.waitUntil(lambda: saved_settings().get("audio_offset_ms") == 40.0, timeout=WAIT_MS)
    assert saved_settings()["virtual_microphone"] is True and saved_settings()["microphone"] == MIC_SOURCE
    qtbot.waitUntil(lambda: AUDIO_SERIES in window.latency.series
                    and np.isfinite(window.latency.values(AUDIO_SERIES)).any(), timeout=WAIT_MS)
    assert window.latency.values(AUDIO_SERIES)[-1] >= 40.0  # the video's delay plus the offset

    card.enabled.click()
    assert card.status.text() == "Off"
    assert SOURCE_NAME not in pulse.pactl("list", "short", "sources")
    qtbot.waitUntil(lambda: saved_settings().get("virtual_microphone") is False, timeout=WAIT_MS)


def test_the_delay_line_reads_as_a_person_says_it() -> None:
    running = {"status": "running", "delay_actual_ms": 61.6, "delay_target_ms": 62.0, "min_delay_ms": 45.0}
    assert delay_text(running) == "Voice delayed 62 ms to match the video"
    floor = {"status": "running", "delay_actual_ms": 45.2, "delay_target_ms": 3.0, "min_delay_ms": 45.0}
    assert delay_text(floor) == "Voice delayed 45 ms, as little as the sound allows (the video: 3 ms)"
    waiting = {"status": "waiting", "message": "The microphone 'USB' is gone (unplugged?); waiting for it."}
    assert delay_text(waiting) == waiting["message"]
