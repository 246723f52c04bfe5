"""Killing either peer mid-stream: the survivor gets PeerDiedError (never a hang), and the
ring's shared memory is reclaimed; /dev/shm is left as it was.

The bound checked here is 1 s, well above the 100 ms the design promises (the bench
reports the measured value): tests do not assert timings on a shared 2-core machine."""

from __future__ import annotations

import os
import threading
import time

import pytest
from _procs import fork_child, kill, reap

from conftest import dev_shm, own_memfds
from exo.ipc import Channel, FusionRing, PeerDiedError

BOUND_S = 1.0


def _stream(ring: FusionRing) -> None:
    i = 0
    while True:
        ring.send(i.to_bytes(8, "little"))
        i += 1


def test_producer_killed_mid_stream() -> None:
    shm_before = dev_shm()
    prod, cons = FusionRing.pair(64, name="death-prod")
    pid = fork_child(lambda: (cons.detach(), _stream(prod)))  # type: ignore[func-returns-value]
    prod.detach()
    expect = 0
    for _ in range(20_000):
        assert int.from_bytes(cons.recv(), "little") == expect  # type: ignore[arg-type]
        expect += 1
    kill(pid)
    t0 = time.monotonic()
    with pytest.raises(PeerDiedError):
        while True:  # what was published before the death is still delivered, in order
            assert int.from_bytes(cons.recv(), "little") == expect  # type: ignore[arg-type]
            expect += 1
            t0 = time.monotonic()
    assert time.monotonic() - t0 < BOUND_S
    assert reap(pid) == -9
    cons.close()
    assert own_memfds() == 0  # no mapping left: the memfd is gone with its last user
    assert dev_shm() == shm_before


def test_consumer_killed_mid_stream() -> None:
    shm_before = dev_shm()
    prod, cons = FusionRing.pair(64, name="death-cons")

    def drain() -> None:
        prod.detach()
        while True:
            cons.recv()

    pid = fork_child(drain)
    cons.detach()
    for i in range(20_000):
        prod.send(i.to_bytes(8, "little"))
    kill(pid)
    t0 = time.monotonic()
    with pytest.raises(PeerDiedError):
        while True:  # the ring fills, the producer waits, the wait sees the death
            prod.send(b"x" * 8)
    assert time.monotonic() - t0 < BOUND_S
    assert reap(pid) == -9
    prod.close()
    assert own_memfds() == 0
    assert dev_shm() == shm_before


def test_blocked_receiver_wakes_with_an_error() -> None:
    a, b = Channel.pair(16, name="death-idle")
    pid = fork_child(lambda: (a.detach(), time.sleep(60)))  # type: ignore[func-returns-value]
    b.detach()
    killed_at: list[float] = []

    def killer() -> None:
        time.sleep(0.2)
        killed_at.append(time.monotonic())
        kill(pid)

    threading.Thread(target=killer).start()
    with pytest.raises(PeerDiedError):
        a.recv()  # no timeout: only the death can end this wait
    assert time.monotonic() - killed_at[0] < BOUND_S
    assert reap(pid) == -9
    assert not a.peer_alive()
    # like a pipe's buffer, free slots still take messages; the first send that has
    # to wait learns of the death (never a hang)
    sent = 0
    with pytest.raises(PeerDiedError):
        while True:
            a.send(b"anyone?", timeout=5)
            sent += 1
    assert sent == 16
    a.close()


def test_orderly_exit_without_close_is_a_death_too() -> None:
    prod, cons = FusionRing.pair(8)
    pid = fork_child(lambda: (cons.detach(), prod.send(b"bye")))  # type: ignore[func-returns-value]
    prod.detach()
    assert reap(pid) == 0
    assert cons.recv() == b"bye"
    with pytest.raises(PeerDiedError):
        cons.recv()
    cons.close()
    os.sched_yield()
