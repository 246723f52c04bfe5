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
        return run_command(argv, caps, manifest, root, cwd, posix_x=True, ephemeral=ephemeral)
    except ExecFailed as exc:
        if exc.errno == errno.EACCES:
            return fail(f"{program}: executing it was refused: list it in the manifest's "
                        f"[posix_x] exec, or hold storage://…=EXECUTE on its directory",
                        126)
        return fail(f"{program}: {exc}", failure_status(exc))
    except (ManifestError, SandboxError, OSError, RuntimeError) as exc:
        return fail(str(exc), failure_status(exc))


_CLONE_NEWNS = 0x00020000
_MS_BIND, _MS_REC, _MS_PRIVATE = 0x1000, 0x4000, 1 << 18


def private_view(root: str | None, view: str) -> str:
    """Show the Exo tree ``root`` at ``view`` in a mount namespace of this process alone,
    with a private ``var/log`` and ``var/run`` (tmpfs): the kernel this process boots then
    writes its own audit log and mounts its file servers there, never into a running
    kernel's (two writers would fork the audit chain). The tree itself is one bind mount,
    so the kernel's no-crossing path resolution works beneath it as on the real tree.
    The mounts vanish with the process."""
    import ctypes

    from exo.kernel.config import resolve_root

    real = os.path.realpath(resolve_root(root))
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")

    check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    os.makedirs(view, exist_ok=True)
    os.makedirs(os.path.join(real, "var", "log"), exist_ok=True)
    os.makedirs(os.path.join(real, "var", "run"), exist_ok=True)
    check(libc.mount(os.fsencode(real), os.fsencode(view), None, _MS_BIND, None),
          f"bind {real}")
    for sub in ("log", "run"):
        target = os.fsencode(os.path.join(view, "var", sub))
        check(libc.mount(b"tmpfs", target, b"tmpfs", 0, b"mode=0755"), f"tmpfs var/{sub}")
    return view


def main(args: list[str]) -> int:
    """``python -m exo.posix_x.run [--ephemeral] [--private-view DIR] [--cwd D] [--cap
    C]… [--manifest F] [--root R] -- PROGRAM…``: the traced child of ``posix-x profile``
    (``--private-view``: boot on the tree seen through :func:`private_view`)."""
    import signal
    import sys

    # Ctrl-C stops the run even when started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ephemeral, cwd, caps, manifest, root = False, "/", [], None, None
    while args and args[0] != "--":
        opt = args.pop(0)
        if opt == "--ephemeral":
            ephemeral = True
        elif opt in ("--cwd", "--cap", "--manifest", "--root", "--private-view") and args:
            value = args.pop(0)
            if opt == "--private-view":
                try:
                    root = private_view(root, value)
                except OSError as exc:
                    print(f"posix-x profile: the traced run cannot have its own view of "
                          f"the tree ({exc.strerror}); it needs root", file=sys.stderr)
                    return 1
            elif opt == "--cwd":
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
