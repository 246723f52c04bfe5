"""POSIX-X against native Linux and plain bubblewrap, in one run (issue 10).

- ``syscalls``: a small C program (compiled here with gcc) times getpid, open+close of a
  cached file, read 64 B, write 64 B, a pipe round trip and fork+exit, natively and under
  ``exo posix-x run``; nanoseconds per operation, the median of its repetitions.
- ``apps``: nginx serving a static file (wrk), redis (redis-benchmark GET/SET) and
  PostgreSQL (pgbench, select-only, scale 2), each
  started natively, under ``exo posix-x run`` with the example manifests, and under plain
  bubblewrap with the same view, in interleaved rounds (the order rotates each round);
  gcc compiling a C file (the sandbox's stage 2) and ``python3 -I`` running a small
  json/re/arithmetic workload, each run N times by ``/bin/sh`` inside the mode's sandbox
  (rate: runs per second of wall time; CPU: the shell's ``times`` for its children).
  Per round: ratio = POSIX-X ÷ native throughput, bwrap ratio = bwrap ÷ native, and the
  server's CPU time per request (utime+stime from ``/proc/PID/stat`` of its processes),
  which is steadier than throughput here. Reported: the median of the per-round ratios,
  their spread (max − min), the median bwrap ratio and the median CPU-per-op ratio.

For the servers, also the kernel's FUSE requests per served request, by opcode (its
servers write their counts to ``EXO_FUSE_OPS_LOG`` when they close; the last round's whole
POSIX-X run, start and stop included): what a program's file accesses cost the kernel.

Writes ``bench/results/posix_x.json`` as
``{"syscalls": {NAME: {"native_ns", "posix_x_ns"}}, "apps": {APP: {"ratio_median",
"ratio_spread", "bwrap_ratio_median", "cpu_per_op_ratio", "fuse_ops_per_request"}}}``.
``--quick``: 3 rounds of 2-second loads (the issue's figures need ``--rounds 10`` or more).
``--apps postgres,redis``: only those (``syscalls`` is one), merged into the existing file.
Needs root, the packages of ``make posix-x-apps`` and gcc.
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "posix-x"
RESULTS = REPO / "bench" / "results" / "posix_x.json"
EXO = [sys.executable, "-m", "exo"]
MODES = ("native", "posix_x", "bwrap")
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


def _bwrap_view(binds: list[tuple[Path, str, bool]]) -> list[str]:
    """Plain bubblewrap with the same view: the system directories, /etc, /dev, /proc,
    a private /tmp, and the app's directories at the same names."""
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc", "--dev", "/dev",
            "--proc", "/proc", "--tmpfs", "/tmp"]
    for link in ("bin", "sbin", "lib", "lib64"):
        if Path(f"/{link}").is_symlink():
            args += ["--symlink", os.readlink(f"/{link}"), f"/{link}"]
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

    def load(self, seconds: float) -> float:
        """Requests per second over one load; the request count comes from the rate."""
        raise NotImplementedError

    #: Under POSIX-X, the kernel's FUSE servers append their request counts per opcode
    #: here when they close (``EXO_FUSE_OPS_LOG``).
    @property
    def ops_log(self) -> Path:
        return self.root.parent / f"{self.name}-fuse-ops.jsonl"

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
        env = {**os.environ, "EXO_ROOT": str(self.root)}
        if mode == "posix_x":
            env["EXO_FUSE_OPS_LOG"] = str(self.ops_log)
        proc = subprocess.Popen(self.argv(mode), env=env, stdout=subprocess.DEVNULL,
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
        self.manifest = root.parent / "nginx.toml"
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
        out = subprocess.run(["wrk", "-t1", "-c16", f"-d{max(1, round(seconds))}s",
                              f"http://127.0.0.1:{self.port}/index.html"],
                             capture_output=True, text=True, timeout=seconds + 30,
                             check=True).stdout
        match = re.search(r"Requests/sec:\s+([\d.]+)", out)
        if match is None:
            raise RuntimeError(f"wrk: no rate in {out!r}")
        return float(match[1])


class Redis(App):
    name, comm = "redis", "redis-server"

    def __init__(self, root: Path, port: int) -> None:
        super().__init__(root, port)
        (root / "var/lib/redis").mkdir(parents=True, exist_ok=True)
        self.manifest = root.parent / "redis.toml"
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
        out = subprocess.run(["redis-benchmark", "-p", str(self.port), "-t", "set,get",
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
        self.manifest = root.parent / "postgres.toml"
        self.manifest.write_text((EXAMPLES / "postgres.toml").read_text()
                                 .replace("15432", str(port)))
        self.native = root / "native-data"
        self.native.mkdir()
        os.chown(self.native, self.user.pw_uid, self.user.pw_gid)
        init = ["-A", "trust", "-U", "postgres", "--no-sync"]
        subprocess.run([*self._as_postgres(), str(self.BIN / "initdb"), "-D",
                        str(self.native), *init], check=True, capture_output=True)
        env = {**os.environ, "EXO_ROOT": str(root)}
        subprocess.run([*EXO, "posix-x", "run", "--manifest", str(self.manifest), "--",
                        str(self.BIN / "initdb"), "-D", "/var/lib/postgresql/data", *init],
                       env=env, check=True, capture_output=True)
        self.loaded: set[str] = set()  # data directories pgbench has initialised
        self.mode = "native"  # the mode being measured (argv is called before load)

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
        out = subprocess.run([str(self.BIN / "pgbench"), "-S", "-c", "4", "-j", "2",
                              "-T", str(max(1, round(seconds))), *where], capture_output=True,
                             text=True, timeout=seconds + 60, check=True).stdout
        match = re.search(r"tps = ([\d.]+)", out)
        if match is None:
            raise RuntimeError(f"pgbench: no rate in {out!r}")
        return float(match[1])


def bench_app(app: App, rounds: int, seconds: float) -> dict[str, Any]:
    ratios, bwrap_ratios, cpu_ratios = [], [], []
    ops_per_request: dict[str, float] = {}
    for r in range(rounds):
        rate: dict[str, float] = {}
        cpu_per_op: dict[str, float] = {}
        for mode in MODES[r % 3:] + MODES[:r % 3]:
            with app.running(mode) as proc:
                warm = min(1.0, seconds)
                requests = app.load(warm) * max(1, round(warm))  # warm up
                before = _cpu(proc, app.comm)
                rate[mode] = app.load(seconds)
                cpu_per_op[mode] = (_cpu(proc, app.comm) - before) / (rate[mode] * seconds)
                requests += rate[mode] * max(1, round(seconds))
            if mode == "posix_x":
                # This round's server life (start, both loads, stop) per request served.
                ops = app.fuse_ops()
                ops_per_request = {op: round(n / requests, 3)
                                   for op, n in sorted(ops.items(), key=lambda x: -x[1])}
        ratios.append(rate["posix_x"] / rate["native"])
        bwrap_ratios.append(rate["bwrap"] / rate["native"])
        if cpu_per_op["native"] > 0:
            cpu_ratios.append(cpu_per_op["posix_x"] / cpu_per_op["native"])
        print(f"  {app.name} round {r + 1}: " + ", ".join(
            f"{m} {rate[m]:.0f}/s" for m in MODES), flush=True)
    if ops_per_request:
        print(f"  {app.name} FUSE requests per request (last round): {ops_per_request}")
    return {**_summary(ratios, bwrap_ratios, cpu_ratios),
            "fuse_ops_per_request": ops_per_request}


#: One command run ``count`` times by ``/bin/sh`` in the mode's sandbox, which prints the
#: wall time in ns and (``times``) its children's user and system time.
JOB_SCRIPT = ('s=$(date +%s%N); i=0; while [ $i -lt {count} ]; do {command} >/dev/null || '
              'exit 1; i=$((i+1)); done; e=$(date +%s%N); echo wall $((e-s)); times')

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
              manifest: str) -> dict[str, float]:
    """A command (gcc, python3) run ``count`` times per round in each mode, in the
    directory ``work`` (shown as ``/home/bench``): rate = runs per second of wall time,
    CPU per run from ``times``."""
    root = work / f"{name}-root"
    bench = root / "home/bench"
    bench.mkdir(parents=True)
    (bench / "input.c").write_text((REPO / "src/exo/sandbox/_stage2.c").read_text())
    (bench / "work.py").write_text(PY_WORKLOAD)
    manifest_path = work / f"{name}.toml"
    manifest_path.write_text(manifest)
    script = JOB_SCRIPT.format(count=count, command=command)
    env = {**os.environ, "EXO_ROOT": str(root)}
    argv = {
        "native": ["/bin/sh", "-c", script],
        "posix_x": [*EXO, "posix-x", "run", "--manifest", str(manifest_path), "--cwd",
                    "/home/bench", "--", "/bin/sh", "-c", script],
        "bwrap": [*_bwrap_view([(bench, "/home/bench", True)]), "--chdir", "/home/bench",
                  "--", "/bin/sh", "-c", script],
    }
    ratios, bwrap_ratios, cpu_ratios = [], [], []
    for r in range(rounds):
        rate: dict[str, float] = {}
        cpu: dict[str, float] = {}
        for mode in MODES[r % 3:] + MODES[:r % 3]:
            out = subprocess.run(argv[mode], env=env, cwd=bench, capture_output=True,
                                 text=True, timeout=600, check=True).stdout
            wall = int(re.search(r"wall (\d+)", out)[1]) / 1e9  # type: ignore[index]
            rate[mode] = count / wall
            cpu[mode] = _times(out) / count
        ratios.append(rate["posix_x"] / rate["native"])
        bwrap_ratios.append(rate["bwrap"] / rate["native"])
        if cpu["native"] > 0:
            cpu_ratios.append(cpu["posix_x"] / cpu["native"])
        print(f"  {name} round {r + 1}: " + ", ".join(
            f"{m} {rate[m]:.2f}/s" for m in MODES), flush=True)
    return _summary(ratios, bwrap_ratios, cpu_ratios)


def _summary(ratios: list[float], bwrap_ratios: list[float],
             cpu_ratios: list[float]) -> dict[str, float]:
    return {"ratio_median": round(statistics.median(ratios), 4),
            "ratio_spread": round(max(ratios) - min(ratios), 4),
            "bwrap_ratio_median": round(statistics.median(bwrap_ratios), 4),
            "cpu_per_op_ratio": round(statistics.median(cpu_ratios), 4) if cpu_ratios
            else float("nan")}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2-second loads")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per application")
    parser.add_argument("--seconds", type=float, help="load duration per measurement")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--apps", default=",".join(ALL),
                        help=f"comma-separated, of {','.join(ALL)} (default: all); results "
                        "are merged into an existing --output")
    args = parser.parse_args()
    chosen = [a for a in args.apps.split(",") if a]
    if unknown := set(chosen) - set(ALL):
        parser.error(f"unknown --apps: {', '.join(sorted(unknown))}")
    rounds = args.rounds or (3 if args.quick else 10)
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    missing = [p for p in ("nginx", "redis-server", "redis-benchmark", "wrk", "gcc", "bwrap",
                           str(Postgres.BIN / "pgbench"))
               if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if missing:
        print(f"posix_x bench: missing {', '.join(missing)}: run `make posix-x-apps`",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="exo-posix-x-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # native nginx's workers run as nobody
        results: dict[str, Any] = {"syscalls": {}, "apps": {}}
        with contextlib.suppress(FileNotFoundError, ValueError):
            results = json.loads(args.output.read_text())  # merged into: --apps may be few
        if "syscalls" in chosen:
            print("syscalls (native vs POSIX-X)", flush=True)
            results["syscalls"] = bench_syscalls(work, 3 if args.quick else 5)
            for name, ns in results["syscalls"].items():
                print(f"  {name:<16} {ns['native_ns']:>10.1f} ns "
                      f"{ns['posix_x_ns']:>10.1f} ns")
        for cls in (Nginx, Redis, Postgres):
            if cls.name not in chosen:
                continue
            root = work / f"{cls.name}-root"
            root.mkdir(mode=0o755)
            results["apps"][cls.name] = bench_app(cls(root, _free_port()), rounds, seconds)
            print(f"  {cls.name}: {results['apps'][cls.name]}", flush=True)
        count = 5 if args.quick else 20
        jobs = {
            "gcc": ("/usr/bin/gcc -O2 -c -o out.o input.c",
                    '[sandbox]\ncapabilities = ["storage://home/bench=READ,WRITE"]\n'
                    "[posix_x]\nfork = true\nexec = true\n"),
            "python": ("/usr/bin/python3 -I work.py",
                       '[sandbox]\ncapabilities = ["storage://home/bench=READ"]\n'
                       "[posix_x]\nfork = true\nexec = true\n"),
        }
        for name, (command, manifest) in jobs.items():
            if name not in chosen:
                continue
            results["apps"][name] = bench_job(name, work, command, count, rounds, manifest)
            print(f"  {name}: {results['apps'][name]}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
