"""Boot steps that start the kernel's services and register their shutdown."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exo.kernel.kernel import Kernel


def start_capabilities(kernel: Kernel) -> str:
    from exo.kernel.caps import AuditLog, CapabilityManager
    from exo.kernel.files import OpenFileTable

    audit = AuditLog(kernel.root / "var" / "log" / "audit.jsonl")
    caps = CapabilityManager(audit=audit)
    kernel.components["caps"] = caps
    files = OpenFileTable(caps)
    kernel.components["files"] = files
    kernel.on_shutdown(audit.close)
    kernel.on_shutdown(files.close)  # unmounts the revocable-file server
    return "per-process handle tables, derivation tree, audit log /var/log/audit.jsonl"


def start_processes(kernel: Kernel) -> str:
    if "caps" not in kernel.components:
        raise RuntimeError("needs the capability space")
    from exo.kernel.process import ProcessManager
    from exo.sandbox import cleanup_all, probe

    found = probe()
    missing = [k for k, v in found.items() if v in (False, None, 0)]
    procs = ProcessManager(kernel)
    kernel.components["processes"] = procs

    def stop() -> None:
        procs.shutdown()
        cleanup_all(kernel.boot_id)

    kernel.on_shutdown(stop)
    summary = ", ".join(f"{k} {v}" if not isinstance(v, bool) else k
                        for k, v in found.items() if v not in (False, None, 0))
    if missing:
        return f"{summary}; missing: {', '.join(missing)}"
    return summary


def start_syscalls(kernel: Kernel) -> str:
    if "processes" not in kernel.components:
        raise RuntimeError("needs the process manager")
    if kernel.ephemeral:
        return "bootstrap channels only (ephemeral kernel: no control socket)"
    from exo.kernel.control import ControlServer

    server = ControlServer(kernel)
    server.start()
    kernel.on_shutdown(server.close)
    return f"bootstrap channels, control socket {server.path.relative_to(kernel.root)}"


