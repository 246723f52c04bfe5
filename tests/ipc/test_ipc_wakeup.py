"""No wake-up is ever lost. With spinning and yielding disabled every wait goes to the
futex, and the safety tick is set to 60 s: a single lost wake-up would leave a waiter
asleep until its tick expires, which the futex-timeout counters record (and the test
would take a minute). The counters must stay at zero."""

from __future__ import annotations

from _procs import fork_child, reap

from exo.ipc import Channel

ROUND_TRIPS = 5_000


def _strict(ch: Channel) -> None:
    for ring in (ch.tx, ch.rx):
        ring.configure(spin_us=0, yields=0, tick_ms=60_000)


def test_futex_handshake_loses_no_wakeup() -> None:
    a, b = Channel.pair(4, name="wakeup")

    def echo() -> None:
        a.detach()
        _strict(b)
        for _ in range(ROUND_TRIPS):
            b.tx.send(b.rx.recv())
        # and a batch whose producer must wait for room (ring of 4)
        for _ in range(200):
            b.tx.send_batch(b.rx.recv_batch())

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
    assert reap(pid) == 0
    tx, rx = a.tx.stats(), a.rx.stats()
    # the futex path was really exercised, and every sleeper was woken, none timed out
    assert rx["consumer_sleeps"] > 0 and tx["producer_wakes"] > 0
    for st in (tx, rx):
        assert st["consumer_futex_timeouts"] == 0
        assert st["producer_futex_timeouts"] == 0
    a.close()
