"""Ring.call_int: the caller's side of the null syscall in one C call.

exo_std sends ``getpid`` with it (exo_std._kernel.KernelConnection.getpid): the request
is written around the call's id, and only a reply that is exactly the expected answer
around that id and a canonical decimal comes back as an int; every other reply -- another
id, a leading zero, a sign, anything around it, handles, a zero-copy block, a malformed
slot -- comes back (or raises) exactly as recv_msg() returns it. The reply is what a peer
wrote: nothing in it is trusted.
"""

from __future__ import annotations

import threading

import pytest

from exo.ipc import Channel, PeerClosedError, ProtocolError
from exo.mm import SharedPool

G = (b'{"id":', b',"op":"getpid","args":{}}', b'{"id":', b',"ok":true,"result":{"pid":', b"}}")


def answer(req_id: int, body: bytes) -> bytes:
    return G[2] + str(req_id).encode() + G[3] + body + G[4]


def call_with_reply(reply: bytes, req_id: int = 7, handles: tuple[int, ...] = ()) -> object:
    kernel, app = Channel.pair(8)
    try:
        kernel.tx.send(reply, handles or None)  # already there when the app asks
        got = app.tx.call_int(app.rx, req_id, *G)
        assert kernel.rx.recv() == G[0] + str(req_id).encode() + G[1]  # the request's bytes
        return got
    finally:
        kernel.close()
        app.close()


@pytest.mark.parametrize("body", [b"0", b"7", b"4242", b"123456789012345678"])
def test_the_expected_answer_is_an_int(body: bytes) -> None:
    assert call_with_reply(answer(7, body)) == int(body)


@pytest.mark.parametrize("reply", [
    answer(8, b"1"),                       # another call's id
    answer(7, b"01"),                      # not how an encoder writes it
    answer(7, b"-1"),
    answer(7, b"1.5"),
    answer(7, b""),
    answer(7, b"1234567890123456789"),     # 19 digits: past what it reads
    answer(7, b"1") + b" ",
    b" " + answer(7, b"1"),
    answer(7, b"1")[:-1],
    b'{"id":7,"ok":false,"error":"X","code":3,"message":"m"}',
    b"",
])
def test_anything_else_is_returned_as_recv_msg_returns_its_data(reply: bytes) -> None:
    assert call_with_reply(reply) == reply


def test_handles_on_the_reply_are_dropped_and_the_reply_returned() -> None:
    reply = answer(7, b"5")
    assert call_with_reply(reply, handles=(3,)) == reply


def test_a_zero_copy_reply_is_returned_as_a_block() -> None:
    kernel, app = Channel.pair(8, pools=(SharedPool.create(1 << 16), SharedPool.create(1 << 16)))
    try:
        big = answer(7, b"5") + b" " * 100
        kernel.tx.send(big)
        got = app.tx.call_int(app.rx, 7, *G)
        assert not isinstance(got, int | bytes)
        with got as view:
            assert bytes(view) == big
    finally:
        kernel.close()
        app.close()


def test_the_request_carries_the_id_in_decimal_and_the_call_waits_for_the_reply() -> None:
    kernel, app = Channel.pair(8)
    seen: list[bytes] = []

    def serve() -> None:
        try:
            for _ in range(3):
                req = kernel.rx.recv(timeout=10)
                assert isinstance(req, bytes)
                seen.append(req)
                req_id = int(req[len(G[0]):-len(G[1])])
                kernel.tx.send(answer(req_id, b"%d" % (req_id * 10)))
        finally:
            kernel.close()  # a failure here ends the call with PeerClosedError, not a hang

    t = threading.Thread(target=serve)
    t.start()
    try:
        assert [app.tx.call_int(app.rx, i, *G) for i in (1, 2**20, 0)] == [10, 10 * 2**20, 0]
        assert seen[1] == b'{"id":1048576,"op":"getpid","args":{}}'
    finally:
        t.join(timeout=10)
        app.close()


def test_a_malformed_reply_raises_as_recv_msg_does() -> None:
    kernel, app = Channel.pair(8)
    try:
        import mmap

        from exo.ipc import _fring

        mem = kernel.tx._map
        assert isinstance(mem, mmap.mmap)
        kernel.tx.send(answer(7, b"1"))
        # the reply's slot header now claims more bytes than a slot holds
        slot = _fring.HEADER_SIZE
        word = int.from_bytes(mem[slot:slot + 8], "little")
        mem[slot:slot + 8] = ((word & ~0xFFFF) | 0xFFFF).to_bytes(8, "little")
        with pytest.raises(ProtocolError):
            app.tx.call_int(app.rx, 7, *G)
    finally:
        kernel.close()
        app.close()


def test_a_closed_peer_raises() -> None:
    kernel, app = Channel.pair(8)
    kernel.close()
    try:
        with pytest.raises(PeerClosedError):
            app.tx.call_int(app.rx, 1, *G)
    finally:
        app.close()


@pytest.mark.parametrize("args", [
    (1, b"x" * 60, G[1], *G[2:]),       # a question past one inline slot
])
def test_bad_arguments_are_refused(args: tuple[object, ...]) -> None:
    kernel, app = Channel.pair(8)
    try:
        with pytest.raises(ValueError):
            app.tx.call_int(app.rx, *args)
        with pytest.raises(TypeError):
            app.tx.call_int(app.rx, 1, "text", *G[1:])
        with pytest.raises(TypeError):
            app.tx.call_int(kernel.tx, 1, *G)  # rx must be a consumer
        with pytest.raises((OverflowError, ValueError)):
            app.tx.call_int(app.rx, -1, *G)
        with pytest.raises(TypeError):
            app.rx.call_int(app.tx, 1, *G)  # a consumer cannot send
    finally:
        kernel.close()
        app.close()
