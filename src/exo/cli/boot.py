"""``exo boot``: boot the kernel, then hand the terminal (or stdin) to the shell.

Above both: the kernel knows nothing of the shell, and the shell reaches the kernel only
through its API (``exo.kernel.api``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

from exo.kernel.bootlog import process_age_ms
from exo.kernel.config import KernelConfig
from exo.kernel.control import running_kernel
from exo.kernel.kernel import Kernel
from exo.kernel.sigterm import Terminated, raise_terminated

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


#: Seconds of quiet input after which a script-mode kernel starts DEFERRED anyway.
DEFERRED_AFTER_S = 0.2


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    """``fn``, run by the first of its callers only (the timer or the first command)."""
    lock = threading.Lock()
    done = [False]

    def run() -> None:
        with lock:
            if done[0]:
                return
            done[0] = True
        fn()

    return run


def boot_and_run(root: str | None, *, quiet: bool = False, json_boot: bool = False) -> int:
    config = KernelConfig.load(root)
    holder = running_kernel(config.root)
    if holder is not None:
        # Refused before anything is built: no boot log, no [FAILED] step, no shell.
        sys.stderr.write(f"exo: a kernel (pid {holder}) is already running on "
                         f"{config.root}; stop it with `exo shutdown` first\n")
        return 1
    kernel = Kernel(config)
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        if json_boot:
            report = kernel.boot(log=None)
            kernel.start_deferred()
            kernel.wait_deferred()
            data = report.as_dict()
            data["version"] = kernel.version_line()
            print(json.dumps(data))
            return 0 if not report.failed() else 1
        log = None if quiet else sys.stdout
        report = kernel.boot(log=log)
        from exo.shell.core import Shell
        from exo.shell.repl import interactive, run_script, stdin_lines
        from exo.shell.vfs import Vfs

        api = kernel.api
        vfs = Vfs(kernel.root, kernel.virtual_trees())

        # "Boot time" runs to the prompt: the kernel's phases and the shell's loading.
        report.boot_ms = process_age_ms()
        if log is not None:
            if kernel.config.dev_mode:
                log.write("Development mode: root logs in without a password\n")
            log.write(f"Boot time: {report.boot_ms:.0f} ms\n\n")
            log.flush()
        if sys.stdin.isatty() and sys.stdout.isatty():
            kernel.start_deferred()
            return interactive(api, vfs)
        shell = Shell(api, vfs)
        # DEFERRED starts after the first command, or once input has been quiet for a
        # moment: its work (libseccomp, the sandbox launcher, hashing the kernel for
        # measured boot, the module manager) would otherwise hold the interpreter while
        # the shell loads and runs that command.
        start = _once(kernel.start_deferred)
        idle = threading.Timer(DEFERRED_AFTER_S, start)
        idle.daemon = True
        idle.start()
        try:
            return run_script(shell, stdin_lines(), after_first=start)
        finally:
            idle.cancel()
    except Terminated:
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # no second unwind mid-shutdown
        kernel.shutdown()
        sys.stdout.flush()
        os.environ.pop("EXO_KERNEL_PID", None)
