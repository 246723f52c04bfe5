"""The hosted drivers' subtle parts: net/loop's frame handling (answers that the Linux
stack accepts, nothing for malformed or foreign frames, never an exception on hostile
bytes) and the serial pump's line cutting (bounded, whatever the input)."""

from __future__ import annotations

import importlib.util
import socket
import struct
from pathlib import Path
from types import ModuleType

from hypothesis import given, settings
from hypothesis import strategies as st

from exo.modules.devices import LINE_MAX, _split_lines

DRIVERS = Path(__file__).resolve().parents[3] / "src" / "exo" / "modules" / "drivers"
HOST_MAC = bytes.fromhex("0200000000aa")
HOST_IP, PEER_IP = socket.inet_aton("10.77.0.1"), socket.inet_aton("10.77.0.2")


def driver(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"driver_{name}", DRIVERS / name / "main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(proto: int, payload: bytes, dst: bytes = PEER_IP) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0,
                         HOST_IP, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return b"\xff" * 6 + HOST_MAC + b"\x08\x00" + header + payload


def test_arp_for_the_peer_is_answered_and_no_other() -> None:
    net = driver("net_loop")
    request = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + HOST_MAC + HOST_IP + bytes(6)
    reply = net.handle(b"\xff" * 6 + HOST_MAC + b"\x08\x06" + request + PEER_IP)
    assert reply[:6] == HOST_MAC and reply[12:14] == b"\x08\x06"
    assert struct.unpack_from("!H", reply, 20)[0] == 2  # an ARP reply
    assert reply[22:28] == net.MAC and reply[28:32] == PEER_IP and reply[38:42] == HOST_IP
    other = socket.inet_aton("10.77.0.9")
    assert net.handle(b"\xff" * 6 + HOST_MAC + b"\x08\x06" + request + other) == b""


def test_icmp_echo_reply_has_valid_checksums() -> None:
    net = driver("net_loop")
    icmp = b"\x08\x00\x00\x00\x00\x07\x00\x01payload!"
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    reply = net.handle(ipv4(1, icmp))
    ip, body = reply[14:34], reply[34:]
    assert checksum(ip) == 0 and ip[12:16] == PEER_IP and ip[16:20] == HOST_IP
    assert body[0] == 0 and checksum(body) == 0 and body[4:] == icmp[4:]


def test_udp_echo_and_version_ports() -> None:
    net = driver("net_loop")
    udp = struct.pack("!HHHH", 40000, 7, 8 + 5, 0) + b"hello"
    reply = net.handle(ipv4(17, udp))
    sport, dport, length, _ = struct.unpack_from("!HHHH", reply, 34)
    assert (sport, dport, length) == (7, 40000, 13) and reply[42:] == b"hello"
    version = net.handle(ipv4(17, struct.pack("!HHHH", 40000, 1, 8, 0)))
    assert version[42:] == f"net/loop {net.VERSION}".encode()
    assert net.handle(ipv4(17, struct.pack("!HHHH", 40000, 9, 8, 0))) == b""  # closed port
    assert net.handle(ipv4(17, udp, dst=HOST_IP)) == b""  # not for the peer


def test_counters_are_handed_over() -> None:
    old, new = driver("net_loop"), driver("net_loop")
    old.handle(ipv4(17, struct.pack("!HHHH", 1, 7, 9, 0) + b"x"))
    new.import_state(old.export_state())
    assert new.export_state() == old.export_state()


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1600), st.sampled_from([b"\x08\x00", b"\x08\x06", b"\x86\xdd"]))
def test_hostile_frames_never_raise(body: bytes, ethertype: bytes) -> None:
    net = driver("net_loop") if not hasattr(test_hostile_frames_never_raise, "net") else \
        test_hostile_frames_never_raise.net  # type: ignore[attr-defined]
    test_hostile_frames_never_raise.net = net  # type: ignore[attr-defined]
    for frame in (body, b"\xff" * 6 + HOST_MAC + ethertype + body):
        out = net.handle(frame)
        assert isinstance(out, bytes) and len(out) <= max(len(frame), 64)  # never grows


def test_serial_lines_are_cut_and_bounded() -> None:
    assert _split_lines(b"AT\rATI\r\nAT+X\npart") == ([b"AT", b"ATI", b"AT+X"], b"part")
    assert _split_lines(b"\r\n\r\n") == ([], b"")
    lines, rest = _split_lines(b"x" * (3 * LINE_MAX + 5))
    assert [len(line) for line in lines] == [LINE_MAX] * 3 and rest == b"x" * 5


@given(st.binary(max_size=3 * LINE_MAX))
def test_serial_rest_never_exceeds_the_bound(data: bytes) -> None:
    lines, rest = _split_lines(data)
    assert len(rest) <= LINE_MAX and all(0 < len(line) <= LINE_MAX for line in lines)
    assert b"".join(lines) + rest == data.replace(b"\r", b"").replace(b"\n", b"")
