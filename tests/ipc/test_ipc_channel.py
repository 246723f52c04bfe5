"""Channel: two rings, handles, the kernel's hooks, and handing an end to a real
subprocess through pass_fds."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from exo.ipc import Channel, PeerClosedError


def test_bidirectional_with_handles() -> None:
    a, b = Channel.pair(8)
    a.send(b"ping", handles=[7, 8])
    assert b.recv() == (b"ping", (7, 8))
    b.send(b"pong")
    assert a.recv() == (b"pong", ())
    a.close()
    with pytest.raises(PeerClosedError):
        b.recv(timeout=1)
    b.close()


def test_kernel_hooks_move_handles() -> None:
    """The hook stands for the kernel: handles leave the sender's table on send and
    appear in the receiver's table on receive."""
    sender_table = {3: "file", 4: "socket"}
    receiver_table: dict[int, str] = {}
    in_flight: dict[int, str] = {}

    def take(handles: tuple[int, ...]) -> list[int]:
        tokens = []
        for h in handles:
            token = 1000 + h
            in_flight[token] = sender_table.pop(h)
            tokens.append(token)
        return tokens

    def give(tokens: tuple[int, ...]) -> list[int]:
        out = []
        for t in tokens:
            h = len(receiver_table) + 1
            receiver_table[h] = in_flight.pop(t)
            out.append(h)
        return out

    a, b = Channel.pair(8)
    a.on_send_handles = take
    b.on_recv_handles = give
    a.send(b"here", handles=[3, 4])
    assert sender_table == {}
    assert b.recv() == (b"here", (1, 2))
    assert receiver_table == {1: "file", 2: "socket"}
    a.close()
    b.close()


CHILD = textwrap.dedent(
    """
    import sys
    from exo.ipc import Channel
    ch = Channel.attach([int(x) for x in sys.argv[1:5]])
    while True:
        try:
            data, handles = ch.recv(timeout=10)
        except EOFError:
            break
        ch.send(bytes(reversed(data)), handles=[h + 1 for h in handles])
    ch.close()
    """
)


def test_subprocess_end_through_pass_fds(pool: Any) -> None:
    a, b = Channel.pair(16)
    child = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, b.fds)], pass_fds=b.fds)
    b.detach()
    try:
        for i in range(200):
            msg = bytes([i % 256]) * (i % 57)
            a.send(msg, handles=[i])
            assert a.recv(timeout=10) == (msg[::-1], (i + 1,))
    finally:
        a.close()
        assert child.wait(timeout=10) == 0


def test_attach_needs_four_fds() -> None:
    with pytest.raises(ValueError, match="4 fds"):
        Channel.attach([1, 2])
