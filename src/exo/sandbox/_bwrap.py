"""bubblewrap back-end: namespaces and the mount view, as one ``bwrap`` command line.

The sandbox sees a fresh root holding only: the base system (``/usr`` and the ``/bin``,
``/lib*`` links), the Python runtime (``sys.base_prefix``, ``sys.prefix``, the directory
holding the ``exo``/``exo_std`` packages), a synthesised minimal ``/etc``, four device nodes,
a fresh ``/proc`` for its own pid namespace, private ``/tmp`` and ``/dev/shm``, and the paths
the spec grants. The root itself is remounted read-only.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import stat
import sys
import threading
import time
from collections.abc import Set as AbstractSet
from pathlib import Path

import exo

from ._mountinfo import mounts
from .errors import SandboxError, SandboxUnavailable
from .namespace import (
    DEVICES,
    ETC_FROM_HOST,
    ETC_NETWORK,
    ETC_SYNTHESISED,
    LOCALTIME,
    RUNTIME_SITE,
    RUNTIME_SRC,
    SYSTEM_DIRS,
    TTY,
    check_cwd,
    check_destination,
    host_etc_source,
    instance_path,
    runtime_site_sources,
)

TYPE_CHECKING = False  # the spec (a dataclass) loads at the first spawn, not at boot
if TYPE_CHECKING:
    from .spec import SandboxSpec

BWRAP = "bwrap"

# A grant may never contain these (secrets, other users, kernel interfaces)...
_PROTECTED = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/etc/ssh", "/etc/ssl/private",
              "/root", "/home", "/proc", "/sys", "/dev", "/boot", "/run", "/var/run")
# ... nor lie inside these.
_FORBIDDEN_INSIDE = ("/proc", "/sys", "/dev", "/etc/ssh", "/etc/ssl/private", "/root/.ssh",
                     "/root/.gnupg", "/etc/shadow", "/etc/gshadow", "/etc/sudoers")
# Looked up as sets (``_under``; a protected path's ancestors), not compared one by one:
# ~50 comparisons a grant otherwise.
_FORBIDDEN_SET = frozenset(_FORBIDDEN_INSIDE)
_PROTECTED_ANCESTORS = frozenset(str(a) for p in map(Path, _PROTECTED) for a in (p, *p.parents))



#: The /etc names shown in every sandbox, whose parents ``_parent_dirs`` makes crossable.
_ETC_PATHS = tuple(map(Path, ("/etc/passwd", *ETC_FROM_HOST, *ETC_NETWORK, LOCALTIME)))


def bwrap_path() -> str | None:
    """Where bwrap is on PATH (shutil.which's job; shutil costs the boot bz2 and lzma)."""
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(d or ".", BWRAP)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


class _HostView:
    """What of the host ``plan_mounts`` shows in every sandbox whatever its grants: the
    system directories (links kept as links), the ``/etc`` files shown from the host (what
    each name leads to, None when missing) and ``/etc/localtime`` (``("link", target)``,
    ``("file", path)`` or None); and where the kernel's FUSE servers are mounted
    (``check_source``). Read from the host at most once per ``TTL`` seconds: it was
    ~0.5 ms of every spawn (~40 stat, lstat and readlink calls, and a parse of
    ``/proc/self/mountinfo`` per grant), and a powerbox pipeline spawns one process per
    stage; a change to the host's view reaches sandboxes started a second later (a FUSE
    mount point not found is looked for again, fresh, before a source is refused)."""

    TTL = 1.0
    __slots__ = ("etc", "fuse_points", "links", "localtime", "system", "taken")

    def __init__(self) -> None:
        self.taken = time.monotonic()
        self.links: list[tuple[str, str]] = []  # (target, name)
        self.system: list[Path] = []
        for d in SYSTEM_DIRS:
            p = Path(d)
            if p.is_symlink():
                self.links.append((os.readlink(p), d))
            elif p.is_dir():
                self.system.append(p)
        self.etc: dict[str, str | None] = {}
        for name in (*ETC_FROM_HOST, *ETC_NETWORK):
            source = os.path.realpath(name)
            self.etc[name] = source if os.path.exists(source) else None
        localtime = Path(LOCALTIME)
        self.localtime: tuple[str, str] | None = (
            ("link", os.readlink(localtime)) if localtime.is_symlink() else
            ("file", str(localtime)) if localtime.is_file() else None)
        self.fuse_points = frozenset(mounted for _, mounted, fstype, origin, _ in mounts()
                                     if fstype == "fuse" and origin in KERNEL_FUSE_SOURCES)


_host_view: _HostView | None = None
_host_view_lock = threading.Lock()


def host_view(*, fresh: bool = False) -> _HostView:
    """The host's view, at most ``_HostView.TTL`` old (``fresh``: read now)."""
    global _host_view
    with _host_view_lock:
        view = _host_view
        if fresh or view is None or time.monotonic() - view.taken > _HostView.TTL:
            view = _host_view = _HostView()
        return view


@functools.cache
def runtime_paths() -> tuple[Path, ...]:
    """Where the Python runtime lives: interpreter, venv, and the Exo packages' directory
    (resolved once: they do not move while the kernel runs)."""
    pkg_dir = Path(exo.__file__).resolve().parent.parent
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix), pkg_dir}
    return tuple(sorted(paths))


@functools.cache
def runtime_src() -> Path:
    """The host directory holding the ``exo`` and ``exo_std`` packages (shown in every
    process at ``RUNTIME_SRC``)."""
    return Path(exo.__file__).resolve().parent.parent


@functools.cache  # a raised SandboxUnavailable is not cached: asked again next time
def stage2_inside() -> str:
    """``exo-stage2`` as the sandbox sees it (under ``RUNTIME_SRC``)."""
    rel = stage2_path().relative_to(runtime_src())
    return f"{RUNTIME_SRC}/{rel.as_posix()}"


def stage2_path() -> Path:
    """``exo-stage2``, the compiled last step of a sandbox start (built from ``_stage2.c``)."""
    path = Path(__file__).resolve().with_name("exo-stage2")
    if not os.access(path, os.X_OK):
        raise SandboxUnavailable(f"the sandbox's stage-2 helper {path} is not built: run "
                                 "`make setup` (pip install -e . compiles it)")
    return path


def _is_within(path: Path | str, parent: Path | str) -> bool:
    """``path`` is ``parent`` or below it (both absolute, normalised: as strings, since
    ``parent in path.parents`` builds a Path per ancestor, ~2 ms a spawn measured)."""
    p, q = str(path), str(parent)
    return p == q or p.startswith(q.rstrip("/") + "/")


def _has_ssh_dir(path: Path) -> bool:
    return ".ssh" in path.parts or ".gnupg" in path.parts


def _resolved(path: Path | str) -> tuple[str, int]:
    """``path`` with every link resolved, and its mode: one ``O_PATH`` open, its
    ``/proc/self/fd`` link and an ``fstat`` (``os.path.realpath`` walks it in Python, an
    ``lstat`` per component: most of a plan's time). FileNotFoundError when it is not
    there."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        return os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_mode
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=8)
def _system_sets(system: tuple[Path, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """The system paths (``/`` spelled ``""``, as ``_under`` wants), and every one of
    their ancestors, as strings (for ``write``)."""
    tops = frozenset("" if str(p) == "/" else str(p) for p in system)
    return tops, frozenset(str(a) for p in system for a in (p, *p.parents))



def check_grant(path: Path, what: str, *, system: tuple[Path, ...],
                shown: Path | None = None) -> Path:
    """Refuse grants that would expose secrets or let the app modify the system.

    ``shown``: the path as the process sees it, named in errors instead of the host's.
    """
    name = str(shown or path)
    try:
        real_s, mode = _resolved(path)
    except FileNotFoundError:
        raise SandboxError(f"{what} path {name!r} does not exist") from None
    real = Path(real_s)
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        # A socket, FIFO or device would be bound as it is: a control socket or a pipe
        # outside every revocable export, or a device node. Never granted.
        raise SandboxError(f"{what} path {name!r} is not a directory or regular file "
                           "(sockets, FIFOs and devices are never granted)")
    for candidate in {path, real}:
        if _has_ssh_dir(candidate):
            raise SandboxError(f"{what} path {name!r} is a key directory; never granted")
        text = str(candidate)
        if text in _PROTECTED_ANCESTORS:  # a protected path is it or below it
            protected = next(p for p in _PROTECTED if _is_within(p, text))
            raise SandboxError(f"{what} path {name!r} would expose {protected}; "
                               "grant a narrower path")
        if _under(text, _FORBIDDEN_SET):
            forbidden = next(f for f in _FORBIDDEN_INSIDE if _is_within(text, f))
            raise SandboxError(f"{what} path {name!r} lies in {forbidden}; never "
                               "granted")
        if what == "write":
            tops, ancestors = _system_sets(system)
            if _under(text, tops) or text in ancestors:
                sys_path = next(q for q in system if _is_within(candidate, q)
                                or _is_within(q, candidate))
                raise SandboxError(f"write path {name!r} overlaps the read-only "
                                   f"system path {sys_path}")
    return real


#: mount(2) sources of the kernel's FUSE servers (exo.kernel.revocable).
KERNEL_FUSE_SOURCES = ("exo-dirs", "exo-files")


def check_source(source: Path, dest: Path, *, shown: Path | None = None) -> Path:
    """A bind source must be an export directly below one of the kernel's FUSE mounts:
    ``<mount point>/<token>``, the mount point reached with no link on the way (the same
    kind, directory or file, as the granted host path ``dest`` it stands for: the kernel
    exports the descriptor it opened there). ``shown``: where the process sees it.

    Checked without looking inside the mount: a ``stat`` there is a request to the
    kernel's own FUSE server, a thread of the very process asking, and cost ~1 ms of a
    powerbox command's start (three round trips, measured with py-spy)."""
    name = str(shown or dest)
    if not (dest.is_dir() or dest.is_file()):
        raise SandboxError(f"the granted path {name!r} is not a directory or file")
    token, point = source.name, source.parent
    if token in ("", ".", "..") or point.name in ("", ".", ".."):
        raise SandboxError(f"bind source for {name!r} is not an export of the kernel's file "
                           "server")
    point = Path(os.path.realpath(point.parent)) / point.name  # the mount point: not entered
    if str(point) in host_view().fuse_points or str(point) in host_view(fresh=True).fuse_points:
        return point / token
    # The source's host path is not named: it lies in the Exo tree's host directory.
    raise SandboxError(f"bind source for {name!r} is not an export of the kernel's file "
                       "server")


class MountPlan:
    """The bwrap arguments of one sandbox and the data files they reference."""

    __slots__ = ("args", "data_files", "devices", "exec_", "read", "write")

    def __init__(self) -> None:
        self.args: list[str] = []
        self.data_files: list[tuple[str, str]] = []  # (dest, content)
        self.read: list[Path] = []  # landlock: read
        self.exec_: list[Path] = []  # landlock: read + execute
        self.write: list[Path] = []  # landlock: read + write
        self.devices: list[Path] = []  # landlock: read + write file


def plan_mounts(spec: SandboxSpec, *, tty: bool | str = False) -> MountPlan:
    """Compute the mount view for ``spec`` (validating every grant first).

    The layers are those of ``namespace`` (docs/sandbox.md, "The namespace an Exo process
    sees"). Without ``spec.tree`` a granted path is a host path shown at the same path; with
    it, a granted path is an Exo path, shown there, whose host directory is below the tree.
    ``tty``: one of the process's standard descriptors is a terminal: the path of that
    terminal's device (``/dev/pts/3``), shown at ``/dev/tty``. The process is in a
    session of its own (``--new-session``, so it can never take the shell's terminal), so
    the kernel's magic ``/dev/tty`` would answer ENXIO; the terminal's own node opens
    without being a controlling terminal (TIOCSTI stays refused by seccomp).
    """
    plan = MountPlan()
    # Devices: exactly these nodes on a private tmpfs, plus a private /dev/shm.
    plan.args += ["--tmpfs", "/dev"]
    for dev in DEVICES:
        plan.args += ["--dev-bind", dev, dev]
    plan.devices += _DEVICE_PATHS
    device = tty if isinstance(tty, str) else (TTY if tty else None)
    if device is not None and os.path.exists(device):
        plan.args += ["--dev-bind", device, TTY]
        plan.devices.append(Path(TTY))
    # Private /tmp and /dev/shm writable by anyone inside (sticky), for a process that
    # runs as its account's uid (spec.account) as for one that stays the kernel's.
    plan.args += ["--perms", "1777", "--tmpfs", "/dev/shm", "--symlink", "/proc/self/fd", "/dev/fd",
                  "--symlink", "/proc/self/fd/0", "/dev/stdin",
                  "--symlink", "/proc/self/fd/1", "/dev/stdout",
                  "--symlink", "/proc/self/fd/2", "/dev/stderr"]
    plan.args += ["--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp"]
    plan.read += _PROC_DEV
    binds: dict[Path, str] = {}  # dest -> "ro" | "rw"
    hosts: dict[Path, Path] = {}  # dest -> the host path it shows
    system: list[Path] = []
    view = host_view()
    for target, d in view.links:
        plan.args += ["--symlink", target, d]
    for p in view.system:
        binds[p] = "ro"
        system.append(p)
    for p in runtime_paths():
        binds[p] = "ro"
        system.append(p)
    if spec.exec_only is None:
        plan.exec_ += system
    else:  # POSIX-X's exec policy: only the listed programs (and their loader) run
        plan.read += system
        plan.exec_ += [p for p in spec.exec_only if p.exists()]
    system_t = tuple(system)
    tree_real = os.path.realpath(spec.tree) if spec.tree is not None else "/"

    def grant(path: Path, what: str) -> Path:
        """The destination of a granted path, checked; its host path goes in ``hosts``."""
        if spec.tree is None:
            real = check_grant(path, what, system=system_t)
            hosts[real] = real
            return real
        dest = Path(check_destination(str(path)))
        host = spec.host_of(dest)
        if not host.exists():
            raise SandboxError(f"{what} path {str(dest)!r} does not exist")
        real = check_grant(host, what, system=system_t, shown=dest)
        if not _is_within(real, tree_real):
            raise SandboxError(f"{what} path {str(dest)!r} leads out of the Exo tree")
        hosts[dest] = real
        return dest

    for p in spec.read_paths:
        dest = grant(p, "read")
        binds.setdefault(dest, "ro")
        plan.read.append(dest)
    for p in spec.exec_paths:
        dest = grant(p, "exec")
        binds.setdefault(dest, "ro")
        plan.exec_.append(dest)
    for p in spec.write_paths:
        dest = grant(p, "write")
        binds[dest] = "rw"
        plan.write.append(dest)
    sources: dict[Path, Path] = {}
    for granted, src in spec.bind_sources.items():
        # The kernel checked the destination's path without following links and exports
        # what it checked; a link here now (swapped in since) would move the mount point.
        host = hosts.get(granted, granted)
        unlinked = granted if spec.tree is None else \
            Path(tree_real) / instance_path(str(granted).lstrip("/"), spec.tmp_user)
        try:
            resolved = _resolved(unlinked)[0]
        except FileNotFoundError:
            raise SandboxError(f"granted path {str(granted)!r} does not exist") from None
        if resolved != str(unlinked):
            raise SandboxError(f"granted path {str(granted)!r} has a symbolic link on it "
                               "(a path served by the kernel is never reached through one)")
        sources[granted] = check_source(src, host, shown=granted)
    # A runtime path inside a granted one (a checkout under /tmp or /home, and the grant of
    # that Exo directory) cannot get its mount point there: it is left out; the Exo packages
    # are at RUNTIME_SRC whatever happens (PYTHONPATH), only the venv's own interpreter
    # would be missing, which sandboxed programs do not use.
    shown = [d for d in binds if d not in system]
    for p in runtime_paths():
        if any(_is_within(p, d) and p != d for d in shown):
            del binds[p]
            plan.exec_ = [q for q in plan.exec_ if q != p]
            plan.read = [q for q in plan.read if q != p]
    runtime = Path(RUNTIME_SRC)
    binds[runtime] = "ro"
    hosts[runtime] = runtime_src()
    (plan.read if spec.exec_only is not None else plan.exec_).append(runtime)
    site = runtime_site_sources()  # greenlet for exo_std.task (namespace.py)
    for inside, source in site:
        binds[Path(inside)] = "ro"
        hosts[Path(inside)] = Path(source)
    if site:  # the directory too: Python's finder lists it
        plan.read.append(Path(RUNTIME_SITE))
    if spec.cwd is not None:
        runtime_s = str(runtime)
        check_cwd(str(spec.cwd), [b for b in map(str, binds) if b != runtime_s])

    # bubblewrap makes the missing parents of a mount point mode 0700: a process that runs
    # as its account's uid (spec.account) could not cross them. Made 0755 first, each
    # one that is not itself mounted or inside a mount (/etc for the files below too).
    plan.args += _parent_dirs([*binds, *_ETC_PATHS, *spec.host_etc], binds)
    # Parents before children, so a nested grant is mounted over its parent's view.
    for dest in sorted(binds, key=lambda q: (len(q.parts), str(q))):
        origin = sources.get(dest, hosts.get(dest, dest))
        plan.args += ["--ro-bind" if binds[dest] == "ro" else "--bind", str(origin), str(dest)]

    # Minimal /etc: synthesised files, no secrets. A grant covering a name wins (and
    # nothing is mounted inside a grant: that would write a mount point into it).
    bound = {str(b).rstrip("/") for b in binds}

    def covered(name: str) -> bool:
        return _under(name, bound)

    synthesised = dict(ETC_SYNTHESISED)
    if spec.user is not None:  # the program looks its own user up (getpwuid)
        user, uid = spec.user
        synthesised["/etc/passwd"] += f"{user}:x:{uid}:{uid}:{user}:/nonexistent:/bin/sh\n"
        synthesised["/etc/group"] += f"{user}:x:{uid}:\n"
    if spec.account is not None:  # `id`, `whoami` and getpwuid name the Exo user
        user, uid = spec.account
        synthesised["/etc/passwd"] += _account_lines(user, uid)
        synthesised["/etc/group"] += f"{user}:x:{uid}:\n"
    plan.data_files += [(name, text) for name, text in synthesised.items() if not covered(name)]
    etc_ro = [*ETC_FROM_HOST, *(ETC_NETWORK if spec.net.mode != "none" else ())]
    for name in etc_ro:
        etc_source = view.etc[name]
        if etc_source is not None and not covered(name):
            plan.args += ["--ro-bind", etc_source, name]
    for name in map(str, spec.host_etc):  # POSIX-X: what the name leads to is checked too
        if os.path.exists(name) and not covered(name) and name not in etc_ro:
            plan.args += ["--ro-bind", host_etc_source(name), name]
    if view.localtime is not None and not covered(LOCALTIME):
        kind, value = view.localtime
        plan.args += ["--symlink" if kind == "link" else "--ro-bind", value, LOCALTIME]
    plan.read.append(_ETC)

    plan.write += _PRIVATE_DIRS
    return plan


# The plan's constant paths, made once (pathlib's constructor is ~10 µs a path, cold).
_DEVICE_PATHS = tuple(Path(dev) for dev in DEVICES)
_PROC_DEV = (Path("/proc"), Path("/dev"))
_ETC = Path("/etc")
_PRIVATE_DIRS = (Path("/tmp"), Path("/dev/shm"))


@functools.lru_cache(maxsize=64)
def _account_lines(user: str, uid: int) -> str:
    """``/etc/passwd``'s lines of an account: its uid, and each uid its processes run as
    (the same lines for every process of the account, so a zygote's spares share them:
    exo.sandbox.zygote). Remembered: 129 lines were ~0.1 ms of every start."""
    from .spec import process_uids  # (off the boot path: spec needs dataclasses)

    return "".join(f"{user}:x:{u}:{uid}:{user}:/nonexistent:/bin/sh\n"
                   for u in (uid, *process_uids(uid)))


def _under(path: str, tops: AbstractSet[str]) -> bool:
    """``path`` (absolute, normalised) is one of ``tops`` (spelled without a trailing
    ``/``; ``""`` is the root) or below one: its ancestors looked up in the set, not each
    top compared with it (~40 % of a plan, measured)."""
    while True:
        if path in tops:
            return True
        if path in ("/", ""):
            return "" in tops
        path = posixpath.dirname(path)
        if path == "/":
            path = ""


def _parent_dirs(dests: list[Path], binds: dict[Path, str]) -> list[str]:
    """``--perms 0755 --dir D`` for each parent of ``dests`` that bubblewrap would
    otherwise create 0700: below the new root, outside every mount (``binds``, the
    system's links and the tmpfs of /dev, /proc and /tmp)."""
    # As strings: Path objects for every parent of every destination were ~1 ms a spawn.
    # The same few views come back spawn after spawn: remembered (a pure function).
    return list(_parent_dirs_of(tuple(map(str, dests)), frozenset(map(str, binds))))


@functools.lru_cache(maxsize=32)
def _parent_dirs_of(dests: tuple[str, ...], binds: frozenset[str]) -> tuple[str, ...]:
    mounts = {m.rstrip("/") for m in binds} | {"/dev", "/proc", "/tmp"}
    parents: set[str] = set()
    for dest in dests:
        parent = posixpath.dirname(dest)
        while parent != "/" and parent:
            if parent not in parents and parent not in SYSTEM_DIRS and \
                    not _under(parent, mounts):
                parents.add(parent)
            parent = posixpath.dirname(parent)
    args: list[str] = []
    for d in sorted(parents, key=lambda q: (q.count("/"), q)):
        args += ["--perms", "0755", "--dir", d]
    return tuple(args)


#: A process's host name when the Exo tree's /etc/hostname names none it can take.
HOSTNAME = "exo-os"


def hostname(tree: Path | None) -> str:
    """The host name a process sees: the Exo tree's ``/etc/hostname`` (what the shell's
    ``$HOSTNAME`` says), when it is a valid one; else ``HOSTNAME``. Read without
    following a link (the administrator's file, never one an app planted)."""
    if tree is None:
        return HOSTNAME
    try:
        fd = os.open(tree / "etc" / "hostname", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return HOSTNAME
    try:
        name = os.read(fd, 256).decode("ascii", "replace").strip()
    except OSError:
        return HOSTNAME
    finally:
        os.close(fd)
    valid = re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})", name)
    return name if valid else HOSTNAME


def namespace_args(spec: SandboxSpec) -> list[str]:
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup",
            "--hostname", hostname(spec.tree), "--die-with-parent", "--new-session",
            "--clearenv"]
    if spec.net.mode == "none":
        args.append("--unshare-net")
    if spec.user is not None:
        # POSIX-X: a program that refuses uid 0 runs as its own uid in a user namespace
        # mapped to the caller's (no capability there either).
        uid = str(spec.user[1])
        args += ["--unshare-user", "--uid", uid, "--gid", uid, "--cap-drop", "ALL"]
    elif os.geteuid() == 0 and spec.account is not None:
        # Stage 2 becomes the account's uid and gid (exo-stage2 "account"): it needs these
        # three for that (SETPCAP to empty the bounding set first), and leaves none.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
                 "--cap-add", "CAP_SETPCAP"]
    elif os.geteuid() == 0:
        # bwrap keeps root's capabilities unless told otherwise.
        args += ["--cap-drop", "ALL"]
    else:
        args.append("--unshare-user")
    return args


def require_bwrap() -> str:
    path = bwrap_path()
    if path is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed; apt-get install "
                                 "bubblewrap")
    return path
