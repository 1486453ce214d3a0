"""The ``mirage`` command: the desktop window, or ``--headless`` for scripts, servers and checks."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mirage_desktop import __version__
from mirage_desktop.config import LIVEPORTRAIT_BACKENDS, LIVEPORTRAIT_PRECISIONS, ConfigError, Settings, load_settings
from mirage_desktop.logs import setup_logging


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mirage",
        description="Mirage: turns your webcam into a live animated avatar. Without --headless it opens the window. "
                    "`mirage doctor [--json]` checks the setup and names the fix for each problem.",
    )
    p.add_argument("--version", action="version", version=f"mirage {__version__}")
    p.add_argument("--headless", action="store_true", help="run the engine without a window")
    p.add_argument("--source", help="'demo', a camera index (0, 1, ...) or a video/image file (default: settings)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=float, help="stop after this many seconds (headless)")
    length.add_argument("--frames", type=int, help="stop after this many output frames (headless)")
    p.add_argument("--record", type=Path, metavar="OUT.mp4", help="record the output as an H.264 MP4")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write the final stats as JSON")
    p.add_argument("--enable", metavar="STAGES", help="comma-separated stages to switch on: scrfd,liveportrait")
    p.add_argument("--models-dir", type=Path, metavar="DIR", help="model directory (default: user data dir)")
    p.add_argument("--scrfd-model", type=Path, metavar="PATH", help="use this SCRFD .onnx file")
    p.add_argument("--avatar", type=Path, metavar="IMAGE", help="portrait to animate")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="compute device (default: auto)")
    p.add_argument("--backend", choices=LIVEPORTRAIT_BACKENDS,
                   help="what runs the LivePortrait networks: torch, onnxruntime, or auto (each network on its "
                        "fastest, measured once per machine); default: settings (auto)")
    p.add_argument("--precision", choices=LIVEPORTRAIT_PRECISIONS,
                   help="LivePortrait's heavy networks at fp32, bf16 (CPUs with native bf16) or fp16 (GPUs); "
                        "auto picks what the machine runs well; default: settings (auto)")
    p.add_argument("--every-frame", action="store_true",
                   help="from a file: process every frame instead of dropping (offline rendering)")
    p.add_argument("--width", type=int, help="output width (default 1280)")
    p.add_argument("--height", type=int, help="output height (default 720)")
    p.add_argument("--fps", type=float, help="output frame rate (default 30)")
    p.add_argument("--virtual-camera", action="store_true", help="send the output to the 'Mirage' virtual camera")
    p.add_argument("--virtual-microphone", action="store_true",
                   help="play the microphone, delayed to match the video, into the 'Mirage Microphone'")
    p.add_argument("--microphone", metavar="DEVICE", help="the real microphone, as the sound server or PortAudio "
                   "names it ('list' prints the choices; default: settings, else the system's default)")
    p.add_argument("--audio-offset-ms", type=float, metavar="N", help="added to the video's delay for the voice "
                   "(positive: later; default: settings, else 0)")
    p.add_argument("--http-port", type=int, metavar="PORT", help="start the HTTP/WebRTC server on this port")
    p.add_argument("--http-host", metavar="ADDR", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--token", help="WebRTC/API token (default: MIRAGE_TOKEN or the saved one)")
    remote = p.add_argument_group("remote engine (the animation on a GPU elsewhere)")
    remote.add_argument("--remote", metavar="URL", help="use the Mirage engine at URL (https://HOST:PORT) instead of "
                        "this computer's; --token is that engine's token")
    remote.add_argument("--insecure", action="store_true", help="with --remote: allow http:// to another host and "
                        "skip TLS certificate checks (the token then crosses the network unprotected)")
    remote.add_argument("--ice-server", action="append", default=[], metavar="URL", help="STUN/TURN server for "
                        "WebRTC behind NAT, e.g. stun:stun.l.google.com:19302 or turn:USER:PASS@HOST:3478 (repeatable)")
    remote.add_argument("--tls-cert", type=Path, metavar="PEM", help="with --http-port: serve HTTPS with this "
                        "certificate (chain)")
    remote.add_argument("--tls-key", type=Path, metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--settings", type=Path, metavar="FILE", help="settings file (default: user config dir)")
    p.add_argument("--quiet", action="store_true", help="no per-second status line (headless)")
    p.add_argument("--verbose", action="store_true", help="debug logging on the console")
    return p


def apply_args(settings: Settings, args: argparse.Namespace) -> None:
    """Command-line flags override the settings file and environment for this run; they are never saved."""
    flags = {
        "models_dir": args.models_dir, "scrfd_model": args.scrfd_model, "avatar": args.avatar,
        "device": args.device, "source": args.source, "output_width": args.width, "output_height": args.height,
        "fps": args.fps, "http_host": args.http_host, "http_port": args.http_port, "token": args.token,
        "liveportrait_backend": getattr(args, "backend", None),
        "liveportrait_precision": getattr(args, "precision", None),
        "microphone": getattr(args, "microphone", None), "audio_offset_ms": getattr(args, "audio_offset_ms", None),
    }
    for name, value in flags.items():
        if value is not None:
            settings.override(name, value)


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["doctor"]:  # the setup check: read-only, so before the log file
        from mirage_desktop.doctor.cli import main as doctor

        return doctor(given[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.settings:
        os.environ["MIRAGE_SETTINGS"] = str(args.settings)  # load and save use the same file
    try:
        settings = load_settings(args.settings)
    except ConfigError as exc:
        print(f"mirage: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_dir, verbose=args.verbose)
    apply_args(settings, args)
    if args.headless or args.microphone == "list":
        from mirage_desktop.headless import run_headless

        return run_headless(settings, args)
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    ):
        print("mirage: no display found (DISPLAY/WAYLAND_DISPLAY unset). Run it in a desktop session, or use "
              "`mirage --headless ...` on a server.", file=sys.stderr)
        return 2
    from mirage_desktop.ui.app import run_gui

    if args.remote:  # the window on a remote engine: remembered like the Engine choice made in the window
        settings.override("remote_url", args.remote)
        if args.token:
            settings.override("remote_token", args.token)
    return run_gui(settings, args.source)


if __name__ == "__main__":
    sys.exit(main())
