"""``exo run``: start one sandboxed process, on the running kernel or an ephemeral one."""

from __future__ import annotations

import signal
import tomllib
from pathlib import Path

from exo.kernel.api import exit_code
from exo.kernel.manifest import ManifestError, load_manifest, parse_grant
from exo.kernel.sigterm import Terminated, raise_terminated


def run_command(argv: list[str], caps: list[str], manifest_path: str | None,
                root: str | None, cwd: str = "/", *, posix_x: bool = False,
                ephemeral: bool = False) -> int:
    """Run ``argv`` holding ``caps`` (and the manifest's) in the Exo directory ``cwd``;
    its exit status.

    Through the control socket of the kernel running on ``root``; when there is none, on a
    kernel booted here for this one command (no control socket, no lock) and shut down
    after it. Raises what starting the process raised (``exo.kernel.api.failure_status``
    maps it to a shell's status).

    ``posix_x``: an unmodified Linux program (``posix-x run``): the manifest's ``[posix_x]``
    table applies, its defaults when the manifest has none. ``ephemeral``: on a kernel
    booted here even when one runs on ``root`` (``posix-x profile`` traces this process
    and its descendants).

    Ctrl-C (SIGINT, even when this process started with it ignored, as a background job
    does) stops the process: 130; SIGTERM too: 143, after the ephemeral kernel's clean
    shutdown (a kernel killed instead leaves its cgroups to the next boot's sweep)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, raise_terminated)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ManifestError("nothing to run: give a command after --")
    grants = [parse_grant(c) for c in caps]  # validate before touching any kernel
    if not cwd.startswith("/") or "\0" in cwd:
        raise ManifestError(f"--cwd {cwd!r}: expected an Exo path such as /home/demo")
    manifest = load_manifest(manifest_path) if manifest_path else None
    if posix_x and (manifest is None or manifest.posix_x is None):
        from exo.kernel.manifest import Manifest, PosixX

        manifest = Manifest(manifest.grants, manifest.limits, PosixX()) if manifest \
            else Manifest(posix_x=PosixX())

    from exo.kernel.control import ControlClient, KernelNotRunning

    try:
        client = None if ephemeral else ControlClient.connect(root)
    except KernelNotRunning:
        client = None
    if client is not None:
        raw = tomllib.loads(Path(manifest_path).read_text()) if manifest_path else None
        if posix_x:
            raw = raw or {}
            raw.setdefault("posix_x", {})
        try:
            result = client.call("run", fds=[0, 1, 2], argv=argv, caps=caps, manifest=raw,
                                 manifest_path=manifest_path, cwd=cwd)
        except KeyboardInterrupt:
            # Ctrl-C: the connection is closed on the way out, and a kernel whose caller
            # hangs up kills the process at once; a shell's status, as when ephemeral.
            return 130
        except Terminated:
            return 128 + signal.SIGTERM
        return exit_code(int(result["status"]))  # already mapped by a current kernel

    from exo.kernel.config import KernelConfig
    from exo.kernel.kernel import Kernel

    kernel = Kernel(KernelConfig.load(root), ephemeral=True)
    try:
        kernel.boot(log=None)
        try:
            return kernel.api.run(argv, grants, manifest=manifest, grace=0, cwd=cwd)
        except KeyboardInterrupt:  # the process is killed already
            return 130
        except Terminated:  # the shutdown below stops it
            return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # no second unwind mid-shutdown
        kernel.shutdown()
