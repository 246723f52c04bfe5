"""Benchmark: hot module upgrades under load (writes bench/results/modules.json).

Claims under test (docs/modules.md, issue 13): a client sends requests continuously
(>= 2,000/s, paced) through a request/response module while it is upgraded (canary
10 %, +30 % every 0.5 s: ``exo module upgrade``'s defaults) and rolled back 10 times:
0 lost, 0 errors, swap < 100 ms, p99 latency during the upgrades <= 2x the steady p99.
The seeds' alternative is a reboot.

* ``swap_ms``: the worst of the 20 swaps (10 upgrades, 10 rollbacks): from the routing
  change that leaves the outgoing version with no traffic to its last in-flight answer
  (it is stopped after that, off the request path);
* ``requests``: every request sent, in both phases; ``lost``: those with no answer, or
  a wrong one; ``errors``: those the module answered with an error;
* ``p99_ms_steady``: the requests' p99 in 1.5 s windows between the cycles (same client,
  same rate; interleaved so both phases see the same load on a shared host);
  ``p99_ms_during_upgrade``: their p99 while the 10 upgrade/rollback cycles run.

The kernel is booted in this process (as ``exo boot`` does, without the shell); the
client is a thread of it calling the module manager, each request a round trip over the
module's Fusion Ring channel to its sandboxed process.

Run: ``.venv/bin/python bench/modules.py [--quick]`` (quick: a shorter steady phase).
The JSON layout is a contract.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.modules.modlib import build

from benchlib import deferred_kernel, p99, upgrade_cycles

RESULTS = Path(__file__).resolve().parent / "results" / "modules.json"


class PacedClient:
    """Sends one request every 1/rate s (catching up when late), timing each answer."""

    def __init__(self, manager: object, rate: float) -> None:
        self.manager = manager
        self.period = 1.0 / rate
        self.latencies: list[float] = []
        self.sent = self.lost = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from exo.modules.manager import RequestFailed

        request = self.manager.request  # type: ignore[attr-defined]
        due = time.perf_counter()
        i = 0
        while not self._stop.is_set():
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            due += self.period
            i += 1
            body = b"%d" % i
            t0 = time.perf_counter()
            self.sent += 1
            try:
                reply = request("echo", body)
            except RequestFailed:
                self.errors += 1
                continue
            except Exception:
                self.lost += 1
                continue
            self.latencies.append((time.perf_counter() - t0) * 1000)
            if reply.partition(b":")[2] != body:
                self.lost += 1

    def take(self) -> list[float]:
        """The latencies so far, and start a new list."""
        taken, self.latencies = self.latencies, []
        return taken

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter steady phase")
    parser.add_argument("--rate", type=float, default=2500.0, help="requests per second")
    parser.add_argument("--cycles", type=int, default=10, help="upgrade+rollback cycles")
    args = parser.parse_args()

    def refuse(why: object) -> None:
        raise SystemExit(f"upgrade rolled back: {why}")

    with deferred_kernel("exo-bench-modules-", 120) as (kernel, work):
        manager = kernel._by_key["modules"].manager  # type: ignore[attr-defined]
        for version in ("1.0", "2.0"):
            manager.load(str(build(work, kernel.root, version)))
        client = PacedClient(manager, args.rate)
        client.start()
        time.sleep(1.0)  # warm-up, not counted in either phase
        client.take()
        run = upgrade_cycles(manager, client.take, "echo", "2.0", args.cycles,
                             0.5 if args.quick else 1.5, refuse)
        client.stop()
        manager.unload("echo")
    steady, during, steady_s, during_s = run.steady, run.during, run.steady_s, run.during_s
    swaps = run.swaps
    result = {"swap_ms": round(max(swaps), 3), "requests": client.sent, "lost": client.lost,
              "errors": client.errors, "p99_ms_during_upgrade": round(p99(during), 3),
              "p99_ms_steady": round(p99(steady), 3)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    print(f"max latency: steady {max(steady):.2f} ms, during upgrades {max(during):.2f} ms",
          file=sys.stderr)
    print(f"rate: steady {len(steady) / steady_s:.0f}/s, during upgrades "
          f"{len(during) / during_s:.0f}/s over {during_s:.1f} s "
          f"({args.cycles} upgrades + {args.cycles} rollbacks)", file=sys.stderr)
    ok = (result["lost"] == 0 and result["errors"] == 0 and result["swap_ms"] < 100
          and result["p99_ms_during_upgrade"] <= 2 * result["p99_ms_steady"])
    print("targets met" if ok else "TARGETS MISSED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
