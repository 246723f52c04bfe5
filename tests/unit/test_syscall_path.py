"""The syscall fast path: its codecs say exactly what the standard library's say, and the
adaptive spin moves within its bounds (docs/ARCHITECTURE.md, "The syscall path")."""

from __future__ import annotations

import codecs
import json
from typing import Any

import msgspec
import pytest

from exo.abi import (
    MAX_MESSAGE,
    AdaptiveSpin,
    ProtocolError,
    decode_message,
    decode_request,
    encode_message,
)
from exo.kernel import syscalls
from exo_std._kernel import KernelConnection

ACCEPTED = [
    b'{"id":1,"op":"getpid","args":{}}',
    b' {"id": 1, "op": "getpid", "args": {}} \n',  # whitespace around: json.loads's path
    codecs.BOM_UTF8 + b'{"a":1}',
    '{"a": "\u00e9\u4e2d"}'.encode(),
    '{"a": 1}'.encode("utf-16"),
    b'{"a":1,"a":2}',
    b'{"a":[1,2.5,-3e2,true,false,null,{"b":"\\ud800"}]}',
    b'{"a":NaN,"b":Infinity}',
]
REFUSED = [b"", b"[]", b"1", b"{", b'{"a":1} x', b'{"a":1}{}', b"\xff\xfe not utf-8",
           b"[" * 30_000 + b"]" * 30_000, b'{"a":' + b"9" * 5000 + b"}", b"x" * (MAX_MESSAGE + 1)]


@pytest.mark.parametrize("raw", ACCEPTED)
def test_decode_message_reads_what_json_loads_reads(raw: bytes) -> None:
    assert decode_message(raw) == json.loads(raw)
    assert repr(decode_message(raw)) == repr(json.loads(raw))  # NaN != NaN: compare text


@pytest.mark.parametrize("raw", REFUSED)
def test_decode_message_refuses_what_is_not_one_json_object(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_message(raw)
    with pytest.raises(ProtocolError):  # and so does the kernel's msgspec decoder
        decode_request(raw, syscalls._decode)


def test_the_kernels_decoder_is_stricter_never_looser() -> None:
    assert decode_request(ACCEPTED[0], syscalls._decode) == json.loads(ACCEPTED[0])
    with pytest.raises(ProtocolError):
        decode_request(b'{"a":NaN}', syscalls._decode)
    many = b'{"a":[' + b"0," * 3000 + b"0]}"
    with pytest.raises(ProtocolError, match="JSON values"):
        decode_request(many, syscalls._decode)


def test_the_value_bound_is_exact_at_its_edge() -> None:
    """The one-pass count refuses exactly what the three counts refused: a request with
    MAX_REQUEST_VALUES value-opening bytes passes the scan, one more is refused, whichever
    of the three bytes (in strings too) makes up the count."""
    from exo.abi import MAX_REQUEST_VALUES

    head = b'{"id":1,"op":"x","args":{"a":"'  # two '{' and two ',' of its own
    for byte in (b",", b"[", b"{"):
        for extra, refused in ((0, False), (1, True)):
            body = byte * (MAX_REQUEST_VALUES - 4 + extra)
            raw = head + body + b'"}}'
            if refused:
                with pytest.raises(ProtocolError, match="JSON values"):
                    decode_request(raw, syscalls._decode)
            else:
                assert decode_request(raw, syscalls._decode)["args"]["a"] == body.decode()


@pytest.mark.parametrize("obj", [
    {"id": 1, "ok": True, "result": {"pid": 7}},
    {"id": None, "ok": False, "error": "X", "message": "\u00e9 \udcff \"q\""},
    {"a": [1, 2.5, None, True], 3: "int key"},
])
def test_encode_message_writes_what_json_dumps_writes(obj: dict[str, Any]) -> None:
    assert encode_message(obj) == json.dumps(obj, separators=(",", ":")).encode()


def test_encode_message_bounds_any_encoder() -> None:
    big = {"a": "x" * MAX_MESSAGE}
    with pytest.raises(ProtocolError):
        encode_message(big)
    with pytest.raises(ProtocolError):
        encode_message(big, msgspec.json.encode)


def test_kernel_replies_the_fast_encoder_cannot_write_fall_back_to_json() -> None:
    reply = {"id": 1, "ok": True, "result": {"names": ["caf\udce9"], "big": 2**70}}
    assert json.loads(syscalls._encode(reply)) == json.loads(encode_message(reply))
    plain = {"id": 2, "ok": True, "result": {"pid": 3}}
    assert json.loads(syscalls._encode(plain)) == plain
    with pytest.raises(TypeError):  # not JSON at all: an error, as before
        syscalls._encode({"id": 3, "result": object()})


class _Ring:
    def __init__(self) -> None:
        self.spins: list[float] = []

    def configure(self, *, spin_us: float) -> None:
        self.spins.append(spin_us)


def test_adaptive_spin_follows_short_waits_within_its_cap() -> None:
    ring = _Ring()
    spin = AdaptiveSpin(ring, floor_us=5, cap_us=50)
    assert ring.spins == [5]
    spin.observe(8_000)  # slept, but a 16 us spin would have caught it
    assert spin.budget_ns == 16_000 and ring.spins[-1] == 16
    for _ in range(100):  # caught by the spin: nothing to change, no configure call
        spin.observe(3_000)
    assert spin.budget_ns == 16_000 and len(ring.spins) == 2
    spin.observe(40_000)
    assert spin.budget_ns == 50_000  # never past the cap


def test_adaptive_spin_backs_off_to_its_floor_when_waits_are_long() -> None:
    ring = _Ring()
    spin = AdaptiveSpin(ring, floor_us=5, cap_us=50)
    spin.observe(20_000)
    assert spin.budget_ns == 40_000
    budgets = []
    for _ in range(10):  # the peer is idle or descheduled: spinning is wasted
        spin.observe(1_000_000)
        budgets.append(spin.budget_ns)
    assert budgets[:3] == [20_000, 10_000, 5_000]
    assert budgets[-1] == 5_000 and ring.spins[-1] == 5


class _FakeRx(_Ring):
    def __init__(self, replies: list[bytes]) -> None:
        super().__init__()
        self.replies = replies

    def recv_msg(self, timeout: float | None = None) -> tuple[bytes, tuple[int, ...]]:
        return self.replies.pop(0), ()


class _FakeTx:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, handles: object = None, timeout: float | None = None) -> None:
        self.sent.append(bytes(data))


class _FakeChannel:
    def __init__(self, replies: list[bytes]) -> None:
        self.tx, self.rx = _FakeTx(), _FakeRx(replies)


class _FakeEndpoint:
    def __init__(self, replies: list[bytes]) -> None:
        self._channel = _FakeChannel(replies)


def test_exo_std_sends_the_bytes_the_encoder_would() -> None:
    replies = [b'{"id":%d,"ok":true,"result":{"pid":4}}' % i for i in (1, 2, 3)]
    endpoint = _FakeEndpoint(replies)
    conn = KernelConnection(None, endpoint)  # type: ignore[arg-type]  # no descriptors
    assert conn.call("getpid") == ({"pid": 4}, [])
    assert conn.call("handles", name="x\"y") == ({"pid": 4}, [])
    assert conn.call("not an identifier") == ({"pid": 4}, [])
    assert endpoint._channel.tx.sent == [
        encode_message({"id": 1, "op": "getpid", "args": {}}),
        encode_message({"id": 2, "op": "handles", "args": {"name": "x\"y"}}),
        encode_message({"id": 3, "op": "not an identifier", "args": {}}),
    ]
