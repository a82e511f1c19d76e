"""The ring buffer behaves exactly like a simple deque model, in both modes."""

from __future__ import annotations

import collections
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kiosk.audio.ringbuffer import RingBuffer


class DequeModel:
    """The obviously-correct reference: a deque of ints with the same overflow rules."""

    def __init__(self, capacity: int, mode: str) -> None:
        self.q: collections.deque[int] = collections.deque()
        self.capacity, self.mode = capacity, mode
        self.overruns = self.underruns = self.dropped = 0

    def write(self, xs: list[int]) -> int:
        free = self.capacity - len(self.q)
        if len(xs) > free:
            self.overruns += 1
            if self.mode == "playback":
                self.dropped += len(xs) - free
                xs = xs[:free]
        accepted = len(xs)
        for x in xs:
            if len(self.q) == self.capacity:
                self.q.popleft()
                self.dropped += 1
            self.q.append(x)
        return min(accepted, self.capacity) if self.mode == "capture" else accepted

    def read(self, n: int) -> list[int]:
        if n > len(self.q):
            self.underruns += 1
        return [self.q.popleft() for _ in range(min(n, len(self.q)))]


ops = st.lists(st.one_of(
    st.tuples(st.just("w"), st.lists(st.integers(-32768, 32767), max_size=40)),
    st.tuples(st.just("r"), st.integers(1, 40)),
    st.tuples(st.just("c"), st.just(0)),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 32), mode=st.sampled_from(["capture", "playback"]), ops=ops)
def test_ring_matches_deque_model(capacity, mode, ops):
    ring, model = RingBuffer(capacity, mode=mode), DequeModel(capacity, mode)
    out = np.empty(64, np.int16)
    for op, arg in ops:
        if op == "w":
            got = ring.write(np.array(arg, dtype=np.int16))
            assert got == model.write(list(arg))
        elif op == "r":
            n = ring.read_into(out[:arg])
            assert out[:n].tolist() == model.read(arg)
        else:
            assert ring.clear() == len(model.q)
            model.q.clear()
        assert ring.available == len(model.q)
        assert ring.free == capacity - len(model.q)
        assert (ring.overruns, ring.underruns, ring.dropped_samples) == \
            (model.overruns, model.underruns, model.dropped)


fade_ops = st.lists(st.one_of(
    st.tuples(st.just("w"), st.lists(st.integers(-32768, 32767), max_size=40)),
    st.tuples(st.just("r"), st.integers(1, 40)),
    st.tuples(st.just("s"), st.tuples(st.integers(0, 12), st.integers(-5, 40))),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 32), ops=fade_ops)
def test_scale_newest_fades_only_unread_samples_of_the_item(capacity, ops):
    """Playback's end-of-item fade, against a model that knows every sample's position."""
    ring = RingBuffer(capacity, mode="playback")
    queued: collections.deque[list[int]] = collections.deque()  # [position, value]
    written = 0
    out = np.empty(64, np.int16)
    for op, arg in ops:
        if op == "w":
            accepted = min(len(arg), capacity - len(queued))
            queued.extend([written + i, v] for i, v in enumerate(arg[:accepted]))
            written += accepted
            assert ring.write(np.array(arg, dtype=np.int16)) == accepted
        elif op == "r":
            n = ring.read_into(out[:arg])
            assert out[:n].tolist() == [queued.popleft()[1] for _ in range(n)]
        else:
            k, since_back = arg
            ramp = np.linspace(1.0, 0.0, k, dtype=np.float32)
            since = written - since_back
            hit = [e for e in queued if e[0] >= max(since, written - k)]
            for e in hit:
                e[1] = int(np.float32(e[1]) * ramp[k - (written - e[0])])
            assert ring.scale_newest(ramp, since=since) == len(hit)
    assert ring.read(capacity).tolist() == [v for _, v in queued]


def test_capture_mode_keeps_the_newest_audio():
    ring = RingBuffer(4, mode="capture")
    ring.write(np.arange(10, dtype=np.int16))
    assert ring.read(4).tolist() == [6, 7, 8, 9]
    assert ring.dropped_samples == 6 and ring.overruns == 1


def test_playback_mode_refuses_the_newest_audio():
    ring = RingBuffer(4, mode="playback")
    assert ring.write(np.arange(10, dtype=np.int16)) == 4
    assert ring.read(10).tolist() == [0, 1, 2, 3]
    assert ring.dropped_samples == 6 and ring.underruns == 1


def test_one_producer_one_consumer_thread_lose_nothing_in_order():
    ring = RingBuffer(1000, mode="playback")
    total = 200_000
    received: list[np.ndarray] = []
    done = threading.Event()

    def consume() -> None:
        buf = np.empty(333, np.int16)
        got = 0
        while got < total:
            n = ring.read_into(buf)
            if n:
                received.append(buf[:n].copy())
                got += n
        done.set()

    threading.Thread(target=consume, daemon=True).start()
    data = (np.arange(total) % 30000).astype(np.int16)
    pos = 0
    while pos < total:
        pos += ring.write(data[pos:pos + 257])  # playback mode refuses what does not fit
    assert done.wait(30)
    assert np.array_equal(np.concatenate(received), data)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        RingBuffer(0)
    with pytest.raises(ValueError):
        RingBuffer(10, mode="other")  # type: ignore[arg-type]


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_a_big_ring_keeps_only_what_it_holds_resident():
    """The default answer ring is 120 s (5.5 MiB). Used for months of short answers it must
    cost what one answer holds, not its capacity (the endurance test saw +11 MiB)."""
    ring = RingBuffer(120 * 24000, mode="playback")
    answer = np.full(24000 * 3, 1000, np.int16)  # 3 s, queued at once as the service sends it
    out = np.empty(2400, np.int16)
    before = _rss_kib()
    for _ in range(100):  # 300 s written in all: the positions go round the ring 2.5 times
        assert ring.write(answer) == len(answer)
        while ring.read_into(out):
            pass
    grown = _rss_kib() - before
    assert grown < 1024, f"RSS grew {grown} KiB for a ring holding at most 3 s (141 KiB)"
