"""The HTTP/WebRTC server on loopback with a real engine and a real aiortc client.

Waits are bounded (a deadline per condition) and never asserted on: how fast things happen is for benchmarks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame
from engine_helpers import InvertStage

from mirage_desktop.config import Settings
from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.metrics import LatencyWindow
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.stage import Stage, StageUnavailable
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.api import routes
from mirage_desktop.webrtc import datachannel, driver, registry
from mirage_desktop.api.metrics import histogram_buckets
from mirage_desktop.webrtc.peer_source import PeerSource
from mirage_desktop.api.server import HttpServer
from mirage_desktop.webrtc.tracks import FrameFanout

W, H = 320, 240
TOKEN = "test-token-7c1f0e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 30.0  # upper bound for any wait; reaching it fails the test, it is not a speed check


# ----------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    eng = Engine(DemoSource(W, H, fps=15), [InvertStage(enabled=True)])
    eng.start()
    yield eng
    eng.stop()


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[HttpServer]:
    settings = Settings(output_width=W, output_height=H, token=TOKEN)
    srv = HttpServer(engine, settings, host="127.0.0.1", port=0)
    srv.start()
    yield srv
    srv.stop()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


async def until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


def jpeg_b64(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return base64.b64encode(buf.tobytes()).decode("ascii")


def unjpeg_b64(text: str) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


class FlatTrack(VideoStreamTrack):
    """A camera stand-in (the webcam is the boundary this machine cannot cross): flat grey frames."""

    def __init__(self, value: int) -> None:
        super().__init__()
        self.value = value

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(np.full((H, W, 3), self.value, np.uint8), format="bgr24")
        frame.pts, frame.time_base = pts, time_base
        return frame


@dataclass
class Client:
    """A real aiortc peer talking to the server."""

    pc: RTCPeerConnection
    id: str = ""
    sizes: list[tuple[int, int]] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    messages: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    track_ended: asyncio.Event = field(default_factory=asyncio.Event)
    channel: Any = None

    async def message(self, kind: str) -> dict[str, Any]:
        """The next message of this type (others are skipped)."""
        while True:
            msg = await asyncio.wait_for(self.messages.get(), WAIT_S)
            if msg.get("type") == kind:
                return msg


def make_client(*, send: VideoStreamTrack | None = None, channel: bool = True) -> Client:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    client = Client(pc)
    if send is not None:
        pc.addTransceiver(send, direction="sendrecv")
    else:
        pc.addTransceiver("video", direction="recvonly")
    if channel:
        client.channel = pc.createDataChannel("mirage")
        client.channel.on("message", lambda m: client.messages.put_nowait(json.loads(m)))

    @pc.on("track")
    def on_track(track: Any) -> None:
        async def pump() -> None:
            try:
                while True:
                    frame = await track.recv()
                    client.sizes.append((frame.width, frame.height))
                    client.means.append(float(frame.to_ndarray(format="bgr24").mean()))
            except MediaStreamError:
                client.track_ended.set()

        asyncio.ensure_future(pump())

    return client


async def offer_json(client: Client, http: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    await client.pc.setLocalDescription(await client.pc.createOffer())
    return await http.post(url + "webrtc/offer", json={"sdp": client.pc.localDescription.sdp, "type": "offer"},
                           headers=AUTH)


async def connect(server: HttpServer, http: aiohttp.ClientSession, **kwargs: Any) -> Client:
    client = make_client(**kwargs)
    resp = await offer_json(client, http, server.url)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["type"] == "answer" and body["id"]
    client.id = body["id"]
    await client.pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
    return client


async def connections(server: HttpServer, http: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    resp = await http.get(server.url + "webrtc/connections", headers=AUTH)
    assert resp.status == 200
    return {c["id"]: c for c in (await resp.json())["connections"]}


# ------------------------------------------------------------------------------------------------- plain HTTP
def test_health_needs_no_token_and_reveals_no_secrets(server: HttpServer, engine: Engine) -> None:
    async def go() -> None:
        await until(lambda: engine.metrics.frames_out >= 1, "the first output frame")  # the stage has loaded
        async with aiohttp.ClientSession() as http:
            resp = await http.get(server.url + "health")
            assert resp.status == 200
            text = await resp.text()
            body = json.loads(text)
        assert body["status"] == "ok"
        assert body["engine"]["running"] is True
        assert body["stages"]["invert"] == {"enabled": True, "reason": "", "label": "Invert"}
        assert body["device"] == "cpu"
        assert body["backends"] == {}  # per stage, what runs its networks: the test stage runs none
        assert body["uptime_s"] > 0 and body["max_peers"] == 4
        assert TOKEN not in text and "token" not in text.lower()

    run(go())


class GatedLoadStage(Stage):
    """A stage whose loading lasts until the test opens the gate; ``broken`` makes the load fail instead."""

    name = "gated"
    label = "Gated"

    def __init__(self, broken: bool = False) -> None:
        super().__init__(enabled=True)
        self.gate = threading.Event()
        self.broken = broken

    def prepare(self) -> None:
        assert self.gate.wait(WAIT_S)
        if self.broken:
            raise StageUnavailable("model file missing: run mirage-models download", "liveportrait")

    def process(self, frame: Frame) -> Frame:
        return frame


@pytest.mark.parametrize("broken, after", [(False, "ok"), (True, "degraded")])
def test_health_is_ok_while_a_stage_loads_and_degraded_when_it_cannot_run(broken: bool, after: str) -> None:
    stage = GatedLoadStage(broken)
    eng = Engine(DemoSource(W, H, fps=15), [stage])
    srv = HttpServer(eng, Settings(output_width=W, output_height=H, token=TOKEN), host="127.0.0.1", port=0)
    eng.start()
    srv.start()

    async def health(http: aiohttp.ClientSession) -> dict[str, Any]:
        resp = await http.get(srv.url + "health")
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            await until(lambda: stage.status().state == "loading", "the stage to start loading")
            body = await health(http)
            assert body["stages"]["gated"]["reason"] == "loading..."  # people are told, yet nothing is wrong
            assert body["status"] == "ok"
            stage.gate.set()
            await until(lambda: stage.status().state != "loading", "the load to end")
            body = await health(http)
            assert body["status"] == after
            assert body["stages"]["gated"]["reason"] == ("model file missing: run mirage-models download"
                                                         if broken else "")

    try:
        run(go())
    finally:
        stage.gate.set()
        srv.stop()
        eng.stop()


SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? (-?[0-9.e+-]+|NaN|\+Inf)$')


def test_metrics_are_prometheus_text_with_histograms_and_quantiles(server: HttpServer, engine: Engine) -> None:
    async def go() -> str:
        await until(lambda: engine.metrics.frames_out >= 3, "three output frames")
        async with aiohttp.ClientSession() as http:
            resp = await http.get(server.url + "metrics")
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return await resp.text()

    text = run(go())
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.match(line), line
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert {"mirage_stage_latency_seconds_bucket", "mirage_end_to_end_latency_seconds_count",
            "mirage_end_to_end_latency_quantile_seconds", "mirage_stage_latency_quantile_seconds",
            "mirage_frames_dropped_total", "mirage_frames_per_second", "mirage_webrtc_peers"} <= names
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(text) for s in f.samples}
    inf = values[("mirage_stage_latency_seconds_bucket", (("le", "+Inf"), ("stage", "invert")))]
    assert inf >= 3 and inf == values[("mirage_stage_latency_seconds_count", (("stage", "invert"),))]
    assert values[("mirage_end_to_end_latency_quantile_seconds", (("quantile", "0.5"),))] > 0
    assert "# TYPE mirage_frames_dropped_total counter" in text
    assert "mirage_gpu_memory_bytes{" not in text  # no GPU here: absent, not zero


def test_histogram_buckets_are_cumulative_and_match_the_window() -> None:
    window = LatencyWindow(buckets=(0.01, 0.1))
    for seconds in (0.005, 0.01, 0.05, 0.2, 0.3):
        window.add(seconds)
    buckets, total = histogram_buckets(window)
    assert buckets == [("0.01", 2), ("0.1", 3), ("+Inf", 5)]
    assert total == 0.005 + 0.01 + 0.05 + 0.2 + 0.3


PROTECTED = [("POST", "webrtc/offer"), ("GET", "webrtc/connections"), ("DELETE", "webrtc/connections/abc"),
             ("POST", "whep"), ("DELETE", "whep/abc")]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": f"Bearer {TOKEN}x"}], ids=["missing", "wrong", "basic", "longer"])
def test_protected_endpoints_answer_401_json_without_the_right_token(server: HttpServer,
                                                                    headers: dict[str, str]) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            for method, path in PROTECTED:
                resp = await http.request(method, server.url + path, headers=headers, data=b"{}")
                assert resp.status == 401, (method, path)
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
                body = await resp.json()
                assert body["status"] == 401 and "token" in body["error"].lower()

    run(go())


BAD_OFFERS: list[tuple[bytes, str]] = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"type": "answer", "sdp": "v=0"}).encode(), '"type" must be "offer"'),
    (json.dumps({"type": "offer"}).encode(), '"sdp" must be a string'),
    (json.dumps({"type": "offer", "sdp": "hello"}).encode(), "must start with 'v=0'"),
    (json.dumps({"type": "offer", "sdp": "v=0\r\ns=-\r\n"}).encode(), "no media section"),
    (json.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}).encode(), "ICE credentials"),
    (json.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:x\r\n"
                 "a=fingerprint:sha-256 00\r\nthis is = not sdp\r\n"}).encode(), "Invalid SDP offer"),
]


def test_malformed_offers_get_400_naming_the_problem_and_the_server_keeps_serving(server: HttpServer) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            for body, expected in BAD_OFFERS:
                resp = await http.post(server.url + "webrtc/offer", data=body, headers=AUTH)
                assert resp.status == 400, body
                error = (await resp.json())["error"]
                assert expected in error, (body, error)
            resp = await http.post(server.url + "webrtc/offer", data=b"x" * (routes.MAX_OFFER_BYTES + 1),
                                   headers=AUTH)
            assert resp.status == 413 and "larger than" in (await resp.json())["error"]
            resp = await http.post(server.url + "whep", data=b"v=0", headers={**AUTH, "Content-Type": "text/plain"})
            assert resp.status == 415 and "application/sdp" in (await resp.json())["error"]
            resp = await http.post(server.url + "whep", data=b"garbage",
                                   headers={**AUTH, "Content-Type": "application/sdp"})
            assert resp.status == 400
            resp = await http.get(server.url + "no/such/thing")
            assert resp.status == 404 and "No endpoint" in (await resp.json())["error"]
            assert server.peers == 0  # failed offers leave no half-made peer behind
            resp = await http.get(server.url + "health")
            assert resp.status == 200

    run(go())


def test_index_page_is_served(server: HttpServer) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            resp = await http.get(server.url)
            assert resp.status == 200 and resp.content_type == "text/html"
            page = await resp.text()
        assert "/webrtc/offer" in page and "Bearer" in page and "<video" in page

    run(go())


# ----------------------------------------------------------------------------------------------- WebRTC media
def test_client_receives_video_sees_itself_and_delete_hangs_up(server: HttpServer) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            client = await connect(server, http)
            await until(lambda: len(client.sizes) >= 5, "five video frames")
            assert set(client.sizes) == {(W, H)}
            listed = await connections(server, http)
            me = listed[client.id]
            assert me["state"] == "connected" and me["remote"] == "127.0.0.1" and me["kind"] == "webrtc"
            assert me["frames_sent"] > 0 and me["bytes_sent"] > 0 and me["started"].endswith("+00:00")
            assert server.peers == 1
            resp = await http.delete(server.url + f"webrtc/connections/{client.id}", headers=AUTH)
            assert resp.status == 200 and (await resp.json())["closed"] is True
            await asyncio.wait_for(client.track_ended.wait(), WAIT_S)
            assert client.id not in await connections(server, http)
            resp = await http.delete(server.url + f"webrtc/connections/{client.id}", headers=AUTH)
            assert resp.status == 404
            await client.pc.close()

    run(go())


def test_data_channel_frames_come_back_processed_by_the_engine_stages(server: HttpServer, engine: Engine) -> None:
    image = np.zeros((180, 240, 3), np.uint8)
    image[:, :120] = (30, 60, 90)
    image[:, 120:] = (200, 180, 160)

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            client = await connect(server, http)
            await until(lambda: client.channel.readyState == "open", "the data channel")
            reply: dict[str, Any] = {}
            for seq in range(40):  # the engine may drop some: keep sending until one comes back
                client.channel.send(json.dumps({"type": "frame", "image_jpeg_base64": jpeg_b64(image), "seq": seq}))
                try:
                    reply = await asyncio.wait_for(client.message("frame"), 0.5)
                    break
                except asyncio.TimeoutError:
                    continue
            assert reply, "no processed frame came back"
            assert isinstance(reply["seq"], int) and (reply["width"], reply["height"]) == (240, 180)
            back = unjpeg_b64(reply["image_jpeg_base64"]).astype(np.int16)
            expected = 255 - image.astype(np.int16)  # the engine's InvertStage ran on it
            assert np.abs(back - expected)[10:-10, 10:110].max() <= 12
            assert np.abs(back - expected)[10:-10, 130:-10].max() <= 12
            assert engine.source.describe() == f"webrtc:{client.id}"
            assert (await connections(server, http))[client.id]["driving"] is True
            resp = await http.delete(server.url + f"webrtc/connections/{client.id}", headers=AUTH)
            assert resp.status == 200
            await until(lambda: engine.source.describe() == "demo", "the engine's own source to come back")
            await client.pc.close()

    run(go())


def test_a_silent_driver_gives_the_engine_back_and_can_drive_again(server: HttpServer, engine: Engine,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "DRIVER_SILENCE_S", 0.5)
    frame = jpeg_b64(np.full((60, 80, 3), 100, np.uint8))

    async def drive_once(client: Client) -> dict[str, Any]:
        for seq in range(40):
            client.channel.send(json.dumps({"type": "frame", "image_jpeg_base64": frame, "seq": seq}))
            try:
                return await asyncio.wait_for(client.message("frame"), 0.5)
            except asyncio.TimeoutError:
                continue
        raise AssertionError("no processed frame came back")

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            client = await connect(server, http)
            await until(lambda: client.channel.readyState == "open", "the data channel")
            assert (await drive_once(client))["width"] == 80
            await until(lambda: engine.source.describe() == "demo", "the silent driver to be let go")
            assert client.id in await connections(server, http)  # still connected, just not driving
            assert abs(float(unjpeg_b64((await drive_once(client))["image_jpeg_base64"]).mean()) - 155) < 6
            assert engine.source.describe() == f"webrtc:{client.id}"
            await http.delete(server.url + f"webrtc/connections/{client.id}", headers=AUTH)
            await until(lambda: engine.source.describe() == "demo", "the engine's own source to come back")
            await client.pc.close()

    run(go())


def test_a_peer_that_closes_without_delete_is_cleaned_up(server: HttpServer) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            client = await connect(server, http)
            await until(lambda: len(client.sizes) >= 2, "video frames")
            assert client.id in await connections(server, http)
            await client.pc.close()  # DTLS close_notify, no HTTP hang-up
            await until(lambda: server.peers == 0, "the server to drop the closed peer")

    run(go())


def test_data_channel_stats_and_malformed_messages(server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datachannel, "MAX_MESSAGE_BYTES", 2000)  # SCTP itself stops the client at 256 KiB
    bad: list[tuple[Any, str]] = [
        ("not json", "not JSON"),
        ("[1]", 'string "type"'),
        (json.dumps({"type": "dance"}), "Unknown message type 'dance'"),
        (json.dumps({"type": "frame"}), "image_jpeg_base64"),
        (json.dumps({"type": "frame", "image_jpeg_base64": "%%%"}), "not valid base64"),
        (json.dumps({"type": "frame", "image_jpeg_base64": base64.b64encode(b"GIF89a nope").decode()}),
         "is not a JPEG"),
        (json.dumps({"type": "frame", "image_jpeg_base64": base64.b64encode(b"\xff\xd8\xff\xe0 cut").decode()}),
         "broken JPEG"),
        (b"\x00\x01", "Binary messages"),
        ("x" * 2001, "larger than"),
    ]

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            client = await connect(server, http)
            await until(lambda: client.channel.readyState == "open", "the data channel")
            for message, expected in bad:
                client.channel.send(message)
                error = await client.message("error")
                assert expected in error["error"], (message, error)
                assert error["status"] in (400, 413)
            client.channel.send(json.dumps({"type": "stats"}))
            stats = (await client.message("stats"))["stats"]
            assert stats["frames_out"] > 0 and "invert" in stats["stages"] and stats["webrtc"]["peers"] >= 1
            await http.delete(server.url + f"webrtc/connections/{client.id}", headers=AUTH)
            await client.pc.close()

    run(go())


def test_a_peers_video_track_drives_the_engine(server: HttpServer, engine: Engine) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            client = await connect(server, http, send=FlatTrack(40))
            await until(lambda: engine.source.describe() == f"webrtc:{client.id}", "the peer to drive")
            n = len(client.means)
            await until(lambda: len(client.means) >= n + 10, "ten more frames")
            # what comes back is our flat grey 40, inverted by the engine's stage (VP8 is lossy both ways)
            assert abs(client.means[-1] - 215) < 12
            listed = (await connections(server, http))[client.id]
            assert listed["driving"] is True and listed["frames_received"] > 0
            await http.delete(server.url + f"webrtc/connections/{client.id}", headers=AUTH)
            await until(lambda: engine.source.describe() == "demo", "the engine's own source to come back")
            await client.pc.close()

    run(go())


WHEP_SECTION = re.compile(r"m=video.*?(?=\r\nm=|\Z)", re.DOTALL)


def test_whep_offer_answer_and_delete(server: HttpServer) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            client = make_client(channel=False)
            client.pc.addTransceiver("audio", direction="recvonly")  # players often ask for audio too
            await client.pc.setLocalDescription(await client.pc.createOffer())
            resp = await http.post(server.url + "whep", data=client.pc.localDescription.sdp.encode(),
                                   headers={**AUTH, "Content-Type": "application/sdp"})
            assert resp.status == 201, await resp.text()
            assert resp.content_type == "application/sdp"
            location = resp.headers["Location"]
            assert re.fullmatch(r"/whep/[0-9a-f]+", location)
            answer = await resp.text()
            video = WHEP_SECTION.search(answer)
            assert video and "a=sendonly" in video.group(0)
            await client.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            await until(lambda: len(client.sizes) >= 3, "three WHEP frames")
            assert set(client.sizes) == {(W, H)}
            peer_id = location.rsplit("/", 1)[1]
            assert (await connections(server, http))[peer_id]["kind"] == "whep"
            resp = await http.patch(server.url + location.lstrip("/"), headers=AUTH, data=b"")
            assert resp.status == 405
            resp = await http.delete(server.url + location.lstrip("/"), headers=AUTH)
            assert resp.status == 200
            await asyncio.wait_for(client.track_ended.wait(), WAIT_S)
            resp = await http.delete(server.url + location.lstrip("/"), headers=AUTH)
            assert resp.status == 404
            await client.pc.close()

    run(go())


def test_max_peers_refuses_with_503_and_frees_the_place_on_hang_up(engine: Engine) -> None:
    settings = Settings(output_width=W, output_height=H, token=TOKEN)
    srv = HttpServer(engine, settings, host="127.0.0.1", port=0, max_peers=1)
    srv.start()
    try:
        async def go() -> None:
            async with aiohttp.ClientSession() as http:
                first = await connect(srv, http, channel=False)
                second = make_client(channel=False)
                resp = await offer_json(second, http, srv.url)
                assert resp.status == 503 and "Too many peers" in (await resp.json())["error"]
                assert resp.headers["Retry-After"] == "10"
                await http.delete(srv.url + f"webrtc/connections/{first.id}", headers=AUTH)
                third = await connect(srv, http, channel=False)
                assert srv.peers == 1
                for c in (first, second, third):
                    await c.pc.close()

        run(go())
    finally:
        srv.stop()


def test_peers_that_never_connect_are_dropped(server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "CONNECT_TIMEOUT_S", 0.5)

    async def go() -> None:
        async with aiohttp.ClientSession() as http:
            client = make_client()
            resp = await offer_json(client, http, server.url)  # and never apply the answer
            peer_id = (await resp.json())["id"]
            assert peer_id in await connections(server, http)
            await until(lambda: server.peers == 0, "the silent peer to be dropped")
            await client.pc.close()

    run(go())


def test_token_rotated_in_the_settings_applies_at_once(engine: Engine) -> None:
    settings = Settings(token="old-token")
    srv = HttpServer(engine, settings, host="127.0.0.1", port=0)
    fanouts_before = sum(isinstance(o, FrameFanout) for o in engine.outputs)
    srv.start()
    assert sum(isinstance(o, FrameFanout) for o in engine.outputs) == fanouts_before + 1
    try:
        async def go() -> None:
            async with aiohttp.ClientSession() as http:
                url = srv.url + "webrtc/connections"
                assert (await http.get(url, headers={"Authorization": "Bearer old-token"})).status == 200
                settings.token = "new-token"
                assert (await http.get(url, headers={"Authorization": "Bearer old-token"})).status == 401
                assert (await http.get(url, headers={"Authorization": "Bearer new-token"})).status == 200

        run(go())
    finally:
        srv.stop()
    assert srv.running is False
    assert sum(isinstance(o, FrameFanout) for o in engine.outputs) == fanouts_before  # its output left the engine


def test_binding_a_taken_port_raises_oserror(server: HttpServer, engine: Engine) -> None:
    other = HttpServer(engine, Settings(token=TOKEN), host="127.0.0.1", port=server.port)
    with pytest.raises(OSError):
        other.start()
    assert other.running is False


# --------------------------------------------------------------------------------------------- building blocks
def test_fanout_keeps_only_the_newest_frame_while_the_loop_is_busy() -> None:
    loop = asyncio.new_event_loop()
    try:
        fanout = FrameFanout(loop)
        seen: list[int] = []
        fanout.add_listener(lambda f: seen.append(f.index))
        image = np.zeros((4, 4, 3), np.uint8)

        def engine_thread() -> None:  # the loop is not running: nothing gets delivered meanwhile
            for i in range(100):
                fanout.send(Frame(image=image, index=i, t_capture=0.0))

        t = threading.Thread(target=engine_thread)
        t.start()
        t.join()
        assert len(loop._ready) == 1  # type: ignore[attr-defined]  # one pending callback, not 100
        loop.run_until_complete(asyncio.sleep(0))
        assert seen == [99] and fanout.frames_skipped == 99
    finally:
        loop.close()


def test_peer_source_never_ends_the_stream_and_matches_replies() -> None:
    source = PeerSource("abc", fps=30)
    source.open()
    first = np.full((8, 8, 3), 1, np.uint8)
    second = np.full((8, 8, 3), 2, np.uint8)
    source.push(first, {"seq": 1})
    source.push(second, {"seq": 2})  # replaces the unread first frame (latest wins)
    got = source.read()
    assert got is second
    assert source.read() is second  # nothing new: the last frame again, never None
    matched, tag = source.take_reply_tag(Frame(image=255 - second, index=0, t_capture=0.0, camera=second))
    assert matched and tag == {"seq": 2}
    assert source.take_reply_tag(Frame(image=second, index=1, t_capture=0.0, camera=second)) == (False, None)
    source.close()
    assert source.closed


# The families /metrics answered before it moved to prometheus_client (saved from a running server): name, type, and
# the label names of their samples. Dashboards and alerts depend on exactly these.
METRIC_FAMILIES = {
    "mirage_stage_latency_seconds": ("histogram", {("le", "stage"), ("stage",)}),
    "mirage_end_to_end_latency_seconds": ("histogram", {("le",), ()}),
    "mirage_stage_latency_quantile_seconds": ("gauge", {("quantile", "stage")}),
    "mirage_end_to_end_latency_quantile_seconds": ("gauge", {("quantile",)}),
    "mirage_stage_enabled": ("gauge", {("stage",)}),
    "mirage_frames_per_second": ("gauge", {("direction",)}),
    "mirage_frames_input": ("counter", {()}),
    "mirage_frames_output": ("counter", {()}),
    "mirage_frames_dropped": ("counter", {()}),
    "mirage_uptime_seconds": ("gauge", {()}),
    "mirage_gpu_memory_bytes": ("gauge", set()),  # no GPU here: declared, no samples
    "mirage_webrtc_peers": ("gauge", {()}),
    "mirage_webrtc_peers_max": ("gauge", {()}),
    "mirage_webrtc_frames_sent": ("counter", {()}),
    "mirage_webrtc_bytes_sent": ("counter", {()}),
    "mirage_webrtc_peers_rejected": ("counter", {()}),
}


def test_metrics_keep_their_families_and_count_a_connected_peer(server: HttpServer) -> None:
    async def go() -> str:
        async with aiohttp.ClientSession() as http:
            client = await connect(server, http, channel=False)
            await until(lambda: len(client.sizes) >= 3, "video frames")
            await connections(server, http)  # refreshes the peers' counters
            text = await (await http.get(server.url + "metrics")).text()
            await http.delete(server.url + f"webrtc/connections/{client.id}", headers=AUTH)
            await client.pc.close()
            return text

    families = list(text_string_to_metric_families(run(go())))
    found = {f.name: (f.type, {tuple(sorted(s.labels)) for s in f.samples}) for f in families}
    assert found == METRIC_FAMILIES
    values = {s.name: s.value for f in families for s in f.samples if not s.labels}
    assert values["mirage_webrtc_peers"] == 1 and values["mirage_webrtc_peers_max"] == 4
    assert values["mirage_webrtc_frames_sent_total"] >= 3 and values["mirage_webrtc_bytes_sent_total"] > 0


def test_nothing_of_a_peer_outlives_it(server: HttpServer, engine: Engine) -> None:
    import gc
    import weakref

    frame = jpeg_b64(np.full((60, 80, 3), 100, np.uint8))

    async def go() -> list[weakref.ref[Any]]:
        async with aiohttp.ClientSession() as http:
            clients = [await connect(server, http) for _ in range(2)]
            for client in clients:
                await until(lambda c=client: c.channel.readyState == "open" and len(c.sizes) >= 2, "the peer")
            for seq in range(40):  # the first drives (the engine's reply listener is on), the second is refused
                clients[0].channel.send(json.dumps({"type": "frame", "image_jpeg_base64": frame, "seq": seq}))
                try:
                    await asyncio.wait_for(clients[0].message("frame"), 0.5)
                    break
                except asyncio.TimeoutError:
                    continue
            clients[1].channel.send(json.dumps({"type": "frame", "image_jpeg_base64": frame}))
            assert (await clients[1].message("error"))["status"] == 409
            assert server._fanout is not None and server._fanout.stats()["listeners"] == 2  # video + replies
            peers = [server._registry.peers[c.id] for c in clients]  # type: ignore[union-attr]
            tasks = [t for p in peers for t in p.tasks]
            refs = [weakref.ref(p) for p in peers]
            del peers
            for client in clients:
                assert (await http.delete(server.url + f"webrtc/connections/{client.id}", headers=AUTH)).status == 200
                await client.pc.close()
            await until(lambda: engine.source.describe() == "demo", "the engine's own source to come back")
            assert all(t.done() for t in tasks)
            return refs

    refs = run(go())
    gc.collect()
    assert server.peers == 0
    assert server._fanout.stats()["listeners"] == 0  # type: ignore[union-attr]  # no track, no reply listener
    assert [r() for r in refs] == [None, None]  # nothing holds a closed peer
