"""Hostile applications, and a well-behaved one that measures its syscalls beside them.

Used by tests/system/test_isolation.py (does the well-behaved app keep working while each
attack runs?) and bench/isolation.py (how much slower are its syscalls meanwhile?). Each
attack is the Python source of a sandboxed Exo app that attacks the kernel forever, the
way the hostile-application review did, and writes ``attacking`` to ``$HOME/.started``
once it is under way; it holds ``storage://home/evil`` and runs under the CPU, memory and
pid limits an operator gives an untrusted app (a hostile app is not also given the whole
machine: what is measured is what the *kernel* does for it beyond its own limits).
"""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
import time
from typing import TYPE_CHECKING, Any

from exo.kernel.manifest import Limits, parse_grant

if TYPE_CHECKING:
    from exo.kernel.kernel import Kernel
    from exo.kernel.process import ExoProcess

APP_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
EVIL_GRANT = "storage://home/evil=READ,WRITE,GRANT,DUPLICATE,TRANSFER"
GOOD_GRANT = "storage://home/good=READ,WRITE"
EVIL_LIMITS = Limits(memory=256 << 20, pids=32, cpu=0.5)

_PRELUDE = """
import os, sys
from exo_std._kernel import call, connection
from exo_std.errors import ExoError
HOME = os.environ["HOME"]  # the granted directory, at its Exo path
def started():
    with open(HOME + "/.started", "w") as f:
        f.write("attacking")
"""

ATTACKS: dict[str, str] = {
    # requests the kernel must parse and refuse, as fast as the app can send them
    "malformed requests": """
        conn = connection()
        bad = [b"[" * 30000 + b"]" * 30000, b'{"op": 5}', b"\\xff\\xfe",
               b'{"id": 1, "op": "nosuch", "args": {}}', b"{" * 60000]
        started()
        while True:
            for raw in bad:
                conn.send_raw(raw)
    """,
    # each denial used to write 60 KB to the audit log and keep it in memory
    "huge names": """
        name = "storage://home/evil/" + "x" * 60000
        started()
        while True:
            try:
                call("request", name=name, rights="READ")
            except ExoError:
                pass
    """,
    # capabilities pushed at every other process, to fill their handle tables
    "capability flood": """
        me = int(os.environ["EXO_PID"])
        started()
        while True:
            try:
                h = call("request", name="storage://home/evil", rights="READ,TRANSFER")
                handle = h[0]["handle"]
            except ExoError:
                continue
            for target in range(2, 40):
                if target == me:
                    continue
                try:
                    call("send_capability", handle=handle, pid=target)
                    break
                except ExoError:
                    pass
            else:
                try:
                    call("close", handle=handle)
                except ExoError:
                    pass
    """,
    # children beyond the app's own limits, and kernel threads for each
    "spawn flood": """
        from exo_std import process
        started()
        while True:
            try:
                process.spawn(["/bin/sleep", "60"])
            except ExoError:
                pass
    """,
    # the channel's shared memory overwritten at random while syscalls go on
    "ring tampering": """
        import mmap, random
        maps = []
        for fd in (int(x) for x in os.environ["EXO_BOOTSTRAP_RING"].split(",")):
            try:
                if not os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:"):
                    continue
                size = os.fstat(fd).st_size
                maps.append(mmap.mmap(fd, size, mmap.MAP_SHARED,
                                      mmap.PROT_READ | mmap.PROT_WRITE))
            except OSError:
                pass  # a segment we may only read
        started()
        rnd = random.Random(7)
        while True:
            for m in maps:
                for _ in range(64):
                    at = rnd.randrange(len(m) - 8)
                    m[at:at + 8] = rnd.getrandbits(64).to_bytes(8, "little")
            try:
                call("getpid")
            except Exception:
                pass
    """,
    # a granted directory filled with files the kernel's directory server must track
    "file flood": """
        d = HOME + "/flood"
        os.makedirs(d, exist_ok=True)
        started()
        i = 0
        while True:
            try:
                p = f"{d}/f{i % 30000}"
                open(p, "w").close()
                os.stat(p)
            except OSError:
                pass
            i += 1
    """,
    # FIFOs opened through the kernel: an open that blocked held a kernel thread forever
    "fifo opens": """
        from exo_std import fs, Rights
        try:
            os.mkfifo(HOME + "/pipe")
        except OSError:
            pass
        started()
        while True:
            for rights in (Rights.READ, Rights.WRITE):
                try:
                    fs.File.open("storage://home/evil/pipe", rights)
                except (ExoError, OSError):
                    pass
    """,
}

GOOD_APP = """
import json, os, sys, time
from exo_std import fs, Rights
from exo_std._kernel import call
calls, opens = int(sys.argv[1]), int(sys.argv[2])
pace = int(sys.argv[3]) / 1e6 if len(sys.argv) > 3 else 0.0  # s between opens' starts
with open(os.environ["HOME"] + "/data.txt", "w") as f:
    f.write("x" * 4096)
lat, failures = [], []
for i in range(calls):
    if pace and i % 200 == 0:  # paced: 200 back to back (~0.6 ms), then 3 ms asleep
        time.sleep(0.003)
    t0 = time.perf_counter_ns()
    try:
        call("getpid")
    except Exception as exc:
        failures.append(repr(exc))
    lat.append((time.perf_counter_ns() - t0) / 1000)
def open_read(n, pace):
    out, start = [], time.perf_counter()
    for i in range(n):
        if pace:  # the i-th open starts at start + i * pace (or at once when late)
            time.sleep(max(0.0, start + i * pace - time.perf_counter()))
        t0 = time.perf_counter_ns()
        try:
            with fs.File.open("storage://home/good/data.txt", Rights.READ) as f:
                assert len(f.read(4096)) == 4096
        except Exception as exc:
            failures.append(repr(exc))
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out
open_lat = open_read(opens, pace)
print(json.dumps({"getpid_us": lat, "open_read_us": open_lat, "failures": failures}))
"""


def prepare(kernel: Kernel) -> None:
    for home in ("evil", "good"):
        (kernel.root / "home" / home).mkdir(parents=True, exist_ok=True)


def start_attack(kernel: Kernel, name: str, timeout: float = 30.0) -> ExoProcess:
    """Start attack ``name`` and return once it says it is under way."""
    started = kernel.root / "home" / "evil" / ".started"
    started.unlink(missing_ok=True)
    code = textwrap.dedent(_PRELUDE) + textwrap.dedent(ATTACKS[name])
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        proc = kernel.processes.spawn([APP_PYTHON, "-c", code], [parse_grant(EVIL_GRANT)],
                                      stdio=(devnull, devnull, devnull), limits=EVIL_LIMITS)
    finally:
        os.close(devnull)
    deadline = time.monotonic() + timeout
    while not started.exists():
        if proc.status is not None or time.monotonic() > deadline:
            raise RuntimeError(f"attack {name!r} did not start (status {proc.status})")
        time.sleep(0.02)
    time.sleep(0.3)  # let it ramp up
    return proc


def stop_attack(kernel: Kernel, proc: ExoProcess) -> None:
    import contextlib
    import signal

    with contextlib.suppress(LookupError):
        kernel.processes.kill(proc.pid, signal.SIGKILL)
    kernel.processes.wait(proc.pid, timeout=60)


def good_app(kernel: Kernel, calls: int, opens: int, timeout: float = 120.0,
             pace_us: int = 0) -> dict[str, Any]:
    """Run the well-behaved app; its syscall latencies (µs) and any failures.

    ``pace_us``: its opens start that far apart, and its getpid calls come 200 at a
    time with 3 ms between (0: all back to back). ``pid`` and
    ``fair_share`` (what the kernel's fair-share policy made it wait, syscall pauses and
    file requests put aside: exo.kernel.fairshare.FairShare.final) come back too.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            proc = kernel.processes.spawn(
                [APP_PYTHON, "-c", GOOD_APP, str(calls), str(opens), str(pace_us)],
                [parse_grant(GOOD_GRANT)], stdio=(devnull, out.fileno(), err.fileno()))
        finally:
            os.close(devnull)
        status = kernel.processes.wait(proc.pid, timeout=timeout)
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise RuntimeError(f"the well-behaved app failed ({status}): "
                               f"{err.read().decode()[-2000:]}")
        result: dict[str, Any] = json.loads(out.read())
        result["pid"] = proc.pid
        result["fair_share"] = kernel.core.fair_share.final(proc.pid)
        return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
