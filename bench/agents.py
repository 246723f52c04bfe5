"""Benchmark: the AI agents' cost and effect (writes bench/results/agents.json).

Claims under test (issue 15): the agents start in the DEFERRED phase and do not slow the
prompt; a question to AI-Res over its encrypted ``agent://`` channel costs little next to
computing the answer in place; a power profile has a measured effect. In one run:

* ``boot``: ``exo boot --quiet`` to the output of its first command, interleaved with the
  same boot of a copy of ``src/`` whose boot table has the agents' row as it was before
  (``NotBuilt``, reported SKIP): the peer differs by that one row. Also the DEFERRED
  phase's own time (``--json-boot``) and the kernel's RSS once DEFERRED is done.
* ``query``: a sandboxed app holding ``agent://ai-res=SEND`` asks ``sys.memory_usage``
  N times (kernel router → AI-Res process → kernel snapshot → back, sealed both ways);
  peers in the same app: the null syscall (``getpid``) and AI-Res's own code run in place
  (psutil snapshot + wording, no agent). Plus the connection set-up (hybrid KEM).
* ``crypto``: seal+open of a 1 KiB frame, the hybrid X25519+ML-KEM-768 handshake against
  X25519 alone.
* ``power``: a busy Exo process (``while True: pass``); the CPU seconds the Exo tree gets
  over 1 s under balanced, then power-saver, then balanced again.

Run: ``.venv/bin/python bench/agents.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from benchlib import boot_to_first_output, deferred_kernel, rss_mb

RESULTS = Path(__file__).resolve().parent / "results" / "agents.json"
SRC = Path(__file__).resolve().parents[1] / "src"
PY = sys.executable
AGENTS_ROW = ('    Row("agents", "AI agents started", DEFERRED, "exo.agents.subsystem:Agents",\n'
              '        requires=("caps", "processes", "syscalls")),\n')
BEFORE_ROW = '    Row("agents", "AI agents", DEFERRED, NotBuilt("AI agents not built yet")),\n'


def _copy_src(tmp: Path, case: str) -> Path:
    """A copy of src/ (both cases from the same file system), for ``before`` with the
    agents' row as it was before this work."""
    dest = tmp / case / "src"
    shutil.copytree(SRC, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    if case == "before":
        table = dest / "exo" / "kernel" / "boottable.py"
        text = table.read_text()
        if AGENTS_ROW not in text:
            raise SystemExit("bench/agents.py: the boot table's agents row changed; "
                             "update AGENTS_ROW")
        text = text.replace(AGENTS_ROW, BEFORE_ROW)
        # the table imports NotBuilt only while a row uses it
        text = text.replace("from exo.kernel.subsystem import Row\n",
                            "from exo.kernel.subsystem import NotBuilt, Row\n")
        table.write_text(text)
    subprocess.run([PY, "-m", "compileall", "-q", str(dest)], check=True)
    return dest


def _boot(env: dict[str, str]) -> tuple[float, float]:
    """(ms to the first command's output, kernel RSS MB after DEFERRED finished)."""
    ms, proc = boot_to_first_output([PY, "-m", "exo", "boot", "--quiet"], env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"sleep 1\necho done\n")
    proc.stdin.flush()
    proc.stdout.readline()
    rss = rss_mb(proc.pid)
    proc.stdin.close()
    proc.wait(timeout=60)
    return ms, rss


def _deferred_ms(env: dict[str, str]) -> tuple[float, float]:
    out = subprocess.run([PY, "-m", "exo", "boot", "--json-boot"], env=env,
                         capture_output=True, check=True).stdout
    data = json.loads(out)
    step = next((s for s in data["steps"] if s["name"].startswith("AI agents")), None)
    return float(data["phases"]["DEFERRED"]), float(step["ms"]) if step else 0.0


def bench_boot(runs: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="exo-bench-agents-"))
    try:
        envs = {}
        for case in ("after", "before"):
            env = dict(os.environ, EXO_ROOT=str(tmp / f"root-{case}"),
                       PYTHONPATH=str(_copy_src(tmp, case)))
            env.pop("EXO_BOOTSTRAP_FD", None)
            _boot(env)  # first boot creates the tree
            envs[case] = env
        samples: dict[str, list[float]] = {f"{k}_{c}": [] for k in
                                           ("boot_ms", "rss_mb", "deferred_ms", "step_ms")
                                           for c in ("after", "before")}
        for i in range(runs):
            order = list(envs.items())
            for case, env in order if i % 2 else order[::-1]:  # alternate who goes first
                ms, rss = _boot(env)
                samples[f"boot_ms_{case}"].append(ms)
                samples[f"rss_mb_{case}"].append(rss)
                deferred, step = _deferred_ms(env)
                samples[f"deferred_ms_{case}"].append(deferred)
                samples[f"step_ms_{case}"].append(step)
        med = {k: round(statistics.median(v), 2) for k, v in samples.items()}
        ratios = [a / b for a, b in zip(samples["boot_ms_after"], samples["boot_ms_before"],
                                        strict=True)]
        return {"median": med, "boot_after_over_before_median":
                round(statistics.median(ratios), 3), "runs": runs,
                "samples": {k: [round(x, 2) for x in v] for k, v in samples.items()}}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


APP = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from exo_std._kernel import call
    from exo_std.ai import Agent
    from exo.agents import res
    n = int(sys.argv[1])
    out = {}
    t = time.perf_counter(); a = Agent.connect("ai-res")
    out["first_connect_ms"] = (time.perf_counter() - t) * 1e3  # starts the agent
    t = time.perf_counter(); b = Agent.connect("ai-res")
    out["connect_ms"] = (time.perf_counter() - t) * 1e3  # hybrid KEM handshake, relayed
    b.close()
    a.query("sys.memory_usage")
    m = res.ResourceMonitor(None, Path("/"))
    m.sample()
    for name, fn in (
        ("agent_query_ms", lambda: a.query("sys.memory_usage")),
        ("inplace_ms", lambda: res.answer_text("sys.memory_usage",
                                               m.snapshot())),
        ("null_syscall_ms", lambda: call("getpid")),
    ):
        xs = []
        for _ in range(n):
            t = time.perf_counter(); fn(); xs.append((time.perf_counter() - t) * 1e3)
        out[name] = sorted(xs)
    print(json.dumps(out))
""")


def bench_query(n: int) -> dict[str, Any]:
    from exo.kernel.manifest import parse_grant

    with deferred_kernel("exo-bench-agents-") as (k, _):
        null = os.open(os.devnull, os.O_RDONLY)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = k.processes.spawn([PY, "-c", APP, str(n)],
                                     [parse_grant("agent://ai-res=SEND")],
                                     stdio=(null, out.fileno(), err.fileno()))
            os.close(null)
            status = k.processes.wait(proc.pid, timeout=600)
            out.seek(0)
            err.seek(0)
            if status != 0:
                raise RuntimeError(err.read().decode()[-2000:])
            data = json.loads(out.read())
        result: dict[str, Any] = {"connect_ms": round(data.pop("connect_ms"), 2),
                                  "first_connect_ms": round(data.pop("first_connect_ms"), 2),
                                  "n": n}
        for name, xs in data.items():
            result[name] = {"p50": round(statistics.median(xs), 4),
                            "p95": round(xs[int(0.95 * (len(xs) - 1))], 4)}
        return result


def bench_crypto(n: int) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import x25519

    from exo.agents.core.secure import SecureSession

    def handshake() -> None:
        c, s = SecureSession("client"), SecureSession("server")
        c.finish(s.accept(c.hello()))

    def x25519_only() -> None:
        a, b = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
        a.exchange(b.public_key())
        b.exchange(a.public_key())

    c = SecureSession("client", max_messages=10**9)
    s = SecureSession("server", max_messages=10**9)
    c.finish(s.accept(c.hello()))
    payload = os.urandom(1024)

    def seal_open() -> None:
        s.open(c.seal(payload))

    out: dict[str, Any] = {}
    for name, fn, reps in (("hybrid_handshake_ms", handshake, max(20, n // 10)),
                           ("x25519_exchange_ms", x25519_only, max(20, n // 10)),
                           ("seal_open_1k_us", seal_open, n * 10)):
        xs = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            xs.append(time.perf_counter() - t)
        scale = 1e6 if name.endswith("_us") else 1e3
        out[name] = round(statistics.median(xs) * scale, 3)
    return out


def bench_power() -> dict[str, Any]:
    from exo.agents.subsystem import running

    with deferred_kernel("exo-bench-agents-") as (k, _):
        agents = running(k.core.boot_id)
        assert agents is not None and agents.power is not None
        null = os.open(os.devnull, os.O_RDWR)
        proc = k.processes.spawn(["/usr/bin/python3", "-c", "while True: pass"], [],
                                 stdio=(null, null, null))
        os.close(null)
        time.sleep(0.5)
        out: dict[str, Any] = {}
        for profile in ("balanced", "power-saver", "balanced"):
            report = agents.power.apply(profile)
            time.sleep(0.3)
            cpu = agents.power.measure(1.0)
            key = f"{profile}_cpu_s" if f"{profile}_cpu_s" not in out else \
                f"{profile}_again_cpu_s"
            out[key] = round(cpu or 0.0, 3)
            out.setdefault("changes", {})[profile] = [
                {"path": c.path, "before": c.before, "after": c.after} for c in report.changes]
            out["governor"] = report.governor
        k.processes.kill(proc.pid, 9)
        k.processes.wait(proc.pid, timeout=30)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    args = ap.parse_args()
    runs, n = (5, 100) if args.quick else (15, 500)
    result: dict[str, Any] = {
        "boot": bench_boot(runs),
        "query": bench_query(n),
        "crypto": bench_crypto(n),
        "power": bench_power(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    b, q, c, p = result["boot"]["median"], result["query"], result["crypto"], result["power"]
    t = Table("measure", "agents", "peer (same run)", title="AI agents")
    t.add_row("boot to first command (ms)", f"{b['boot_ms_after']:.1f}",
              f"{b['boot_ms_before']:.1f} without the agents' row "
              f"(ratio {result['boot']['boot_after_over_before_median']:.3f})")
    t.add_row("DEFERRED phase (ms)", f"{b['deferred_ms_after']:.1f}",
              f"{b['deferred_ms_before']:.1f}")
    t.add_row("the agents' step (ms)", f"{b['step_ms_after']:.1f}", "")
    t.add_row("kernel RSS after DEFERRED (MB)", f"{b['rss_mb_after']:.1f}",
              f"{b['rss_mb_before']:.1f}")
    t.add_row("query sys.memory_usage p50/p95 (ms)",
              f"{q['agent_query_ms']['p50']:.3f} / {q['agent_query_ms']['p95']:.3f}",
              f"in place {q['inplace_ms']['p50']:.3f} / {q['inplace_ms']['p95']:.3f}; "
              f"null syscall {q['null_syscall_ms']['p50']:.3f}")
    t.add_row("connect: hybrid KEM handshake (ms)", f"{q['connect_ms']:.1f}",
              f"first connection, starting the agent: {q['first_connect_ms']:.1f}")
    t.add_row("handshake X25519+ML-KEM-768 (ms)", f"{c['hybrid_handshake_ms']:.3f}",
              f"X25519 alone {c['x25519_exchange_ms']:.3f}")
    t.add_row("seal+open 1 KiB (µs)", f"{c['seal_open_1k_us']:.2f}", "")
    t.add_row("busy Exo process, CPU s per 1 s", f"power-saver {p['power-saver_cpu_s']:.2f}",
              f"balanced {p['balanced_cpu_s']:.2f}, again {p['balanced_again_cpu_s']:.2f}")
    Console().print(t)
    print(p["governor"])
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
