"""A wait's first futex sleep skips the liveness poll when the peer was seen alive within
the last millisecond (fring.c, wait_change): a peer killed in the middle of a round-trip
loop -- the case that skip is for -- is still reported dead, never a hang or a timeout.

The bound is 1 s (tests do not assert timings on a shared 2-core machine)."""

from __future__ import annotations

import time

import pytest
from _procs import fork_child, kill, reap

from exo.ipc import Channel, PeerDiedError

BOUND_S = 1.0
G = (b'{"id":', b',"op":"getpid","args":{}}', b'{"id":', b',"ok":true,"result":{"pid":', b"}}")
Q = (G[0], G[1])
A = (b'{"id":', b',"ok":true,"result":{"pid":7}}')


def _serve(kernel: Channel, app: Channel) -> None:
    app.detach()
    while True:
        kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 2000.0)


@pytest.mark.parametrize("pinned", [False, True])
def test_a_server_killed_mid_round_trips_is_reported_dead(pinned: bool) -> None:
    import os

    kernel, app = Channel.pair(8)
    old = os.sched_getaffinity(0)
    if pinned:  # both ends on one CPU: every wait sleeps, the skip is taken
        os.sched_setaffinity(0, {min(old)})
    try:
        pid = fork_child(lambda: _serve(kernel, app))
        kernel.detach()
        for i in range(2000):
            assert app.tx.call_int(app.rx, i, *G) == 7
        kill(pid)
        t0 = time.monotonic()
        with pytest.raises(PeerDiedError):
            for i in range(2000, 100_000):  # the calls before the death may still be answered
                app.tx.call_int(app.rx, i, *G)
                t0 = time.monotonic()
        assert time.monotonic() - t0 < BOUND_S
        assert reap(pid) == -9
    finally:
        os.sched_setaffinity(0, old)
        app.close()


def test_a_non_blocking_wait_on_a_dead_peer_says_it_died() -> None:
    """A wait that will not sleep (timeout 0) polls at once, fresh or not."""
    kernel, app = Channel.pair(8)
    pid = fork_child(lambda: _serve(kernel, app))
    kernel.detach()
    try:
        assert app.tx.call_int(app.rx, 1, *G) == 7  # the liveness poll just said alive
        kill(pid)
        assert reap(pid) == -9
        with pytest.raises(PeerDiedError):
            app.rx.recv(timeout=0)
    finally:
        app.close()
