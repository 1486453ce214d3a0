"""The WebRTC server's building blocks on their own: SDP directions, the latest-wins coalescer, the shared video
conversion and the Prometheus collector, each checked against a peer library (aiortc, PyAV, prometheus_client)."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from aiortc import RTCPeerConnection, VideoStreamTrack
from aiortc.sdp import SessionDescription
from av import VideoFrame
from engine_helpers import InvertStage
from prometheus_client.parser import text_string_to_metric_families

from mirage_desktop.engine.frame import Frame
from mirage_desktop.engine.pipeline import Engine
from mirage_desktop.engine.sources import DemoSource
from mirage_desktop.webrtc.datachannel import LatestWins
from mirage_desktop.api.metrics import CONTENT_TYPE, EngineCollector, MetricsPage
from mirage_desktop.webrtc.sdp import media_sections, receiving_video_mids
from mirage_desktop.webrtc.tracks import EngineVideoTrack, FrameFanout, SharedVideo, bgr_to_yuv420p


# ------------------------------------------------------------------------------------------------------- sdp
async def _offer(directions: list[tuple[str, str]], channel: bool) -> str:
    pc = RTCPeerConnection()
    for kind, direction in directions:
        if direction == "sendrecv" and kind == "video":
            pc.addTransceiver(VideoStreamTrack(), direction="sendrecv")
        else:
            pc.addTransceiver(kind, direction=direction)
    if channel:
        pc.createDataChannel("mirage")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def test_media_directions_read_from_the_sdp_agree_with_aiortcs_parser() -> None:
    cases = [[("video", "recvonly")], [("video", "sendrecv"), ("audio", "recvonly")],
             [("video", "sendonly"), ("video", "recvonly")], [("audio", "recvonly")]]
    for directions in cases:
        sdp = asyncio.run(_offer(directions, channel=True))
        parsed = SessionDescription.parse(sdp)
        ours = media_sections(sdp)
        assert [(s.kind, s.mid, s.direction) for s in ours if s.kind != "application"] == \
            [(m.kind, m.rtp.muxId, m.direction) for m in parsed.media if m.kind != "application"]
        expected = {m.rtp.muxId for m in parsed.media if m.kind == "video" and m.direction in ("recvonly", "sendrecv")}
        assert receiving_video_mids(sdp) == expected


def test_a_section_without_a_direction_takes_the_sessions() -> None:
    sdp = "v=0\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 9 UDP 0\r\na=mid:1\r\na=inactive\r\n"
    assert [(s.kind, s.mid, s.direction) for s in media_sections(sdp)] == [("video", "0", "recvonly"),
                                                                         ("audio", "1", "inactive")]


# ------------------------------------------------------------------------------------------------ coalescer
def test_latest_wins_runs_the_first_and_the_newest_and_drops_the_middle() -> None:
    async def go() -> tuple[list[int], int]:
        gate = asyncio.Event()
        seen: list[int] = []
        tasks: list[asyncio.Task[Any]] = []

        async def work(item: int) -> None:
            seen.append(item)
            await gate.wait()

        coalescer: LatestWins[int] = LatestWins(work, lambda coro: tasks.append(asyncio.ensure_future(coro)))
        for i in range(5):
            coalescer.offer(i)
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
        assert not coalescer.busy
        return seen, len(tasks)

    seen, spawned = asyncio.run(go())
    assert seen == [0, 4] and spawned == 1


# ----------------------------------------------------------------------------------------------- shared video
def test_peers_share_one_conversion_per_engine_frame_and_each_owns_its_frame() -> None:
    async def go() -> None:
        loop = asyncio.get_running_loop()
        fanout = FrameFanout(loop)
        shared = SharedVideo(fanout)
        tracks = [EngineVideoTrack(shared, (64, 48)) for _ in range(3)]
        assert fanout.stats()["listeners"] == 1  # one listener for all tracks
        yy, xx = np.mgrid[0:48, 0:64]
        image = np.dstack([xx * 4, yy * 5, (xx + yy) * 2]).astype(np.uint8)
        fanout.send(Frame(image=image, index=0, t_capture=0.0))
        await asyncio.sleep(0)
        frames = [await t.recv() for t in tracks]
        assert shared.conversions == 1
        assert len({id(f) for f in frames}) == 3  # own pts and pict_type per peer
        expected = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p").to_ndarray()
        for f in frames:
            assert f.format.name == "yuv420p" and (f.width, f.height) == (64, 48)
            # what each encoder would have made itself (PyAV's swscale), up to rounding: same BT.601 matrix
            assert np.abs(f.to_ndarray().astype(int) - expected).max() <= 3
        fanout.send(Frame(image=255 - image, index=1, t_capture=0.0))
        await asyncio.sleep(0)
        for t in tracks:
            await t.recv()
        assert shared.conversions == 2
        for t in tracks:
            t.stop()
        assert shared.subscribers == 0 and fanout.stats()["listeners"] == 0 and shared.image is None

    asyncio.run(go())


def test_odd_sized_frames_are_still_sent() -> None:
    async def go() -> None:
        fanout = FrameFanout(asyncio.get_running_loop())
        track = EngineVideoTrack(SharedVideo(fanout), (63, 47))
        frame = await track.recv()  # no engine frame yet: the black placeholder after REPEAT_AFTER_S
        assert (frame.width, frame.height) == (63, 47) and frame.to_ndarray(format="bgr24").max() == 0
        track.stop()

    asyncio.run(go())


# -------------------------------------------------------------------------------------------------- metrics
def test_collector_exposes_the_engine_and_peer_numbers_to_prometheus_parser() -> None:
    engine = Engine(DemoSource(64, 48, fps=30), [InvertStage(enabled=True)])
    for i in range(3):
        engine.metrics.stage("invert").add(0.002 * (i + 1))
        engine.metrics.end_to_end.add(0.01 * (i + 1))
    webrtc = {"peers": 2, "max_peers": 4, "frames_sent": 7, "bytes_sent": 1234, "rejected": 1}
    page = MetricsPage(EngineCollector(engine, lambda: webrtc))
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(page.render().decode())}
    assert families["mirage_webrtc_bytes_sent"].type == "counter"
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert values[("mirage_webrtc_peers", ())] == 2 and values[("mirage_webrtc_peers_max", ())] == 4
    assert values[("mirage_webrtc_frames_sent_total", ())] == 7
    assert values[("mirage_webrtc_bytes_sent_total", ())] == 1234
    assert values[("mirage_webrtc_peers_rejected_total", ())] == 1
    assert values[("mirage_end_to_end_latency_seconds_count", ())] == 3
    assert abs(values[("mirage_end_to_end_latency_seconds_sum", ())] - 0.06) < 1e-12
    assert values[("mirage_end_to_end_latency_seconds_bucket", (("le", "0.01"),))] == 1
    assert values[("mirage_end_to_end_latency_seconds_bucket", (("le", "+Inf"),))] == 3
    assert values[("mirage_stage_latency_seconds_count", (("stage", "invert"),))] == 3
    assert values[("mirage_stage_enabled", (("stage", "invert"),))] == 1
    assert values[("mirage_frames_per_second", (("direction", "input"),))] == 0


def test_the_fast_yuv420p_conversion_agrees_with_pyav() -> None:
    """Same BT.601 limited-range matrix as swscale: luma within 1 level on any image; the chroma planes within 3
    on smooth pictures (on pixel noise the two 2x2 subsampling filters differ, as any two resamplers would)."""
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:90, 0:160]
    smooth = np.dstack([xx * 1.5, yy * 2.5, 200 - xx - yy // 2]).clip(0, 255).astype(np.uint8)
    for image, luma_only in ((noise, True), (smooth, False)):
        expected = VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p").to_ndarray()
        ours = bgr_to_yuv420p(image)
        assert ours.shape == expected.shape == (135, 160)
        diff = np.abs(ours.astype(int) - expected.astype(int))
        assert (diff[:90] if luma_only else diff).max() <= (1 if luma_only else 3)
