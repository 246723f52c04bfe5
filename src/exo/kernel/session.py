"""``exo boot``: boot the kernel, then hand the terminal (or stdin) to the shell."""

from __future__ import annotations

import json
import os
import signal
import sys
from types import FrameType

from exo.kernel.config import KernelConfig
from exo.kernel.kernel import Kernel


class _Terminated(BaseException):
    """SIGTERM arrived: unwind through every ``finally`` and shut down cleanly."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


def boot_and_run(root: str | None, *, quiet: bool = False, json_boot: bool = False) -> int:
    kernel = Kernel(KernelConfig.load(root))
    signal.signal(signal.SIGTERM, _on_sigterm)
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
        if log is not None:
            if kernel.config.dev_mode:
                log.write("Development mode: root logs in without a password\n")
            log.write(f"Boot time: {report.boot_ms:.0f} ms\n\n")
            log.flush()
        if sys.stdin.isatty() and sys.stdout.isatty():
            from exo.shell.repl import interactive

            kernel.start_deferred()
            return interactive(kernel)
        from exo.shell.core import Shell
        from exo.shell.repl import run_script, stdin_lines
        from exo.shell.vfs import Vfs

        shell = Shell(kernel, Vfs(kernel.root, kernel.virtual_trees()))
        # DEFERRED starts once the shell is ready: its imports (libseccomp, the sandbox
        # launcher) would otherwise hold the GIL while the shell loads.
        kernel.start_deferred()
        return run_script(shell, stdin_lines())
    except _Terminated:
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # no second unwind mid-shutdown
        kernel.shutdown()
        sys.stdout.flush()
        os.environ.pop("EXO_KERNEL_PID", None)
