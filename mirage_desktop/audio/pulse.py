"""The Linux sound server (PulseAudio, or PipeWire's pulse server) through ``pulsectl``: its microphones, and the
modules that make the Mirage Microphone.

One connection, opened on first use and opened again after the server went away (a restart), so the audio
thread's once-a-second check costs a round trip, not a connection.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

#: The Mirage Microphone's names on the sound server: the source apps list (it contains "mirage", so scripts can
#: find it) and the sink Mirage plays into.
SOURCE_NAME = "mirage_microphone"
SINK_NAME = "mirage_microphone_feed"

#: What to install where the sound server or its client library is missing.
PULSE_HINT = ("Mirage Microphone on Linux needs a PulseAudio sound server (PulseAudio itself, or PipeWire with "
              "pipewire-pulse, as most desktops have) and its client library (Debian/Ubuntu: sudo apt install "
              "pulseaudio-utils libpulse0; Fedora: pulseaudio-libs).")


def is_mirage_source(name: str) -> bool:
    """Whether a sound server source is the Mirage Microphone (or the monitor of its feed)."""
    return name == SOURCE_NAME or name.startswith(SINK_NAME)


#: pulsectl's errors that are the server's answer (no such entity, refused), not a lost connection
ANSWERS = ("PulseIndexError", "PulseOperationFailed", "PulseOperationInvalid")


class SoundServerError(RuntimeError):
    """The sound server cannot be reached or refused a request; the message says which and what to do."""


@dataclass(frozen=True)
class ServerSource:
    """A microphone (a "source") as the sound server lists it."""

    name: str
    description: str
    monitor: bool  # the sound of an output ("Monitor of ..."), not a microphone


class SoundServer:
    """A thread-safe handle on the sound server; every call raises :class:`SoundServerError` when it cannot."""

    def __init__(self, client_name: str = "Mirage") -> None:
        self.client_name = client_name
        self._pulse: Any = None
        self._lock = threading.Lock()

    def _call(self, method: str, *args: Any) -> Any:
        with self._lock:
            for attempt in (0, 1):  # a second try on a fresh connection: the server may have restarted
                try:
                    if self._pulse is None:
                        self._pulse = _connect(self.client_name)
                    return getattr(self._pulse, method)(*args)
                except SoundServerError:
                    raise
                except Exception as exc:  # pulsectl's errors, a dropped connection: once more on a new one
                    if type(exc).__name__ in ANSWERS:  # the server said no: the connection is fine
                        raise SoundServerError(f"The sound server refused {method}: {exc}") from exc
                    self._drop()
                    if attempt:
                        raise SoundServerError(f"The sound server refused {method}: {exc}") from exc
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        pulse, self._pulse = self._pulse, None
        if pulse is not None:
            try:
                pulse.close()
            except Exception:
                logger.debug("Closing the sound server connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._drop()

    # ------------------------------------------------------------------------------------------------ queries
    def sources(self) -> list[ServerSource]:
        return [ServerSource(s.name, s.description or s.name, _is_monitor(s)) for s in self._call("source_list")]

    def default_source(self) -> str:
        return self.defaults()[1]

    def defaults(self) -> tuple[str, str]:
        """The default (sink, source): where apps play and record unless told otherwise."""
        info = self._call("server_info")
        return str(info.default_sink_name or ""), str(info.default_source_name or "")

    def has_source(self, name: str) -> bool:
        """Whether the source exists (one lookup; the audio thread asks once a few seconds)."""
        try:
            self._call("get_source_by_name", name)
        except SoundServerError as exc:
            if _no_such_entity(exc):
                return False
            raise
        return True

    def modules(self) -> list[tuple[int, str, str]]:
        """(index, module name, its arguments) of every loaded module."""
        return [(int(m.index), str(m.name), str(m.argument or "")) for m in self._call("module_list")]

    # ---------------------------------------------------------------------------------------------- changes
    def load_module(self, name: str, args: str) -> int:
        return int(self._call("module_load", name, args))

    def unload_module(self, index: int) -> None:
        self._call("module_unload", index)

    def set_defaults(self, sink: str, source: str) -> None:
        self._call("sink_default_set", sink)
        self._call("source_default_set", source)


def _connect(client_name: str) -> Any:
    try:
        import pulsectl
    except Exception as exc:  # not installed, or libpulse missing (pulsectl loads it when imported)
        raise SoundServerError(f"{PULSE_HINT} ({exc})") from exc
    try:
        return pulsectl.Pulse(client_name)
    except Exception as exc:
        raise SoundServerError(f"No sound server answers ({exc}). {PULSE_HINT}") from exc


def _no_such_entity(exc: BaseException) -> bool:
    cause = exc.__cause__
    return cause is not None and type(cause).__name__ == "PulseIndexError"


def _is_monitor(source: Any) -> bool:
    owner = getattr(source, "monitor_of_sink", None)
    return owner is not None and owner != 0xFFFFFFFF
