"""The remote check against a real engine behind a real HttpServer on the loopback: it answers, takes the right
token and refuses a wrong one; an engine that is not there fails with the fix; without a network the check is
skipped and says so."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from engine_helpers import InvertStage

from mirage_desktop.config import Settings
from mirage_desktop.doctor.check import FAIL, OK, SKIP
from mirage_desktop.doctor.remote import has_network, remote_check
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.api.server import HttpServer

TOKEN = "doctor-remote-token-31"


@pytest.fixture()
def server() -> Iterator[HttpServer]:
    engine = Engine(DemoSource(160, 120, fps=10), [InvertStage(enabled=True)])
    engine.start()
    server = HttpServer(engine, Settings(output_width=160, output_height=120, token=TOKEN), host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()
    engine.stop()


def test_a_running_engine_answers_and_accepts_the_token(server: HttpServer) -> None:
    check = remote_check(server.url, TOKEN)
    assert check.status == OK and check.name == "remote"
    assert f"{server.url.rstrip('/')} answers (version" in check.detail
    assert "accepts the token; round trip" in check.detail


def test_a_wrong_token_is_refused_with_the_fix(server: HttpServer) -> None:
    check = remote_check(server.url, "not-the-token")
    assert check.status == FAIL and "refused the token" in check.detail
    assert check.fix.startswith("enter the token the engine printed at its start")


def test_an_engine_that_is_not_there() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = remote_check(f"http://127.0.0.1:{port}", TOKEN, network=lambda: True)
    assert check.status == FAIL and "does not answer /health" in check.detail
    assert check.fix.startswith("start it there (mirage --headless --http-port 8765")


def test_without_a_network_the_check_is_skipped_and_says_so() -> None:
    check = remote_check("https://gpu.invalid:8765", TOKEN, timeout=1.0, network=lambda: False)
    assert check.status == SKIP and check.detail.startswith("No network here")
    assert remote_check("https://gpu.invalid:8765", TOKEN, timeout=1.0, network=lambda: True).status == FAIL
    assert isinstance(has_network(), bool)


def test_settings_that_cannot_reach_an_engine() -> None:
    clear = remote_check("http://gpu.example.com:8765", TOKEN)
    assert clear.status == FAIL and "clear text" in clear.detail and clear.fix.startswith("correct the URL")
    none = remote_check("https://gpu.example.com:8765", "")
    assert none.status == FAIL and "No token" in none.detail
