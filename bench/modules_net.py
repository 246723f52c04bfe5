"""Benchmark: ``net/loop`` upgraded under real network traffic, against a restart
(writes bench/results/modules_net.json).

Claims under test (issue 13, DESIGN.md §1's ``exo module upgrade net/loop --version
2.1.5`` / ``exo module rollback net/loop``): a UDP client in the Exo network namespace
sends datagrams (paced, >= 2,000/s) to 10.77.0.2:7 through the TAP interface
``exo-loop0`` — each one a real packet through the Linux network stack, the kernel's
TAP pump, the module router and the module's sandboxed process, and back — while the
driver is upgraded 2.1.4 → 2.1.5 (canary 10 %, +30 % every 0.5 s) and rolled back 10
times: 0 lost, 0 errors, swap < 100 ms, p99 during the upgrades <= 2x steady.

Steady windows (1.5 s) alternate with the upgrade cycles, so both see the same background
load on a shared host. The peer, in the same run, is what systemd does (``systemctl
restart``: stop, then start): the serving version's process is stopped and the same
version started again, 10 times, under the same traffic. ``restart_downtime_ms`` is the
worst time from the stop to the new process serving; datagrams that arrive meanwhile
wait in the router (they are not refused here, which is kinder than a restarted daemon
with no socket), so the cost shows as ``p99_ms_during_restart`` and the worst latency.

A datagram is lost when no answer arrives within 2 s of the end of the run; answers are
matched to requests by a sequence number in the payload. The client is a separate
process (this script with ``--client``), as a program using the interface would be: in
the kernel's process its threads would compete with the pumps for the interpreter lock.

Run: ``.venv/bin/python bench/modules_net.py [--quick]``. Needs root and /dev/net/tun.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import deferred_kernel, p99, upgrade_cycles

RESULTS = Path(__file__).resolve().parent / "results" / "modules_net.json"
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; not in Python 3.11's socket
DRIVER = Path(__file__).resolve().parent.parent / "src" / "exo" / "modules" / "drivers" / \
    "net_loop"


def build(work: Path, root: Path, version: str) -> Path:
    from exo.pkg import sdk

    project = work / f"net-loop-{version}"
    shutil.copytree(DRIVER, project, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("exopkg.toml", "main.py"):
        f = project / name
        f.write_text(f.read_text().replace('"2.1.4"', f'"{version}"'))
    return sdk.build(project, root=root)


class UdpClient:
    """A sender paced at ``rate`` and a receiver, both in the Exo network namespace."""

    def __init__(self, ns_path: str, rate: float) -> None:
        self.ns_path = ns_path
        self.period = 1.0 / rate
        self.sent_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.answered = 0
        self.wrong = 0
        self._stop = threading.Event()  # the sender's
        self._stop_recv = threading.Event()  # the receiver's, set only after the last answers
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        ready = threading.Event()
        self._recv = threading.Thread(target=self._receive, args=(ready,), daemon=True)
        self._recv.start()
        if not ready.wait(10) or self._sock is None:
            raise SystemExit("bench/modules_net.py: the client could not open its socket in "
                             "the Exo network namespace")
        self._send: threading.Thread = threading.Thread(target=self._sender, daemon=True)

    def start(self) -> None:
        self._send.start()

    def _receive(self, ready: threading.Event) -> None:
        from exo.modules import netns

        fd = os.open(self.ns_path, os.O_RDONLY)
        netns.enter(fd)
        os.close(fd)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # past net.core.rmem_max (root): a receiver descheduled for a while on a busy host
        # must not drop answers in its own socket buffer
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        s.connect(("10.77.0.2", 7))
        s.settimeout(0.2)
        self._sock = s
        ready.set()
        while not self._stop_recv.is_set():
            try:
                data = s.recv(2048)
            except TimeoutError:
                continue
            now = time.perf_counter()
            if len(data) != 16:
                self.wrong += 1
                continue
            (seq,) = struct.unpack_from("!Q", data)
            with self._lock:
                t0 = self.sent_at.pop(seq, None)
            if t0 is None:
                self.wrong += 1  # a duplicate, or a seq never sent
                continue
            self.answered += 1
            self.latencies.append((now - t0) * 1000)

    def _sender(self) -> None:
        assert self._sock is not None
        due = time.perf_counter()
        seq = 0
        while not self._stop.is_set():
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            due += self.period
            seq += 1
            with self._lock:
                self.sent_at[seq] = time.perf_counter()
            self._sock.send(struct.pack("!Q", seq) + b"exo-loop")

    @property
    def sent(self) -> int:
        return self.answered + len(self.sent_at)

    def take(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken

    def stop(self) -> int:
        """Stop sending, wait for the last answers; the number never answered."""
        self._stop.set()
        self._send.join(10)
        deadline = time.monotonic() + 2.0
        while self.sent_at and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop_recv.set()
        self._recv.join(5)
        if self._sock is not None:
            self._sock.close()
        return len(self.sent_at)


def client_main(ns_path: str, rate: float) -> int:
    """``--client``: run a UdpClient; on stdin ``take`` prints the latencies since the
    last take (a JSON list), ``stop`` prints {lost, sent, wrong} and ends."""
    client = UdpClient(ns_path, rate)
    client.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "take":
            print(json.dumps([round(x, 4) for x in client.take()]), flush=True)
        elif line.strip() == "stop":
            lost = client.stop()
            print(json.dumps({"lost": lost, "sent": client.sent, "wrong": client.wrong,
                              "latencies": client.take()}), flush=True)
            return 0
    return 1


class ClientProcess:
    def __init__(self, ns_path: str, rate: float) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, __file__, "--client", ns_path,
                                      "--rate", str(rate)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    def _ask(self, what: str) -> object:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def take(self) -> list[float]:
        got = self._ask("take")
        assert isinstance(got, list)
        return got

    def stop(self) -> dict[str, object]:
        got = self._ask("stop")
        self.proc.wait(10)
        assert isinstance(got, dict)
        return got


def stack_drops(ns_path: str) -> dict[str, int]:
    """Where Linux dropped packets in the Exo network namespace, if anywhere: the TAP's
    counters and UDP's (diagnostics for ``lost``)."""
    import subprocess

    out: dict[str, int] = {}
    try:
        link = json.loads(subprocess.run(
            ["nsenter", f"--net={ns_path}", "ip", "-s", "-j", "link", "show", "exo-loop0"],
            capture_output=True, text=True, timeout=10).stdout)[0]["stats64"]
        out["tap_rx_dropped"] = int(link["rx"]["dropped"])  # the pump's writes
        out["tap_tx_dropped"] = int(link["tx"]["dropped"])  # towards the pump
        snmp = subprocess.run(["nsenter", f"--net={ns_path}", "cat", "/proc/net/snmp"],
                              capture_output=True, text=True, timeout=10).stdout.splitlines()
        udp = [line.split()[1:] for line in snmp if line.startswith("Udp:")]
        for key, value in zip(udp[0], udp[1], strict=True):
            if key in ("InErrors", "RcvbufErrors", "NoPorts", "SndbufErrors"):
                out[f"udp_{key}"] = int(value)
    except (OSError, ValueError, KeyError, IndexError, subprocess.SubprocessError):
        pass
    return out


def restart(manager: object, name: str) -> float:
    """systemctl restart: stop the serving process, then start the same version again;
    the milliseconds until it serves."""
    svc = manager.service_named(name)  # type: ignore[attr-defined]
    with svc.op_lock:
        old = svc.instances[svc.stable]
        t0 = time.perf_counter()
        old.stop()
        fresh = manager._start(old.mod, svc)  # type: ignore[attr-defined]
        svc.instances[old.version] = fresh
        svc.set_weights({old.version: 100})
        return (time.perf_counter() - t0) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steady phase")
    parser.add_argument("--rate", type=float, default=2500.0, help="datagrams per second")
    parser.add_argument("--cycles", type=int, default=10, help="upgrade+rollback cycles")
    parser.add_argument("--client", metavar="NETNS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return client_main(args.client, args.rate)
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        print("bench/modules_net.py: needs root (CAP_NET_ADMIN) and /dev/net/tun",
              file=sys.stderr)
        return 2

    errors = 0

    def count(_: object) -> None:
        nonlocal errors
        errors += 1

    with deferred_kernel("exo-bench-modules-net-", 120) as (kernel, work):
        manager = kernel._by_key["modules"].manager  # type: ignore[attr-defined]
        for version in ("2.1.4", "2.1.5"):
            manager.load(str(build(work, kernel.root, version)))
        ns_path = manager.list()[0]["device"]["netns"]
        client = ClientProcess(ns_path, args.rate)
        time.sleep(1.0)
        client.take()
        run = upgrade_cycles(manager, client.take, "net/loop", "2.1.5", args.cycles,
                             0.5 if args.quick else 1.5, count)
        steady, during, steady_s, during_s = run.steady, run.during, run.steady_s, run.during_s
        swaps = run.swaps
        end = client.stop()
        during += cast("list[float]", end["latencies"])
        lost = int(end["lost"])  # type: ignore[call-overload]
        sent = int(end["sent"])  # type: ignore[call-overload]
        errors += int(end["wrong"])  # type: ignore[call-overload]
        # the peer, under the same traffic from a fresh client
        client = ClientProcess(ns_path, args.rate)
        time.sleep(1.0)
        client.take()
        downtimes = []
        for _ in range(args.cycles):
            downtimes.append(restart(manager, "net/loop"))
            time.sleep(0.5)
        restarting = client.take()
        end = client.stop()
        restarting += cast("list[float]", end["latencies"])
        restart_lost = int(end["lost"])  # type: ignore[call-overload]
        (row,) = manager.list()
        errors += int(row["device"]["dropped"])
        drops = stack_drops(ns_path)
        manager.unload("net/loop")
    result = {"swap_ms": round(max(swaps), 3), "requests": sent, "lost": lost,
              "errors": errors, "p99_ms_during_upgrade": round(p99(during), 3),
              "p99_ms_steady": round(p99(steady), 3),
              "peer": "restart (stop, then start the same version: systemctl restart)",
              "restart_downtime_ms": round(max(downtimes), 1),
              "lost_during_restart": restart_lost,
              "p99_ms_during_restart": round(p99(restarting), 3),
              "max_ms_during_restart": round(max(restarting, default=0.0), 3),
              "max_ms_during_upgrade": round(max(during, default=0.0), 3),
              "rate_per_s": round(len(steady) / steady_s), "stack_drops": drops}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    print(f"rate during upgrades: {len(during) / during_s:.0f}/s over {during_s:.1f} s",
          file=sys.stderr)
    ok = (sent > 0 and len(during) / during_s >= 2000 and lost == 0 and errors == 0
          and result["swap_ms"] < 100
          and result["p99_ms_during_upgrade"] <= 2 * result["p99_ms_steady"])
    print("targets met" if ok else "TARGETS MISSED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
