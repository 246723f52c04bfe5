"""``posix-x benchmark``: POSIX-X against native Linux and plain bubblewrap, in one run.

``bench/posix_x.py`` is this module's command line for the bench suite; ``posix-x
benchmark [--quick] [--json]`` (the shell, ``exo posix-x``) runs the same and prints the
table side by side.

- ``syscalls``: a small C program (compiled here with gcc) times getpid, open+close of a
  cached file, read 64 B, write 64 B, a pipe round trip and fork+exit, natively and under
  ``exo posix-x run``; nanoseconds per operation, the median of its repetitions.
- ``apps``: nginx serving a static file (wrk), redis (redis-benchmark GET/SET) and
  PostgreSQL (pgbench, select-only, scale 2), each
  started natively, under ``exo posix-x run`` with the example manifests, and under plain
  bubblewrap with the same view, one server per mode up for the whole benchmark, loaded
  in lock step (a round loads each once, for ``seconds``; the order rotates each round);
  gcc compiling a C file (the sandbox's stage 2) and ``python3 -I`` running a small
  json/re/arithmetic workload, each run N times a round by a ``/bin/sh`` inside the mode's
  sandbox that lasts the whole benchmark, in lock step: one run in every mode, then the
  next (rate: runs per second of wall time; CPU: the shell's ``times`` for its children).
  Per round: ratio = POSIX-X ÷ native throughput, bwrap ratio = bwrap ÷ native, and the
  server's CPU time per request (utime+stime from ``/proc/PID/stat`` of its processes),
  which is steadier than throughput here. Reported: the median of the per-round ratios,
  their spread (max − min), the median bwrap ratio and the median CPU-per-op ratio.

The servers run on one CPU and their load generators (wrk, redis-benchmark, pgbench) on
another, in every mode (``_pinning``; ``machine.servers_pinned``): unpinned, where the
scheduler happened to put the two swung nginx between 0.6 and 1.4 of native from round to
round. The jobs (gcc, python) are not pinned.

For the servers, also the kernel's FUSE requests per served request, by opcode (its
servers write their counts to ``EXO_FUSE_OPS_LOG`` when they close; the last round's whole
POSIX-X run, start and stop included): what a program's file accesses cost the kernel.

"≥ bubblewrap" is judged round by round: POSIX-X ÷ bubblewrap throughput in each round
(the two ran within seconds of each other, so the machine's swings between rounds, tens of
percent here, cancel out), its median and the median's distribution-free 95 % confidence
interval (``vs_bwrap_median``, ``vs_bwrap_ci95``), and bubblewrap's own CPU-per-op ratio
to native beside POSIX-X's (``bwrap_cpu_per_op_ratio``).

Writes ``bench/results/posix_x.json`` as
``{"syscalls": {NAME: {"native_ns", "posix_x_ns"}}, "apps": {APP: {"ratio_median",
"ratio_spread", "bwrap_ratio_median", "cpu_per_op_ratio", "vs_bwrap_median",
"vs_bwrap_ci95", "bwrap_cpu_per_op_ratio", "fuse_ops_per_request"}}}``.
``--quick``: 3 rounds of 2-second loads (the issue's figures need ``--rounds 10`` or more).
``--apps postgres,redis``: only those (``syscalls`` is one), merged into the existing file;
each application's entry says when and how it was measured (``measured``: date, rounds,
seconds, control, quick; a job's ``runs_per_round``), since ``machine`` describes the
last run only.
``--seccomp-peer``: bubblewrap a second time in every round, loading the seccomp program
a POSIX-X program runs under (``SECCOMP_PEER``; ``vs_bwrap_seccomp_median``,
``vs_bwrap_seccomp_ci95``, ``bwrap_seccomp_ratio_median``,
``bwrap_seccomp_cpu_per_op_ratio``): what is left of the difference to plain bubblewrap
once both pay the filter.
``--control``: native runs a second time in every round, in the rotation (an A/A control);
its ratio to the first run (``control_ratio_median``, ``control_ratio_ci95``) is how far
two identical runs differ here, the resolution of every other ratio of the run.
``ratio_ci95``: the distribution-free 95 % interval of ``ratio_median``.
Needs root, gcc and the Debian packages of ``make posix-x-apps`` (installed here when
missing and run as root).
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import psutil

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples" / "posix-x"
RESULTS = REPO / "bench" / "results" / "posix_x.json"
STAGE2_C = Path(__file__).resolve().parents[1] / "sandbox" / "_stage2.c"
#: Debian packages the applications come from (``make posix-x-apps``).
PACKAGES = ("nginx", "redis-server", "redis-tools", "wrk", "postgresql", "curl", "gcc",
            "bubblewrap")
EXO = [sys.executable, "-m", "exo"]
MODES = ("native", "posix_x", "bwrap")
#: ``--control``: native a second time in every round (an A/A comparison). Its ratio to the
#: first native run says how far two identical runs differ here: the resolution below
#: which no ratio of this run means anything.
CONTROL = "native_again"
#: ``--seccomp-peer``: bubblewrap again, loading the seccomp program every POSIX-X
#: program runs under (``exo.sandbox._seccomp``, as ``exo posix-x run`` compiles it):
#: plain bubblewrap has no filter, and any filter costs each syscall its slow entry
#: (bench/results/seccomp_floor.json). POSIX-X ÷ this peer is what Exo's mechanisms cost
#: beyond the filter the issue's tiers require.
SECCOMP_PEER = "bwrap_seccomp"
ALL = ("syscalls", "nginx", "redis", "postgres", "gcc", "python")

SYSCALL_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}
#define TIME(name, n, body) do { double t0 = now(); for (long i = 0; i < (n); i++) { body; } \
    printf("%s %.1f\n", name, (now() - t0) / (n)); } while (0)

int main(void) {
    char buf[64] = {0};
    int fd = open("/etc/ld.so.cache", O_RDONLY), null = open("/dev/null", O_WRONLY);
    int p1[2], p2[2];
    if (fd < 0 || null < 0 || pipe(p1) || pipe(p2)) return 1;
    TIME("getpid", 200000, syscall(SYS_getpid));
    TIME("open", 50000, close(open("/etc/ld.so.cache", O_RDONLY)));
    TIME("read_64", 200000, pread(fd, buf, 64, 0));
    TIME("write_64", 200000, write(null, buf, 64));
    pid_t child = fork();
    if (child == 0) {
        close(p1[1]); close(p2[0]);  /* else its own write end keeps its read from EOF */
        while (read(p1[0], buf, 1) == 1) if (write(p2[1], buf, 1) != 1) break;
        _exit(0);
    }
    TIME("pipe_round_trip", 20000,
         if (write(p1[1], buf, 1) != 1 || read(p2[0], buf, 1) != 1) return 1);
    close(p1[1]); waitpid(child, NULL, 0);
    TIME("fork_exit", 500, { pid_t c = fork(); if (c == 0) _exit(0); waitpid(c, NULL, 0); });
    return 0;
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start (status {proc.poll()})")


def _stop(proc: subprocess.Popen[bytes], sig: int, port: int) -> None:
    """Stop the server and everything it started, and wait until its port is free (the
    next mode reuses it)."""
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _gone, alive = psutil.wait_procs(tree, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)


def _cpu(proc: subprocess.Popen[bytes], name: str) -> float:
    """CPU seconds (user + system) of the processes called ``name`` under ``proc`` and of
    their children that have exited."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        top = psutil.Process(proc.pid)
        for p in [top, *top.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                if p.name() == name:  # with its reaped children (postgres's backends)
                    times = p.cpu_times()
                    total += (times.user + times.system + times.children_user
                              + times.children_system)
    return total


def _pinning() -> tuple[int, int] | None:
    """(server's CPU, load generator's CPU): the server, in every mode, and the program
    driving it each get a CPU of their own, so that a round measures what the sandbox
    costs the server rather than how the scheduler happened to place the two (nginx
    swung 0.6-1.4 of native from round to round unpinned, 0.9-1.0 pinned, same run).
    How a nested cpu cgroup fares against other root tasks on a busy CPU is measured
    apart (bench/posix_x_cgroup.py). None: fewer than two CPUs, or no taskset."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or not any(os.access(os.path.join(d, "taskset"), os.X_OK)
                                for d in os.environ.get("PATH", os.defpath).split(os.pathsep)):
        return None
    return cpus[-1], cpus[0]


def _on(role: str) -> list[str]:
    """The ``taskset`` prefix that runs a command on its role's CPU (``_pinning``)."""
    pins = _pinning()
    if pins is None:
        return []
    return ["taskset", "-c", str(pins[0] if role == "server" else pins[1])]


def _bwrap_view(binds: list[tuple[Path, str, bool]]) -> list[str]:
    """Plain bubblewrap with the same view: the system directories, /etc, /dev, /proc,
    a private /tmp, and the app's directories at the same names."""
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc", "--dev", "/dev",
            "--proc", "/proc", "--tmpfs", "/tmp"]
    for link in ("bin", "sbin", "lib", "lib64"):
        if Path(f"/{link}").is_symlink():
            args += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
    # bubblewrap makes the missing parents of a mount point mode 0700: nginx's workers
    # (user nobody) then got 403 for every request, cheaper to serve than the page (the
    # bubblewrap column measured error pages until this). Made 0755 first, as Exo's own
    # plan does.
    parents = sorted({str(p) for _, inside, _ in binds for p in Path(inside).parents
                      if str(p) not in ("/", "/usr", "/etc", "/dev", "/proc", "/tmp")},
                     key=lambda d: (d.count("/"), d))
    for parent in parents:
        args += ["--perms", "0755", "--dir", parent]
    for host, inside, writable in binds:
        args += ["--bind" if writable else "--ro-bind", str(host), inside]
    return args


class App:
    """How to start one application in each mode, load it, and read its CPU time."""

    name = ""
    comm = ""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port

    def argv(self, mode: str) -> list[str]:
        raise NotImplementedError

    def prepare(self, mode: str) -> None:
        """What the server needs made before its first start in ``mode``."""

    def load(self, seconds: float) -> float:
        """Requests per second over one load; the request count comes from the rate."""
        raise NotImplementedError

    #: Under POSIX-X, the kernel's FUSE servers append their request counts per opcode
    #: here when they close (``EXO_FUSE_OPS_LOG``).
    @property
    def ops_log(self) -> Path:
        return self.root.parent / f"{self.root.name}-fuse-ops.jsonl"

    def fuse_ops(self) -> dict[str, int]:
        """Requests per opcode the kernel's FUSE servers answered since the last call."""
        total: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.ops_log.read_text().splitlines():
                for op, n in json.loads(line)["ops"].items():
                    total[op] = total.get(op, 0) + n
            self.ops_log.unlink()
        return total

    @contextlib.contextmanager
    def running(self, mode: str) -> Iterator[subprocess.Popen[bytes]]:
        peer, mode = mode == SECCOMP_PEER, _started_as(mode)
        self.prepare(mode)
        env = {**os.environ, "EXO_ROOT": str(self.root)}
        if mode == "posix_x":
            env["EXO_FUSE_OPS_LOG"] = str(self.ops_log)
        argv = _with_filter(self.argv(mode), self.root.parent) if peer else self.argv(mode)
        proc = subprocess.Popen([*_on("server"), *argv], env=env,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            _wait_port(self.port, proc)
            yield proc
        finally:
            _stop(proc, signal.SIGINT if mode == "posix_x" else signal.SIGTERM, self.port)


class Nginx(App):
    name, comm = "nginx", "nginx"

    def __init__(self, root: Path, port: int) -> None:
        super().__init__(root, port)
        for d in ("srv/nginx", "srv/www", "var/lib/nginx"):
            (root / d).mkdir(parents=True, exist_ok=True)
        conf = (EXAMPLES / "nginx.conf").read_text().replace("18080", str(port))
        (root / "srv/nginx/nginx.conf").write_text(conf)
        (root / "srv/www/index.html").write_bytes(b"x" * 4096)
        self.manifest = root.parent / f"{root.name}.toml"
        self.manifest.write_text((EXAMPLES / "nginx.toml").read_text()
                                 .replace("18080", str(port)))

    def argv(self, mode: str) -> list[str]:
        args = ["-c", "/srv/nginx/nginx.conf", "-e", "/var/lib/nginx/error.log"]
        if mode == "posix_x":
            return [*EXO, "posix-x", "run", "--manifest", str(self.manifest), "--",
                    "nginx", *args]
        view = [(self.root / "srv/nginx", "/srv/nginx", False),
                (self.root / "srv/www", "/srv/www", False),
                (self.root / "var/lib/nginx", "/var/lib/nginx", True)]
        if mode == "bwrap":
            return [*_bwrap_view(view), "--", "/usr/sbin/nginx", *args]
        # natively: the same files at their host paths
        conf = (self.root / "srv/nginx/nginx.conf").read_text()
        for _, inside, _w in view:
            conf = conf.replace(inside, str(self.root) + inside)
        native = self.root / "native-nginx.conf"
        native.write_text(conf)
        return ["/usr/sbin/nginx", "-c", str(native), "-e",
                str(self.root / "var/lib/nginx/error.log")]

    def load(self, seconds: float) -> float:
        out = subprocess.run([*_on("load"), "wrk", "-t1", "-c16",
                              f"-d{max(1, round(seconds))}s",
                              f"http://127.0.0.1:{self.port}/index.html"],
                             capture_output=True, text=True, timeout=seconds + 30,
                             check=True).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if match is None:
            raise RuntimeError(f"wrk: no rate in {out!r}")
        # Every answer must be the page: an error page (403, 404) is cheaper to serve and
        # would pass for throughput.
        if bad := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out):
            raise BenchmarkError(f"nginx answered {bad[1]} requests with an error, not the "
                                 "page: the mode's view is wrong")
        return float(match[1])


class Redis(App):
    name, comm = "redis", "redis-server"

    def __init__(self, root: Path, port: int) -> None:
        super().__init__(root, port)
        (root / "var/lib/redis").mkdir(parents=True, exist_ok=True)
        self.manifest = root.parent / f"{root.name}.toml"
        self.manifest.write_text((EXAMPLES / "redis.toml").read_text()
                                 .replace("16379", str(port)))

    def argv(self, mode: str) -> list[str]:
        data = "/var/lib/redis" if mode != "native" else str(self.root / "var/lib/redis")
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", data,
                "--daemonize", "no", "--save", "", "--appendonly", "no"]
        if mode == "posix_x":
            return [*EXO, "posix-x", "run", "--manifest", str(self.manifest), "--",
                    "redis-server", *args]
        if mode == "bwrap":
            return [*_bwrap_view([(self.root / "var/lib/redis", "/var/lib/redis", True)]),
                    "--", "/usr/bin/redis-server", *args]
        return ["/usr/bin/redis-server", *args]

    def load(self, seconds: float) -> float:
        requests = max(2000, int(seconds * 15000))
        out = subprocess.run([*_on("load"), "redis-benchmark", "-p", str(self.port),
                              "-t", "set,get",
                              "-n", str(requests), "-c", "16", "-q"], capture_output=True,
                             text=True, timeout=seconds * 20 + 60, check=True).stdout
        rates = [float(m) for m in re.findall(r"([\d.]+) requests per second", out)]
        if not rates:
            raise RuntimeError(f"redis-benchmark: no rate in {out!r}")
        return statistics.mean(rates)


class Postgres(App):
    """PostgreSQL 15 and pgbench's select-only load. It refuses root: natively it runs as
    the host's ``postgres`` on a data directory it owns; under POSIX-X (the example
    manifest's ``user``) and plain bubblewrap (``--unshare-user --uid``) as that uid in a
    user namespace, on a data directory of the Exo tree."""

    name, comm = "postgres", "postgres"
    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self, root: Path, port: int) -> None:
        import pwd

        super().__init__(root, port)
        self.user = pwd.getpwnam("postgres")
        self.manifest = root.parent / f"{root.name}.toml"
        self.manifest.write_text((EXAMPLES / "postgres.toml").read_text()
                                 .replace("15432", str(port)))
        self.native = root / "native-data"
        self.made: set[str] = set()  # data directories initdb has made ("native", "tree")
        self.loaded: set[str] = set()  # data directories pgbench has initialised
        self.mode = "native"  # the mode being measured (argv is called before load)

    def prepare(self, mode: str) -> None:
        """The data directory ``mode`` runs on, made at its first start: natively the
        host's ``postgres`` owns it; the tree's is made under POSIX-X, as its manifest's
        user (plain bubblewrap maps the same uid)."""
        data = "native" if mode == "native" else "tree"
        if data in self.made:
            return
        init = ["-A", "trust", "-U", "postgres", "--no-sync"]
        if data == "native":
            self.native.mkdir()
            os.chown(self.native, self.user.pw_uid, self.user.pw_gid)
            subprocess.run([*self._as_postgres(), str(self.BIN / "initdb"), "-D",
                            str(self.native), *init], check=True, capture_output=True)
        else:
            env = {**os.environ, "EXO_ROOT": str(self.root)}
            subprocess.run([*EXO, "posix-x", "run", "--manifest", str(self.manifest), "--",
                            str(self.BIN / "initdb"), "-D", "/var/lib/postgresql/data",
                            *init], env=env, check=True, capture_output=True)
        self.made.add(data)

    def _as_postgres(self) -> list[str]:
        return ["setpriv", f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}",
                "--clear-groups"]

    def argv(self, mode: str) -> list[str]:
        self.mode = mode
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-k", ""]
        if mode == "posix_x":
            return [*EXO, "posix-x", "run", "--manifest", str(self.manifest), "--",
                    str(self.BIN / "postgres"), "-D", "/var/lib/postgresql/data", *args]
        if mode == "bwrap":
            uid = str(self.user.pw_uid)
            view = _bwrap_view([(self.root / "var/lib/postgresql", "/var/lib/postgresql",
                                 True)])
            return [*view, "--unshare-user", "--uid", uid, "--gid", uid, "--",
                    str(self.BIN / "postgres"), "-D", "/var/lib/postgresql/data", *args]
        return [*self._as_postgres(), str(self.BIN / "postgres"), "-D", str(self.native),
                *args]

    def load(self, seconds: float) -> float:
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "postgres"]
        data = "native" if self.mode == "native" else "tree"
        deadline = time.monotonic() + 60  # the port answers before recovery has finished
        while subprocess.run([str(self.BIN / "pg_isready"), *where[:4]],
                             capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("postgres did not become ready")
            time.sleep(0.1)
        if data not in self.loaded:
            subprocess.run([str(self.BIN / "pgbench"), "-i", "-q", "-s", "2", *where],
                           check=True, capture_output=True, timeout=300)
            self.loaded.add(data)
        out = subprocess.run([*_on("load"), str(self.BIN / "pgbench"), "-S", "-c", "4",
                              "-j", "2",
                              "-T", str(max(1, round(seconds))), *where], capture_output=True,
                             text=True, timeout=seconds + 60, check=True).stdout
        match = re.search(r"tps = ([\d.]+)", out)
        if match is None:
            raise RuntimeError(f"pgbench: no rate in {out!r}")
        return float(match[1])


def _load() -> list[float]:
    """The host's 1-, 5- and 15-minute load averages: this 2-core machine is shared, so
    every result carries the load it was measured under."""
    return [round(x, 2) for x in os.getloadavg()]


def _placement(proc: subprocess.Popen[bytes], name: str) -> dict[str, Any]:
    """Where the server ``name`` under ``proc`` is scheduled: its v1 ``cpu`` cgroup (and
    that group's ``cpu.shares``) and its CPU affinity. Under ``posix-x run`` it is the
    Exo process's own nested group; natively and under bwrap the caller's. A group that
    sleeps between requests weighs less than one root task on a loaded host (v1 group
    scheduling scales its shares by its load average: bench/posix_x_cgroup.py), so the
    results must say where each mode ran."""
    with contextlib.suppress(psutil.Error, OSError, ValueError):
        top = psutil.Process(proc.pid)
        for p in [top, *top.children(recursive=True)]:
            if p.name() != name:
                continue
            group = "?"
            for line in Path(f"/proc/{p.pid}/cgroup").read_text().splitlines():
                _n, controllers, path = line.split(":", 2)
                if "cpu" in controllers.split(","):
                    group = path
            shares = Path("/sys/fs/cgroup/cpu", group.lstrip("/"), "cpu.shares")
            return {"cpu_cgroup": group,
                    "cpu_shares": int(shares.read_text()) if shares.exists() else None,
                    "cpus": sorted(os.sched_getaffinity(p.pid))}
    return {}


def _started_as(mode: str) -> str:
    """The mode a server or job is started in: the A/A control is native again (the
    seccomp peer is bubblewrap's argv, through ``_with_filter``)."""
    return "native" if mode == CONTROL else "bwrap" if mode == SECCOMP_PEER else mode


def _modes(control: bool, seccomp_peer: bool = False) -> tuple[str, ...]:
    return (*MODES, *((CONTROL,) if control else ()),
            *((SECCOMP_PEER,) if seccomp_peer else ()))


def _with_filter(argv: list[str], work: Path) -> list[str]:
    """Bubblewrap's ``argv`` loading POSIX-X's seccomp program (``SECCOMP_PEER``): the
    sandbox's filter a POSIX-X program runs under (its Hybrid calls allowed here, where
    no broker listens), read by bwrap from descriptor 9."""
    from exo.sandbox import _seccomp

    program = work / "posix-x-seccomp.bpf"
    if not program.exists():
        program.write_bytes(_seccomp.compiled_filter("none", errno.EPERM, True, True))
    assert argv[0] == "bwrap"
    return ["/bin/sh", "-c", 'f=$1; shift; exec "$@" 9<"$f"', "sh", str(program),
            "bwrap", "--seccomp", "9", *argv[1:]]


def _rotated(modes: tuple[str, ...], r: int) -> tuple[str, ...]:
    """Round ``r``'s order: rotated each round, so that no mode is always first."""
    k = r % len(modes)
    return modes[k:] + modes[:k]


def bench_app(make: Callable[[str], App], rounds: int, seconds: float,
              control: bool = False, seccomp_peer: bool = False) -> dict[str, Any]:
    """One server per mode (``make(mode)``: its own tree and port), all of them up for the
    whole benchmark, loaded in lock step: each round loads every mode once for
    ``seconds``, order rotated, so a round's modes are seconds apart and no server start or
    stop falls between them.

    Until 2026-12-04 a round started each mode's server, warmed it, loaded it and stopped
    it, one mode after another: the modes of a round were ~20 s apart and the A/A control
    swung 0.73-1.51 (redis) from round to round, wider than any difference to resolve;
    the jobs (gcc, python) had shown the same and lock step narrowed theirs to a few
    percent (``bench_job``)."""
    modes = _modes(control, seccomp_peer)
    rounds_ = _Rounds(control)
    where: dict[str, Any] = {}
    served = dict.fromkeys(modes, 0.0)  # requests, warm-up included
    with contextlib.ExitStack() as stack:
        apps = {m: make(m) for m in modes}
        procs = {m: stack.enter_context(apps[m].running(m)) for m in modes}
        for mode in modes:  # caches, page-ins, connections: not counted
            warm = min(1.0, seconds)
            served[mode] += apps[mode].load(warm) * max(1, round(warm))
            if mode not in (CONTROL, SECCOMP_PEER):
                where[mode] = _placement(procs[mode], apps[mode].comm)
        for r in range(rounds):
            rate: dict[str, float] = {}
            cpu_per_op: dict[str, float] = {}
            for mode in _rotated(modes, r):
                app, proc = apps[mode], procs[mode]
                before = _cpu(proc, app.comm)
                rate[mode] = app.load(seconds)
                cpu_per_op[mode] = (_cpu(proc, app.comm) - before) / (rate[mode] * seconds)
                served[mode] += rate[mode] * max(1, round(seconds))
            load = rounds_.add(rate, cpu_per_op)
            _log(f"  {apps['native'].name} round {r + 1}: " + ", ".join(
                f"{m} {rate[m]:.0f}/s" for m in modes) + f" (load {load})")
    # The POSIX-X server's whole life (start, every load, stop) per request served: its
    # FUSE servers write their counts when they close.
    ops = apps["posix_x"].fuse_ops()
    ops_per_request = {op: round(n / served["posix_x"], 3)
                       for op, n in sorted(ops.items(), key=lambda x: -x[1])}
    if ops_per_request:
        _log(f"  {apps['posix_x'].name} FUSE requests per request: {ops_per_request}")
    summary = rounds_.summary()
    summary["interleaving"] = ("lock step: every mode's server up throughout, each round "
                               "loads each once")
    return {**summary, "fuse_ops_per_request": ops_per_request, "placement": where}


class _Rounds:
    """One application's per-round ratios, as ``_summary`` reports them."""

    def __init__(self, control: bool) -> None:
        self.control = control
        self.ratios: list[float] = []
        self.bwrap: list[float] = []
        self.cpu: list[float] = []
        self.vs_bwrap: list[float] = []
        self.bwrap_cpu: list[float] = []
        self.controls: list[float] = []
        self.peer: dict[str, list[float]] = {}  # SECCOMP_PEER's: ratio, vs, cpu
        self.loads = [_load()]

    def add(self, rate: dict[str, float], cpu: dict[str, float]) -> float:
        """A round's throughput and CPU per operation, by mode; the 1-minute load after."""
        self.ratios.append(rate["posix_x"] / rate["native"])
        self.bwrap.append(rate["bwrap"] / rate["native"])
        self.vs_bwrap.append(rate["posix_x"] / rate["bwrap"])
        if self.control:
            self.controls.append(rate[CONTROL] / rate["native"])
        if cpu["native"] > 0:
            self.cpu.append(cpu["posix_x"] / cpu["native"])
            self.bwrap_cpu.append(cpu["bwrap"] / cpu["native"])
        if SECCOMP_PEER in rate:
            self.peer.setdefault("ratio", []).append(rate[SECCOMP_PEER] / rate["native"])
            self.peer.setdefault("vs", []).append(rate["posix_x"] / rate[SECCOMP_PEER])
            if cpu["native"] > 0:
                self.peer.setdefault("cpu", []).append(cpu[SECCOMP_PEER] / cpu["native"])
        self.loads.append(_load())
        return self.loads[-1][0]

    def summary(self) -> dict[str, Any]:
        out = _summary(self.ratios, self.bwrap, self.cpu, self.loads, self.vs_bwrap,
                       self.bwrap_cpu, self.controls)
        if self.peer:
            lo, hi = _median_ci(self.peer["vs"])
            out |= {"bwrap_seccomp_ratio_median": round(statistics.median(self.peer["ratio"]), 4),
                    "vs_bwrap_seccomp_median": round(statistics.median(self.peer["vs"]), 4),
                    "vs_bwrap_seccomp_ci95": [round(lo, 4), round(hi, 4)],
                    "vs_bwrap_seccomp_ratios": [round(r, 4) for r in self.peer["vs"]]}
            if self.peer.get("cpu"):
                out["bwrap_seccomp_cpu_per_op_ratio"] = round(
                    statistics.median(self.peer["cpu"]), 4)
        return out


#: A job's shell: the command once per line read, its wall time (taken inside the sandbox:
#: what relays the shell's output, ``exo posix-x run``'s or bubblewrap's, is not the
#: command's cost), then ``times`` (its children's CPU, ``date`` included in every mode).
JOB_STEP = ("while read x; do s=$(date +%s%N); {command} >/dev/null || exit 1; "
            "e=$(date +%s%N); echo wall $((e-s)); times; done")

PY_WORKLOAD = """
import json, re
data = [{"n": i, "s": str(i) * 3} for i in range(20000)]
text = json.dumps(data)
assert len(json.loads(text)) == 20000
assert len(re.findall(r"[0-9]{6}", text)) > 1000
print(sum(x * x for x in range(200000)) % 7)
"""


def _times(text: str) -> float:
    """Children's user + system seconds from the second line of sh's ``times``."""
    line = text.strip().splitlines()[-1]
    total = 0.0
    for field in line.split():
        minutes, _, secs = field.rstrip("s").partition("m")
        total += float(minutes) * 60 + float(secs)
    return total


def bench_job(name: str, work: Path, command: str, count: int, rounds: int,
              manifest: str, control: bool = False,
              seccomp_peer: bool = False) -> dict[str, Any]:
    """A command (gcc, python3) run ``count`` times per round in each mode, in the
    directory ``work`` (shown as ``/home/bench``): rate = runs per second of wall time,
    CPU per run from ``times``.

    In lock step: one shell per mode runs for the whole benchmark, reading a line per run,
    and a round runs the command once in every mode (order rotated), ``count`` times, so a
    mode's runs are never more than a few seconds from the others'. Blocks of 20 runs of
    one mode after another (how it was measured until 2026-12-04) put this machine's
    swings between the modes: an A/A control of ±5 %, and a 3 % POSIX-X-over-bubblewrap
    CPU cost for gcc that runs in lock step did not find (within 1 %, three runs of 150
    to 200 steps; all Exo's mechanisms together under 0.3 % by ablation)."""
    root = work / f"{name}-root"
    bench = root / "home/bench"
    bench.mkdir(parents=True)
    (bench / "input.c").write_text(STAGE2_C.read_text())
    (bench / "work.py").write_text(PY_WORKLOAD)
    manifest_path = work / f"{name}.toml"
    manifest_path.write_text(manifest)
    script = JOB_STEP.format(command=command)
    env = {**os.environ, "EXO_ROOT": str(root)}
    argv = {
        "native": ["/bin/sh", "-c", script],
        "posix_x": [*EXO, "posix-x", "run", "--manifest", str(manifest_path), "--cwd",
                    "/home/bench", "--", "/bin/sh", "-c", script],
        "bwrap": [*_bwrap_view([(bench, "/home/bench", True)]), "--chdir", "/home/bench",
                  "--", "/bin/sh", "-c", script],
    }
    argv[SECCOMP_PEER] = _with_filter(argv["bwrap"], work)
    modes = _modes(control, seccomp_peer)
    shells = {m: _JobShell(argv[m if m == SECCOMP_PEER else _started_as(m)], env, bench)
              for m in modes}
    try:
        for sh in shells.values():  # a first run each, not counted (caches, page-ins)
            sh.step()
        rounds_ = _Rounds(control)
        for r in range(rounds):
            wall = dict.fromkeys(modes, 0.0)
            used = dict.fromkeys(modes, 0.0)
            for k in range(count):
                for mode in _rotated(modes, r * count + k):
                    seconds, cpu_s = shells[mode].step()
                    wall[mode] += seconds
                    used[mode] += cpu_s
            rate = {m: count / wall[m] for m in modes}
            load = rounds_.add(rate, {m: used[m] / count for m in modes})
            _log(f"  {name} round {r + 1}: " + ", ".join(
                f"{m} {rate[m]:.2f}/s" for m in modes) + f" (load {load})")
    finally:
        for sh in shells.values():
            sh.close()
    summary = rounds_.summary()
    summary["runs_per_round"] = count
    summary["interleaving"] = "lock step: each run alternates between the modes"
    return summary


class _JobShell:
    """A shell of one mode that runs the job's command once per line it reads
    (``JOB_STEP``), for the whole benchmark."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.children = 0.0  # the CPU its children used so far (``times``)

    def step(self) -> tuple[float, float]:
        """One run: its wall seconds and CPU seconds."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        # "wall NS", then `times`: the shell's own, its children's
        lines = [self.proc.stdout.readline() for _ in range(3)]
        found = re.fullmatch(r"wall (\d+)\n", lines[0])
        if found is None or not lines[2]:
            raise BenchmarkError(f"the job's shell ended ({self.proc.poll()}): "
                                 f"{' '.join(self.argv)[:200]}")
        children = _times(lines[2])
        used, self.children = children - self.children, children
        return int(found[1]) / 1e9, used

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _median_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval of the median: the order statistics
    ``x(k)`` and ``x(n+1-k)``, k the largest with P(Binomial(n, 1/2) < k) <= (1 - level)/2
    (for 10 rounds: the 2nd and 9th values, 97.9 %). Under 6 values none reaches 95 %:
    the whole range."""
    xs = sorted(values)
    n = len(xs)
    k, below = 0, 0.0
    while k < n // 2 and below + math.comb(n, k) / 2 ** n <= (1 - level) / 2:
        below += math.comb(n, k) / 2 ** n
        k += 1
    k = max(k, 1)
    return xs[k - 1], xs[n - k]


def _summary(ratios: list[float], bwrap_ratios: list[float], cpu_ratios: list[float],
             loads: list[list[float]], vs_bwrap: list[float] | None = None,
             bwrap_cpu_ratios: list[float] | None = None,
             controls: list[float] | None = None) -> dict[str, Any]:
    """``vs_bwrap``: POSIX-X ÷ bubblewrap throughput, round by round (paired: the two ran
    within seconds of each other, so the machine's swings between rounds cancel out);
    its median, with the median's 95 % confidence interval, says whether POSIX-X is
    measurably slower than bubblewrap. ``controls``: the A/A control's ratios (a second
    native run ÷ the first, round by round; ``--control``)."""
    lo, hi = _median_ci(ratios)
    out = {"ratio_median": round(statistics.median(ratios), 4),
           "ratio_ci95": [round(lo, 4), round(hi, 4)],
           "ratio_spread": round(max(ratios) - min(ratios), 4),
           "bwrap_ratio_median": round(statistics.median(bwrap_ratios), 4),
           "cpu_per_op_ratio": round(statistics.median(cpu_ratios), 4) if cpu_ratios
           else float("nan"),
           "rounds": len(ratios), "ratios": [round(r, 4) for r in ratios],
           "bwrap_ratios": [round(r, 4) for r in bwrap_ratios],
           "load_1min": [x[0] for x in loads]}
    if vs_bwrap:
        lo, hi = _median_ci(vs_bwrap)
        out |= {"vs_bwrap_median": round(statistics.median(vs_bwrap), 4),
                "vs_bwrap_ci95": [round(lo, 4), round(hi, 4)],
                "vs_bwrap_ratios": [round(r, 4) for r in vs_bwrap]}
    if bwrap_cpu_ratios:
        out["bwrap_cpu_per_op_ratio"] = round(statistics.median(bwrap_cpu_ratios), 4)
    if controls:
        lo, hi = _median_ci(controls)
        out |= {"control_ratio_median": round(statistics.median(controls), 4),
                "control_ratio_ci95": [round(lo, 4), round(hi, 4)],
                "control_ratios": [round(r, 4) for r in controls]}
    return out


def bench_syscalls(work: Path, repeats: int) -> dict[str, dict[str, float]]:
    bench_dir = work / "root/home/bench"
    bench_dir.mkdir(parents=True)
    (bench_dir / "syscalls.c").write_text(SYSCALL_C)
    subprocess.run(["gcc", "-O2", "-o", str(bench_dir / "syscalls"),
                    str(bench_dir / "syscalls.c")], check=True)
    manifest = work / "syscalls.toml"
    manifest.write_text('[sandbox]\ncapabilities = ["storage://home/bench=READ,EXECUTE"]\n'
                        "[posix_x]\nfork = true\n")
    env = {**os.environ, "EXO_ROOT": str(work / "root")}
    runs: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeats):
        for mode, argv in (("native", [str(bench_dir / "syscalls")]),
                           ("posix_x", [*EXO, "posix-x", "run", "--manifest", str(manifest),
                                        "--", "/home/bench/syscalls"])):
            out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120,
                                 check=True).stdout
            for line in out.splitlines():
                name, ns = line.split()
                runs.setdefault(name, {}).setdefault(mode, []).append(float(ns))
    return {name: {"native_ns": round(statistics.median(m["native"]), 1),
                   "posix_x_ns": round(statistics.median(m["posix_x"]), 1)}
            for name, m in runs.items()}


class BenchmarkError(Exception):
    """The benchmark cannot run here: one line."""


_log_to: list[Callable[[str], None]] = [lambda line: print(line, flush=True)]


def _log(line: str) -> None:
    _log_to[-1](line)


def _missing() -> list[str]:
    return [p for p in ("nginx", "redis-server", "redis-benchmark", "wrk", "gcc", "bwrap",
                        str(Postgres.BIN / "pgbench"))
            if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


def ensure_packages() -> None:
    """Install the applications' Debian packages when missing and run as root; else one
    line naming them."""
    if not _missing():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchmarkError(f"missing {', '.join(_missing())}: run `make posix-x-apps` "
                             "as root")
    _log(f"installing Debian packages: {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchmarkError(f"{' '.join(cmd[:2])} failed: "
                                 f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    if still := _missing():
        raise BenchmarkError(f"still missing after apt-get: {', '.join(still)}")


def run_benchmark(*, rounds: int, seconds: float, chosen: list[str], output: Path,
                  quick: bool, control: bool = False,
                  seccomp_peer: bool = False) -> dict[str, Any]:
    """Measure ``chosen`` and merge the results into ``output``; the results."""
    if os.geteuid() != 0:
        raise BenchmarkError("needs root (the servers' sandboxes and native runs as other "
                             "users)")
    if not EXAMPLES.is_dir():
        raise BenchmarkError(f"{EXAMPLES}: the example manifests are not here (run it from "
                             "a checkout of Exo-OS)")
    ensure_packages()
    with tempfile.TemporaryDirectory(prefix="exo-bench-posix-x-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # native nginx's workers run as nobody
        results: dict[str, Any] = {"syscalls": {}, "apps": {}}
        with contextlib.suppress(FileNotFoundError, ValueError):
            results = json.loads(output.read_text())  # merged into: --apps may be few
        results.setdefault("syscalls", {})
        results.setdefault("apps", {})
        if "syscalls" in chosen:
            _log("syscalls (native vs POSIX-X)")
            results["syscalls"] = bench_syscalls(work, 3 if quick else 5)
            for name, ns in results["syscalls"].items():
                _log(f"  {name:<16} {ns['native_ns']:>10.1f} ns "
                     f"{ns['posix_x_ns']:>10.1f} ns")
        for cls in (Nginx, Redis, Postgres):
            if cls.name not in chosen:
                continue
            def make(mode: str, cls: type[App] = cls) -> App:
                root = work / f"{cls.name}-{mode}-root"
                root.mkdir(mode=0o755)
                return cls(root, _free_port())

            results["apps"][cls.name] = bench_app(make, rounds, seconds, control,
                                                  seccomp_peer)
            _log(f"  {cls.name}: {results['apps'][cls.name]}")
        count = 5 if quick else 20
        # Their directory in passthrough mode, as the servers' example manifests have it:
        # served by the kernel's Python FUSE server instead, gcc's reads of input.c and
        # writes of out.o cost a compile ~7 % (0.90 against 0.97 of native, CPU per
        # compile 1.08 against 1.02: six interleaved rounds of the same job each way).
        jobs = {
            "gcc": ("/usr/bin/gcc -O2 -c -o out.o input.c",
                    '[sandbox]\ncapabilities = ["storage://home/bench=READ,WRITE"]\n'
                    "[posix_x]\nfork = true\nexec = true\npassthrough = true\n"),
            "python": ("/usr/bin/python3 -I work.py",
                       '[sandbox]\ncapabilities = ["storage://home/bench=READ"]\n'
                       "[posix_x]\nfork = true\nexec = true\npassthrough = true\n"),
        }
        for name, (command, manifest) in jobs.items():
            if name not in chosen:
                continue
            results["apps"][name] = bench_job(name, work, command, count, rounds, manifest,
                                                control, seccomp_peer)
            _log(f"  {name}: {results['apps'][name]}")
    stamp_measured(results, chosen, rounds=rounds, seconds=seconds, control=control,
                   quick=quick)
    pins = _pinning()
    results["machine"] = {"cpus": os.cpu_count(), "load_at_end": _load(),
                          "rounds": rounds, "seconds": seconds, "control": control,
                          "servers_pinned": None if pins is None else
                          {"server_cpu": pins[0], "load_cpu": pins[1]}}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n")
    return results


def stamp_measured(results: dict[str, Any], chosen: list[str], *, rounds: int,
                   seconds: float, control: bool, quick: bool = False) -> None:
    """Each application measured now says when and how (``measured``): an ``--apps`` run
    merges into a file whose other rows, and ``machine`` before it, came from earlier
    runs. (``seconds`` is the servers' load time; a job's size is its
    ``runs_per_round``.)"""
    stamp = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rounds": rounds,
             "seconds": seconds, "control": control, "quick": quick}
    for name in chosen:
        if name in results.get("apps", {}):
            results["apps"][name]["measured"] = dict(stamp)


def _pct(posix_x: float, native: float) -> str:
    return f"{(posix_x / native - 1) * 100:+.0f}%" if native > 0 else "?"


def render(results: dict[str, Any], out: TextIO) -> None:
    """The seed's side-by-side table: each syscall's cost and each application's
    throughput ratio, with bubblewrap's beside it."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, soft_wrap=not out.isatty())
    machine = results.get("machine", {})
    console.print(f"[bold]POSIX-X vs Linux[/bold] ({machine.get('rounds', '?')} interleaved "
                  f"rounds; load at the end {machine.get('load_at_end', ['?'])[0]} on "
                  f"{machine.get('cpus', '?')} CPUs)")
    calls = Table(title="Syscalls (ns per call, median)")
    for column in ("syscall", "POSIX-X", "Linux", "difference"):
        calls.add_column(column, justify="left" if column == "syscall" else "right")
    for name, ns in results.get("syscalls", {}).items():
        calls.add_row(name, f"{ns['posix_x_ns']:.0f}", f"{ns['native_ns']:.0f}",
                      _pct(ns["posix_x_ns"], ns["native_ns"]))
    if calls.row_count:  # an --apps run without syscalls has none
        console.print(calls)
    # Eight narrow columns without vertical rules: the table fits 80 columns.
    apps = Table(title="Applications (throughput ÷ native, median of per-round ratios)",
                 box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False,
                 collapse_padding=True)
    for column in ("app", "POSIX-X", "spread", "bwrap", "CPU/op", "÷ bwrap, 95% CI",
                   "≥0.97", "≥bwrap"):
        apps.add_column(column, justify="left" if column == "app" else "right",
                        no_wrap=True)
    met = 0
    for name, a in results.get("apps", {}).items():
        native_ok = a["ratio_median"] >= 0.97
        verdict = bwrap_verdict(a)
        met += native_ok and verdict != "✗"
        paired = (f"{a['vs_bwrap_median']:.2f} {a['vs_bwrap_ci95'][0]:.2f}–"
                  f"{a['vs_bwrap_ci95'][1]:.2f}") if "vs_bwrap_median" in a else "-"
        cpu = f"{a['cpu_per_op_ratio']:.2f}"
        if "bwrap_cpu_per_op_ratio" in a:
            cpu += f"|{a['bwrap_cpu_per_op_ratio']:.2f}"
        apps.add_row(name, f"{a['ratio_median']:.2f}", f"{a['ratio_spread']:.2f}",
                     f"{a['bwrap_ratio_median']:.2f}", cpu, paired,
                     "✓" if native_ok else "✗", verdict)
    console.print(apps)
    ratios = [a["ratio_median"] for a in results.get("apps", {}).values()]
    console.print("CPU/op: CPU time per operation ÷ native's, POSIX-X|bubblewrap; ÷ bwrap: "
                  "POSIX-X ÷ bubblewrap round by round, median and its 95% interval")
    controls = [f"{name} {a['control_ratio_median']:.2f} ({a['control_ratio_ci95'][0]:.2f}–"
                f"{a['control_ratio_ci95'][1]:.2f})"
                for name, a in results.get("apps", {}).items() if "control_ratio_median" in a]
    older = [f"{name} {a['measured']['rounds']} rounds, {a['measured']['date'][:10]}"
             for name, a in results.get("apps", {}).items()
             if a.get("measured", {}).get("rounds", machine.get("rounds")) != machine.get("rounds")]
    if older:  # merged from other runs (--apps)
        console.print("Measured in other runs: " + ", ".join(older))
    peers = [f"{name} {a['vs_bwrap_seccomp_median']:.2f} ({a['vs_bwrap_seccomp_ci95'][0]:.2f}–"
             f"{a['vs_bwrap_seccomp_ci95'][1]:.2f}; CPU/op "
             f"{a.get('bwrap_seccomp_cpu_per_op_ratio', float('nan')):.2f})"
             for name, a in results.get("apps", {}).items() if "vs_bwrap_seccomp_median" in a]
    if peers:
        console.print("POSIX-X ÷ bubblewrap loading POSIX-X's seccomp program (median, 95% "
                      "interval; that peer's CPU/op ÷ native's): " + ", ".join(peers))
    if controls:
        console.print("A/A control, native ÷ native again in the same rounds (median, 95% "
                      "interval): " + ", ".join(controls) + ". A ratio closer to 1 than "
                      "the control's distance from it is below what this run can resolve")
    if ratios:
        console.print(f"Overall: POSIX-X runs at {statistics.median(ratios):.0%} of native "
                      f"(median over {len(ratios)} applications); {met} of {len(ratios)} "
                      "reach 0.97 of native and are not measurably slower than bubblewrap "
                      "in this run (≥ bwrap: ✓ paired median ≥ 1, ≈ its 95% confidence "
                      "interval reaches 1, ✗ it does not)")


def bwrap_verdict(app: dict[str, Any]) -> str:
    """"✓" POSIX-X's throughput ÷ bubblewrap's, round by round, has a median ≥ 1; "≈"
    below 1 but its 95 % confidence interval reaches 1 (no difference this run can
    measure); "✗" measurably slower. Results without paired ratios (older files) compare
    the two medians of ratios to native, as they were judged then."""
    if "vs_bwrap_median" not in app:
        return "✓" if app["ratio_median"] >= app["bwrap_ratio_median"] else "✗"
    if app["vs_bwrap_median"] >= 1.0:
        return "✓"
    return "≈" if app["vs_bwrap_ci95"][1] >= 1.0 else "✗"


def main(*, quick: bool, as_json: bool, rounds: int | None, apps: str | None,
         output: str | None, out: TextIO, err: TextIO, seconds: float | None = None,
         control: bool = False, seccomp_peer: bool = False) -> int:
    """``posix-x benchmark``: progress on ``err`` with ``--json`` (the JSON alone on
    ``out``), on ``out`` otherwise. ``control``: an A/A control in every round
    (``CONTROL``)."""
    chosen = [a for a in (apps or ",".join(ALL)).split(",") if a]
    if unknown := set(chosen) - set(ALL):
        raise BenchmarkError(f"unknown application(s) {', '.join(sorted(unknown))} (of "
                             f"{', '.join(ALL)})")
    if rounds is not None and rounds < 1:
        raise BenchmarkError("--rounds: expected at least 1")
    stream = err if as_json else out
    def log(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    _log_to.append(log)
    try:
        results = run_benchmark(
            rounds=rounds or (3 if quick else 10), seconds=seconds or (2.0 if quick else 5.0),
            chosen=chosen, output=Path(output) if output else RESULTS, quick=quick,
            control=control, seccomp_peer=seccomp_peer)
    finally:
        _log_to.pop()
    if as_json:
        json.dump(results, out, indent=1)
        out.write("\n")
    else:
        render(results, out)
        out.write(f"wrote {output or RESULTS}\n")
    return 0
