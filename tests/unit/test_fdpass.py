"""Descriptors the kernel receives (from apps, the zygote, a POSIX-X broker) are
close-on-exec: none passes into a child the kernel starts (Python 3.11's
``socket.recv_fds`` would leave them inheritable)."""

from __future__ import annotations

import os
import socket

from exo._fdpass import recv_fds
from exo.abi import recv_message, send_message


def test_received_descriptors_are_close_on_exec() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    os.set_inheritable(r, True)
    got: list[int] = []
    try:
        socket.send_fds(theirs, [b"x"], [r, w])
        data, got, flags = recv_fds(ours, 16, 2)
        assert data == b"x" and len(got) == 2
        assert not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
        assert not any(os.get_inheritable(fd) for fd in got)
        send_message(theirs, {"op": "test"}, [r])
        received = recv_message(ours)
        assert received is not None
        msg, fds = received
        got += fds
        assert msg == {"op": "test"} and len(fds) == 1 and not os.get_inheritable(fds[0])
    finally:
        for fd in (r, w, *got):
            os.close(fd)
        ours.close()
        theirs.close()
