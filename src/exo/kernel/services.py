"""Boot steps that start the kernel's services and register their shutdown."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from exo.kernel.kernel import Kernel


def start_capabilities(kernel: Kernel) -> str:
    from exo.kernel.caps import AuditLog, CapabilityManager
    from exo.kernel.files import OpenFileTable
    from exo.kernel.inflight import InFlight

    audit = AuditLog(kernel.root / "var" / "log" / "audit.jsonl")
    caps = CapabilityManager(audit=audit)
    kernel.components["caps"] = caps
    # pins the Exo tree's descriptor; its file servers charge their work to each process
    files = OpenFileTable(caps, root=kernel.root, fair_share=kernel.fair_share)
    kernel.components["files"] = files
    in_flight = InFlight(caps)
    kernel.components["in_flight"] = in_flight
    kernel.on_shutdown(in_flight.cancel_all)
    kernel.on_shutdown(audit.close)
    kernel.on_shutdown(files.close)  # unmounts the revocable-file server
    return "per-process handle tables, derivation tree, audit log /var/log/audit.jsonl"


def start_processes(kernel: Kernel) -> str:
    if "caps" not in kernel.components:
        raise RuntimeError("needs the capability space")
    from exo.kernel.process import ProcessManager
    from exo.sandbox import probe

    found = probe(quick=True)
    missing = _missing_mechanisms(found)
    if "bwrap" in missing:
        raise RuntimeError("bubblewrap (bwrap) is not installed: processes cannot be sandboxed")
    procs = ProcessManager(kernel)
    kernel.components["processes"] = procs

    def stop() -> None:
        from exo.sandbox import cleanup_all  # loads the launcher: only at shutdown

        procs.shutdown()
        cleanup_all(kernel.boot_id)

    kernel.on_shutdown(stop)
    summary = _sandbox_summary(found)
    return f"{summary}; MISSING: {', '.join(missing)}" if missing else summary


def warm_sandbox(kernel: Kernel) -> str:
    """DEFERRED: compile the seccomp filters so the first spawn does not pay for it."""
    if "processes" not in kernel.components:
        raise RuntimeError("no process manager")
    from exo.sandbox import warm_up

    warm_up()
    return "spawn path loaded, seccomp-bpf filters compiled (libseccomp)"


def _missing_mechanisms(found: dict[str, Any]) -> list[str]:
    missing = []
    if not found.get("bwrap"):
        missing.append("bwrap")
    if not found["landlock"]["abi"]:
        missing.append("landlock")
    if not found["seccomp"]:
        missing.append("seccomp")
    if not found["cgroup"].get("version"):
        missing.append("cgroups")
    return missing


def _sandbox_summary(found: dict[str, Any]) -> str:
    parts = []
    if found.get("bwrap"):
        parts.append("bwrap namespaces")
    if found["landlock"]["abi"]:
        parts.append(f"Landlock ABI {found['landlock']['abi']}")
    if found["seccomp"]:
        parts.append("seccomp-bpf")
    cg = found["cgroup"]
    if cg.get("version"):
        parts.append(f"cgroup v{cg['version']} ({', '.join(cg['controllers'])})")
    return ", ".join(parts)


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


