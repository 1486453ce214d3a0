"""The virtual microphone video apps list, per OS: the one place that dispatches on the platform for audio.

- Linux (PulseAudio, or PipeWire's pulse server): Mirage makes it itself: a null sink ("Mirage Microphone (feed)")
  that Mirage plays into, and a source remapped from that sink's monitor, named ``mirage_microphone`` and described
  "Mirage Microphone", which apps list as a microphone. Removed when switched off or on exit; one left behind by a
  crash is removed when the next one is made.
- Windows: VB-CABLE. Mirage plays into "CABLE Input"; apps pick "CABLE Output".
- macOS: BlackHole 2ch. Mirage plays into it; apps pick "BlackHole 2ch".

Where the driver is missing, :class:`VirtualMicUnavailable` says which one and how to install it.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod

from mirage_desktop.audio.devices import AudioUnavailable, StreamDevice, find_output, pulse_device_index
from mirage_desktop.audio.pulse import SINK_NAME, SOURCE_NAME, SoundServer, SoundServerError

logger = logging.getLogger(__name__)

#: What apps show (the Linux source's description; its name is pulse.SOURCE_NAME).
DESCRIPTION = "Mirage Microphone"
SINK_DESCRIPTION = "Mirage Microphone (feed)"

WINDOWS_HINT = ("Mirage Microphone on Windows needs VB-CABLE (free): download it from https://vb-audio.com/Cable/, "
                "run VBCABLE_Setup_x64.exe as administrator and restart Windows. Mirage then plays into "
                "'CABLE Input', and Zoom or Meet pick 'CABLE Output (VB-Audio Virtual Cable)' as the microphone.")
MACOS_HINT = ("Mirage Microphone on macOS needs BlackHole 2ch (free): brew install blackhole-2ch, or the installer "
              "from https://existential.audio/blackhole/ . Mirage then plays into it, and Zoom or Meet pick "
              "'BlackHole 2ch' as the microphone.")


class VirtualMicUnavailable(AudioUnavailable):
    """No virtual microphone can be made or found on this computer; the message says what to install."""


class VirtualMicrophone(ABC):
    """The device Mirage plays the delayed voice into, and what apps pick to hear it."""

    #: what to pick in Zoom/Meet
    app_name: str = DESCRIPTION
    #: how much later than it is played into the device an app hears it, beyond what the stream's timestamps
    #: already say (seconds): the voice is played that much earlier
    latency_s: float = 0.0

    @abstractmethod
    def ensure(self) -> StreamDevice:
        """Make the virtual microphone if needed (Linux) or find it; the device to play into.
        VirtualMicUnavailable names what to install."""

    def present(self) -> bool:
        """Whether it is still there (the user may remove it); True where that cannot be asked."""
        return True

    def remove(self) -> None:
        """Take away what :meth:`ensure` made. Safe to call twice."""


class PulseVirtualMicrophone(VirtualMicrophone):
    """Linux: a null sink plus a remapped source, loaded as sound server modules.

    The remapped source passes the feed on in the null sink's blocks without counting them in its latency, so
    apps hear it 0 to 10 ms (5 on average) after the playback timestamps say: measured end to end by
    tests/test_av_sync.py on PulseAudio 16, and taken off the voice's delay.
    """

    latency_s = 0.005

    def __init__(self, server: SoundServer) -> None:
        self.server = server
        self._modules: list[int] = []

    def ensure(self) -> StreamDevice:
        try:  # the sound server first: without one, PortAudio has no 'pulse' device either, and the server's
            if not self._modules or not self.present():  # error names the real cause
                self._create()
            device = pulse_device_index()
        except SoundServerError as exc:
            raise VirtualMicUnavailable(str(exc)) from exc
        return StreamDevice(device, SINK_DESCRIPTION, server_name=SINK_NAME)

    def _create(self) -> None:
        self._modules = []
        remove_stale(self.server)
        defaults = self.server.defaults()
        channels = "rate=48000 channels=1 channel_map=mono"
        self._modules.append(self.server.load_module(
            "module-null-sink",
            f"sink_name={SINK_NAME} {channels} sink_properties='device.description=\"{SINK_DESCRIPTION}\"'"))
        self._modules.append(self.server.load_module(
            "module-remap-source",
            f"master={SINK_NAME}.monitor source_name={SOURCE_NAME} {channels} "
            f"source_properties='device.description=\"{DESCRIPTION}\" device.icon_name=audio-input-microphone'"))
        # a new device may become the system's default (the only output, say): the user's stay the default, so
        # other apps' sound never goes into the Mirage Microphone and a call never picks it by accident
        if all(defaults) and self.server.defaults() != defaults:
            self.server.set_defaults(*defaults)
        logger.info("Made the Mirage Microphone (sound server modules %s)", self._modules)

    def present(self) -> bool:
        if not self._modules:
            return False
        try:
            loaded = {index for index, _, _ in self.server.modules()}
        except SoundServerError:
            return False
        return all(index in loaded for index in self._modules)

    def remove(self) -> None:
        modules, self._modules = self._modules, []
        for index in reversed(modules):
            try:
                self.server.unload_module(index)
            except SoundServerError as exc:  # gone already (the user, a server restart): nothing to undo
                logger.debug("Unloading sound server module %s: %s", index, exc)


def remove_stale(server: SoundServer) -> int:
    """Unload every Mirage Microphone module loaded before (a crashed run's); how many were removed."""
    stale = [(index, name) for index, name, args in server.modules()
             if f"source_name={SOURCE_NAME} " in args + " " or f"sink_name={SINK_NAME} " in args + " "]
    for index, name in sorted(stale, key=lambda m: m[1] != "module-remap-source"):  # the source before its sink
        try:
            server.unload_module(index)
        except SoundServerError as exc:
            logger.debug("Unloading stale %s %s: %s", name, index, exc)
    if stale:
        logger.info("Removed a Mirage Microphone left by an earlier run (modules %s)", [i for i, _ in stale])
    return len(stale)


class DriverVirtualMicrophone(VirtualMicrophone):
    """Windows and macOS: a virtual audio driver installed by the user; Mirage plays into its output side."""

    def __init__(self, output_part: str, app_name: str, hint: str) -> None:
        self.output_part = output_part
        self.app_name = app_name
        self.hint = hint

    def ensure(self) -> StreamDevice:
        device = find_output(self.output_part)
        if device is None:
            raise VirtualMicUnavailable(self.hint)
        return device


def virtual_microphone(platform: str | None = None, server: SoundServer | None = None) -> VirtualMicrophone:
    """The virtual microphone of ``platform`` (default: this one); VirtualMicUnavailable on others."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return PulseVirtualMicrophone(server or SoundServer())
    if platform == "win32":
        return DriverVirtualMicrophone("CABLE Input", "CABLE Output (VB-Audio Virtual Cable)", WINDOWS_HINT)
    if platform == "darwin":
        return DriverVirtualMicrophone("BlackHole 2ch", "BlackHole 2ch", MACOS_HINT)
    raise VirtualMicUnavailable(f"Mirage Microphone works on Linux, Windows and macOS, not on {platform}.")


def sound_server(platform: str | None = None) -> SoundServer | None:
    """The sound server microphones are named by on ``platform``: Linux's; None elsewhere (PortAudio names)."""
    platform = platform or sys.platform
    return SoundServer() if platform.startswith("linux") else None
