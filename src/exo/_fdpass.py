"""Receiving descriptors over a Unix socket, close-on-exec.

Python 3.11's ``socket.recv_fds`` drops the flags it is given, so what it receives is
inheritable: a descriptor an app (or the zygote) sent the kernel would pass into any
child the kernel started without closing descriptors. Here the message is received with
``MSG_CMSG_CLOEXEC``. (``exo.sandbox._zygote_main`` has its own copy: it runs as a
standalone program, with no ``exo`` import.)
"""

from __future__ import annotations

import array
import socket


def recv_fds(sock: socket.socket, bufsize: int, maxfds: int,
             flags: int = 0) -> tuple[bytes, list[int], int]:
    """``socket.recv_fds`` with the descriptors close-on-exec: (data, descriptors, the
    message's flags)."""
    width = array.array("i").itemsize
    data, ancdata, msg_flags, _ = sock.recvmsg(bufsize, socket.CMSG_SPACE(maxfds * width),
                                               flags | socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % width])
    return data, list(fds), msg_flags
