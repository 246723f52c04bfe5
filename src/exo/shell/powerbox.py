"""The powerbox: the host's everyday programs run as sandboxed Exo processes holding
exactly what their command line names, as Plash's shell did.

The shell reads the command line it is about to run, and for each argument the program's
policy (``powerbox.toml``) calls an input, an output or a file to edit, grants a
capability to that one path with the rights its role needs — read for inputs, write for
outputs — after checking that the session holds it. Redirections need nothing: the shell
opens them itself, with the session's rights, and hands over the descriptors. Every
program also holds its working directory read-only (``find .``, ``sort notes.txt``); a
program the policy does not name gets only that.
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import re
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from exo.kernel.manifest import Grant
    from exo.shell.context import CommandContext
    from exo.shell.core import Shell
    from exo.shell.jobs import ShellJob
    from exo.shell.vfs import Vfs

#: Where the host's everyday programs are looked for (after the Exo tree's PATH).
HOST_DIRS = ("/usr/bin", "/bin")
_POLICY = Path(__file__).with_name("powerbox.toml")
_ADMIN_POLICY = "etc/exo/powerbox.toml"
_NOT_STORAGE = ("proc", "sys", "dev")  # synthesised, or the sandbox's own
_SELECTORS = ("operands", "first", "second", "last", "all-but-last", "all-but-first", "none")
_KEYS = frozenset({
    "inputs", "outputs", "edits", "entries", "input_options", "output_options",
    "value_options", "edit_flags", "entry_flags", "script_options", "directory_options",
    "base_options", "default_directory", "operand_pattern", "flags", "syscalls", "replaces",
    "bundled_first", "modes", "target_directory", "creates", "repository", "home_files"})


class PowerboxError(ValueError):
    """The policy file is malformed: the message says where."""


class Policy:
    """What one program's arguments mean: which operands and option values are files
    it reads, writes, or edits (reads and writes)."""

    __slots__ = ("base_options", "bundled_first", "creates", "default_directory",
                 "directory_options", "edit_flags", "edits", "entries", "entry_flags",
                 "flags", "home_files", "input_options", "inputs", "known", "modes",
                 "operand_pattern", "output_options", "outputs", "replaces", "repository",
                 "script_options", "syscalls", "target_directory", "value_options")

    def __init__(self, table: dict[str, object] | None = None, name: str = "") -> None:
        table = table or {}
        unknown = set(table) - _KEYS
        if unknown:
            raise PowerboxError(f"programs.{name}: unknown key {sorted(unknown)[0]!r}")
        self.inputs = _selector(table, "inputs", name)
        self.outputs = _selector(table, "outputs", name)
        self.edits = _selector(table, "edits", name)
        #: Names the program makes, removes or renames (rm, mkdir, mv): the directory
        #: each is in is what it writes, so that directory is granted read-write.
        self.entries = _selector(table, "entries", name)
        self.input_options = _strings(table, "input_options", name)
        self.output_options = _strings(table, "output_options", name)
        #: Options whose value (the next argument) is not a file: ``head -n 5``,
        #: ``touch -d 2020-01-01`` (the date was an output, made as an empty file).
        self.value_options = _strings(table, "value_options", name)
        self.edit_flags = _strings(table, "edit_flags", name)
        #: With one of these (alone or among short flags: ``-rf``), the outputs are
        #: entries: ``cp -r a b`` may make ``b`` a directory, which a file made ahead
        #: for it would refuse.
        self.entry_flags = _strings(table, "entry_flags", name)
        #: Given none of these, the first operand is the program's script, not a file
        #: (sed's, awk's, grep's pattern).
        self.script_options = _strings(table, "script_options", name)
        #: Directories the program writes in (tar -x -C DIR, mktemp -p DIR): granted
        #: read-write if they exist.
        self.directory_options = _strings(table, "directory_options", name)
        #: Options whose value is the directory the operands are named in (tar -C DIR,
        #: mktemp -p DIR).
        self.base_options = _strings(table, "base_options", name)
        #: The directory it writes in when no directory option names one: "." for tar
        #: -x (the working directory), "/tmp" for mktemp.
        default = table.get("default_directory", "")
        if not isinstance(default, str):
            raise PowerboxError(f"programs.{name}.default_directory: expected a path")
        self.default_directory = default
        #: Arguments that look like options but are operands (chmod -w FILE: a mode).
        pattern = table.get("operand_pattern", "")
        try:
            self.operand_pattern = re.compile(str(pattern)) if pattern else None
        except re.error as exc:
            raise PowerboxError(f"programs.{name}.operand_pattern: {exc}") from None
        #: The flags that select this mode (in a mode's table).
        self.flags = _strings(table, "flags", name)
        syscalls = table.get("syscalls", False)
        replaces = table.get("replaces", False)
        creates = table.get("creates", False)
        repository = table.get("repository", False)
        bundled = table.get("bundled_first", False)
        target = table.get("target_directory", False)
        for key, value in (("syscalls", syscalls), ("replaces", replaces),
                           ("creates", creates), ("repository", repository),
                           ("bundled_first", bundled), ("target_directory", target)):
            if not isinstance(value, bool):
                raise PowerboxError(f"programs.{name}.{key}: expected true or false")
        #: The first argument may be short flags without their dash (tar czf a.tgz dir).
        self.bundled_first = bundled is True
        #: Its last operand, when it is an existing directory, is where the others go
        #: (cp a b DIR, mv x DIR, ln -s t DIR): DIR/a and DIR/b are granted in the role
        #: the last operand has, not DIR whole.
        self.target_directory = target is True
        #: Modes whose arguments mean different things (tar -c reads its operands and
        #: writes its -f archive; tar -x reads the archive and writes the working
        #: directory): each a Policy of the base table with the mode's table over it,
        #: chosen by the first of its flags the command line gives.
        self.modes = _modes(table, name)
        #: It edits a file by writing a new one beside it and renaming it over (sed -i):
        #: an edited file's directory is granted read-write, not the file alone.
        self.replaces = replaces is True
        #: With ``replaces``: a file not there yet it makes itself (vim new.txt), so its
        #: directory is granted all the same (sed -i of a missing file grants nothing).
        self.creates = creates is True
        #: A directory it writes in (``dir``) inside a git work tree stands for the work
        #: tree's top (the nearest directory above with a ``.git``): git reads and
        #: writes the repository from any directory in it.
        self.repository = repository is True
        #: Files of the user's home it reads when they are there (``.gitconfig``):
        #: granted read-only, wherever it runs.
        self.home_files = _strings(table, "home_files", name)
        #: It may make Exo syscalls (a Python interpreter running an ``exo_std`` app):
        #: it gets a bootstrap channel; other programs do not (KernelApi.start).
        self.syscalls = syscalls is True
        #: Every option this policy (and its modes) names, for ``_long``.
        self.known = self._known()

    def roles(self, args: list[str],
              is_dir: Callable[[str], bool] | None = None) -> list[tuple[str, str]]:
        """``(argument, "read" | "write" | "edit" | "entry" | "dir")`` for each file the
        arguments name (``dir``: a directory the program writes in). ``is_dir`` says
        whether an argument names an existing directory (``target_directory``)."""
        if self.bundled_first and args and args[0] and not args[0].startswith("-"):
            args = self._unbundle(args)
        options, operands = self._parse(args)
        given = {option for option, _ in options}
        policy = next((mode for mode in self.modes.values()
                       if any(flag in given for flag in mode.flags)), self)
        found = policy._roles(options, operands)
        if policy.target_directory and len(operands) >= 2 and is_dir is not None \
                and is_dir(operands[-1]):
            into, sources = operands[-1], operands[:-1]
            named = [posixpath.join(into, posixpath.basename(src.rstrip("/")) or src)
                     for src in sources]
            found = [pair for arg, role in found
                     for pair in ([(n, role) for n in named]
                                  if arg is into and role in ("write", "entry")
                                  else [(arg, role)])]
        return found

    def _unbundle(self, args: list[str]) -> list[str]:
        """tar's old style, ``tar xfC a.tar dir``: each letter of the first word is a
        flag, and those that take a value take the words after it, in order."""
        rest = args[1:]
        out: list[str] = []
        for letter in args[0]:
            out.append("-" + letter)
            if self._takes_value("-" + letter):
                out.append(rest.pop(0) if rest else "")
        return out + rest

    def _takes_value(self, option: str) -> bool:
        lists = [self]
        lists += self.modes.values()
        return any(option in p.input_options or option in p.output_options
                   or option in p.value_options or option in p.directory_options
                   or option in p.base_options for p in lists)

    def _known(self) -> frozenset[str]:
        """Every option this policy (and its modes) names."""
        out: set[str] = set()
        for p in (self, *self.modes.values()):
            for names in (p.input_options, p.output_options, p.value_options,
                          p.directory_options, p.base_options, p.edit_flags, p.entry_flags,
                          p.script_options, p.flags):
                out.update(names)
        return frozenset(out)

    def _long(self, option: str) -> str:
        """``option`` as getopt_long reads it: an unambiguous prefix of a long option
        stands for it (``tar --dir sub`` is ``--directory sub``; taken for a flag, it
        granted the working directory instead)."""
        known = self.known
        if option in known:
            return option
        longer = [o for o in known if o.startswith(option) and o.startswith("--")]
        return longer[0] if len(longer) == 1 else option

    def _parse(self, args: list[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
        """The options, each with its value (None for a flag), and the operands. Short
        flags may be grouped, the last of them taking a value (``tar -czf a.tgz``,
        ``sort -uo out``, ``cut -d,``); a long option's value follows ``=`` or is the
        next argument."""
        options: list[tuple[str, str | None]] = []
        operands: list[str] = []
        it = iter(args)
        for arg in it:
            if arg == "--":
                operands += list(it)
                break
            if self.operand_pattern is not None and self.operand_pattern.fullmatch(arg):
                operands.append(arg)
            elif arg.startswith("--"):
                option, eq, value = arg.partition("=")
                option = self._long(option)
                if eq:
                    options.append((option, value))
                elif self._takes_value(option):
                    options.append((option, next(it, "")))
                else:
                    options.append((option, None))
            elif arg.startswith("-") and arg != "-":
                for i, letter in enumerate(arg[1:], 2):
                    option = "-" + letter
                    if self._takes_value(option):
                        options.append((option, arg[i:] or next(it, "")))
                        break
                    options.append((option, None))
            else:
                operands.append(arg)
        return options, operands

    def _roles(self, options: list[tuple[str, str | None]],
               operands: list[str]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        given = {option for option, _ in options}
        base = ""
        for option, value in options:
            for names, role in ((self.input_options, "read"), (self.output_options, "write"),
                                (self.directory_options, "dir")):
                if option in names and value:
                    found.append((value, role))
            if option in self.base_options and value:
                base = value
        editing = any(flag in given for flag in self.edit_flags)
        entering = any(flag in given for flag in self.entry_flags)
        if self.script_options and not any(o in given for o in self.script_options):
            operands = operands[1:]
        if base:  # named in that directory (tar -C DIR, mktemp -p DIR)
            operands = [posixpath.join(base, op) for op in operands]
        for selector, role in ((self.inputs, "read"), (self.outputs, "write"),
                               (self.edits, "edit"), (self.entries, "entry")):
            role = "edit" if editing and role == "read" else role
            role = "entry" if entering and role == "write" else role
            found += [(op, role) for op in _select(selector, operands)]
        if self.default_directory and not any(role == "dir" for _, role in found):
            found.append((self.default_directory, "dir"))
        return found


def _work_tree(shell: Shell, exo: str) -> str:
    """The top of the git work tree ``exo`` is in (the nearest directory with a ``.git``,
    ``exo`` itself or above, that the user may write), else ``exo``."""
    here = exo
    while True:
        if shell.session.holds("storage://" + here.strip("/"), "READ,WRITE") and \
                shell.vfs.exists(posixpath.join(here, ".git")):
            return here
        if here == "/":
            return exo
        here = posixpath.dirname(here)


def _held_dir(shell: Shell, exo: str) -> bool:
    """Whether ``exo`` is a directory the user may read (what they cannot is not looked
    at: the answer would say what exists in another's home)."""
    return shell.session.holds("storage://" + exo.strip("/"), "READ") and \
        shell.vfs.is_dir(exo)


def _check(shell: Shell, arg: str, exo: str, rights: str) -> str:
    """The resource name of ``exo``; ``PermissionError`` unless the session holds it
    with ``rights``."""
    resource = "storage://" + exo.strip("/")
    if not shell.session.holds(resource, rights):
        raise PermissionError(f"{arg}: permission denied (user {shell.session.user} holds "
                              f"no capability to {'read' if rights == 'READ' else 'write'} "
                              "it)")
    return resource


def _deepest_dir(vfs: Vfs, exo: str) -> str:
    """The deepest directory that exists on the way to ``exo``'s parent. Looked for from
    the root down, so it costs what exists: walked up from a typed path of missing
    components (``mkdir -p a/a/a/…``), each step a lookup of a shorter path, it took the
    kernel 0.05 s for 2,000 of them and 0.4 s for 8,000, growing with their square."""
    found = "/"
    for part in posixpath.dirname(exo).split("/"):
        if not part:
            continue
        below = posixpath.join(found, part)
        if not vfs.is_dir(below):
            break
        found = below
    return found


def _modes(table: dict[str, object], name: str) -> dict[str, Policy]:
    modes = table.get("modes", {})
    if not isinstance(modes, dict):
        raise PowerboxError(f"programs.{name}.modes: expected a table of modes")
    out: dict[str, Policy] = {}
    base = {key: value for key, value in table.items() if key != "modes"}
    for mode, sub in modes.items():
        where = f"{name}.modes.{mode}"
        if not isinstance(sub, dict) or not sub.get("flags"):
            raise PowerboxError(f"programs.{where}: expected a table with its flags")
        if "modes" in sub:
            raise PowerboxError(f"programs.{where}: a mode has no modes")
        merged = dict(base)
        for key, value in sub.items():  # lists of options add up; the rest is replaced
            old = merged.get(key)
            merged[key] = old + value if key.endswith("_options") and isinstance(
                old, list) and isinstance(value, list) else value
        out[mode] = Policy(merged, where)
    return out


def _select(selector: str, operands: list[str]) -> list[str]:
    if selector == "operands":
        return operands
    if selector == "first":
        return operands[:1]
    if selector == "second":
        return operands[1:2]
    if selector == "last":
        return operands[-1:]
    if selector == "all-but-last":
        return operands[:-1]
    if selector == "all-but-first":
        return operands[1:]
    return []


def _selector(table: dict[str, object], key: str, name: str) -> str:
    value = table.get(key, "none")
    if value not in _SELECTORS:
        raise PowerboxError(f"programs.{name}.{key}: expected one of "
                            f"{', '.join(_SELECTORS)}, got {value!r}")
    return str(value)


def _strings(table: dict[str, object], key: str, name: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PowerboxError(f"programs.{name}.{key}: expected a list of strings")
    return tuple(value)


def parse_policies(text: str, where: str) -> dict[str, Policy]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PowerboxError(f"{where}: {exc}") from None
    programs = data.get("programs", {})
    if not isinstance(programs, dict):
        raise PowerboxError(f"{where}: [programs] must be a table")
    try:
        return {name: Policy(_like(programs, name, table) if isinstance(table, dict)
                             else None, name)
                for name, table in programs.items()}
    except PowerboxError as exc:
        raise PowerboxError(f"{where}: {exc}") from None


def _like(programs: dict[str, object], name: str,
          table: dict[str, object]) -> dict[str, object]:
    """``like = "gcc"``: the table of that program of the same file, with this one's own
    keys over it (cc, g++ and c++ are gcc's; one level: the other has no ``like``)."""
    if "like" not in table:
        return table
    other = table["like"]
    base = programs.get(other) if isinstance(other, str) else None
    if not isinstance(base, dict) or "like" in base:
        raise PowerboxError(f"programs.{name}.like: expected the name of a program of "
                            "the same file that has no like of its own")
    return {**base, **{key: value for key, value in table.items() if key != "like"}}


@functools.cache
def _builtin_policies() -> dict[str, Policy]:
    return parse_policies(_POLICY.read_text(), str(_POLICY.name))


class Powerbox:
    """Starts host programs for one shell, granting what their arguments name."""

    __slots__ = ("made", "policies", "shell")

    def __init__(self, shell: Shell, policies: dict[str, Policy]) -> None:
        self.shell = shell
        self.policies = policies
        self.made: list[tuple[str, bool]] = []  # outputs made ahead, for an editor? (_tidy)

    @classmethod
    def for_shell(cls, shell: Shell) -> Powerbox:
        policies = dict(_builtin_policies())
        # Read with the whole tree's view, not the session's: a user holds no /etc/exo,
        # and the administrator's policy bound root alone (a hostile review). Anything
        # but its absence refuses the host's programs rather than use the built-in one.
        try:
            admin = shell.whole_tree.read_bytes("/" + _ADMIN_POLICY).decode(errors="replace")
        except FileNotFoundError:
            admin = ""
        except OSError as exc:
            raise PowerboxError(f"/{_ADMIN_POLICY}: {exc.strerror or exc}") from None
        if admin:
            policies.update(parse_policies(admin, "/" + _ADMIN_POLICY))
        return cls(shell, policies)

    @staticmethod
    def find(name: str) -> str | None:
        """The host program called ``name`` in ``HOST_DIRS`` (or named by its path
        there: ``/bin/sleep``, which a sandbox sees at that path), or None."""
        if "/" in name:
            path = posixpath.normpath(name)
            if posixpath.dirname(path) in HOST_DIRS and os.path.isfile(path) and \
                    os.access(path, os.X_OK):
                return path
            return None
        for d in HOST_DIRS:
            path = os.path.join(d, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        return None

    def grants(self, name: str, args: list[str]) -> list[Grant]:
        """The working directory read-only, then one grant per file the policy says the
        arguments name; ``PermissionError`` for one the session does not hold."""
        from exo.kernel.manifest import parse_grant

        shell = self.shell
        cwd_name = "storage://" + shell.cwd.strip("/")
        grants: list[Grant] = []
        if shell.session.holds(cwd_name, "READ"):
            grants.append(parse_grant(f"{cwd_name}=READ"))
        policy = self.policies.get(name)
        vfs = shell.vfs
        roles = policy.roles(args, lambda a: _held_dir(shell, vfs.normalize(a, shell.cwd))) \
            if policy is not None else self._asked(name, args, grants)
        missing: list[str] = []
        if policy is not None:  # its files in the user's home (~/.gitconfig), read-only
            home = shell.session.home
            roles += [(posixpath.join(home, f), "read") for f in policy.home_files
                      if shell.session.holds("storage://" + posixpath.join(home, f)
                                             .strip("/"), "READ")]
        for arg, role in roles:
            if arg == "-":
                continue  # the standard input or output (tar -cf -, sort -o -)
            exo = vfs.normalize(arg, shell.cwd)
            top = exo.strip("/").split("/", 1)[0]
            if top in _NOT_STORAGE:
                continue  # not storage: synthesised, or the sandbox's own
            if role == "dir" and policy is not None and policy.repository:
                exo = _work_tree(shell, exo)
            exists = vfs.exists(exo)
            replaces = role == "edit" and policy is not None and policy.replaces
            if role == "write" and exists and _held_dir(shell, exo):
                role = "read"  # an output that is a directory: nothing to write in it
            makes = replaces and policy is not None and policy.creates and \
                vfs.is_dir(posixpath.dirname(exo))
            skip = (not exists and (role == "read" or (replaces and not makes))) or \
                (role == "dir" and not vfs.is_dir(exo))
            if skip:
                # Not a file after all (a pattern, a number), or a directory the
                # program says is missing itself (tar: Cannot chdir): nothing to grant,
                # but a name the user holds nothing over is refused as an existing
                # one is, or the answer would say what exists in another's home.
                _check(shell, arg, exo, "READ" if role == "read" else "READ,WRITE")
                continue
            if replaces:  # its directory (a new file: the program makes it, not we)
                exo, exists = posixpath.dirname(exo), True
            elif role == "entry":  # the nearest directory that exists (mkdir -p a/b/c)
                exo, exists = _deepest_dir(vfs, exo), True
            rights = "READ" if role == "read" else "READ,WRITE"
            if role == "edit" and exists and not replaces and not shell.session.holds(
                    "storage://" + exo.strip("/"), rights):
                rights = "READ"  # one the user may only read: shown, saying so itself
            resource = _check(shell, arg, exo, rights)
            if rights != "READ" and not exists:
                missing.append(exo)
                self.made.append((exo, role == "edit"))
            grant = parse_grant(f"{resource}={rights}")
            if not any(g.name.covers(grant.name) and grant.rights in g.rights
                       for g in grants):  # else held through the working directory
                grants.append(grant)
        # Outputs are created once every argument was checked (a refused command left
        # them behind, empty), with the session's rights.
        for exo in missing:
            shell.vfs.touch(exo)
        return grants

    def _tidy(self) -> Callable[[int], None] | None:
        """What to do once the command has ended: a file made ahead for it that it left
        empty and untouched goes, as if never made, when it was made for an editor to
        edit (``nano new.txt``: it quit without saving) or the command failed (``cp -p
        a b c`` with no directory c left an empty c; GNU's makes nothing)."""
        vfs = self.shell.vfs
        made = [(exo, edit, entry.mtime) for exo, edit in self.made
                if (entry := vfs.entry(exo)) is not None]

        def tidy(status: int) -> None:
            for exo, edit, mtime in made:
                if not edit and status == 0:
                    continue  # (an output it made empty: `sort empty -o out`)
                with contextlib.suppress(OSError):  # (VfsError too)
                    entry = vfs.entry(exo)
                    if entry is not None and entry.size == 0 and entry.mtime == mtime \
                            and entry.link is None and not entry.is_dir:
                        vfs.remove(exo)

        return tidy if made else None

    def _asked(self, name: str, args: list[str], grants: list[Grant]) -> list[tuple[str, str]]:
        """A program the policy does not know: each argument naming a file outside the
        working directory is granted read-only only if the person at the terminal says
        so (never in a script)."""
        shell = self.shell
        if shell.terminal is None:
            return []
        out: list[tuple[str, str]] = []
        for arg in args:
            if arg.startswith("-"):
                continue
            exo = shell.vfs.normalize(arg, shell.cwd)
            inside = exo == shell.cwd or exo.startswith(shell.cwd.rstrip("/") + "/")
            top = exo.strip("/").split("/", 1)[0]
            if (inside and grants) or top in _NOT_STORAGE or not shell.vfs.exists(exo):
                continue  # held through the working directory, or not a file
            if shell.session.holds("storage://" + exo.strip("/"), "READ") and \
                    shell.terminal.ask(f"exo: let {name} read {exo}? [y/N] "):
                out.append((arg, "read"))
        return out

    def start(self, ctx: CommandContext, env: dict[str, str]) -> ShellJob | None:
        program = self.find(ctx.argv[0])
        if program is None:
            return None
        name = posixpath.basename(program)
        grants = self.grants(name, ctx.args)
        policy = self.policies.get(name)
        # Forked from the session's zygote when the command allows it (no terminal, no
        # network): one sandbox per session, not one per command (exo.sandbox.zygote).
        # Its files in passthrough mode: `cat big.txt | wc -l` reads at the disk's speed,
        # not through the kernel's file server (what revocation then cuts:
        # docs/revocable-files.md).
        from exo.sandbox.zygote import prefer

        with prefer():
            job = self.shell.start_process([program, *ctx.args], grants, ctx, env,
                                           passthrough=True,
                                           syscalls=policy is not None and policy.syscalls)
        if job is not None:
            tidy = self._tidy()
            hint = self._hint(name, ctx) if policy is not None and policy.syscalls else None
            if tidy is not None or hint is not None:
                def after(status: int) -> None:
                    if tidy is not None:
                        tidy(status)
                    if hint is not None and status != 0:
                        hint()
                job.after = after
        return job

    def _hint(self, name: str, ctx: CommandContext) -> Callable[[], None] | None:
        """For an interpreter (a policy with ``syscalls``: python3) on a terminal, once a
        session: what to do when the script wanted to write beside itself, which the
        powerbox does not grant (a script's traceback said "Read-only file system"
        and nothing more)."""
        shell = self.shell
        if name in shell.hinted or not os.isatty(ctx.stderr):
            return None
        cwd, fd = shell.cwd, ctx.stderr

        def say() -> None:
            if name in shell.hinted:
                return
            shell.hinted.add(name)
            with contextlib.suppress(OSError):
                os.write(fd, (f"exo: {name} held {cwd} read-only, and only the files its "
                              f"command line names (the powerbox). If it wrote there: run "
                              f"--cap storage://{cwd.strip('/')}=READ,WRITE -- {name} …\n"
                              ).encode())

        return say
