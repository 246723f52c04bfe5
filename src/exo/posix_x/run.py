"""``posix-x run``: an unmodified Linux program as an Exo process.

The program is started through the kernel's one run path (``exo.kernel.launch.run_command``:
the running kernel's control socket, or a kernel booted for this one command), with the
manifest's capabilities and limits and its ``[posix_x]`` table (its defaults when the
manifest has none: system directories shown, no fork, no exec of other programs).
What can be checked before starting is checked here, so that a missing program, a
manifest error or a refused start is one line naming what would allow it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from exo._printable import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

    from exo.kernel.manifest import Grant


def run(argv: list[str], *, caps: list[str], manifest: str | None, cwd: str,
        root: str | None, err: TextIO, ephemeral: bool = False) -> int:
    """Run ``argv``; its exit status, or the status of a failed start (one line on
    ``err``): 127 no such program, 126 refused, 2 a manifest or capability error.
    ``ephemeral``: on a kernel booted in this process for this run even when one is
    running on ``root`` (``posix-x profile`` traces this process and its descendants)."""
    from exo.kernel.api import failure_status
    from exo.kernel.launch import run_command
    from exo.kernel.manifest import ManifestError, load_manifest, parse_grant
    from exo.sandbox.errors import ExecFailed, SandboxError

    from .sandbox import in_system_dirs, resolve

    def fail(message: str, status: int) -> int:
        print(f"posix-x run: {printable(message, newlines=False)}", file=err)
        return status

    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        return fail("nothing to run: give a program after --", 2)
    try:
        grants = [parse_grant(c) for c in caps]
        if manifest is not None:
            grants += list(load_manifest(manifest).grants)
    except ManifestError as exc:
        return fail(str(exc), 2)
    program = argv[0]
    if "/" not in program or in_system_dirs(program):
        try:
            # by its path: the Exo PATH has no sbin, and the exec policy names paths
            argv = [str(resolve(program)), *argv[1:]]
        except SandboxError as exc:
            return fail(str(exc), 127)
    try:
        _make_state_dirs(grants, root)
        if ephemeral:
            return _run_ephemeral(argv, caps, manifest, root, cwd)
        return run_command(argv, caps, manifest, root, cwd, posix_x=True)
    except ExecFailed as exc:
        if exc.errno == errno.EACCES:
            return fail(f"{program}: executing it was refused: list it in the manifest's "
                        f"[posix_x] exec, or hold storage://…=EXECUTE on its directory",
                        126)
        return fail(f"{program}: {exc}", failure_status(exc))
    except (ManifestError, SandboxError, OSError, RuntimeError) as exc:
        return fail(str(exc), failure_status(exc))


def _run_ephemeral(argv: list[str], caps: list[str], manifest_path: str | None,
                   root: str | None, cwd: str) -> int:
    """``run_command``'s second half: a kernel of this process, for this one run."""
    from exo.kernel.config import KernelConfig
    from exo.kernel.kernel import Kernel
    from exo.kernel.manifest import Manifest, PosixX, load_manifest, parse_grant

    grants = [parse_grant(c) for c in caps]
    manifest = load_manifest(manifest_path) if manifest_path else None
    if manifest is None or manifest.posix_x is None:
        manifest = Manifest(manifest.grants, manifest.limits, PosixX()) if manifest \
            else Manifest(posix_x=PosixX())
    kernel = Kernel(KernelConfig.load(root), ephemeral=True)
    try:
        kernel.boot(log=None)
        try:
            return kernel.api.run(argv, grants, manifest=manifest, grace=0, cwd=cwd)
        except KeyboardInterrupt:  # the process is killed already
            return 130
    finally:
        kernel.shutdown()


def main(args: list[str]) -> int:
    """``python -m exo.posix_x.run [--ephemeral] [--cwd D] [--cap C]… [--manifest F]
    [--root R] -- PROGRAM…``: the traced child of ``posix-x profile``."""
    import signal
    import sys

    # Ctrl-C stops the run even when started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ephemeral, cwd, caps, manifest, root = False, "/", [], None, None
    while args and args[0] != "--":
        opt = args.pop(0)
        if opt == "--ephemeral":
            ephemeral = True
        elif opt in ("--cwd", "--cap", "--manifest", "--root") and args:
            value = args.pop(0)
            if opt == "--cwd":
                cwd = value
            elif opt == "--cap":
                caps.append(value)
            elif opt == "--manifest":
                manifest = value
            else:
                root = value
        else:
            print(f"posix-x run: unexpected argument {printable(opt)!r}", file=sys.stderr)
            return 2
    return run(args, caps=caps, manifest=manifest, cwd=cwd, root=root, err=sys.stderr,
               ephemeral=ephemeral)


def _make_state_dirs(grants: list[Grant], root: str | None) -> None:
    """Create the missing directories of the writable ``storage://`` grants in the Exo tree
    (a server's state and log directories), mode 0700, never through a symbolic link."""
    from exo.kernel.caps import Rights
    from exo.kernel.config import resolve_root
    from exo.sandbox.errors import SandboxError

    tree = resolve_root(root)
    os.makedirs(tree, exist_ok=True)
    for grant in grants:
        name = grant.name
        if name.scheme != "storage" or not name.path or Rights.WRITE not in grant.rights:
            continue
        path = Path(tree)
        for part in Path(name.path).parts:
            path = path / part
            if path.is_symlink():
                raise SandboxError(f"{name}: a symbolic link is on the path (grants never "
                                   "follow links)")
            if not path.exists():
                os.mkdir(path, 0o700)


__all__ = ["main", "run"]


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
