"""The simulator's memory stays bounded however long a test streams: patient audio is health
data and the demo may run for hours."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from kiosk.sim import Limits, Simulator
from kiosk.sim.records import AudioLog, BoundedList
from tests.sim.conftest import Peer, assert_official, grant, post

SMALL = Limits(max_connections=3, max_gateway_requests=5, max_audio_s=1.0, max_events=50)


@pytest.fixture
def small() -> Iterator[Simulator]:
    with Simulator(limits=SMALL) as s:
        yield s
    assert_official(s)


def test_bounded_list_keeps_the_newest_and_counts_the_rest() -> None:
    log: BoundedList[int] = BoundedList(3)
    log.extend(range(10))
    assert log == [7, 8, 9] and log.dropped == 7 and log.total == 10
    assert log.since(8) == [8, 9] and log.since(2) == [7, 8, 9] and log.since(10) == []


def test_audio_log_cuts_the_oldest_samples_exactly() -> None:
    audio = AudioLog(max_samples=10)
    for start in range(0, 24, 4):
        audio.append(np.arange(start, start + 4, dtype=np.int16))
    assert np.array_equal(audio.concatenated(), np.arange(14, 24))  # a chunk was cut
    assert (audio.samples, audio.dropped_samples, audio.chunks_total) == (10, 14, 6)
    assert [len(c) for c in audio.since(4)] == [4, 4]
    assert [len(c) for c in audio.since(0)] == [2, 4, 4]


def test_a_long_stream_keeps_only_the_newest_audio_and_events(small: Simulator) -> None:
    g = grant(small)
    peer = Peer(g["url"], g["auth"]["token"])
    peer.next("session.created")
    # 3 s of a ramp, in 100 ms appends: more than the 1 s and 50 events the records keep.
    stream = (np.arange(3 * 24000) % 20000).astype(np.int16)
    peer.append(stream, chunk=2400)
    conn = small.last_connection
    small.wait_for(lambda: conn.audio_chunks.chunks_total == 30)
    assert len(conn.audio) == 24000
    assert conn.audio_dropped_samples == 2 * 24000
    assert np.array_equal(conn.audio, stream[-24000:])  # the newest second, in order
    peer.send({"type": "input_audio_buffer.clear"})
    small.wait_for(lambda: conn.client_events.total == 31)
    assert len(conn.client_events) == 31  # under the 50 limit so far
    peer.append(np.zeros(2400 * 40, np.int16), chunk=2400)
    small.wait_for(lambda: conn.client_events.total == 71)
    assert len(conn.client_events) == 50 and conn.client_events.dropped == 21
    assert conn.client_types()[-1] == "input_audio_buffer.append"
    peer.close()


def test_connections_and_gateway_requests_are_bounded(small: Simulator) -> None:
    g = grant(small)
    for _ in range(5):
        Peer(g["url"], g["auth"]["token"]).close()
    small.wait_for(lambda: small.connections.total == 5 and not small.connections[-1].open)
    assert [c.index for c in small.connections] == [2, 3, 4]
    assert small.connections.dropped == 2
    for _ in range(6):
        post(small, "/api/voice/realtime-session", {})
    assert len(small.gateway_requests) == 5 and small.gateway_requests.total == 7
    assert [r.status for r in small.gateway_requests] == [401] * 5
