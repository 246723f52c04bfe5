"""NORMAL: the process manager, after a quick probe of the sandbox's mechanisms; and
DEFERRED: the sandbox filters, compiled once the prompt is up."""

from __future__ import annotations

from exo.kernel.process import ProcessManager
from exo.kernel.subsystem import Subsystem
from exo.sandbox import probe, warm_up  # light: the launcher loads on the first spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from exo.kernel.core import KernelCore
    from exo.kernel.subsystems.caps import Capabilities


class Processes(Subsystem):
    __slots__ = ("caps", "core", "manager")

    def __init__(self, core: KernelCore, *, caps: Capabilities) -> None:
        self.core = core
        self.caps = caps
        self.manager: ProcessManager | None = None

    def start(self) -> str:
        assert self.caps.manager is not None and self.caps.files is not None
        assert self.caps.in_flight is not None
        found = probe(quick=True)
        missing = _missing_mechanisms(found)
        if "bwrap" in missing:
            raise RuntimeError("bubblewrap (bwrap) is not installed: processes cannot be "
                               "sandboxed")
        self.manager = ProcessManager(self.caps.manager, self.caps.files, self.caps.in_flight,
                                      root=self.core.root, boot_id=self.core.boot_id,
                                      log=self.core.log, started=self.core.monotonic_start)
        summary = _sandbox_summary(found)
        return f"{summary}; MISSING: {', '.join(missing)}" if missing else summary

    def stop(self) -> None:
        if self.manager is None:
            return
        from exo.sandbox import cleanup_all  # loads the launcher: only at shutdown

        self.manager.shutdown()
        cleanup_all(self.core.boot_id)

    def proc_files(self) -> dict[str, Callable[[], str]]:
        return self.manager.proc_files() if self.manager is not None else {}


class SandboxFilters(Subsystem):
    """Loads the spawn path and compiles the seccomp filters, so the first spawn does not
    pay for them (libseccomp and the sandbox launcher are tens of milliseconds); and removes
    the cgroups of kernels that died without shutting down (SIGKILL, power loss)."""

    __slots__ = ("core",)

    def __init__(self, core: KernelCore, *, processes: Processes) -> None:
        self.core = core

    def start(self) -> str:
        from exo.sandbox import favor_dynamic_moves, hold_boot, sweep_dead_boots

        warm_up()
        self.core.log(f"cgroup moves: {favor_dynamic_moves()}")
        swept = sweep_dead_boots(self.core.boot_id)
        self.core.log(f"this boot's cgroup directories: {hold_boot(self.core.boot_id)}")
        if swept:
            self.core.log(f"removed {len(swept)} cgroups left by kernels that died: "
                          + ", ".join(sorted({p.parent.name for p in swept})))
        return "spawn path loaded, seccomp-bpf filters compiled (libseccomp)"

    def stop(self) -> None:
        # The hold above, when this step was still starting as the kernel shut down: the
        # process manager's cleanup_all had already run, and the held directories stayed
        # until the next boot's sweep (a test run's leak check saw them, ~1 in 4 `exo
        # boot`s given a one-line script). Also run at every shutdown, before the process
        # manager's stop: a boot directory still in use stays for its cleanup_all.
        from exo.sandbox import release_boot

        release_boot(self.core.boot_id)


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
