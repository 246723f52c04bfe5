"""The kernel's side of the bootstrap channel has the trust properties.

Kernel -> app travels in a segment the kernel owns and has sealed (the app cannot map it
writable); app -> kernel in a segment the app owns, which the kernel maps read-only.
An app that scribbles over everything it can write (both rings, its own segment) gets
errors on its own channel; the kernel's allocator stays consistent.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import random
import time

import pytest
from _procs import fork_child, reap

from exo.abi import BOOTSTRAP_RING_ENV
from exo.ipc import PeerClosedError, PeerDiedError, ProtocolError
from exo.kernel.bootstrap import BootstrapChannel


def _app(fds: list[int], seconds: float) -> None:
    from exo_std.ipc import attach_endpoint

    ep = attach_endpoint(fds)
    ep.send(json.dumps({"op": "hello", "pad": "x" * 500}).encode())  # zero-copy, app's segment
    reply, _ = ep.recv(timeout=10)
    with reply as mv:  # the kernel's segment, read-only here
        assert mv.readonly and json.loads(bytes(mv))["pad"] == "y" * 500
    # now the hostile part: random bytes everywhere this process can write
    writable = (ep._channel.tx.fd, ep._channel.rx.fd, ep._pool.fd)  # both rings, its segment
    maps = [mmap.mmap(fd, os.fstat(fd).st_size) for fd in writable]
    rnd = random.Random(17)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        m = rnd.choice(maps)
        at = rnd.randrange(len(m) - 8)
        m[at : at + 8] = rnd.randbytes(8)


def test_bootstrap_segments_are_sender_owned_and_the_kernel_survives_scribbling() -> None:
    ch = BootstrapChannel()
    fds = [int(x) for x in ch.child_env()[BOOTSTRAP_RING_ENV].split(",")]
    assert len(fds) == 6
    peer = fds[5]
    with pytest.raises(PermissionError):  # the kernel's segment, as the app receives it
        mmap.mmap(peer, ch.pool.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    assert ch.app_view.buffer.readonly  # the kernel reads the app's segment read-only
    pid = fork_child(_app, fds, 1.5)
    ch.forget_child_end()
    got = ch.recv()
    assert got is not None and got[0]["op"] == "hello"
    ch.send({"pad": "y" * 500})
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        try:
            msg = ch.ring.recv(timeout=0.01)
        except (ProtocolError, TimeoutError):
            continue
        except (PeerDiedError, PeerClosedError):
            break
        if not isinstance(msg[0], bytes):
            msg[0].release()
        errors = (ProtocolError, TimeoutError, PeerDiedError, PeerClosedError, MemoryError)
        with contextlib.suppress(*errors):  # the kernel answers, zero-copy from its segment
            ch.ring.send(b"z" * 300, timeout=0.01)
    assert reap(pid) == 0
    ch.pool.check()  # nothing the app wrote reached the kernel's allocator
    ch.close()
