"""``posix-x migrate``: the smallest manifest that lets a program do its profiled work.

It starts from nothing (system directories shown, no capability, no fork, no exec of
other programs, no network), runs the program under ``posix-x profile`` and reads what
was refused: each refusal the manifest can lawfully allow becomes one line (a fork
refused with EAGAIN: ``fork = true``; an exec refused: that program in ``exec``; a port
bound or connected: ``network``; a host ``/etc`` file not shown: ``etc``; a path of the Exo
tree read or written: a ``storage://`` capability on its directory, READ or READ,WRITE).
Then it runs again with that manifest, until a run adds nothing (at most
``MAX_ROUNDS``). What a manifest can never allow (``/etc/shadow``, a Legacy syscall, a
write to the system directories) is reported, not added. ``posix-x analyze`` adds what
the binary's imports predict but the run did not exercise, as comments.

The manifest is checked by the project's own loader before it is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from exo._printable import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rich.console import Console

    from .profile import Profile

MAX_ROUNDS = 5
#: Where nothing is granted from: synthesised or private in every sandbox.
_NOT_GRANTED = ("/proc", "/sys", "/dev", "/tmp", "/run")


class MigrateError(Exception):
    """Migration failed: one line."""


class Fix:
    """One manifest line: ``kind`` (``storage``, ``etc``, ``exec``, ``network``, ``fork``),
    its value, and why (what the run was refused)."""

    __slots__ = ("kind", "value", "why")

    def __init__(self, kind: str, value: str, why: str) -> None:
        self.kind = kind
        self.value = value
        self.why = why

    def describe(self) -> str:
        return {"storage": f"hold {self.value}",
                "etc": f'[posix_x] etc = ["{self.value}"]',
                "exec": f'[posix_x] exec = ["{self.value}"]',
                "network": f"[posix_x] network = [{self.value}]",
                "fork": "[posix_x] fork = true"}[self.kind]

    def grants(self) -> str:
        """What the line grants, in words."""
        if self.kind == "storage":
            name, _, rights = self.value.partition("=")
            path = "/" + name.removeprefix("storage://")
            what = "read and write" if "WRITE" in rights else "read"
            return f"{what} {path} and everything below it (shown at {path})"
        return {"etc": f"read the host's {self.value}, read-only",
                "exec": f"execute {self.value}",
                "network": f"bind and connect to loopback TCP port {self.value}",
                "fork": "create processes (within [limits] pids)"}[self.kind]


def _in_system_dirs(path: str) -> bool:
    from .sandbox import in_system_dirs

    return in_system_dirs(path)


def fix_for_path(call: str, path: str, err: str, *, write: bool,
                 tree: Path | None = None) -> Fix | None:
    """What would let ``call(path)`` through, or None (never allowed, or not a path a
    manifest names). ``tree``: the Exo tree's host directory, to tell a file the program
    could not see from one that does not exist anywhere."""
    from exo.sandbox.errors import SandboxError
    from exo.sandbox.namespace import check_host_etc

    norm = os.path.normpath(path)
    why = f"{call}({norm}) was refused ({err})"
    if call in ("execve", "execveat"):
        if err in ("EACCES", "EPERM") and _in_system_dirs(norm):
            return Fix("exec", norm, why)
        return None
    if norm.startswith("/etc/"):
        if write:
            return None
        try:
            check_host_etc(norm)
        except SandboxError:
            return None
        return Fix("etc", norm, why) if os.path.exists(norm) else None
    if _in_system_dirs(norm) or norm == "/" or any(
            norm == d or norm.startswith(d + "/") for d in _NOT_GRANTED):
        return None
    if write and err in ("EROFS", "EACCES", "EPERM", "ENOENT"):
        directory = norm if call in ("mkdir", "mkdirat") else os.path.dirname(norm)
        if directory == "/":
            return None
        return Fix("storage", f"storage://{directory.lstrip('/')}=READ,WRITE", why)
    if not write and err in ("ENOENT", "EACCES") and tree is not None:
        host = tree.joinpath(*Path(norm).parts[1:])
        if host.exists() and not host.is_symlink():
            directory = norm if host.is_dir() else os.path.dirname(norm)
            if directory != "/":
                return Fix("storage", f"storage://{directory.lstrip('/')}=READ", why)
    return None


def grant_for(call: str, path: str, err: str, *, write: bool = False) -> str | None:
    """The manifest line that would let a refused path call through, in words (for
    ``posix-x profile``'s suggestions)."""
    fix = fix_for_path(call, path, err, write=write)
    return None if fix is None else fix.describe()


def fixes(prof: Profile, tree: Path | None) -> list[Fix]:
    """Every manifest line the profile's refusals ask for."""
    from . import _strace

    found: list[Fix] = []
    for call, target, err in prof.refusals:
        if call in ("fork", "vfork", "clone") and err == "EAGAIN":
            found.append(Fix("fork", "true", f"{call} was refused (EAGAIN)"))
        elif call in _strace.PATH_CALLS and target.startswith("/"):
            fix = fix_for_path(call, target, err, write=target in prof.writes, tree=tree)
            if fix is not None:
                found.append(fix)
    for call, host, port, ok in prof.ports:
        if call == "bind" or not ok:
            found.append(Fix("network", str(port), f"{call}({host}:{port})"
                             + ("" if ok else " failed")))
    return found


class Migration:
    """The result: the manifest's fixes, the rounds run, the last run's profile."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.fixes: list[Fix] = []
        self.rounds = 0
        self.status = 0
        self.unresolved: list[str] = []
        self.predicted: list[str] = []
        self.last: Profile | None = None

    def add(self, new: list[Fix]) -> bool:
        """Merge ``new``; whether anything was added (a READ grant widened to WRITE
        counts)."""
        added = False

        def key(f: Fix) -> tuple[str, str]:  # /bin/cat and /usr/bin/cat are one program
            return f.kind, (os.path.realpath(f.value) if f.kind == "exec"
                            else f.value.partition("=")[0])

        for fix in new:
            same = [f for f in self.fixes if key(f) == key(fix)]
            if not same:
                self.fixes.append(fix)
                added = True
            elif fix.kind == "storage" and "WRITE" in fix.value \
                    and "WRITE" not in same[0].value:
                same[0].value, same[0].why = fix.value, fix.why
                added = True
        return added

    def toml(self) -> str:
        def s(text: str) -> str:
            return json.dumps(text)  # a TOML basic string (JSON's escapes are TOML's)

        caps = [f for f in self.fixes if f.kind == "storage"]
        lines = [f"# posix-x migrate {printable(self.program, newlines=False)}: "
                 f"{self.rounds} profiled run(s), last exit status {self.status}",
                 "[sandbox]", "capabilities = ["]
        lines += [f"    {s(f.value)},  # {f.grants()}: {printable(f.why, newlines=False)}"
                  for f in caps]
        lines += ["]", "", "[posix_x]", "system_dirs = true  # the host's /etc files "
                  "ordinary programs read (never a secret), read-only"]
        fork = [f for f in self.fixes if f.kind == "fork"]
        lines.append("fork = true  # " + fork[0].grants() + ": " + fork[0].why if fork
                     else "fork = false  # it created no process")
        for kind, what in (("exec", "exec"), ("etc", "etc")):
            chosen = [f for f in self.fixes if f.kind == kind]
            lines.append(f"{what} = [" + ", ".join(s(f.value) for f in chosen) + "]"
                         + ("  # " + "; ".join(f"{f.grants()}: {printable(f.why, newlines=False)}"
                                               for f in chosen) if chosen else ""))
        ports = [f for f in self.fixes if f.kind == "network"]
        if ports:
            lines.append("network = [" + ", ".join(f.value for f in ports) + "]  # "
                         + "; ".join(f"{f.grants()}: {f.why}" for f in ports))
        if caps:  # a choice, not a need: suggested, not set
            lines.append("# passthrough = true  # reads and writes of its open storage:// "
                         "files at the disk's speed, not through the kernel's file server "
                         "(gcc: 0.90 -> 0.97 of native); revocation then cuts them except "
                         "mappings, splice and sendfile (docs/revocable-files.md)")
        for note in self.predicted:
            lines.append(f"# analyze: {printable(note, newlines=False)}")
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, object]:
        return {"program": self.program, "rounds": self.rounds, "status": self.status,
                "manifest": self.toml(),
                "lines": [{"line": f.describe(), "grants": f.grants(), "why": f.why}
                          for f in self.fixes],
                "unresolved": self.unresolved, "predicted": self.predicted,
                "profile": self.last.as_dict() if self.last is not None else None}


def migrate(program: str, args: list[str], *, root: str | None, output: str,
            timeout: float | None, cwd: str = "/") -> Migration:
    """Profile ``program`` under ever larger manifests until a run is refused nothing the
    manifest can allow; writes the manifest to ``output``."""
    from exo.kernel.config import resolve_root
    from exo.kernel.manifest import ManifestError, load_manifest
    from exo.sandbox.errors import SandboxError

    from .analyze import AnalyzeError, analyze
    from .profile import profile
    from .sandbox import resolve

    try:
        path = str(resolve(program)) if "/" not in program else program
    except SandboxError as exc:
        raise MigrateError(str(exc)) from None
    result = Migration(path)
    try:
        report = analyze(path)
        result.predicted = [f"{c['key']}: {c['value']} ({c['why']})"
                            for c in report.capabilities if c["key"] != "posix_x.system_dirs"]
    except AnalyzeError as exc:
        result.predicted = [f"not analysed: {exc}"]
    tree = Path(resolve_root(root))
    out = Path(output)
    for _ in range(MAX_ROUNDS):
        out.write_text(result.toml())
        try:
            load_manifest(str(out))
        except ManifestError as exc:
            raise MigrateError(f"the manifest built is invalid: {exc}") from None
        prof = profile([path, *args], caps=[], manifest=str(out), cwd=cwd, root=root,
                       timeout=timeout)
        result.rounds += 1
        result.status = prof.status
        result.last = prof
        if not result.add(fixes(prof, tree)):
            break
    if result.last is not None:
        allowed = {f.why for f in result.fixes}
        result.unresolved = [f"{c}({t}) = {e}" for c, t, e in result.last.refusals
                             if e in ("EACCES", "EPERM", "EROFS")
                             and not any(t and t in w for w in allowed)][:20]
    out.write_text(result.toml())
    return result


def render(result: Migration, output: str, console: Console) -> None:
    from rich.markup import escape

    console.print(f"[bold]posix-x migrate[/bold] {escape(result.program)}: "
                  f"{result.rounds} profiled run(s), last exit status {result.status}")
    console.print(f"Wrote {escape(output)}:")
    if not result.fixes:
        console.print("  nothing beyond the defaults (system directories, no fork, no "
                      "exec, no network)")
    for f in result.fixes:
        console.print(f"  {escape(f.describe())}\n      grants: {escape(f.grants())}\n"
                      f"      because: {escape(printable(f.why, newlines=False))}")
    for line in result.unresolved:
        console.print(f"  [yellow]still refused[/yellow] (no manifest line allows it): "
                      f"{escape(printable(line, newlines=False))}")
    for note in result.predicted:
        console.print(f"  analyze predicts {escape(printable(note, newlines=False))}")


__all__ = ["Fix", "MigrateError", "Migration", "fix_for_path", "fixes", "grant_for",
           "migrate", "render"]
