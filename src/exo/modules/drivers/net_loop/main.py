"""``net/loop``: the host 10.77.0.2 on the far side of the TAP interface ``exo-loop0``.

Each request is one Ethernet frame the Linux network stack sent into the TAP; the answer
is the frame to send back (or nothing). It answers ARP for 10.77.0.2, ICMP echo (so
``ping 10.77.0.2`` works from the Exo network namespace), UDP echo on port 7 and, on UDP
port 1, ``net/loop VERSION`` (which version answered). Frames are parsed with bounds
checked: a malformed one gets no answer. Counters are handed over across upgrades.
"""

from __future__ import annotations

import json
import socket
import struct

VERSION = "2.1.4"
MAC = bytes.fromhex("020000004c02")
IP = socket.inet_aton("10.77.0.2")
ECHO_PORT, VERSION_PORT = 7, 1
_counts = {"arp": 0, "icmp": 0, "udp": 0, "ignored": 0}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _arp(src_mac: bytes, body: bytes) -> bytes:
    if len(body) < 28:
        return b""
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", body)
    sender_mac, sender_ip, target_ip = body[8:14], body[14:18], body[24:28]
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 1) or target_ip != IP:
        return b""
    _counts["arp"] += 1
    reply = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 2) + MAC + IP + sender_mac + sender_ip
    return src_mac + MAC + b"\x08\x06" + reply


def _ipv4(src_mac: bytes, packet: bytes) -> bytes:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return b""
    ihl = (packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", packet, 2)[0]
    if ihl < 20 or not ihl <= total <= len(packet) or packet[16:20] != IP:
        return b""
    proto, src = packet[9], packet[12:16]
    payload = packet[ihl:total]
    if proto == 1 and len(payload) >= 8 and payload[0] == 8:  # ICMP echo request
        _counts["icmp"] += 1
        body = b"\x00\x00\x00\x00" + payload[4:]
        body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
        return _frame(src_mac, src, 1, body)
    if proto == 17 and len(payload) >= 8:
        sport, dport, length = struct.unpack_from("!HHH", payload)
        if not 8 <= length <= len(payload):
            return b""
        data = payload[8:length]
        if dport == ECHO_PORT:
            out = data
        elif dport == VERSION_PORT:
            out = f"net/loop {VERSION}".encode()
        else:
            return b""
        _counts["udp"] += 1
        # checksum 0: none, which IPv4 allows
        udp = struct.pack("!HHHH", dport, sport, 8 + len(out), 0) + out
        return _frame(src_mac, src, 17, udp)
    return b""


def _frame(dst_mac: bytes, dst_ip: bytes, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto,
                         0, IP, dst_ip)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return dst_mac + MAC + b"\x08\x00" + header + payload


def handle(request: bytes) -> bytes:
    if len(request) < 14:
        return b""
    src_mac, ethertype = request[6:12], struct.unpack_from("!H", request, 12)[0]
    if ethertype == 0x0806:
        out = _arp(src_mac, request[14:])
    elif ethertype == 0x0800:
        out = _ipv4(src_mac, request[14:])
    else:
        out = b""
    if not out:
        _counts["ignored"] += 1
    return out


def export_state() -> bytes:
    return json.dumps(_counts).encode()


def import_state(data: bytes) -> None:
    if data:
        got = json.loads(data)
        for key in _counts:
            _counts[key] = int(got.get(key, 0))
