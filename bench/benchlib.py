"""What several benchmarks share (imported by them; running it does nothing): an
in-process kernel with its DEFERRED steps started, timing ``exo boot`` to its first
command's output, and the hot-upgrade cycles of the module benchmarks."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exo.kernel.kernel import Kernel


@contextlib.contextmanager
def deferred_kernel(prefix: str, timeout: float | None = None) -> Iterator[tuple[Kernel, Path]]:
    """An ephemeral kernel booted on ``TMP/root`` (``TMP`` a fresh temp dir named
    ``prefix...``) with its DEFERRED steps started (waiting ``timeout`` s for them: None,
    the kernel's default); yields ``(kernel, TMP)``, then shuts it down and removes TMP."""
    from exo.kernel.config import KernelConfig
    from exo.kernel.kernel import Kernel

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    kernel = Kernel(KernelConfig(root=tmp / "root"), ephemeral=True)
    try:
        kernel.boot()
        kernel.start_deferred()
        if timeout is None:
            kernel.wait_deferred()
        else:
            kernel.wait_deferred(timeout)
        yield kernel, tmp
    finally:
        kernel.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def enter_to_mark(proc: subprocess.Popen[bytes], text: str, mark: bytes,
                  timeout: float = 60.0) -> tuple[float, bytes]:
    """Write ``text`` to ``proc``'s stdin (Enter) and read its stdout until ``mark``: the
    ms that took, and the last 4 KiB read (a command's whole output is read, not kept)."""
    assert proc.stdin is not None and proc.stdout is not None
    fd = proc.stdout.fileno()
    t0 = time.perf_counter()
    os.write(proc.stdin.fileno(), text.encode())
    seen = b""
    while mark not in seen:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise RuntimeError(f"no answer to {text!r}")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise RuntimeError(f"ended during {text!r}")
        seen = seen[-4096:] + chunk
    return (time.perf_counter() - t0) * 1000, seen


def boot_to_first_output(argv: list[str], env: dict[str, str]
                         ) -> tuple[float, subprocess.Popen[bytes]]:
    """Start ``argv`` (an ``exo boot --quiet``), type ``echo ready``: the ms until that
    line came out, and the kernel, still running (its stdin open, for more commands)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"echo ready\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    ms = (time.perf_counter() - t0) * 1000
    if line.strip() != b"ready":
        proc.kill()
        raise RuntimeError(f"unexpected first line from exo boot: {line!r}")
    return ms, proc


def rss_mb(pid: int) -> float:
    """A process's resident set now, in MB (0 when /proc does not say)."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return 0.0


@dataclass
class UpgradeCycles:
    """Latencies (ms) in the steady windows and during the upgrade/rollback cycles, the
    seconds each phase lasted, and every swap's ms."""

    steady: list[float] = field(default_factory=list)
    during: list[float] = field(default_factory=list)
    steady_s: float = 0.0
    during_s: float = 0.0
    swaps: list[float] = field(default_factory=list)


def upgrade_cycles(manager: Any, take: Callable[[], list[float]], name: str, version: str,
                   cycles: int, steady_s: float,
                   rolled_back: Callable[[Any], None]) -> UpgradeCycles:
    """``cycles`` times: a steady window of ``steady_s`` s, then ``name`` upgraded to
    ``version`` (canary 10 %, +30 % every 0.5 s: ``exo module upgrade``'s defaults) and
    rolled back. Steady windows are interleaved with the cycles: the host is shared and
    its load moves by several times within a minute; both phases see the same. ``take``
    returns the client's latencies since its last call; ``rolled_back`` is told what an
    upgrade that rolled back by itself said."""
    out = UpgradeCycles()
    for _ in range(cycles):
        t0 = time.monotonic()
        time.sleep(steady_s)
        out.steady += take()
        out.steady_s += time.monotonic() - t0
        t0 = time.monotonic()
        up = manager.upgrade(name, version, canary=10, step=30, interval=0.5)
        if up["rolled_back"]:
            rolled_back(up["rolled_back"])
        out.swaps.append(up["swap_ms"])
        out.swaps.append(manager.rollback(name)["swap_ms"])
        out.during += take()
        out.during_s += time.monotonic() - t0
    return out


def p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank below), 0 for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
