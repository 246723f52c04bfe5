"""The kernel's half of the hosted drivers: the device itself, held by the module manager
for as long as the module is loaded, whatever version serves it.

Envoy hands its listening socket from the old process to the new one so no connection
is refused during a hot restart; here the kernel never lets go of the device at all.
Its pump threads read what arrives on the device (an Ethernet frame from a TAP, a line
from a pseudo-terminal), send it as one request through the module router (so the
traffic split, draining and re-routing that make upgrades lossless apply unchanged) and
write the module's answer back. The module's process holds no device and no privilege:
it only turns requests into answers.

* ``net/loop``: a TAP interface ``exo-loop0`` (10.77.0.1/24) in the Exo network
  namespace (``exo.modules.netns``); the module plays the host 10.77.0.2 behind it.
* ``serial/pty``: a pseudo-terminal whose slave is the serial port (raw mode); the
  module answers each line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
import termios
import threading
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable

from exo.modules import ModuleError

#: Requests through the router: a burst of the device's input in, the module's answers
#: (or each one's failure) out, in order.
Request = Callable[[list[bytes]], list["bytes | Exception"]]

POLL_S = 0.2  # how often an idle pump looks at its stop flag
ETH_MIN, ETH_MAX = 14, 1514 + 4  # an Ethernet frame without FCS (a VLAN tag allowed)
LINE_MAX = 4096  # a serial line longer than this is sent in pieces
BURST = 64  # frames or lines sent to the module before their answers are awaited


class Device(ABC):
    """A device a module serves: opened at load, closed at unload."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received = self.sent = self.dropped = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def attach(self, request: Request, pumps: int = 1) -> None:
        """Start ``pumps`` threads that carry the device's traffic to ``request``."""
        for i in range(pumps):
            t = threading.Thread(target=self._pump, args=(request,), daemon=True,
                                 name=f"exo-dev-{self.name}-{i}")
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Stop the pumps (each notices within ``POLL_S``), then release the device."""
        self._stop.set()
        for t in self._threads:
            t.join(2 * POLL_S + 5)
        self._threads.clear()
        self._release()

    def _answer(self, request: Request, burst: list[bytes]) -> list[bytes]:
        """The answers to a burst; a failure is counted and remembered (its answer is
        empty), never raised into the pump."""
        self.received += len(burst)
        try:
            answers = request(burst)
        except Exception as exc:  # the module went away under the pump (unload)
            answers = [exc] * len(burst)
        out: list[bytes] = []
        for got in answers:
            if isinstance(got, Exception):  # no version serving, the module's error
                self.dropped += 1
                self.last_error = f"{type(got).__name__}: {got}"[:200]
                got = b""
            out.append(got)
        return out

    def stats(self) -> dict[str, object]:
        return {"received": self.received, "sent": self.sent, "dropped": self.dropped,
                "last_error": self.last_error}

    @abstractmethod
    def _pump(self, request: Request) -> None: ...

    @abstractmethod
    def _release(self) -> None: ...

    @abstractmethod
    def describe(self) -> dict[str, object]:
        """Where a user reaches the device (an interface and its namespace, a tty path)."""


# ------------------------------------------------------------------------- net/loop
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCSIFADDR, SIOCSIFNETMASK = 0x8916, 0x891C
SIOCSIFTXQLEN = 0x8943
SIOCSARP = 0x8955
ATF_COM, ATF_PERM = 0x02, 0x04
IFF_UP = 0x1
#: Frames the interface queues towards the pump (Linux's default is 1,000): at 2,500
#: packets/s that is 0.4 s of a stalled pump — a module process starting on a busy
#: 2-core host has stalled it longer — so 8,192 (~3 s), and no frame is dropped there.
TX_QUEUE = 8192
IFNAME = "exo-loop0"
ADDRESS, NETMASK, PEER = "10.77.0.1", "255.255.255.0", "10.77.0.2"
#: The peer's hardware address, as the driver answers ARP with it (drivers/net_loop).
#: A permanent neighbour entry: a pump stalled for more than the ARP probe time (3 s)
#: would otherwise make the stack mark the peer unreachable and drop what it sends.
PEER_MAC = bytes.fromhex("020000004c02")


def _ifreq_flags(name: str, flags: int) -> bytes:
    return struct.pack("16sH22x", name.encode(), flags)


def _ifreq_addr(name: str, addr: str) -> bytes:
    return struct.pack("16sHH4s8x", name.encode(), socket.AF_INET, 0, socket.inet_aton(addr))


def _arpreq(ip: str, mac: bytes, dev: str) -> bytes:
    """``struct arpreq``: the protocol address, the hardware address, flags, a netmask
    and the device."""
    pa = struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(ip))
    ha = struct.pack("H6s8x", 1, mac)  # ARPHRD_ETHER
    return pa + ha + struct.pack("i", ATF_PERM | ATF_COM) + bytes(16) + \
        dev.encode().ljust(16, b"\0")


def _make_tap() -> int:
    """Inside the new namespace: the TAP device, addressed and up; its descriptor."""
    # No IPv6 on it: router solicitations would be noise the module has to ignore.
    with contextlib.suppress(OSError), open("/proc/sys/net/ipv6/conf/default/disable_ipv6",
                                            "w") as f:
        f.write("1")
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, _ifreq_flags(IFNAME, IFF_TAP | IFF_NO_PI))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, SIOCSIFADDR, _ifreq_addr(IFNAME, ADDRESS))
            fcntl.ioctl(s, SIOCSIFNETMASK, _ifreq_addr(IFNAME, NETMASK))
            fcntl.ioctl(s, SIOCSIFTXQLEN, struct.pack("16si20x", IFNAME.encode(), TX_QUEUE))
            for name in ("lo", IFNAME):
                got = fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq_flags(name, 0))
                (flags,) = struct.unpack_from("H", got, 16)
                fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq_flags(name, flags | IFF_UP))
            fcntl.ioctl(s, SIOCSARP, _arpreq(PEER, PEER_MAC, IFNAME))
    except BaseException:
        os.close(fd)
        raise
    return fd


class NetLoop(Device):
    """A TAP interface in the Exo network namespace, carrying real Ethernet frames."""

    def __init__(self) -> None:
        from exo.modules import netns

        super().__init__("net/loop")
        box: dict[str, int] = {}
        try:
            self.ns_fd = netns.create(lambda: box.setdefault("tap", _make_tap()))
        except OSError as exc:
            raise ModuleError(f"net/loop: cannot create its TAP device in a network "
                              f"namespace (needs CAP_NET_ADMIN and /dev/net/tun): {exc}"
                              ) from None
        self.tap = box["tap"]

    def _pump(self, request: Request) -> None:
        poller = select.poll()
        poller.register(self.tap, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(POLL_S * 1000):
                continue
            burst: list[bytes] = []
            try:
                while len(burst) < BURST:  # what is waiting, up to a burst
                    burst.append(os.read(self.tap, 65536))
            except BlockingIOError:
                pass
            except OSError:
                return
            if not burst:
                continue  # another pump took it
            for reply in self._answer(request, burst):
                if not reply:
                    continue
                if not ETH_MIN <= len(reply) <= ETH_MAX:  # a module's answer is not trusted
                    self.dropped += 1
                    self.last_error = f"the module answered a {len(reply)}-byte frame"
                    continue
                try:
                    os.write(self.tap, reply)
                    self.sent += 1
                except OSError as exc:
                    if exc.errno == errno.EBADF:
                        return
                    self.dropped += 1

    def _release(self) -> None:
        for fd in (self.tap, self.ns_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def describe(self) -> dict[str, object]:
        return {"interface": IFNAME, "address": f"{ADDRESS}/24", "peer": PEER,
                "netns": f"/proc/{os.getpid()}/fd/{self.ns_fd}"}


# ----------------------------------------------------------------------- serial/pty
class SerialPty(Device):
    """A pseudo-terminal: its slave end is the serial port a program opens."""

    def __init__(self) -> None:
        super().__init__("serial/pty")
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave, termios.TCSANOW)  # a serial line: no echo, no editing
        os.set_blocking(self.master, False)
        # the kernel keeps the slave open, so a program closing the port does not end it
        self.path = os.ttyname(self.slave)

    def _pump(self, request: Request) -> None:
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        pending = b""
        while not self._stop.is_set():
            if not poller.poll(POLL_S * 1000):
                continue
            try:
                pending += os.read(self.master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            lines, pending = _split_lines(pending)
            for start in range(0, len(lines), BURST):
                for reply in self._answer(request, lines[start:start + BURST]):
                    if reply:
                        self._write(reply[:LINE_MAX + 2])

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                select.select([], [self.master], [], POLL_S)
                continue
            except OSError:
                self.dropped += 1
                return
            view = view[n:]
        self.sent += 1

    def _release(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def describe(self) -> dict[str, object]:
        return {"tty": self.path}


def _split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (CR, LF or CRLF ends them; empty ones dropped) and the rest; a
    rest longer than ``LINE_MAX`` is cut into lines so a sender without line ends cannot
    make the kernel buffer without bound."""
    lines: list[bytes] = []
    start = 0
    for i, byte in enumerate(data):
        if byte in (10, 13):
            if i > start:
                lines.append(data[start:i])
            start = i + 1
    rest = data[start:]
    while len(rest) > LINE_MAX:
        lines.append(rest[:LINE_MAX])
        rest = rest[LINE_MAX:]
    return lines, rest


#: The devices a ``device://NAME`` module may serve, and how each is made.
DEVICES: dict[str, Callable[[], Device]] = {"net/loop": NetLoop, "serial/pty": SerialPty}
#: Pump threads per device: a TAP carries independent packets (several in flight);
#: a serial line is one ordered stream.
PUMPS = {"net/loop": 1, "serial/pty": 1}


def open_device(name: str) -> Device:
    make = DEVICES.get(name)
    if make is None:
        raise ModuleError(f"device://{name}: no such hosted device "
                          f"({', '.join(sorted(DEVICES))})")
    return make()
