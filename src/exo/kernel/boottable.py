"""The boot table: every subsystem of the kernel, in boot order.

The kernel (``exo.kernel.kernel.Kernel``) starts the rows of each phase in this order and
stops the started ones in reverse at shutdown. CRITICAL and NORMAL run before the prompt,
DEFERRED in the background once the shell is ready. A row whose ``requires`` did not all
start is FAILED without being imported.

To add a subsystem: write its class (``exo.kernel.subsystem.Subsystem``: a constructor
taking the core and, by keyword, what it requires; ``start() -> str``; ``stop()``) in its
own package, and add its row here (``NotBuilt`` holds the place of one announced but not
built). Nothing else changes.
"""

from __future__ import annotations

from exo.kernel.bootlog import Phase
from exo.kernel.subsystem import Row

CRITICAL, NORMAL, DEFERRED = Phase.CRITICAL, Phase.NORMAL, Phase.DEFERRED
_S = "exo.kernel.subsystems"

BOOT_TABLE: tuple[Row, ...] = (
    Row("tree", "Exo tree", CRITICAL, f"{_S}.tree:ExoTree"),
    Row("pool", "Memory pool", CRITICAL, f"{_S}.pool:MemoryPool"),
    Row("caps", "Capability space", CRITICAL, f"{_S}.caps:Capabilities"),
    Row("ipc", "IPC (Fusion Rings)", CRITICAL, f"{_S}.ipc:Ipc"),
    Row("scheduler", "Scheduler", NORMAL, "exo.sched.subsystem:KernelScheduler"),
    Row("processes", "Processes and sandbox", NORMAL, f"{_S}.processes:Processes",
        requires=("caps",)),
    Row("areas", "Encrypted storage", NORMAL, "exo.security.areaserve:EncryptedStorage"),
    Row("syscalls", "Syscall server", NORMAL, f"{_S}.server:SyscallServer",
        requires=("caps", "processes")),
    Row("sandbox_filters", "Sandbox filters", DEFERRED, f"{_S}.processes:SandboxFilters",
        requires=("processes",)),
    Row("security", "Security", DEFERRED, "exo.security.subsystem:Security",
        requires=("caps",)),
    Row("modules", "Module manager", DEFERRED, "exo.modules.subsystem:Modules",
        requires=("caps", "processes", "syscalls")),
    Row("agents", "AI agents started", DEFERRED, "exo.agents.subsystem:Agents",
        requires=("caps", "processes", "syscalls")),
    Row("posix_x", "POSIX-X ready", DEFERRED, "exo.posix_x.subsystem:PosixX",
        requires=("processes",)),
    # The package manager and the web console get their rows when
    # they are built: a row shows in the boot log, and these have never been announced.
)
