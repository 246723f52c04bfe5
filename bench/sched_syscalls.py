"""Serving syscalls on OS threads (today) or on Exo tasks: measured, same run.

The kernel serves each process's bootstrap channel on its own thread. This script puts
the alternative beside it on the same machinery: N real client processes, each holding
one end of a Fusion Ring ``Channel`` (``exo.ipc``), call a null syscall in a loop (the
request exo_std sends for ``getpid``, 37 bytes; the reply built with msgspec as the
server does); the serving side, in this process, is either

* ``threads``: one OS thread per channel, blocked in ``Channel.recv`` (the ring's own
  adaptive spin then futex wait, GIL released), as ``exo.kernel.syscalls.server``;
* ``tasks``: one Exo task per channel on one ``exo.sched.Scheduler`` thread, blocked in
  ``Scheduler.recv`` (a ring cannot be put in an epoll set, so the scheduler hands each
  waiting ring to a watcher thread that does that same futex wait and posts the message
  back through the scheduler's eventfd).

Reported for N = 1, 16 and 100 (rounds interleaved): calls/s summed over the clients,
the median round trip seen by the clients, and the serving side's OS threads and RSS
while serving. The real server also answers getpid without the GIL in C
(``answer_or_recv``), which neither side uses here: this compares the waiting, not that
fast path. Writes bench/results/sched_syscalls.json. ``--quick``: 2 s windows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from exo.ipc import Channel
from exo.sched.scheduler import Scheduler

RESULTS = Path(__file__).resolve().parent / "results" / "sched_syscalls.json"
SRC = Path(__file__).resolve().parents[1] / "src"
CLIENT = r"""
import os, sys, time
from exo.ipc import Channel
fds = [int(x) for x in sys.argv[1].split(",")]
seconds = float(sys.argv[2])
ch = Channel.attach(fds)
ch.send(b"ready"); ch.recv()              # the start signal: every client at once
n, rtts, i = 0, [], 0
end = time.perf_counter() + seconds
while True:
    t0 = time.perf_counter_ns()
    ch.send(b'{"id":%d,"op":"getpid","args":{}}' % i)
    ch.recv()
    t1 = time.perf_counter_ns()
    i += 1
    if i % 16 == 0:
        rtts.append(t1 - t0)
        if time.perf_counter() >= end:
            break
print(i, sorted(rtts)[len(rtts) // 2])
ch.close()
"""

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def _answer(data: Any) -> bytes:
    msg = _decode(bytes(data))
    return _encode({"id": msg["id"], "ok": True, "result": 2})


def _threads_serve(ch: Channel) -> None:
    try:
        while True:
            data, _ = ch.recv()
            ch.send(_answer(data))
    except Exception:
        return  # the client closed: done


def _task_serve(sched: Scheduler, ch: Channel) -> None:
    try:
        while True:
            data, _ = sched.recv(ch)
            ch.send(_answer(data))
    except Exception:
        return


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _threads_now() -> int:
    return len(os.listdir("/proc/self/task"))


def one(mode: str, n: int, seconds: float) -> dict[str, Any]:
    base_threads, base_rss = _threads_now(), _rss()
    ends = [Channel.pair(name=f"c{i}") for i in range(n)]
    env = dict(os.environ, PYTHONPATH=str(SRC))
    clients = []
    for _, theirs in ends:
        clients.append(subprocess.Popen(
            [sys.executable, "-c", CLIENT, ",".join(map(str, theirs.fds)), str(seconds)],
            pass_fds=theirs.fds, stdout=subprocess.PIPE, text=True, env=env))
        theirs.detach()
    mine = [m for m, _ in ends]
    for ch in mine:  # every client attached
        ch.recv(timeout=60)
    sched: Scheduler | None = None
    loop: threading.Thread | None = None
    servers: list[threading.Thread] = []
    if mode == "threads":
        servers = [threading.Thread(target=_threads_serve, args=(ch,), daemon=True)
                   for ch in mine]
        for t in servers:
            t.start()
    else:
        sched = Scheduler("syscalls")
        for ch in mine:
            sched.spawn(_task_serve, sched, ch)
        loop = threading.Thread(target=sched.run, kwargs={"forever": True}, daemon=True)
        loop.start()
    for ch in mine:
        ch.send(b"go")
    time.sleep(seconds / 2)
    threads, rss = _threads_now() - base_threads, _rss() - base_rss
    outs = [c.communicate(timeout=seconds + 60)[0].split() for c in clients]
    calls = sum(int(o[0]) for o in outs)
    rtt = statistics.median(int(o[1]) for o in outs) / 1000
    # The clients closed their ends: every server returns; the scheduler's ring watchers
    # exit once idle. Only then are the rings unmapped (a watcher still inside recv on a
    # closed ring would read memory the next round's rings may reuse).
    for t in servers:
        t.join(5)
    if sched is not None and loop is not None:
        deadline = time.monotonic() + 10
        while len(sched.tasks) and time.monotonic() < deadline:
            time.sleep(0.05)
        sched.stop()
        loop.join(5)
    deadline = time.monotonic() + 10
    while _threads_now() > base_threads and time.monotonic() < deadline:
        time.sleep(0.05)
    if sched is not None:
        sched.close()
    for ch in mine:
        ch.close()
    return {"calls_per_s": round(calls / seconds), "rtt_median_us": round(rtt, 2),
            "serving_threads": threads, "serving_rss_delta_mb": round(rss / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 s windows, 1 round")
    ns = parser.parse_args()
    seconds, rounds = (2.0, 1) if ns.quick else (4.0, 3)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in range(rounds):
        for n in (1, 16, 100):
            order = ("threads", "tasks") if r % 2 == 0 else ("tasks", "threads")
            for mode in order:
                res = one(mode, n, seconds)
                runs.setdefault(str(n), {}).setdefault(mode, []).append(res)
                print(f"round {r + 1} n={n} {mode}: {res}", flush=True)
    summary: dict[str, Any] = {}
    for n, modes in runs.items():
        summary[n] = {mode: {k: statistics.median(x[k] for x in rs) for k in rs[0]}
                      for mode, rs in modes.items()}
    report = {"processes": summary, "runs": runs, "seconds": seconds, "rounds": rounds,
              "loadavg_end": os.getloadavg(), "cpus": os.cpu_count(),
              "how": "N client processes x null syscall over Fusion Ring channels; serving "
                     "side one thread per channel vs one Exo task per channel on one "
                     "scheduler thread; medians over rounds, modes interleaved"}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
