"""``posix-x profile``: run a program under POSIX-X and say where its syscalls went.

The run is the real one (``posix-x run`` with the same manifest and capabilities, on a
kernel booted for it), traced from outside by ``strace`` (``_strace``). The report gives
the distribution by tier (the table's), the hotspots (most frequent and most expensive
calls; times are strace's, so inflated by tracing, but comparable with each other), the
calls refused and why, and concrete suggestions: batch small writes, spawn instead of
fork, and the manifest line or capability that would let a refused or mediated call
through. ``posix-x migrate`` builds its manifest from these findings.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import _strace, table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rich.console import Console

#: Writes at most this big on average, this many times, are worth batching.
SMALL_WRITE = 512
MANY_WRITES = 100
_WRITES = ("write", "writev", "sendto", "send", "pwrite64")
_REFUSED = frozenset({"EACCES", "EPERM", "EROFS", "ENOENT", "EAGAIN", "ENOSYS"})


class ProfileError(Exception):
    """The profile could not be taken: one line."""


class Profile:
    """What one traced run did. ``calls`` by syscall: count, errors by errno, seconds and
    bytes; ``refusals``: ``(syscall, path or address, errno)`` in first-seen order."""

    def __init__(self, argv: list[str], status: int, threads: int, truncated: bool) -> None:
        self.argv = argv
        self.status = status
        self.threads = threads
        self.truncated = truncated
        self.calls: dict[str, dict[str, float]] = {}
        self.errors: dict[str, dict[str, int]] = {}
        self.refusals: list[tuple[str, str, str]] = []
        self.ports: list[tuple[str, str, int, bool]] = []  # (call, host, port, ok)
        self.writes: set[str] = set()  # refused targets the call meant to change
        self.processes = 0  # fork/vfork/clone without CLONE_THREAD that succeeded
        self.execs = 0

    @property
    def total(self) -> int:
        return int(sum(c["count"] for c in self.calls.values()))

    def by_tier(self) -> dict[str, dict[str, float]]:
        tiers: dict[str, dict[str, float]] = {
            t: {"calls": 0, "distinct": 0, "seconds": 0.0} for t in (*table.TIERS, "unknown")}
        for name, c in self.calls.items():
            row = table.lookup(name)
            tier = row.tier if row is not None else "unknown"
            tiers[tier]["calls"] += c["count"]
            tiers[tier]["distinct"] += 1
            tiers[tier]["seconds"] += c["seconds"]
        return {t: v for t, v in tiers.items() if t != "unknown" or v["calls"]}

    def hotspots(self, n: int = 8) -> list[dict[str, object]]:
        ranked = sorted(self.calls.items(), key=lambda kv: (-kv[1]["count"], kv[0]))[:n]
        out: list[dict[str, object]] = []
        for name, c in ranked:
            row = table.lookup(name)
            out.append({"syscall": name, "tier": row.tier if row else "unknown",
                        "calls": int(c["count"]),
                        "avg_us": round(c["seconds"] / c["count"] * 1e6, 1),
                        "errors": self.errors.get(name, {})})
        return out

    def suggestions(self) -> list[str]:
        return suggest(self)

    def as_dict(self) -> dict[str, object]:
        return {"argv": self.argv, "status": self.status, "threads": self.threads,
                "truncated": self.truncated, "total_calls": self.total,
                "tiers": self.by_tier(), "hotspots": self.hotspots(),
                "calls": {k: {"count": int(v["count"]), "seconds": round(v["seconds"], 6),
                              "bytes": int(v["bytes"]), "errors": self.errors.get(k, {})}
                          for k, v in sorted(self.calls.items())},
                "refusals": [{"syscall": s, "target": t, "errno": e}
                             for s, t, e in self.refusals],
                "ports": [{"syscall": s, "host": h, "port": p, "ok": ok}
                          for s, h, p, ok in self.ports],
                "processes": self.processes, "execs": self.execs,
                "suggestions": self.suggestions()}


def summarise(calls: list[_strace.Call], argv: list[str], status: int, threads: int,
              truncated: bool) -> Profile:
    """A profile from the program's calls (``_strace.program_calls``)."""
    prof = Profile(argv, status, threads, truncated)
    seen: set[tuple[str, str, str]] = set()
    for call in calls:
        c = prof.calls.setdefault(call.name, {"count": 0, "seconds": 0.0, "bytes": 0})
        c["count"] += 1
        c["seconds"] += call.seconds
        if call.errno:
            errs = prof.errors.setdefault(call.name, {})
            errs[call.errno] = errs.get(call.errno, 0) + 1
        elif call.name in _WRITES and call.result is not None and call.result > 0:
            c["bytes"] += call.result
        if call.name in ("fork", "vfork") or (call.name == "clone"
                                              and "CLONE_THREAD" not in call.args):
            prof.processes += int(call.result is not None and call.result > 0)
        if call.name in ("execve", "execveat") and call.result == 0:
            prof.execs += 1
        target = ""
        if call.name in ("bind", "connect"):
            where = call.port()
            if where is not None:
                entry = (call.name, where[0], where[1], not call.errno)
                if entry not in prof.ports and len(prof.ports) < _strace.MAX_PATHS:
                    prof.ports.append(entry)
                target = f"{where[0]}:{where[1]}"
        elif call.name in _strace.PATH_CALLS:
            target = call.path() or ""
        if call.errno in _REFUSED:
            key = (call.name, target, call.errno)
            if key not in seen and len(seen) < _strace.MAX_PATHS:
                seen.add(key)
                prof.refusals.append(key)
                if _writes(call):
                    prof.writes.add(target)
    return prof


_CHANGES = frozenset({"mkdir", "mkdirat", "unlink", "unlinkat", "rename", "renameat",
                      "renameat2", "rmdir", "creat", "link", "linkat", "symlink",
                      "symlinkat", "truncate", "chmod", "fchmodat", "chown", "lchown",
                      "fchownat", "utimensat", "mknod", "mknodat", "setxattr"})


def _writes(call: _strace.Call) -> bool:
    """Whether a path call meant to create or change something."""
    if call.name in _CHANGES:
        return True
    if call.name in ("open", "openat", "openat2"):
        return any(f in call.args for f in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"))
    return False


def suggest(prof: Profile) -> list[str]:
    """Concrete advice from a profile, most useful first."""
    out: list[str] = []
    writes = sum(prof.calls[w]["count"] for w in _WRITES if w in prof.calls)
    written = sum(prof.calls[w]["bytes"] for w in _WRITES if w in prof.calls)
    if writes >= MANY_WRITES and written / writes < SMALL_WRITE:
        out.append(f"batch small writes: {writes} write calls averaging "
                   f"{written / writes:.0f} bytes; buffer them (stdio's setvbuf, writev) "
                   "to make one call per few KiB")
    forks = sum(prof.calls.get(n, {}).get("count", 0) for n in ("fork", "vfork"))
    if prof.processes and prof.execs:
        out.append(f"spawn instead of fork: {prof.processes} processes created and "
                   f"{prof.execs} programs executed; posix_spawn (or Exo's spawn) avoids "
                   "copying the parent's address space" + (f" ({forks} fork/vfork calls)"
                                                           if forks else ""))
    if "EAGAIN" in prof.errors.get("clone", {}) or "EAGAIN" in prof.errors.get("fork", {}) \
            or "EAGAIN" in prof.errors.get("vfork", {}):
        out.append("fork refused (EAGAIN): allow it with [posix_x] fork = true")
    refused_exec = sorted({t for s, t, e in prof.refusals
                           if s in ("execve", "execveat") and e in ("EACCES", "EPERM")})
    for path in refused_exec[:5]:
        out.append(f"exec of {path} refused: list it in [posix_x] exec")
    for call, host, port, ok in prof.ports:
        if call == "bind" and ok and host not in ("127.0.0.1", "::1", "?"):
            out.append(f"binds {host}:{port}: [posix_x] network grants loopback ports "
                       f"only; bind 127.0.0.1:{port}")
        elif not ok:
            out.append(f"{call} to port {port} refused: add it to [posix_x] network")
    for name, why in _path_advice(prof)[:8]:
        out.append(why if name == "" else f"{name}: {why}")
    legacy = sorted({s for s, _t, _e in prof.refusals
                     if (r := table.lookup(s)) is not None and r.tier == table.LEGACY})
    for name in legacy:
        row = table.lookup(name)
        assert row is not None
        out.append(f"{name} is Legacy ({row.errno or 'emulated'}): {row.note}")
    mediated = sum(int(prof.calls[n]["count"]) for n in prof.calls
                   if (r := table.lookup(n)) is not None and r.tier == table.HYBRID)
    if mediated and prof.total and mediated / prof.total > 0.3:
        out.append(f"{mediated} of {prof.total} calls are Hybrid (path, network, exec): "
                   "keep files open rather than reopening them (nginx's open_file_cache) "
                   "and grant directories, not files, so Landlock decides them at native "
                   "speed")
    return out


def _path_advice(prof: Profile) -> list[tuple[str, str]]:
    """The capability that would let each refused path through, once per directory."""
    from .migrate import grant_for

    advice: list[tuple[str, str]] = []
    said: set[str] = set()
    for call, path, err in prof.refusals:
        if call not in _strace.PATH_CALLS or not path.startswith("/"):
            continue
        line = grant_for(call, path, err, write=path in prof.writes)
        if line is not None and line not in said:
            said.add(line)
            advice.append((path, f"{call} {err}: {line}"))
    return advice


def profile(argv: list[str], *, caps: list[str], manifest: str | None, cwd: str,
            root: str | None, timeout: float | None = None,
            stdout: int | None = None) -> Profile:
    """Run ``argv`` under POSIX-X, traced; stopped (SIGINT, as Ctrl-C) after ``timeout``
    seconds, for servers. ``stdout``: where the program's output goes (the caller's by
    default; ``--json`` sends it to stderr so the report stays parseable)."""
    strace = shutil.which("strace")
    if strace is None:
        raise ProfileError("strace is not installed (Debian package strace; `make "
                           "setup` installs it)")
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ProfileError("nothing to profile: give a program after --")
    with tempfile.TemporaryDirectory(prefix="exo-posix-x-profile-") as tmp:
        child = [sys.executable, "-m", "exo.posix_x.run", "--ephemeral", "--cwd", cwd]
        for cap in caps:
            child += ["--cap", cap]
        if manifest is not None:
            child += ["--manifest", manifest]
        if root is not None:
            child += ["--root", root]
        # Its own audit log and file-server mounts, whatever kernel runs on the tree.
        child += ["--private-view", os.path.join(tmp, "view")]
        trace = [strace, "-f", "-ff", "-qq", "-T", "-s", "256", "--pidns-translation", "-o",
                 os.path.join(tmp, "t"), "--", *child, "--", *argv]
        status, truncated = _supervise(trace, tmp, timeout, stdout)
        calls, threads = _strace.program_calls(tmp)
        if threads == 0:
            raise ProfileError(f"{argv[0]} did not start under POSIX-X (status {status}: "
                               "see the line above)")
        return summarise(calls, argv, status, threads, truncated)


def _supervise(trace: list[str], tmp: str, timeout: float | None,
               stdout: int | None) -> tuple[int, bool]:
    """Run strace; stop the traced run at ``timeout`` or when its trace outgrows
    ``MAX_TRACE_BYTES``: SIGINT (as Ctrl-C), SIGTERM 10 s later, SIGKILL 20 s after that
    (each a clean shutdown of the run's kernel but the last). The run's stdio is the
    caller's (a profile is a real run)."""
    proc = subprocess.Popen(trace, stdout=stdout)
    deadline = None if timeout is None else time.monotonic() + timeout
    truncated = False
    escalation = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    try:
        while True:
            try:
                return proc.wait(0.5), truncated
            except subprocess.TimeoutExpired:
                pass
            over = _strace.trace_size(tmp) > _strace.MAX_TRACE_BYTES
            if over or (deadline is not None and time.monotonic() > deadline):
                truncated = truncated or over
                sig = escalation.pop(0) if escalation else signal.SIGKILL
                _signal_run(proc, sig)
                deadline = time.monotonic() + (10 if sig == signal.SIGINT else 20)
    except KeyboardInterrupt:
        _signal_run(proc, signal.SIGINT)
        return proc.wait(), truncated


def _signal_run(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the traced run (strace's child: the run's kernel kills the program and shuts
    down on SIGINT or SIGTERM); SIGKILL goes to strace too."""
    import psutil

    try:
        for child in psutil.Process(proc.pid).children():
            child.send_signal(sig)
        if sig == signal.SIGKILL:
            proc.kill()
    except psutil.Error:
        pass


def render(prof: Profile, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Table

    total = prof.total or 1
    console.print(f"[bold]posix-x profile[/bold] {escape(' '.join(prof.argv))}: exit "
                  f"status {prof.status}, {prof.total} syscalls in {prof.threads} "
                  f"threads/processes" + (" [yellow](trace cut short)[/yellow]"
                                          if prof.truncated else ""))
    console.print("Syscall distribution:")
    for tier, v in prof.by_tier().items():
        avg = v["seconds"] / v["calls"] * 1e6 if v["calls"] else 0.0
        console.print(f"  {tier.capitalize() + ' path':<12}: {v['calls'] / total:>4.0%} "
                      f"({int(v['calls'])} calls, {int(v['distinct'])} syscalls, avg "
                      f"{avg:.1f} µs traced)")
    grid = Table(title="Hotspots")
    for column in ("#", "syscall", "tier", "calls", "avg µs (traced)", "errors"):
        grid.add_column(column)
    for i, h in enumerate(prof.hotspots(), 1):
        errors = h["errors"]
        assert isinstance(errors, dict)
        grid.add_row(str(i), str(h["syscall"]), str(h["tier"]), str(h["calls"]),
                     str(h["avg_us"]), ", ".join(f"{k}×{v}" for k, v in errors.items()))
    console.print(grid)
    if prof.refusals:
        console.print(f"Not found or refused ({len(prof.refusals)} distinct):")
        for call, target, err in prof.refusals[:12]:
            console.print(f"  {call}({escape(_short(target))}) = {err}")
    console.print("Suggestions:")
    for line in prof.suggestions() or ["none: nothing refused, nothing worth batching"]:
        console.print(f"  • {escape(line)}")


def _short(text: str, n: int = 100) -> str:
    from exo._printable import printable

    text = printable(text, newlines=False)
    return text if len(text) <= n else text[: n - 1] + "…"


__all__ = ["Profile", "ProfileError", "profile", "render", "suggest", "summarise"]
