"""The hosted drivers as modules on a real kernel: ``net/loop`` carries real packets
(ARP, ping, UDP through the Linux network stack and a TAP device) while it is upgraded
2.1.4 → 2.1.5 and rolled back, with no request lost; ``serial/pty`` answers lines written
to its pseudo-terminal across an upgrade."""

from __future__ import annotations

import os
import select
import shutil
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.modules.conftest import kernel, manager  # noqa: F401  (fixtures)

from exo.kernel.kernel import Kernel
from exo.modules import netns
from exo.modules.manager import ModuleManager
from exo.pkg import sdk

DRIVERS = Path(__file__).resolve().parents[2] / "src" / "exo" / "modules" / "drivers"


def build_driver(tmp: Path, root: Path, driver: str, base: str, version: str) -> Path:
    """``exo build`` of a driver's source at ``version`` (manifest and VERSION both)."""
    project = tmp / f"{driver}-{version}"
    shutil.copytree(DRIVERS / driver, project, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("exopkg.toml", "main.py"):
        f = project / name
        f.write_text(f.read_text().replace(f'"{base}"', f'"{version}"'))
    return sdk.build(project, root=root)


def needs_tap() -> None:
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        pytest.skip("net/loop needs root (CAP_NET_ADMIN) and /dev/net/tun")


class UdpClient:
    """In the Exo network namespace: sends numbered UDP echo requests to 10.77.0.2:7
    back to back, each waiting for its answer (none within 10 s counts as lost)."""

    def __init__(self, ns_path: str) -> None:
        self.ns_path = ns_path
        self.ok = self.lost = 0
        self.error = ""
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), self.error

    def _run(self) -> None:
        try:
            fd = os.open(self.ns_path, os.O_RDONLY)
            try:
                netns.enter(fd)
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        except OSError as exc:
            self.error = str(exc)
            self._ready.set()
            return
        self._ready.set()
        s.settimeout(10.0)  # a busy shared host may delay an answer; none in 10 s: lost
        i = 0
        with s:
            while not self._stop.is_set():
                i += 1
                body = f"req {i}".encode()
                s.sendto(body, ("10.77.0.2", 7))
                try:
                    while s.recv(2048) != body:  # a late answer to an old one
                        pass
                    self.ok += 1
                except TimeoutError:
                    self.lost += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the UDP client made no progress"
        time.sleep(0.01)


def ask(ns_path: str, port: int, body: bytes) -> bytes:
    """One UDP request to 10.77.0.2:``port`` from the Exo network namespace."""
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        got = netns.run_inside(fd, lambda: _udp(port, body))
    finally:
        os.close(fd)
    assert isinstance(got, bytes)
    return got


def ping(ns_path: str) -> bytes:
    """An ICMP echo to 10.77.0.2 (a raw socket: the reply's payload after its header)."""
    def go() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
            s.settimeout(5)
            echo = b"\x08\x00\x00\x00\x12\x34\x00\x01exo ping"  # type 8, id, seq
            total = sum(int.from_bytes(echo[i:i + 2], "big") for i in range(0, len(echo), 2))
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            check = (~total & 0xFFFF).to_bytes(2, "big")
            s.sendto(echo[:2] + check + echo[4:], ("10.77.0.2", 0))
            while True:
                packet = s.recv(2048)
                ihl = (packet[0] & 0x0F) * 4
                if packet[ihl] == 0:  # an echo reply
                    return packet[ihl + 8:]

    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        got = netns.run_inside(fd, go)
    finally:
        os.close(fd)
    assert isinstance(got, bytes)
    return got


def _udp(port: int, body: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(body, ("10.77.0.2", port))
        return s.recv(2048)


def test_net_loop_carries_packets_through_upgrade_and_rollback(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:  # noqa: F811
    needs_tap()
    v1 = build_driver(tmp_path, kernel.root, "net_loop", "2.1.4", "2.1.4")
    v2 = build_driver(tmp_path, kernel.root, "net_loop", "2.1.4", "2.1.5")
    loaded = manager.load(str(v1))
    assert "serving device://net/loop at interface exo-loop0" in loaded["message"]
    manager.load(str(v2))
    (row,) = manager.list()
    assert row["service"] == "device://net/loop"
    ns_path = str(row["device"]["netns"])
    assert ask(ns_path, 1, b"?") == b"net/loop 2.1.4"
    assert ping(ns_path) == b"exo ping"
    client = UdpClient(ns_path)
    try:
        wait_for(lambda: client.ok >= 100)
        done = manager.upgrade("net/loop", "2.1.5", canary=20, step=40, interval=0.2)
        assert done["rolled_back"] is None, done
        assert ask(ns_path, 1, b"?") == b"net/loop 2.1.5"
        before = client.ok
        wait_for(lambda: client.ok >= before + 100)
        assert manager.rollback("net/loop")["to"] == "2.1.4"
        assert ask(ns_path, 1, b"?") == b"net/loop 2.1.4"
    finally:
        client.stop()
    assert client.error == ""
    assert client.ok > 200 and client.lost == 0
    (row,) = manager.list()
    assert row["device"]["dropped"] == 0 and row["device"]["sent"] >= client.ok
    manager.unload("net/loop")
    assert manager.list() == []


def test_serial_pty_answers_lines_across_an_upgrade(
        kernel: Kernel, manager: ModuleManager, tmp_path: Path) -> None:  # noqa: F811
    v1 = build_driver(tmp_path, kernel.root, "serial_pty", "1.0.0", "1.0.0")
    v2 = build_driver(tmp_path, kernel.root, "serial_pty", "1.0.0", "1.1.0")
    manager.load(str(v1))
    manager.load(str(v2))
    (row,) = manager.list()
    port = os.open(str(row["device"]["tty"]), os.O_RDWR | os.O_NOCTTY)
    try:
        def say(line: bytes) -> bytes:
            os.write(port, line + b"\r")
            out = b""
            while not out.endswith(b"\r\n"):
                ready, _, _ = select.select([port], [], [], 10)
                assert ready, f"no answer to {line!r} (got {out!r})"
                out += os.read(port, 4096)
            return out

        assert say(b"AT") == b"OK\r\n"
        assert say(b"ATI") == b"Exo serial/pty 1.0.0\r\n"
        assert say(b"AT+ECHO=hello, serial") == b"hello, serial\r\n"
        assert say(b"ATZZZ") == b"ERROR\r\n"
        manager.upgrade("serial/pty", "1.1.0", step=0, interval=0)
        assert say(b"ATI") == b"Exo serial/pty 1.1.0\r\n"
        assert say(b"AT+COUNT?") == b"6\r\n"  # the count was handed over
        # a line split across writes is still one line
        os.write(port, b"AT+EC")
        assert say(b"HO=split") == b"split\r\n"
    finally:
        os.close(port)
    manager.unload("serial/pty")
