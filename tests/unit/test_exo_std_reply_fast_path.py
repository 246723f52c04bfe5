"""exo_std reads a successful reply's value alone when the reply has exactly the kernel's
shape; whatever it returns is what decoding the whole reply returns, and every other
reply takes the whole decoder (errors, descriptors, other shapes)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exo.abi.errors import ErrorCode
from exo_std._kernel import KernelConnection
from exo_std.errors import KernelUnavailable


class _Rx:
    def __init__(self, reply: bytes) -> None:
        self.reply = reply

    def configure(self, *, spin_us: float) -> None:
        pass

    def recv_msg(self, timeout: float | None = None) -> tuple[bytes, tuple[int, ...]]:
        return self.reply, ()


class _Tx:
    def send(self, data: bytes, handles: object = None, timeout: float | None = None) -> None:
        pass


class _Channel:
    def __init__(self, reply: bytes) -> None:
        self.tx, self.rx = _Tx(), _Rx(reply)


class _Endpoint:
    def __init__(self, reply: bytes) -> None:
        self._channel = _Channel(reply)


def _call(reply: bytes) -> Any:
    conn = KernelConnection(None, _Endpoint(reply))  # type: ignore[arg-type]  # no fds
    return conn.call("getpid")[0]


@pytest.mark.parametrize("value", [
    b"0", b"7", b"123456789012345678", b"12345678901234567890123", b"-3", b"2.5", b"1e3",
    b"true", b"null", b'"x\\u00e9"', b'{"pid":4}', b'{"a":[1,{"b":null}],"c":"\\ud800"}',
    b"[]", b"NaN", b"-Infinity",
])
def test_a_value_read_alone_is_the_whole_replys_value(value: bytes) -> None:
    reply = b'{"id":1,"ok":true,"result":' + value + b"}"
    got = _call(reply)
    want = json.loads(reply)["result"]
    assert repr(got) == repr(want) and type(got) is type(want)


@pytest.mark.parametrize("reply", [
    b'{"id":1,"ok":true,"result":007}',  # not JSON: the int() path must not accept it
    b'{"id":1,"ok":true,"result":1 }x',
    b'{"id":1,"ok":true,"result":1}}',
    b'{"id":1,"ok":true,"result":[1,}',
    b'{"id":2,"ok":true,"result":1}',  # another request's reply
])
def test_anything_else_goes_through_the_whole_decoder(reply: bytes) -> None:
    with pytest.raises(KernelUnavailable):
        _call(reply)


def test_other_shapes_decode_whole() -> None:
    assert _call(b'{"id":1,"ok":true,"result":5,"result":6}') == 6  # last one wins
    assert _call(b'{"id": 1, "ok": true, "result": 5}') == 5
    assert _call(b'{"ok":true,"id":1,"result":{"a":1}}') == {"a": 1}
    with pytest.raises(Exception, match="nope") as info:
        _call(b'{"id":1,"ok":false,"error":"CapabilityDenied","code":%d,"message":"nope"}'
              % ErrorCode.DENIED)
    assert type(info.value).__name__ == "CapabilityDenied"
