"""A manifest's ``[posix_x]`` table as sandbox settings (``SandboxSpec`` fields).

The process manager builds the spec from the process's capabilities as for any Exo
process; this adds what an unmodified Linux program needs and may be refused
(docs/posix-x.md): the host's /etc files (``namespace.ETC_SYSTEM`` and the manifest's
``etc``, never a secret: ``namespace.check_host_etc``), the fork policy (seccomp), the
exec policy (Landlock EXECUTE on the program, its ``#!`` interpreters, its ELF loader and
the listed programs only), and the uid of a program that refuses root.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
from pathlib import Path

from exo.sandbox.errors import SandboxError
from exo.sandbox.namespace import ETC_SYSTEM, SYSTEM_DIRS, check_host_etc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.kernel.manifest import PosixX
    from exo.sandbox.spec import SandboxSpec

#: Where a program named without a slash is looked for (the child's PATH).
SEARCH_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_FALLBACK_UID = 1000  # a user the host does not know


def resolve(program: str) -> Path:
    """The host path ``execve`` will run for ``program`` (looked up on :data:`SEARCH_PATH`
    when it has no slash); one line naming it when there is none."""
    candidates = [Path(program)] if "/" in program else [Path(d) / program
                                                         for d in SEARCH_PATH]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise SandboxError(f"{program}: no such program in the system directories "
                       f"(looked in {', '.join(SEARCH_PATH) if '/' not in program else program})")


def _interpreters(path: Path, depth: int = 0) -> list[Path]:
    """What ``execve(path)`` also executes: the ``#!`` interpreter chain (``env NAME``
    resolved) or the ELF loader (``PT_INTERP``)."""
    try:  # never through a link: an app may plant one in its own directory
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as fh:
        try:
            head = fh.read(4096)
        except OSError:
            return []
    if head.startswith(b"#!") and depth < 4:
        words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
        if not words:
            return []
        found = [resolve(words[0])]
        if Path(words[0]).name == "env" and len(words) > 1:
            found.append(resolve(words[1]))
        return found + [p for f in found for p in _interpreters(f, depth + 1)]
    if head.startswith(b"\x7fELF"):
        loader = _elf_interp(path)
        return [loader] if loader is not None else []
    return []


def _elf_interp(path: Path) -> Path | None:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import InterpSegment

    try:
        with open(path, "rb") as fh:
            for segment in ELFFile(fh).iter_segments():
                if isinstance(segment, InterpSegment):
                    return Path(segment.get_interp_name())
    except (ELFError, OSError, ValueError):
        return None
    return None


def in_system_dirs(path: str) -> bool:
    """Whether the absolute ``path`` names something in the host's system directories."""
    return any(path == d or path.startswith(d + "/") for d in SYSTEM_DIRS)


def exec_allowed(policy: bool | tuple[str, ...], argv0: str,
                 tree: Path | None = None) -> tuple[Path, ...] | None:
    """The files of the system directories the process may execute (None: any of them).

    ``argv0`` is an Exo path or a name: a program of the Exo tree (``tree``, its host
    directory) is executed under its ``storage://`` capability's EXECUTE right, and only
    its ``#!`` interpreters are added here. Each is given by its real path: Landlock
    attaches rules to files, and a link (``/lib64/ld-linux-x86-64.so.2``,
    ``/etc/alternatives/cc``) is not one."""
    if policy is True:
        return None
    outside = [p for p in policy or () if not in_system_dirs(p)]
    if outside:
        raise SandboxError(f"[posix_x] exec {outside[0]}: only programs of the system "
                           "directories are listed; one of the Exo tree runs under its "
                           "storage://…=EXECUTE capability")
    programs = [resolve(p) for p in policy or ()]
    extra: list[Path] = []
    if "/" not in argv0 or in_system_dirs(argv0):
        programs.insert(0, resolve(argv0))
    elif tree is not None:
        extra = _interpreters(tree.joinpath(*Path(argv0).parts[1:]))
    allowed: list[Path] = []
    for program in programs + extra:
        for path in (program, *_interpreters(Path(os.path.realpath(program)))):
            real = Path(os.path.realpath(path))
            if real not in allowed:
                allowed.append(real)
    return tuple(allowed)


def user_id(name: str) -> int:
    """The uid to run ``name`` as: the host's for that name, else a plain user's."""
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return _FALLBACK_UID
    return uid if 0 < uid < 65534 else _FALLBACK_UID


def apply(spec: SandboxSpec, posix_x: PosixX, argv: list[str]) -> SandboxSpec:
    """``spec`` with ``posix_x``'s settings for running ``argv``."""
    etc = [*(ETC_SYSTEM if posix_x.system_dirs else ()), *posix_x.etc]
    host_etc = tuple(Path(check_host_etc(p, f"[posix_x] etc {p}")) for p in etc)
    user = None if posix_x.user is None else (posix_x.user, user_id(posix_x.user))
    return dataclasses.replace(spec, host_etc=host_etc, fork=posix_x.fork, user=user,
                               exec_only=exec_allowed(posix_x.exec, argv[0], spec.tree))


__all__ = ["SEARCH_PATH", "apply", "exec_allowed", "in_system_dirs", "resolve", "user_id"]
