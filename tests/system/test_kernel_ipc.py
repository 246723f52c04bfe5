"""Channels between sandboxed Exo processes: Fusion Rings, zero-copy, moving capabilities,
peer death — through exo_std, as applications use them."""

from __future__ import annotations

import pytest
from tests.system.helpers import run_app

from exo.kernel.kernel import Kernel


@pytest.fixture(autouse=True)
def _note(kernel: Kernel) -> None:
    (kernel.root / "home" / "demo" / "note.txt").write_text("shared through a moved capability\n")

CHILD = """
from exo_std import ipc, fs, Rights
(ep,) = ipc.inherited()
data, caps = ep.recv(timeout=20)
print("child got", data.decode(), [c.resource for c in caps], flush=True)
block, _ = ep.recv(timeout=20)
with block as view:
    print("zero-copy", len(view), sum(view) == 90 * len(view), flush=True)
with fs.File.open("storage://home/demo/note.txt", Rights.READ) as f:
    print("child read", f.read().decode().strip(), flush=True)
ep.send(b"done")
"""


def test_channel_moves_data_blocks_and_capabilities(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        from exo_std import ipc, process, handles, Rights
        from exo_std.errors import InvalidHandle
        a, b = ipc.channel()
        pid = process.spawn(["/usr/bin/python3", "-c", CHILD], [], channels=[b])
        cap = handles()[0].attenuate(Rights.READ | Rights.TRANSFER)
        a.send(b"hello", [cap])
        try:
            cap.attenuate(Rights.READ)
        except InvalidHandle:
            print("moved: the sender's handle is gone")
        a.send(b"Z" * 200_000)
        print("parent got", a.recv(timeout=20)[0].decode())
        print("child status", process.wait(pid))
    """.replace("CHILD", repr(CHILD)), "storage://home/demo=READ,DUPLICATE,TRANSFER")
    assert status == 0, err
    # The two processes print concurrently: compare as sets of lines.
    assert sorted(out.splitlines()) == sorted([
        "moved: the sender's handle is gone",
        "child got hello ['storage://home/demo']",
        "zero-copy 200000 True",
        "child read shared through a moved capability",
        "parent got done",
        "child status 0",
    ]), out + err
    assert kernel.in_flight.count() == 0


def test_peer_death_is_an_error_not_a_hang(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        import time
        from exo_std import ipc, process
        from exo.ipc import PeerGoneError
        a, b = ipc.channel()
        pid = process.spawn(["/usr/bin/python3", "-c",
                             "import os; from exo_std import ipc; ipc.inherited(); os._exit(9)"],
                            [], channels=[b])
        t0 = time.monotonic()
        try:
            a.recv(timeout=30)
            print("RECEIVED?")
        except PeerGoneError as exc:
            print("peer gone:", type(exc).__name__, time.monotonic() - t0 < 10)
        print("status", process.wait(pid))
    """)
    assert status == 0, err
    assert out.splitlines() == ["peer gone: PeerDiedError True", "status 9"], out + err


def test_forged_transfer_tokens_are_refused(kernel: Kernel) -> None:
    status, out, err = run_app(kernel, """
        import random
        from exo_std._kernel import call
        from exo_std.errors import ExoError
        refused = 0
        for _ in range(100):
            try:
                call("transfer_in", token=random.getrandbits(32))
            except ExoError:
                refused += 1
        print("refused", refused)
    """)
    assert status == 0, err
    assert out.strip() == "refused 100"
