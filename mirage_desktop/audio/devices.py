"""Which microphones there are, and opening a capture or playback stream on one (PortAudio through
``sounddevice``).

A microphone is named as the sound server names it (Linux: ``pactl list short sources``, e.g.
``alsa_input.usb-...``) or as PortAudio does (its device name, a unique part of it, or its index). On Linux a sound
server microphone is opened through PortAudio's ALSA ``pulse`` device with ``PULSE_SOURCE`` naming it (and
``PULSE_SINK`` for the Mirage Microphone's feed), set only while the stream opens: PortAudio 19.6, which Debian
ships, has no PulseAudio host API of its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mirage_desktop.audio.pulse import ServerSource, SoundServer, SoundServerError, is_mirage_source

#: What ``--microphone`` takes for the system's default microphone.
DEFAULT = "default"
#: PortAudio's ALSA device that talks to the sound server (libasound2-plugins).
PULSE_DEVICE = "pulse"
PORTAUDIO_HINT = ("Audio needs the PortAudio library: Debian/Ubuntu: sudo apt install libportaudio2; Fedora: "
                  "sudo dnf install portaudio (Windows and macOS: it comes with the sounddevice package).")
ALSA_PULSE_HINT = ("PortAudio has no 'pulse' device to reach the sound server through: install the ALSA PulseAudio "
                   "plugin (Debian/Ubuntu: sudo apt install libasound2-plugins; Fedora: alsa-plugins-pulseaudio).")

_open_lock = threading.Lock()  # PULSE_SOURCE/PULSE_SINK are process-wide: one stream opens at a time


class AudioUnavailable(RuntimeError):
    """Audio input or output cannot be used; the message names the cause and the fix."""


class MicrophoneNotFound(AudioUnavailable):
    """No microphone matches the name given; the message lists the choices."""


@dataclass(frozen=True)
class Microphone:
    """One choice for ``--microphone``: ``name`` is what to pass, ``description`` what a person reads."""

    name: str
    description: str
    api: str  # "sound server" or the PortAudio host API ("ALSA", "Windows WASAPI", "Core Audio", ...)
    default: bool = False


@dataclass(frozen=True)
class StreamDevice:
    """A device a stream can be opened on: a PortAudio index, plus the sound server's name on Linux."""

    index: int
    label: str
    server_name: str | None = None  # routed through the 'pulse' device to this server source or sink


def portaudio() -> Any:
    """The ``sounddevice`` module; AudioUnavailable naming the fix when PortAudio is missing."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise AudioUnavailable(f"{PORTAUDIO_HINT} ({exc})") from exc
    return sounddevice


def _portaudio_devices() -> list[dict[str, Any]]:
    sd = portaudio()
    apis = sd.query_hostapis()
    return [dict(d, index=i, api=apis[d["hostapi"]]["name"]) for i, d in enumerate(sd.query_devices())]


def pulse_device_index() -> int:
    """PortAudio's index of the ALSA 'pulse' device; AudioUnavailable with the fix when there is none."""
    for d in _portaudio_devices():
        if d["name"] == PULSE_DEVICE:
            return int(d["index"])
    raise AudioUnavailable(ALSA_PULSE_HINT)


def list_microphones(server: SoundServer | None = None) -> list[Microphone]:
    """Every microphone: the sound server's (real ones first, then the monitors of outputs), then PortAudio's
    own devices. The Mirage Microphone itself is left out: it cannot be its own input."""
    found: list[Microphone] = []
    if server is not None:
        try:
            default = server.default_source()
            sources = sorted(server.sources(), key=lambda s: s.monitor)
        except SoundServerError:
            sources, default = [], ""
        found += [Microphone(s.name, s.description, "sound server", s.name == default)
                  for s in sources if not is_mirage_source(s.name)]
    try:
        sd = portaudio()
        default_input = sd.default.device[0]
        routing = (PULSE_DEVICE, DEFAULT) if server is not None else ()  # ALSA's ways into the server: listed above
        found += [Microphone(d["name"], f"{d['name']} ({d['api']}, {d['max_input_channels']} ch)", d["api"],
                             d["index"] == default_input and server is None)
                  for d in _portaudio_devices() if d["max_input_channels"] > 0 and d["name"] not in routing]
    except AudioUnavailable:
        pass
    return found


def microphone_lines(microphones: list[Microphone]) -> list[str]:
    """What ``--microphone list`` prints: one choice a line, its name first, the default marked with ``*``."""
    if not microphones:
        return ["No microphone found (PortAudio and the sound server list none)."]
    width = min(max(len(m.name) for m in microphones), 60)
    lines = [f"Microphones (pass the name to --microphone; '{DEFAULT}' follows the system's default, marked *):"]
    lines += [f"{'*' if m.default else ' '} {m.name:<{width}}  {m.description} [{m.api}]" for m in microphones]
    return lines


def resolve_microphone(spec: str, server: SoundServer | None) -> StreamDevice:
    """The device ``spec`` names: ``default``, a sound server source, a PortAudio index, name or unique part of a
    name. MicrophoneNotFound lists the choices; the Mirage Microphone is refused (it would feed itself)."""
    spec = spec.strip() or DEFAULT
    if server is not None:
        try:
            sources: list[ServerSource] = server.sources()
            name = server.default_source() if spec == DEFAULT else spec
        except SoundServerError:
            sources, name = [], ""
        if spec == DEFAULT and not name:
            raise MicrophoneNotFound("The sound server has no default microphone: plug one in, or name one "
                                     "(mirage --microphone list).")
        match = next((s for s in sources if s.name == name), None)
        if match is not None:
            if is_mirage_source(match.name):
                raise AudioUnavailable(f"{match.description} is Mirage's own microphone and cannot be its input: "
                                       "choose your real microphone (mirage --microphone list).")
            return StreamDevice(pulse_device_index(), match.description, server_name=match.name)
    devices = [d for d in _portaudio_devices() if d["max_input_channels"] > 0]
    if spec == DEFAULT:
        index = portaudio().default.device[0]
        match_pa = next((d for d in devices if d["index"] == index), None)
        if match_pa is None:
            raise MicrophoneNotFound("This computer has no microphone (PortAudio lists no input device).")
        return StreamDevice(int(match_pa["index"]), str(match_pa["name"]))
    if spec.isdigit():
        candidates = [d for d in devices if d["index"] == int(spec)]
    else:
        candidates = [d for d in devices if d["name"] == spec] or \
                     [d for d in devices if spec.lower() in d["name"].lower()]
    if len(candidates) != 1:
        choices = "; ".join(m.name for m in list_microphones(server)) or "none"
        what = "matches several devices" if candidates else "matches no microphone"
        raise MicrophoneNotFound(f"--microphone {spec!r} {what}. Choices: {choices}.")
    return StreamDevice(int(candidates[0]["index"]), str(candidates[0]["name"]))


def find_output(part: str) -> StreamDevice | None:
    """The first PortAudio output device whose name contains ``part`` (a virtual cable's), or None."""
    for d in _portaudio_devices():
        if d["max_output_channels"] > 0 and part.lower() in d["name"].lower():
            return StreamDevice(int(d["index"]), str(d["name"]))
    return None


def output_channels(device: StreamDevice) -> int:
    """Mono into the sound server's sink (the Mirage Microphone is mono); stereo into a virtual cable that has it
    (they expect it; the mono voice goes to both)."""
    if device.server_name is not None:
        return 1
    info = portaudio().query_devices(device.index)
    return 2 if int(info["max_output_channels"]) >= 2 else 1


def open_stream(kind: str, device: StreamDevice, rate: int, block: int, channels: int,
                callback: Callable[..., None]) -> Any:
    """An unstarted ``sounddevice`` InputStream (``kind`` "input") or OutputStream on ``device``, float32, at
    ``rate`` with ``block``-frame callbacks and PortAudio's low latency. PortAudioError when the device refuses."""
    sd = portaudio()
    cls = sd.InputStream if kind == "input" else sd.OutputStream
    variable = "PULSE_SOURCE" if kind == "input" else "PULSE_SINK"
    with _open_lock:
        saved = os.environ.get(variable)
        saved_prop = os.environ.get("PULSE_PROP")
        if device.server_name is not None:
            os.environ[variable] = device.server_name
            os.environ["PULSE_PROP"] = "application.name=Mirage"
        try:
            return cls(device=device.index, samplerate=rate, blocksize=block, channels=channels, dtype="float32",
                       latency="low", callback=callback)
        finally:
            if device.server_name is not None:
                _restore(variable, saved)
                _restore("PULSE_PROP", saved_prop)


def _restore(variable: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = value
