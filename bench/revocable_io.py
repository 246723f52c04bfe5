"""Revocable files (FUSE fds, served and passthrough) against a plain fd, in the same run.

The kernel process runs the FUSE file server; the client is a separate process that got
three descriptors on the same file (as a sandboxed app would): a plain fd on the real file
(the peer, "plain"), a revocable fd served by the kernel ("fuse": checked mode, every
operation a request) and a revocable fd in FUSE passthrough mode ("passthrough": reads and
writes go straight to the real file). The client measures, interleaving the kinds on every
repeat: sequential read and write throughput for several block sizes, and per-operation
latency of pread/pwrite (4 KiB) and fstat. The kernel side measures what an ``open``
costs (real open + registering + opening on the mount) against a plain open, in both
modes, and how long revoking 100 open files takes in both modes (passthrough: marking each
FUSE inode bad). If the kernel offers no passthrough, the "passthrough" rows are absent.

Directory grants (``RevocableDirs``): a second client process gets paths to the same
directory, the real one (what a plain bind mount shows: a bind mount adds nothing per
operation), the kernel's revocable FUSE export of it and (when the kernel offers it) a
passthrough export of it, and interleaves them: stat,
open+read+close of a 4 KiB file, a 3-component path open, listdir of 100 entries,
create+write+close+unlink, pread 4 KiB on an open file, and sequential read and write with
1 MiB blocks. Writes JSON to bench/results/revocable_io.json.

    python bench/revocable_io.py [--size-mib 32] [--repeat 5] [--ops 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from exo.kernel.caps import CapabilityManager
from exo.kernel.revocable import RevocableDirs, RevocableFiles

RESULTS = Path(__file__).resolve().parent / "results" / "revocable_io.json"

_CLIENT = r"""
import json, os, statistics, sys, time
size, repeat, ops = (int(a) for a in sys.argv[1:4])
blocks = (4096, 65536, 1 << 20)
kinds = {k: int(v) for k, v in (a.split("=") for a in sys.argv[4:])}
tput = {k: {b: {"read": [], "write": []} for b in blocks} for k in kinds}
lat = {k: {"pread_4k": [], "pwrite_4k": [], "fstat": []} for k in kinds}

def seq(fd, block, write):
    buf = b"x" * block
    t = time.perf_counter()
    off = 0
    while off < size:
        if write:
            off += os.pwrite(fd, buf, off)
        else:
            n = len(os.pread(fd, block, off))
            if n == 0:
                break
            off += n
    return size / (time.perf_counter() - t) / 2**20

def per_op(fd, name):
    out = []
    pc = time.perf_counter_ns
    buf = b"y" * 4096
    for i in range(ops):
        off = (i * 4096) % size
        t = pc()
        if name == "pread_4k":
            os.pread(fd, 4096, off)
        elif name == "pwrite_4k":
            os.pwrite(fd, buf, off)
        else:
            os.fstat(fd)
        out.append(pc() - t)
    return out

for r in range(repeat):
    order = list(kinds)[r % len(kinds):] + list(kinds)[:r % len(kinds)]  # rotate
    for b in blocks:
        for k in order:
            tput[k][b]["write"].append(seq(kinds[k], b, True))
            tput[k][b]["read"].append(seq(kinds[k], b, False))
    for name in ("pread_4k", "pwrite_4k", "fstat"):
        for k in order:
            lat[k][name].extend(per_op(kinds[k], name))

def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]

res = {"throughput_mib_s": {k: {str(b): {d: statistics.median(v) for d, v in dv.items()}
                                  for b, dv in bv.items()} for k, bv in tput.items()},
       "latency_us": {k: {n: {"median": statistics.median(v) / 1000, "p95": q(v, .95) / 1000}
                          for n, v in nv.items()} for k, nv in lat.items()}}
print(json.dumps(res))
"""


_DIR_CLIENT = r"""
import json, os, statistics, sys, time
repeat, ops, size = (int(a) for a in sys.argv[1:4])
kinds = dict(a.split("=", 1) for a in sys.argv[4:])
pc = time.perf_counter_ns
buf4k = b"z" * 4096
mib = b"m" * (1 << 20)

def stat(base, i):
    os.stat(f"{base}/small/{i % 100}.txt")

def open_read(base, i):
    with open(f"{base}/small/{i % 100}.txt", "rb") as fh:
        fh.read()

def deep_open(base, i):
    fd = os.open(f"{base}/a/b/c/leaf.txt", os.O_RDONLY)
    os.close(fd)

def listdir(base, i):
    os.listdir(f"{base}/small")

def create(base, i):
    name = f"{base}/tmp-{i}"
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, buf4k)
    os.close(fd)
    os.unlink(name)

ops_table = {"stat": stat, "open_read_close_4k": open_read, "open_3_components": deep_open,
             "listdir_100": listdir, "create_write_unlink_4k": create}
lat = {k: {n: [] for n in [*ops_table, "pread_4k", "lseek_end", "fstat_open"]}
       for k in kinds}
tput = {k: {"read": [], "write": []} for k in kinds}
for r in range(repeat):
    order = list(kinds)[r % len(kinds):] + list(kinds)[:r % len(kinds)]  # rotate
    for name, fn in ops_table.items():
        n = ops // 10 if name == "listdir_100" else ops
        for k in order:
            base = kinds[k]
            for i in range(n):
                t = pc()
                fn(base, i)
                lat[k][name].append(pc() - t)
    for k in order:
        fd = os.open(f"{kinds[k]}/big.bin", os.O_RDWR)
        for i in range(ops):
            t = pc()
            os.pread(fd, 4096, (i * 4096) % size)
            lat[k]["pread_4k"].append(pc() - t)
        for i in range(ops):  # a database's "how many blocks": lseek(SEEK_END), fstat
            t = pc()
            os.lseek(fd, 0, os.SEEK_END)
            lat[k]["lseek_end"].append(pc() - t)
            t = pc()
            os.fstat(fd)
            lat[k]["fstat_open"].append(pc() - t)
        t = time.perf_counter()
        off = 0
        while off < size:
            off += os.pwrite(fd, mib, off)
        tput[k]["write"].append(size / (time.perf_counter() - t) / 2**20)
        t = time.perf_counter()
        off = 0
        while off < size:
            got = len(os.pread(fd, 1 << 20, off))
            if not got:
                break
            off += got
        tput[k]["read"].append(size / (time.perf_counter() - t) / 2**20)
        os.close(fd)

def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]

print(json.dumps({
    "latency_us": {k: {n: {"median": statistics.median(v) / 1000, "p95": q(v, .95) / 1000}
                       for n, v in nv.items()} for k, nv in lat.items()},
    "throughput_1mib_mib_s": {k: {d: statistics.median(v) for d, v in dv.items()}
                              for k, dv in tput.items()},
}))
"""


def _directory_mount(tmp: Path, mgr: CapabilityManager, root: int, args: argparse.Namespace
                     ) -> dict[str, Any]:
    """The directory export against the same directory without it, in one client."""
    grant = tmp / "grant"
    (grant / "small").mkdir(parents=True)
    for i in range(100):
        (grant / "small" / f"{i}.txt").write_bytes(os.urandom(4096))
    (grant / "a" / "b" / "c").mkdir(parents=True)
    (grant / "a" / "b" / "c" / "leaf.txt").write_text("leaf")
    size = min(args.size_mib, 16) << 20
    (grant / "big.bin").write_bytes(os.urandom(size))
    srv = RevocableDirs(tmp / "dirs", threads=args.threads)
    srv.start()
    unsubscribe = mgr.on_revoke(srv.revoke)
    try:
        pin = mgr.pin(1, root, "READ,WRITE")
        export = srv.export(os.open(grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), pin,
                            writable=True, owner=1)
        kinds = {"plain": grant, "fuse": export}
        if srv.passthrough:
            kinds["passthrough"] = srv.export(
                os.open(grant, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
                mgr.pin(1, root, "READ,WRITE"), writable=True, owner=1, passthrough=True)
        out = subprocess.run(
            [sys.executable, "-c", _DIR_CLIENT, str(args.repeat),
             str(max(200, args.ops // 6)), str(size), *(f"{k}={v}" for k, v in kinds.items())],
            capture_output=True, text=True, check=True)
        client: dict[str, Any] = json.loads(out.stdout)
        # Revocation of live exports: the next stat fails, through a name whose attributes
        # the passthrough export let the client cache.
        held = {k: os.open(v, os.O_PATH | os.O_DIRECTORY) for k, v in kinds.items()
                if k != "plain"}
        for fd in held.values():
            os.stat("big.bin", dir_fd=fd)
        t = time.perf_counter_ns()
        mgr.revoke(1, root)
        revoke_us = (time.perf_counter_ns() - t) / 1000
        for k, fd in held.items():
            try:
                os.stat("big.bin", dir_fd=fd)
                raise AssertionError(f"{k}: stat after revoke succeeded")
            except PermissionError:
                pass
            finally:
                os.close(fd)
        stats = srv.stats()
    finally:
        unsubscribe()
        srv.close()
    lat = client["latency_us"]
    tp = client["throughput_1mib_mib_s"]
    for kind in ("fuse", "passthrough"):
        if kind in lat:
            client[f"{kind}_over_plain_latency_ratio"] = {
                n: lat[kind][n]["median"] / lat["plain"][n]["median"] for n in lat["plain"]}
            client[f"{kind}_over_plain_throughput_ratio"] = {
                d: tp[kind][d] / tp["plain"][d] for d in ("read", "write")}
    client["revoke_export_us"] = revoke_us
    client["server_requests"] = stats["requests"]
    client["server_requests_per_opcode"] = stats["ops"]
    client["big_file_mib"] = size >> 20
    return client


def _kernel_side(srv: RevocableFiles, mgr: CapabilityManager, root: int, path: Path,
                 repeat: int) -> dict[str, Any]:
    modes = [False, True] if srv.passthrough else [False]
    names = {False: "revocable", True: "passthrough"}
    open_ns: dict[str, list[int]] = {"plain": [], **{names[m]: [] for m in modes}}
    for _ in range(repeat * 40):
        t = time.perf_counter_ns()
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        open_ns["plain"].append(time.perf_counter_ns() - t)
        os.close(fd)
        for mode in modes:
            t = time.perf_counter_ns()
            real = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            fd = srv.open(real, mgr.pin(1, root, "READ,WRITE"), os.O_RDWR, passthrough=mode)
            open_ns[names[mode]].append(time.perf_counter_ns() - t)
            os.close(fd)
    revoke_ms: dict[str, list[float]] = {names[m]: [] for m in modes}
    for _ in range(repeat):
        for mode in modes:
            mgr.create_space(2)
            h = mgr.grant_root(2, "storage://", "ALL")
            fds = []
            for _ in range(100):
                real = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                fds.append(srv.open(real, mgr.pin(2, h, "READ"), os.O_RDONLY,
                                    passthrough=mode))
            t = time.perf_counter_ns()
            mgr.revoke(2, h, include_self=True)  # listener closes (and cuts) the 100 files
            revoke_ms[names[mode]].append((time.perf_counter_ns() - t) / 1e6)
            try:
                os.pread(fds[0], 1, 0)
                raise AssertionError("read after revoke succeeded")
            except OSError:  # EACCES served, EIO passthrough
                pass
            for fd in fds:
                with contextlib.suppress(OSError):  # a cut passthrough file's close: EIO
                    os.close(fd)
            mgr.destroy_space(2)
    return {
        "open_us": {k: statistics.median(v) / 1000 for k, v in open_ns.items()},
        "revoke_100_open_files_ms": {k: {"median": statistics.median(v), "max": max(v)}
                                     for k, v in revoke_ms.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--ops", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2, help="file server threads")
    args = ap.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="exo-bench-") as tmp:
        data = Path(tmp) / "data.bin"
        data.write_bytes(os.urandom(size))
        mgr = CapabilityManager()
        mgr.create_space(1)
        root = mgr.grant_root(1, "storage://", "ALL")
        srv = RevocableFiles(Path(tmp) / "mnt", threads=args.threads)
        srv.start()
        unsubscribe = mgr.on_revoke(srv.revoke)
        try:
            fds = {"plain": os.open(data, os.O_RDWR | os.O_CLOEXEC)}
            real = os.open(data, os.O_RDWR | os.O_CLOEXEC)
            fds["fuse"] = srv.open(real, mgr.pin(1, root, "READ,WRITE"), os.O_RDWR)
            if srv.passthrough:
                real = os.open(data, os.O_RDWR | os.O_CLOEXEC)
                fds["passthrough"] = srv.open(real, mgr.pin(1, root, "READ,WRITE"),
                                              os.O_RDWR, passthrough=True)
            out = subprocess.run(
                [sys.executable, "-c", _CLIENT, str(size), str(args.repeat), str(args.ops),
                 *(f"{k}={fd}" for k, fd in fds.items())],
                pass_fds=list(fds.values()), capture_output=True, text=True, check=True)
            for fd in fds.values():
                os.close(fd)
            client = json.loads(out.stdout)
            kernel = _kernel_side(srv, mgr, root, data, args.repeat)
            directory = _directory_mount(Path(tmp), mgr, root, args)
            fstype = subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True,
                                    text=True).stdout.strip()
        finally:
            unsubscribe()
            srv.close()
    tp = client["throughput_mib_s"]
    ratios = {b: {d: tp["fuse"][b][d] / tp["plain"][b][d] for d in ("read", "write")}
              for b in tp["plain"]}
    pt_ratios = {b: {d: tp["passthrough"][b][d] / tp["plain"][b][d]
                     for d in ("read", "write")}
                 for b in tp["plain"]} if "passthrough" in tp else None
    lat = client["latency_us"]
    latency_ratio = {k: {n: lat[k][n]["median"] / lat["plain"][n]["median"] for n in lat[k]}
                     for k in lat if k != "plain"}
    result = {
        "benchmark": "revocable_io",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"python": platform.python_version(), "kernel": platform.release(),
                    "cpus": os.cpu_count(), "file_system": fstype},
        "params": {"size_mib": args.size_mib, "repeat": args.repeat, "ops": args.ops,
                   "server_threads": args.threads, "max_request_bytes": 1 << 20},
        "client_process": client,
        "fuse_over_plain_throughput_ratio": ratios,
        "passthrough_over_plain_throughput_ratio": pt_ratios,
        "over_plain_latency_ratio": latency_ratio,
        "kernel_side": kernel,
        "directory_mount": directory,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
