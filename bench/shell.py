"""Benchmark: time from Enter to output in the Exo shell against bash (writes
bench/results/shell.json).

Claims under test (issue 9): ``ls`` answers within 30 ms; ``cat`` of a 1 MB file through
a pipe into ``wc -l``, and ``sort`` of 100k lines, within 1.5 × bash running the same host
programs unsandboxed, in the same run.

How it measures: one ``exo boot --quiet`` and one ``bash`` stay up, each reading commands
from a pipe, in the same working directory (the Exo root's ``/home/root``, so both read
the same files). For each sample a command line is written followed by ``echo <mark>``,
and the time runs from the write (Enter) to reading the mark, so it includes the
command's whole output. The cases are interleaved, shell by shell, on this noisy machine.
Each sample starts on a quiet machine, ``SETTLE`` s after the previous one's output, as a
person's next Enter does: what a shell leaves to do after its output (the Exo kernel's
reclaims and the spares and cgroups it makes ahead, bash's children's teardown) is done
by then, instead of landing in the next shell's sample.

* ``ls``: the shell's ``ls`` of a directory of 50 files (a builtin in the Exo shell).
* ``cat_wc``: ``cat big.txt | wc -l`` as typed (Exo: builtins in threads), and
  ``cat_wc_powerbox``: ``/bin/cat big.txt | /usr/bin/wc -l`` — both stages host programs,
  each a sandboxed Exo process granted what its command line names.
* ``sort``: ``sort lines.txt > sorted.txt`` — the host's ``sort`` through the powerbox.
  bash's programs run in the locale the kernel gives Exo programs (``LANG=C.UTF-8``, no
  ``LC_*``), so that both sort the same way (``LC_ALL=C`` would compare bytes, ~1.6×
  faster: a different sort).
* ``true_powerbox``: ``/bin/true`` through the powerbox: the floor every sandboxed
  program pays (spawning its sandbox), whatever it does; ``true_run``: the same started
  with ``run`` and no capability at all — the kernel's spawn alone, without the
  powerbox's grants (bash's column for it is plain ``/bin/true`` too).

Each case also runs in a second Exo shell booted with ``EXO_ZYGOTE=0``
(``exo_no_zygote``): the powerbox's commands then get a whole sandbox each instead of a
fork of the session's zygote (docs/sandbox.md, "The zygote"), the before and after in
one run.

``cpu_ms_per_command`` (each case, each shell): the CPU a command cost, from the
processes' own accounting (psutil), split into the shell's own process (``own``: for
Exo the kernel, which runs the shell) and everything below it (``below``: for Exo the
zygote, its spares, the sandboxes and the commands; for bash its programs), for ``exo``
and ``bash`` (without the zygote, bubblewrap's monitor may end before its init reaped
the command, whose CPU then reaches no process's children's times). The resolution is
the kernel's clock tick (10 ms) summed over the runs. On two CPUs a pipeline whose
parts need more CPU than its wall time allows is CPU-bound.

``spawn_breakdown`` (same run, in this process, interleaved): where a sandboxed
program's start goes, layer by layer, each the median of ``/bin/true`` started
``runs`` times: ``fork_exec`` (subprocess, no sandbox: the floor), ``sh_trampoline``
(the ``/bin/sh`` that puts a sandbox in its cgroup), ``bwrap_pid`` (bubblewrap with a pid
namespace and a minimal root), ``bwrap_namespaces`` (+ ipc, uts, cgroup, net: the set a
process without network gets), ``sandbox_spawn`` (``exo.sandbox.spawn`` + wait: the
whole launcher — mount plan, cgroup, trampoline, bubblewrap with the real plan, seccomp,
exo-stage2, Landlock — without the kernel), ``kernel_run`` (``KernelApi.run`` under a
session with one ``storage://`` grant: capability space, revocable FUSE export,
bootstrap channel, syscall thread, reaping), ``kernel_run_zygote`` (the same, started
in a spare of the session's zygote, as the powerbox starts its commands).

Run: ``.venv/bin/python bench/shell.py [--runs N] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import enter_to_mark

RESULTS = Path(__file__).resolve().parent / "results" / "shell.json"
EXO = str(Path(sys.executable).with_name("exo"))
CASES = {
    "ls": "ls files",
    "cat_wc": "cat big.txt | wc -l",
    "cat_wc_powerbox": "/bin/cat big.txt | /usr/bin/wc -l",
    "sort": "sort lines.txt > sorted.txt",
    "true_powerbox": "/bin/true",
    "true_run": "run -- /bin/true",
}


#: Seconds between a sample's output and the next sample's Enter (module docstring).
SETTLE = 0.05


class Interpreter:
    """A shell reading commands from a pipe; ``time(line)`` is Enter → output."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=cwd)
        self.n = 0

    def time(self, line: str) -> float:
        time.sleep(SETTLE)
        self.n += 1
        mark = f"__mark_{self.n}__"
        return enter_to_mark(self.proc, f"{line}\necho {mark}\n", mark.encode())[0]

    def cpu_ms(self) -> tuple[float, float]:
        """CPU used so far (ms): by the shell's own process (the Exo kernel runs its shell
        in-process), and by everything below it — the live descendants' own and reaped
        children's times, plus the children this process reaped (the zygote reaps its
        commands, bubblewrap its sandbox)."""
        import psutil

        me = psutil.Process(self.proc.pid)
        t = me.cpu_times()
        below = t.children_user + t.children_system
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                below += c.user + c.system + c.children_user + c.children_system
        return (t.user + t.system) * 1000, below * 1000

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _prepare(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    rng = random.Random(9)
    with open(home / "big.txt", "w") as f:  # 1 MB of short lines
        while f.tell() < 1 << 20:
            f.write(f"{rng.random():.12f} some text for the line\n")
    with open(home / "lines.txt", "w") as f:
        f.writelines(f"{rng.randrange(10**9):09d} {rng.random():.6f}\n" for _ in range(100_000))
    (home / "files").mkdir(exist_ok=True)
    for i in range(50):
        (home / "files" / f"file-{i:02d}.txt").write_text("x\n")


def _median_ms(fn: Any, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(samples), 2)


def spawn_breakdown(runs: int) -> dict[str, float]:
    """The layers of a sandboxed start, each measured alone (see the module docstring)."""
    from exo.kernel.config import KernelConfig
    from exo.kernel.kernel import Kernel
    from exo.kernel.manifest import parse_grant
    from exo.sandbox import NetPolicy, SandboxSpec, spawn
    from exo.sandbox.zygote import prefer

    minimal = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin",
               "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
               "--proc", "/proc", "--tmpfs", "/dev", "--dev-bind", "/dev/null", "/dev/null",
               "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    more = ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup", "--unshare-net"]
    devnull = subprocess.DEVNULL
    root = Path(tempfile.mkdtemp(prefix="exo-bench-spawn-"))
    kernel = Kernel(KernelConfig(root=root / "root"), ephemeral=True)
    kernel.boot()
    null = os.open(os.devnull, os.O_RDWR)
    try:
        (kernel.root / "home" / "root").mkdir(parents=True, exist_ok=True)
        api = kernel.api
        session = api.console_session().token
        grant = [parse_grant("storage://home/root=READ,WRITE")]
        spec = SandboxSpec(net=NetPolicy.none(), cwd=Path("/"), pids_max=64)

        def zygote_run() -> None:
            """``kernel_run`` as the powerbox starts it: in a spare of the session's
            zygote."""
            with prefer():
                api.run(["/bin/true"], grant, stdio=(null, null, null), cwd="/home/root",
                        session=session)
        cases = {
            "fork_exec": lambda: subprocess.run(["/bin/true"], stdin=devnull),
            "sh_trampoline": lambda: subprocess.run(["/bin/sh", "-c", "exec /bin/true"],
                                                    stdin=devnull),
            "bwrap_pid": lambda: subprocess.run(["bwrap", "--unshare-pid", *minimal, "--",
                                                 "/bin/true"], stdin=devnull),
            "bwrap_namespaces": lambda: subprocess.run(
                ["bwrap", "--unshare-pid", *more, *minimal, "--", "/bin/true"],
                stdin=devnull),
            "sandbox_spawn": lambda: spawn(spec, ["/bin/true"], stdin=null, stdout=null,
                                           stderr=null).wait(),
            "kernel_run": lambda: api.run(["/bin/true"], grant, stdio=(null, null, null),
                                          cwd="/home/root", session=session),
            "kernel_run_zygote": zygote_run,
        }
        for fn in cases.values():  # warm up
            fn()
        per: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):  # interleaved: the machine's load moves under every layer
            for name, fn in cases.items():
                per[name].append(_median_ms(fn, 3))
        return {name: round(statistics.median(v), 2) for name, v in per.items()}
    finally:
        os.close(null)
        kernel.shutdown()
        subprocess.run(["rm", "-rf", str(root)], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="8 runs instead of 20")
    args = ap.parse_args()
    runs = 8 if args.quick else args.runs

    root = Path(tempfile.mkdtemp(prefix="exo-bench-shell-"))
    home = root / "home" / "root"
    _prepare(home)
    env = dict(os.environ, EXO_ROOT=str(root), LC_ALL="C")
    exo = Interpreter([EXO, "boot", "--quiet"], env)
    # The same shell with the per-session zygote turned off: every powerbox command gets
    # a whole sandbox of its own (the "before" of issue 9's zygote), same run.
    # (a root of its own: one kernel per Exo tree; the same files, from the same seed)
    full_root = Path(tempfile.mkdtemp(prefix="exo-bench-shell-full-"))
    _prepare(full_root / "home" / "root")
    full = Interpreter([EXO, "boot", "--quiet"],
                       dict(env, EXO_ROOT=str(full_root), EXO_ZYGOTE="0"))
    # bash's programs get the locale the Exo kernel gives its programs (LANG=C.UTF-8, no
    # LC_ALL: exo.kernel.process), so that both run the same work: `sort` under LC_ALL=C
    # compares bytes and is ~1.6x faster than under C.UTF-8 (measured), which made the
    # sort case compare two different sorts until this was noticed.
    bash_env = {k: v for k, v in env.items() if not k.startswith("LC_")}
    bash_env["LANG"] = "C.UTF-8"
    bash = Interpreter(["bash", "--norc", "--noprofile"], bash_env, cwd=str(home))
    peer = {"true_run": "/bin/true"}  # bash has no `run`
    shells = {"exo": exo, "exo_no_zygote": full}
    samples: dict[str, dict[str, list[float]]] = {
        c: {"exo": [], "exo_no_zygote": [], "bash": []} for c in CASES}
    # CPU per command, summed over the runs: [own, below] (Interpreter.cpu_ms)
    # (not for exo_no_zygote: there bubblewrap's monitor may end before its init has
    # reaped the command, whose CPU then reaches no process's children's times)
    cpu: dict[str, dict[str, list[float]]] = {
        c: {"exo": [0.0, 0.0], "bash": [0.0, 0.0]} for c in CASES}

    def timed(sh: Interpreter, line: str, case: str, name: str) -> None:
        if name not in cpu[case]:
            samples[case][name].append(sh.time(line))
            return
        before = sh.cpu_ms()
        samples[case][name].append(sh.time(line))
        after = sh.cpu_ms()
        for i in (0, 1):
            cpu[case][name][i] += after[i] - before[i]

    try:
        for sh in shells.values():
            sh.time("cd /home/root")
        for _ in range(2):  # warm up: the spawn path, the page cache
            for case, line in CASES.items():
                for sh in shells.values():
                    sh.time(line)
                bash.time(peer.get(case, line))
        for _ in range(runs):
            for case, line in CASES.items():
                for name, sh in shells.items():
                    timed(sh, line, case, name)
                timed(bash, peer.get(case, line), case, "bash")
    finally:
        for sh in shells.values():
            sh.close()
        bash.close()
        subprocess.run(["rm", "-rf", str(root), str(full_root)], check=False)

    results: dict[str, Any] = {}
    for case, by_shell in samples.items():
        exo_ms = statistics.median(by_shell["exo"])
        full_ms = statistics.median(by_shell["exo_no_zygote"])
        bash_ms = statistics.median(by_shell["bash"])
        results[case] = {"command": CASES[case], "exo_median_ms": round(exo_ms, 2),
                         "exo_no_zygote_median_ms": round(full_ms, 2),
                         "bash_median_ms": round(bash_ms, 2),
                         "ratio": round(exo_ms / bash_ms, 2),
                         "ratio_no_zygote": round(full_ms / bash_ms, 2),
                         "cpu_ms_per_command": {
                             name: {"own": round(own / runs, 2), "below": round(below / runs, 2)}
                             for name, (own, below) in cpu[case].items()},
                         "samples_ms": by_shell}
    breakdown = spawn_breakdown(runs)
    targets = {
        "ls_within_30_ms": results["ls"]["exo_median_ms"] <= 30,
        "cat_wc_within_1_5x_bash": results["cat_wc"]["ratio"] <= 1.5,
        "cat_wc_powerbox_within_1_5x_bash": results["cat_wc_powerbox"]["ratio"] <= 1.5,
        "sort_within_1_5x_bash": results["sort"]["ratio"] <= 1.5,
    }
    out = {"benchmark": "shell", "runs": runs, "machine": platform.machine(),
           "cpus": os.cpu_count(), "python": platform.python_version(),
           "results": results, "spawn_breakdown_ms": breakdown, "targets_met": targets}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    for case, r in results.items():
        print(f"{case:<16} exo {r['exo_median_ms']:8.2f} ms   without zygote "
              f"{r['exo_no_zygote_median_ms']:8.2f} ms   bash {r['bash_median_ms']:8.2f} ms"
              f"   ×{r['ratio']} (×{r['ratio_no_zygote']} without)")
        c = r["cpu_ms_per_command"]
        print(f"{'':<16} CPU ms per command (own + below): exo {c['exo']['own']} + "
              f"{c['exo']['below']}, bash {c['bash']['own']} + {c['bash']['below']}")
    print("spawn breakdown (ms):", ", ".join(f"{k} {v}" for k, v in breakdown.items()))
    print("targets:", ", ".join(f"{k} {'✔' if v else '✘'}" for k, v in targets.items()))


if __name__ == "__main__":
    main()
