"""Record the three workloads whose traces bench/sched.py replays for prediction accuracy.

Each workload is a program written for this benchmark, run for real as Exo tasks on the
predictive scheduler (``Scheduler(trace=True)``), which records every burst it measures:
(task name, nanoseconds from being switched in to switching out). The recorded bursts are
real CPU time of real Python code on this machine; what is scripted is the input (the
keystrokes of the shell session, the client's request times, the agents' request mix),
generated from a fixed seed. They are not recordings of people or of production servers:
they stand for the three kinds of load the issue names.

* ``shell``: an interactive session. A line editor task wakes per keystroke (typed every
  2–8 ms, sped-up human typing) and redraws the line; on Enter, a command task parses the
  line (shlex), runs the command — listing a directory, reading and word-counting a file,
  or formatting a table (each a different amount of work) — and a pager task renders the
  output in screenfuls.
* ``server_batch``: an IPC server task answering requests that a client thread sends over
  a Fusion Ring (the task blocks in ``recv``: no spinning), a batch task compressing
  data with zlib in 256 KiB steps (~5 ms each), and a logger task formatting the
  server's log lines.
* ``agents``: four agent tasks woken by bursts of requests (a burst of 5–20 requests,
  then quiet): each request is an inference stand-in (hashing 40 MiB, ~25 ms here) or, one
  time in twenty, a quick lookup; a heartbeat task and a router task with short bursts.
  The lookups are drawn at random inside the agents' own tasks, so no predictor can
  foresee them: they cap the agents' accuracy at about 95 %.

Run: ``.venv/bin/python bench/traces/record.py`` (about 10 seconds); writes
``bench/traces/{shell,server_batch,agents}.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shlex
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from exo.sched.scheduler import Scheduler

HERE = Path(__file__).resolve().parent
SEED = 14


def shell(sched: Scheduler, rng: random.Random) -> None:
    from exo.sched.scheduler import Event

    text = "\n".join(" ".join(rng.choice(("alpha", "beta", "gamma", "delta", "exo", "ring"))
                              for _ in range(12)) for _ in range(400))
    commands = ["ls /usr/lib", "wc notes.txt", "ps aux", "ls /usr/lib/python3",
                "cat notes.txt", "echo hello world"] * 6
    rng.shuffle(commands)
    line_ready = Event()
    output_ready = Event()
    state: dict[str, Any] = {"line": "", "out": [], "done": False}

    def editor() -> None:
        for cmd in commands:
            buf = ""
            for ch in cmd:
                sched.sleep(rng.uniform(0.002, 0.008))
                buf += ch
                _ = f"\r$ {buf}\x1b[K"  # redraw the line
            state["line"] = buf
            line_ready.set()
            sched.sleep(0.01)
        state["done"] = True
        line_ready.set()

    def executor() -> None:
        while True:
            line_ready.wait()
            line_ready.clear()
            if state["done"]:
                break
            argv = shlex.split(state["line"])
            if argv[0] == "ls":
                names = sorted(os.listdir(argv[1]) if os.path.isdir(argv[1]) else [])
                out = [f"{n:<40}" for n in names]
            elif argv[0] in ("wc", "cat"):
                words = text.split()
                out = [f"{len(text.splitlines())} {len(words)} {len(text)}"]
                if argv[0] == "cat":
                    out = text.splitlines()
            elif argv[0] == "ps":
                out = [f"{pid:>6} {rng.random():.3f} task-{pid}" for pid in range(300)]
            else:
                out = [" ".join(argv[1:])]
            state["out"] = out
            output_ready.set()
        state["out"] = None
        output_ready.set()

    def pager() -> None:
        while True:
            output_ready.wait()
            output_ready.clear()
            out = state["out"]
            if out is None:
                break
            for i in range(0, len(out), 40):
                "\n".join(line.rstrip() for line in out[i:i + 40])
                sched.yield_()

    for fn in (editor, executor, pager):
        sched.spawn(fn, name=fn.__name__)


def server_batch(sched: Scheduler, rng: random.Random) -> None:
    from exo.ipc import FusionRing
    from exo.mm import SharedPool

    pool = SharedPool.create(1 << 22)
    req_p, req_c = FusionRing.pair(capacity=64, pool=pool)
    log: list[str] = []
    requests = 400
    delays = [rng.uniform(0.001, 0.006) for _ in range(requests)]

    def client() -> None:
        for i, d in enumerate(delays):
            time.sleep(d)
            req_p.send(json.dumps({"op": "get", "key": i}).encode())

    def server() -> None:
        store = {i: f"value-{i}" * 4 for i in range(1000)}
        for _ in range(requests):
            msg = json.loads(bytes(sched.recv(req_c, timeout=10)))
            reply = json.dumps({"ok": True, "value": store[msg["key"] % 1000]})
            log.append(f"served {msg['key']} {len(reply)}")

    def batch() -> None:
        data = bytes(rng.getrandbits(8) for _ in range(1 << 16)) * 4
        for _ in range(200):
            zlib.compress(data, 6)
            sched.yield_()

    def logger() -> None:
        while not (server_task.done and not log):
            if log:
                lines = [f"{time.time():.6f} {line}" for line in log[:]]
                log.clear()
                "\n".join(lines)
            sched.sleep(0.005)

    thread = threading.Thread(target=client, daemon=True)
    server_task = sched.spawn(server, name="server")
    sched.spawn(batch, name="batch")
    sched.spawn(logger, name="logger")
    thread.start()
    sched.run()
    thread.join()
    req_p.close()
    req_c.close()
    pool.close()


def agents(sched: Scheduler, rng: random.Random) -> None:
    blob = os.urandom(1 << 20)
    done = [False]

    def agent(name: str, requests: int) -> None:
        served = 0
        while served < requests:
            burst = rng.randint(5, 20)
            for _ in range(burst):
                if rng.random() < 0.05:
                    hashlib.sha256(blob[:4096]).hexdigest()      # a quick lookup
                else:
                    for _ in range(40):                          # an inference stand-in
                        hashlib.sha256(blob).digest()
                served += 1
                sched.yield_()
            sched.sleep(rng.uniform(0.02, 0.08))                 # quiet between bursts

    def heartbeat() -> None:
        while not done[0]:
            _ = {"t": time.time(), "agents": 4}
            sched.sleep(0.01)

    def router() -> None:
        while not done[0]:
            for _ in range(20):
                rng.choice(("ai-core", "ai-res", "ai-user", "ai-sec"))
            sched.sleep(0.003)

    tasks = [sched.spawn(agent, f"agent{i}", 40, name=f"agent{i}") for i in range(4)]

    def watcher() -> None:
        for t in tasks:
            sched.join(t)
        done[0] = True

    sched.spawn(heartbeat, name="heartbeat")
    sched.spawn(router, name="router")
    sched.spawn(watcher, name="watcher")


def record(name: str) -> dict[str, Any]:
    rng = random.Random(SEED)
    sched = Scheduler(name, trace=True)
    {"shell": shell, "server_batch": server_batch, "agents": agents}[name](sched, rng)
    sched.run()
    assert sched.trace is not None
    bursts: dict[str, list[int]] = {}
    for task, ns in sched.trace:
        bursts.setdefault(task, []).append(ns)
    return {
        "workload": name,
        "synthetic": False,
        "how": ("recorded by bench/traces/record.py: a scripted workload (fixed seed) run "
                "for real as Exo tasks on the predictive scheduler; each entry is a burst "
                "the scheduler measured (ns). Scripted input, real execution: see the "
                "script's docstring."),
        "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "live_accuracy": sched.accuracy.ratio,
        "bursts": bursts,
    }


def main() -> None:
    for name in ("shell", "server_batch", "agents"):
        t0 = time.perf_counter()
        trace = record(name)
        n = sum(len(b) for b in trace["bursts"].values())
        (HERE / f"{name}.json").write_text(json.dumps(trace) + "\n")
        print(f"{name}: {n} bursts, {len(trace['bursts'])} tasks, live accuracy "
              f"{trace['live_accuracy']:.1%}, {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
