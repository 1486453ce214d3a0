"""``mirage --headless``: the same engine without a window, for scripts, servers and our checks."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from mirage_desktop.config import Settings
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import SourceError, VideoFileSource
from mirage_desktop.engine.stats import EngineStats
from mirage_desktop.os_support import register_stack_dump, stop_signals
from mirage_desktop.session import Session
from mirage_desktop.stages.avatar.stage import AvatarError
from mirage_desktop.stages.factory import UnknownStageError, make_engine_source, parse_enable
from mirage_desktop.stages.specs import STAGE_SPECS

logger = logging.getLogger(__name__)


class UsageError(Exception):
    """A command-line mistake: one line to the user, exit code 2."""


def _fail(message: str) -> int:
    print(f"mirage: {message}", file=sys.stderr)
    return 2


def _check_stats_path(path: Path) -> None:
    parent = path.expanduser().resolve().parent
    if not parent.is_dir():
        raise UsageError(f"cannot write stats to {path}: folder {parent} does not exist. Create it or pick another.")
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write stats to {path}: {exc.strerror}. Choose a writable path.") from exc


def status_line(stats: EngineStats) -> str:
    e2e = stats.end_to_end
    parts = [
        f"fps {stats.fps_out:5.1f}",
        f"in {stats.frames_in}",
        f"out {stats.frames_out}",
        f"dropped {stats.dropped}",
        f"e2e p50 {_ms(e2e.p50_ms)} p95 {_ms(e2e.p95_ms)}",
    ]
    for name, st in stats.stages.items():
        if st.enabled and not st.reason:
            parts.append(f"{name} {_ms(st.latency.p50_ms)}")
        elif st.enabled:
            parts.append(f"{name}: {st.reason}")
    return " | ".join(parts)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}ms"


def final_stats(engine: Engine, wall_s: float) -> EngineStats:
    """The run's figures, with the rates averaged over the whole run (the live rate looks at the last 2 s)."""
    return replace(
        engine.stats(),
        fps_out=round(engine.metrics.frames_out / wall_s, 2) if wall_s > 0 else 0.0,
        fps_in=round(engine.metrics.frames_in / wall_s, 2) if wall_s > 0 else 0.0,
    )


def install_stop_signals(stop: threading.Event) -> dict[int, Any]:
    """Make every stop signal this OS has (:func:`~mirage_desktop.os_support.stop_signals`: Ctrl+C, SIGTERM from
    ``docker stop``/systemd, the hang-up signal when the terminal closes, Ctrl+Break on Windows) set ``stop`` so the
    run leaves its loop and takes the one clean stop path (outputs closed, recording finalised, peers hung up, stats
    written). A second one while stopping gives up waiting (exit code 128+N). Returns the previous handlers for
    :func:`restore_signals`; empty when not on the main thread (signals can only be handled there)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # asked twice: the user does not want to wait for the clean stop
            signal.signal(signum, signal.SIG_DFL)
            os._exit(128 + signum)
        stop.set()
        try:
            print(f"mirage: {signal.Signals(signum).name} received, stopping", file=sys.stderr, flush=True)
        except RuntimeError:  # the main thread was itself writing to stderr: the stop matters, not the line
            pass

    previous: dict[int, Any] = {signum: signal.signal(signum, on_signal) for signum in stop_signals()}
    register_stack_dump()  # kill -USR1 <pid>: every thread's stack on stderr (not on Windows)
    return previous


def restore_signals(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def run_headless(settings: Settings, args: argparse.Namespace) -> int:
    """Run until --seconds/--frames, the end of a non-looping source, or Ctrl+C or another stop signal; exit code
    0."""
    if getattr(args, "microphone", None) == "list":
        from mirage_desktop.audio.devices import list_microphones, microphone_lines
        from mirage_desktop.audio.virtual_mic import sound_server

        server = sound_server()
        try:
            print("\n".join(microphone_lines(list_microphones(server))))
        finally:
            if server is not None:
                server.close()
        return 0
    try:
        enabled = parse_enable(args.enable) if args.enable else None
        if args.stats_json:
            _check_stats_path(args.stats_json)
        spec = str(settings.source)
        if args.every_frame and (spec == "demo" or spec.isdigit()):
            raise UsageError("--every-frame works with a video or image file, not a live camera or 'demo'.")
        if args.seconds is not None and args.seconds <= 0:
            raise UsageError("--seconds must be positive")
        if args.frames is not None and args.frames <= 0:
            raise UsageError("--frames must be positive")
    except (UsageError, UnknownStageError) as exc:
        return _fail(str(exc))
    remote = None
    if getattr(args, "remote", None):  # the animation on a remote engine; capture and outputs stay here
        from mirage_desktop.remote.connect import RemoteSetupError, connect_remote

        try:
            remote = connect_remote(args.remote, args.token or settings.remote_token, insecure=args.insecure,
                                    ice_servers=args.ice_server, enable=enabled,
                                    avatar=settings.avatar if args.avatar else None,
                                    warn=lambda message: print(f"mirage: {message}", file=sys.stderr, flush=True))
        except RemoteSetupError as exc:
            return _fail(str(exc))
        enabled = None  # the switches (and --avatar) were for the remote engine
    if enabled is not None:
        for stage in STAGE_SPECS:  # a flag: for this run only, never saved
            settings.override(stage.setting, stage.name in enabled)

    try:
        source = make_engine_source(settings, paced=not args.every_frame)
    except SourceError as exc:
        return _fail(str(exc))
    if isinstance(source, VideoFileSource) and args.every_frame:
        source.loop = args.frames is not None or args.seconds is not None
    try:
        source.open()  # before anything else: a bad source is the most common mistake
    except SourceError as exc:
        return _fail(str(exc))
    session = Session(settings, source, every_frame=args.every_frame, max_frames=args.frames, remote=remote)
    code = _prepare(session, args, avatar_sent=remote is not None)
    if code:
        shut_down(session)
        return code

    engine = session.engine
    engine.add_listener(lambda level, msg: print(f"[{level}] {msg}", file=sys.stderr, flush=True))
    stop = threading.Event()
    previous = install_stop_signals(stop)

    session.start(open_source=False)
    t0 = time.perf_counter()
    deadline = t0 + args.seconds if args.seconds is not None else None
    next_status = t0 + 1.0
    try:
        while not stop.is_set():
            if engine.wait(0.05):
                break
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                break
            if now >= next_status:
                next_status += 1.0
                if not args.quiet:
                    print(status_line(engine.stats()), flush=True)
    finally:
        wall = time.perf_counter() - t0
        shut_down(session)
        restore_signals(previous)
    stats = final_stats(engine, wall)
    if not args.quiet:
        print(status_line(stats), flush=True)
    if args.stats_json:
        document = {**stats.to_json(), "wall_s": round(wall, 3)}
        link = session.control.link_stats()  # a remote engine's link, as the session closed
        if link is not None:
            document["remote"] = link.to_json()
        args.stats_json.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return 0


def shut_down(session: Session) -> None:
    """The one way a headless run ends: the server, then the engine with the source and every output (the
    recording is finished here). Safe to call twice."""
    session.close()


def _prepare(session: Session, args: argparse.Namespace, *, avatar_sent: bool = False) -> int:
    """Avatar, model loading and the outputs the flags ask for, before the first frame; an exit code (2) when the
    run cannot go on, else 0. ``avatar_sent``: --avatar already went to the engine (a remote one, as it connected)."""
    settings = session.settings
    if settings.avatar is not None and not avatar_sent:
        if session.avatar_stage is None:
            return _fail("--avatar needs the LivePortrait stage, which this build does not include.")
        try:
            _path, note = session.set_avatar(settings.avatar)
        except AvatarError as exc:
            return _fail(f"--avatar: {exc}")
        if note:
            print(f"mirage: --avatar cannot be checked yet: {note}", file=sys.stderr)
    for stage in session.engine.stages:  # load models now, so a script's first frames are already processed
        if stage.enabled and not stage.ensure_ready(block=True):
            print(f"mirage: {stage.label} is not running: {stage.reason} (frames pass through)", file=sys.stderr)

    if args.record:
        from mirage_desktop.outputs.recorder import RecorderError

        try:
            session.start_recorder(args.record, keep_every_frame=args.every_frame)
        except RecorderError as exc:
            return _fail(str(exc))
    if args.virtual_camera:
        try:
            session.start_virtual_camera()
        except Exception as exc:  # print the fix and carry on without it (exit code stays 0)
            print(f"mirage: virtual camera not started: {exc}", file=sys.stderr)
    if getattr(args, "virtual_microphone", False):
        try:
            session.start_microphone()
        except Exception as exc:  # print the fix and carry on without it (exit code stays 0)
            print(f"mirage: Mirage Microphone not started: {exc}", file=sys.stderr)
    if args.http_port is not None and not _start_http(session, args):
        return 2
    return 0


def _start_http(session: Session, args: argparse.Namespace | None = None) -> bool:
    settings = session.settings
    new_token = session.ensure_token()
    if new_token:  # first run: keep the token, so clients can use it next time too
        try:
            session.save()
        except OSError as exc:
            print(f"mirage: could not save the new token to the settings file: {exc}", file=sys.stderr)
    transport = _transport(args) if args is not None else {}
    if transport is None:
        return False
    try:
        server = session.start_http(**transport)
    except ValueError as exc:
        print(f"mirage: {exc}", file=sys.stderr)
        return False
    except OSError as exc:
        print(f"mirage: cannot listen on {settings.http_host}:{settings.http_port}: {exc.strerror or exc}. "
              "Pick another --http-port.", file=sys.stderr)
        return False
    print(f"HTTP/WebRTC server on {server.url}", flush=True)
    if new_token:
        print(f"New API token (saved in the settings file): {settings.token}", flush=True)
    else:
        print("API token: the one given by --token, MIRAGE_TOKEN or the settings file", flush=True)
    return True


def _transport(args: argparse.Namespace) -> dict[str, Any] | None:
    """--tls-cert/--tls-key (HTTPS served by the engine itself) and --ice-server (STUN/TURN behind NAT) as
    ``Session.start_http`` takes them; None (after one line on stderr) when they cannot be used."""
    from mirage_desktop.remote.target import RemoteUrlError, parse_ice_server
    from mirage_desktop.api.tls import TlsError, server_ssl_context

    try:
        ssl_context = None
        if getattr(args, "tls_cert", None) is not None:
            ssl_context = server_ssl_context(args.tls_cert, args.tls_key)
        elif getattr(args, "tls_key", None) is not None:
            raise TlsError("--tls-key needs --tls-cert (the certificate that goes with the key).")
        ice_servers = [parse_ice_server(text) for text in getattr(args, "ice_server", None) or ()]
    except (TlsError, RemoteUrlError) as exc:
        print(f"mirage: {exc}", file=sys.stderr)
        return None
    return {"ssl_context": ssl_context, "ice_servers": ice_servers}
