"""No wake-up is ever lost. With spinning and yielding disabled every wait goes to the
futex, and the safety tick is set to 60 s: a single lost wake-up would leave a waiter
asleep until its tick expires, which the futex-timeout counters record (and the test
would take a minute). The counters must stay at zero, with both wake-up protocols: the
wakers' fence left to the sleepers' membarrier(2), and a fence on both sides."""

from __future__ import annotations

from array import array
from collections.abc import Iterator

import pytest
from _procs import fork_child, reap

from exo.ipc import Channel, _fring

ROUND_TRIPS = 5_000


def _strict(ch: Channel) -> None:
    for ring in (ch.tx, ch.rx):
        ring.configure(spin_us=0, yields=0, tick_ms=60_000)


@pytest.fixture(params=["membarrier-adaptive", "membarrier-only", "mfence"])
def protocol(request: pytest.FixtureRequest) -> Iterator[str]:
    old = _fring._use_membarrier(request.param != "mfence")
    old_adaptive = _fring._adaptive_fence(request.param == "membarrier-adaptive")
    yield request.param
    _fring._use_membarrier(old)
    _fring._adaptive_fence(old_adaptive)


def test_futex_handshake_loses_no_wakeup(protocol: str) -> None:
    """Every wait sleeps: adaptively, the sleepers soon ask the wakers to fence again
    (membarrier for the first sleeps, plain fences once acknowledged); pinned, every sleep
    issues a membarrier; or both sides fence on every operation."""
    a, b = Channel.pair(4, name="wakeup")
    assert a.tx.stats()["wake_fence"] == protocol.split("-")[0]

    def echo() -> None:
        a.detach()
        _strict(b)
        for _ in range(ROUND_TRIPS):
            b.tx.send(b.rx.recv())
        # and a batch whose producer must wait for room (ring of 4)
        for _ in range(200):
            b.tx.send_batch(b.rx.recv_batch())
        buf, lens = bytearray(64), array("I", bytes(16))
        for _ in range(200):  # packed batches, the producer waiting for room too
            n = b.rx.recv_batch_into(buf, lens)
            b.tx.send_batch_packed(buf[: sum(lens[:n])], lens[:n].tolist())

    pid = fork_child(echo)
    b.detach()
    _strict(a)
    for i in range(ROUND_TRIPS):
        msg = i.to_bytes(4, "little")
        a.tx.send(msg)
        assert a.rx.recv() == msg
    for i in range(200):
        a.tx.send_batch([bytes([i % 256])] * 4)
        got: list[object] = []
        while len(got) < 4:
            got += a.rx.recv_batch()
        assert got == [bytes([i % 256])] * 4
    buf, lens = bytearray(64), array("I", bytes(16))
    for i in range(200):
        a.tx.send_batch_packed(bytes([i % 256]) * 12, 3)
        n = 0
        while n < 4:
            k = a.rx.recv_batch_into(memoryview(buf)[3 * n :], lens)
            assert list(lens[:k]) == [3] * k
            n += k
        assert buf[:12] == bytes([i % 256]) * 12
    assert reap(pid) == 0
    tx, rx = a.tx.stats(), a.rx.stats()
    # the futex path was really exercised, and every sleeper was woken, none timed out
    assert rx["consumer_sleeps"] > 0 and tx["producer_wakes"] > 0
    asks = rx["producer_asks_fence"] or rx["consumer_asks_fence"]
    assert asks == (protocol == "membarrier-adaptive")
    for st in (tx, rx):
        assert st["consumer_futex_timeouts"] == 0
        assert st["producer_futex_timeouts"] == 0
    a.close()
