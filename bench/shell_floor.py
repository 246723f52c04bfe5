"""Benchmark: the floor of a sandboxed pipeline with the kernel out of the way (writes
bench/results/shell_floor.json).

Question under test (issue 9, the powerbox pipeline's ≤ 1.5 × bash): how fast could
``cat big.txt | wc -l`` be if each stage were confined by a process that forks it, with
no per-command work in the kernel's Python process at all? ``bench/shell.py`` measures
the real path (the kernel plans, exports, creates a cgroup and asks the session's zygote
for each command); this script measures what the confinement itself costs, so that the
two numbers say how much of the gap is the mechanism and how much the kernel's own
per-command work.

A *runner* stays up (a Python process, as the zygote is), reads a pipeline on a pipe,
forks one child per stage wired with pipes, waits for them and writes a mark; the time
runs from the write (Enter) to the mark, as in ``bench/shell.py``, beside a ``bash``
reading the same lines, interleaved. Each child, by mode:

* ``fork_exec``: nothing (the runner's own floor: a Python fork and exec);
* ``landlock_seccomp``: Landlock (read and execute beneath ``/usr``, ``/etc``; read of
  the one granted file; every other filesystem right refused) and Exo's seccomp filter
  (``exo.sandbox._seccomp``), no_new_privs, then exec: per-command confinement without a
  mount namespace;
* ``mountns``: the same plus ``unshare(CLONE_NEWNS)`` and one read-only bind of the
  granted file, as each zygote child does today for its grants.

The ``c_*`` modes ask the same of a runner written in C (``c_probe/pipeline_floor.c``,
built with gcc here): the floor of the design the Python runner stands in for, a
per-session process that forks and confines a whole pipeline itself:

* ``c_exec``: fork and exec;
* ``c_confined``: the confinement of ``landlock_seccomp``, done in C;
* ``c_isolated``: that, after what a zygote spare does for each command today (mount,
  IPC and network namespaces of its own, the loopback up, a ``/proc`` mounted
  ``hidepid=invisible``, a read-only bind of the granted file), done here in each stage
  after the fork, on the pipeline's critical path (a spare does it ahead of time).

Run: ``.venv/bin/python bench/shell_floor.py [--runs N] [--quick]`` (root: the mount
namespace).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchlib import enter_to_mark

RESULTS = Path(__file__).resolve().parent / "results" / "shell_floor.json"
MODES = ("fork_exec", "landlock_seccomp", "mountns")
C_MODES = ("c_exec", "c_confined", "c_isolated")
C_RUNNER = Path(__file__).resolve().parent / "c_probe" / "pipeline_floor.c"
LINE = "/bin/cat big.txt | /usr/bin/wc -l"

# The runner: standard library and the kernel's own seccomp filter bytes (passed in a
# file), no exo import in the forking process (as the zygote).
RUNNER = r'''
import ctypes, os, sys, shlex
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
mode, filt_path = sys.argv[1], sys.argv[2]
bpf = open(filt_path, "rb").read()
READ_FILE, READ_DIR, EXECUTE = 1 << 2, 1 << 3, 1 << 0
HANDLED = (1 << 16) - 1  # every filesystem right of ABI >= 5

class Attr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64)]
class Beneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("access", ctypes.c_uint64), ("fd", ctypes.c_int32)]
class Filter(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

def check(rc, what):
    if rc < 0:
        os.write(2, f"{what}: {os.strerror(ctypes.get_errno())}\n".encode())
        os._exit(126)

def confine(granted):
    if mode == "mountns":
        check(libc.unshare(0x00020000), "unshare")
        check(libc.mount(b"none", b"/", None, (1 << 18) | 16384, None), "private")
        check(libc.mount(granted.encode(), granted.encode(), None, 4096, None), "bind")
        check(libc.mount(b"none", granted.encode(), None, 4096 | 32 | 1, None), "ro")
    attr = Attr(HANDLED)
    rs = libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(8), 0)
    check(rs, "landlock_create_ruleset")
    for path, access in (("/usr", READ_FILE | READ_DIR | EXECUTE),
                         ("/etc", READ_FILE | READ_DIR), (granted, READ_FILE)):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = Beneath(access, fd)
        check(libc.syscall(445, rs, 1, ctypes.byref(rule), 0), "landlock_add_rule")
        os.close(fd)
    check(libc.prctl(38, 1, 0, 0, 0), "no_new_privs")
    check(libc.syscall(446, rs, 0), "landlock_restrict_self")
    os.close(rs)
    prog = Filter(len(bpf) // 8, bpf)
    check(libc.prctl(22, 2, ctypes.byref(prog), 0, 0), "seccomp")

out = sys.stdout.buffer
for line in sys.stdin:
    stages = [shlex.split(s) for s in line.split("|")]
    pids, prev = [], 0
    for i, argv in enumerate(stages):
        last = i == len(stages) - 1
        r, w = (None, None) if last else os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(prev, 0)
            if not last:
                os.dup2(w, 1)
            if mode != "fork_exec":
                confine(os.path.abspath(argv[-1]) if i == 0 else "/etc/hostname")
            os.execv(argv[0], argv)
        pids.append(pid)
        if prev:
            os.close(prev)
        if not last:
            os.close(w)
            prev = r
    for pid in pids:
        os.waitpid(pid, 0)
    out.write(b"__done__\n")
    out.flush()
'''


class Timed:
    """A process reading lines on a pipe; ``time(line, mark)`` is Enter → ``mark``."""

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=cwd, env=env)

    def time(self, text: str, mark: bytes) -> tuple[float, bytes]:
        return enter_to_mark(self.proc, text, mark)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="30 runs instead of 100")
    args = ap.parse_args()
    runs = 30 if args.quick else args.runs
    if os.geteuid() != 0:
        sys.exit("bench/shell_floor.py: needs root (the mount-namespace mode)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from exo.sandbox._landlock import abi_version
    from exo.sandbox._seccomp import compiled_filter

    if abi_version() < 5:
        sys.exit("bench/shell_floor.py: needs Landlock ABI 5 or later")
    work = Path(tempfile.mkdtemp(prefix="exo-bench-floor-"))
    rng = random.Random(9)
    with open(work / "big.txt", "w") as f:  # the 1 MB file of bench/shell.py
        while f.tell() < 1 << 20:
            f.write(f"{rng.random():.12f} some text for the line\n")
    (work / "filter.bpf").write_bytes(compiled_filter("none", errno.EPERM, True))
    (work / "runner.py").write_text(RUNNER)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    shells: dict[str, Timed] = {
        m: Timed([sys.executable, "-I", "-S", str(work / "runner.py"), m,
                  str(work / "filter.bpf")], str(work), env) for m in MODES}
    exe = work / "pipeline_floor"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(C_RUNNER)], check=True)
    for m in C_MODES:
        shells[m] = Timed([str(exe), m, str(work / "filter.bpf")], str(work), env)
    shells["bash"] = Timed(["bash", "--norc", "--noprofile"], str(work), env)
    samples: dict[str, list[float]] = {name: [] for name in shells}
    expected = b""

    def one(name: str) -> float:
        nonlocal expected
        if name == "bash":
            ms, out = shells[name].time(f"{LINE}\necho __done__\n", b"__done__")
        else:
            ms, out = shells[name].time(f"{LINE}\n", b"__done__")
        answer = out.split(b"__done__")[0].strip()
        expected = expected or answer
        if answer != expected:
            raise RuntimeError(f"{name} answered {answer!r}, expected {expected!r}")
        return ms

    try:
        for _ in range(5):  # warm up
            for name in shells:
                one(name)
        order = list(shells)
        for i in range(runs):  # interleaved, the order rotating
            for name in order[i % len(order):] + order[:i % len(order)]:
                samples[name].append(one(name))
    finally:
        for sh in shells.values():
            sh.close()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    bash_ms = statistics.median(samples["bash"])
    results = {name: {"median_ms": round(statistics.median(v), 3),
                      "ratio_to_bash": round(statistics.median(v) / bash_ms, 3)}
               for name, v in samples.items()}
    out: dict[str, Any] = {"benchmark": "shell_floor", "line": LINE, "runs": runs,
                           "machine": platform.machine(), "cpus": os.cpu_count(),
                           "load_at_end": list(os.getloadavg()), "results": results,
                           "samples_ms": {k: [round(x, 3) for x in v]
                                          for k, v in samples.items()}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    for name, r in results.items():
        print(f"{name:<18} {r['median_ms']:7.2f} ms   ×{r['ratio_to_bash']} bash")


if __name__ == "__main__":
    main()
