"""``exo run``: start one sandboxed process, on the running kernel or an ephemeral one."""

from __future__ import annotations

import errno
import tomllib
from pathlib import Path

from exo.kernel.manifest import ManifestError, load_manifest, parse_grant


def exit_code(status: int) -> int:
    """Shell convention: a process killed by signal N exits 128+N."""
    return status if status >= 0 else 128 - status


def failure_status(exc: BaseException) -> int:
    """The exit status for a process that could not be started, as a shell would give it:
    127 when the program does not exist, 126 when it (or its sandbox) cannot be run, 1 for
    anything else. ``exc`` may come from this process or from the running kernel."""
    kind = getattr(exc, "kind", type(exc).__name__)
    if kind == "ExecFailed":
        return 127 if getattr(exc, "errno", None) == errno.ENOENT else 126
    return 126 if kind in ("SandboxError", "SandboxUnavailable") else 1


def run_command(argv: list[str], caps: list[str], manifest_path: str | None,
                root: str | None) -> int:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ManifestError("nothing to run: give a command after --")
    grants = [parse_grant(c) for c in caps]  # validate before touching any kernel
    manifest = load_manifest(manifest_path) if manifest_path else None

    from exo.kernel.control import ControlClient, KernelNotRunning

    try:
        client = ControlClient.connect(root)
    except KernelNotRunning:
        client = None
    if client is not None:
        raw = tomllib.loads(Path(manifest_path).read_text()) if manifest_path else None
        result = client.call("run", fds=[0, 1, 2], argv=argv, caps=caps, manifest=raw,
                             manifest_path=manifest_path)
        return exit_code(int(result["status"]))

    from exo.kernel.config import KernelConfig
    from exo.kernel.kernel import Kernel

    kernel = Kernel(KernelConfig.load(root), ephemeral=True)
    try:
        report = kernel.boot(log=None)
        if kernel.processes_or_none() is None:
            failed = "; ".join(f"{s.name}: {s.detail}" for s in report.steps
                               if s.status.value != "OK")
            raise ManifestError(f"cannot start processes on this host ({failed})")
        all_grants = [*(manifest.grants if manifest else ()), *grants]
        proc = kernel.processes.spawn(argv, all_grants,
                                      limits=manifest.limits if manifest else None)
        try:
            return exit_code(kernel.processes.wait(proc.pid))
        except KeyboardInterrupt:
            kernel.processes.kill(proc.pid, 9)
            return 130
    finally:
        kernel.shutdown()
