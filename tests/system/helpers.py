"""What a system test needs to look at a host after Exo-OS has run."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

from exo.kernel.manifest import parse_grant

if TYPE_CHECKING:
    from collections.abc import Iterator

    from exo.kernel.kernel import Kernel

APP_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def shm_entries() -> set[str]:
    """POSIX shared memory segments, except iceoryx2's: the IPC benchmark measures that
    peer and may run beside the tests; Exo itself uses memfds, never /dev/shm."""
    return {e for e in os.listdir("/dev/shm") if not e.startswith("iox2_")}


def mounts() -> list[str]:
    return Path("/proc/self/mountinfo").read_text().splitlines()


def exo_cgroups(boot_id: str) -> list[Path]:
    """Cgroup directories left by the kernel with this boot id (``exo-<boot_id>``)."""
    found = []
    for base in Path("/sys/fs/cgroup").iterdir():
        if base.is_dir():
            found += [p for p in base.rglob(f"exo-{boot_id}") if p.is_dir()]
    return found


def first_directory(kernel: Kernel, caps: tuple[str, ...]) -> str:
    """The Exo path of the first ``storage://`` directory among ``caps`` (else ``/``)."""
    for cap in caps:
        name = parse_grant(cap).name
        if name.scheme == "storage" and name.path and name.fs_path(kernel.root).is_dir():
            return "/" + name.path
    return "/"


def run_app(kernel: Kernel, code: str, *caps: str,
            cwd: str | None = None) -> tuple[int, str, str]:
    """Run Python ``code`` as a sandboxed Exo process holding ``caps``; (status, out, err).

    Its working directory is ``cwd``, by default the first directory it is granted."""
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = kernel.processes.spawn(
                [APP_PYTHON, "-c", textwrap.dedent(code)], [parse_grant(c) for c in caps],
                stdio=(null, out.fileno(), err.fileno()),
                cwd=first_directory(kernel, caps) if cwd is None else cwd)
        finally:
            os.close(null)  # the child has its own copy
        status = kernel.processes.wait(proc.pid, timeout=60)
        # The status comes before the reclaim (ProcessManager._reap): callers inspect what
        # is left of the process, so wait for that too.
        assert proc.reclaimed.wait(60), "the process was not reclaimed within 60 s"
        out.seek(0)
        err.seek(0)
        return status, out.read().decode(), err.read().decode()


@contextlib.contextmanager
def booted_kernel(exo_cmd: list[str], exo_env: dict[str, str],
                  exo_root: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``exo boot -q`` on ``exo_root``, yielded once its control socket exists; on the way
    out, if the test did not shut it down, SIGTERM (a clean shutdown), then SIGKILL."""
    kernel = subprocess.Popen([*exo_cmd, "boot", "-q"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=exo_env)
    try:
        sock = exo_root / "var" / "run" / "kernel.sock"
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists()
        yield kernel
    finally:
        if kernel.poll() is None:
            kernel.terminate()
            try:
                kernel.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kernel.kill()
        kernel.wait()
