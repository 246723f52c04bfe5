"""seccomp-bpf back-end: compile the Exo deny-list with libseccomp (``pyseccomp``).

The filter is default-allow with explicit EPERM (or ENOSYS) rules: Landlock and namespaces
confine *what* a process reaches; seccomp removes the kernel interfaces that could undo that
confinement (mount, namespaces, ptrace, module loading, BPF, keyrings...). The compiled BPF
program is handed to bubblewrap (``--seccomp FD``), which installs it after
``PR_SET_NO_NEW_PRIVS`` and just before executing stage 2, so it covers stage 2 and the target.
Syscalls of another architecture (i386, x32) hit libseccomp's bad-arch action: kill.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import threading
import types

from .errors import SandboxUnavailable

TYPE_CHECKING = False  # the spec (a dataclass) loads at the first spawn, not at boot
if TYPE_CHECKING:
    from typing import Any

    from .spec import NetMode

# Denied outright with EPERM.
DENIED_SYSCALLS: tuple[str, ...] = (
    # mount table and root changes
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    # namespaces
    "unshare", "setns",
    # other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise",
    "kcmp",
    # kernel code and configuration
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "create_module", "bpf", "perf_event_open", "userfaultfd", "reboot", "swapon", "swapoff",
    "iopl", "ioperm", "acct", "quotactl", "quotactl_fd", "syslog", "uselib", "_sysctl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "vhangup", "nfsservctl",
    "lookup_dcookie", "sethostname", "setdomainname", "fanotify_init",
    # keyrings
    "keyctl", "add_key", "request_key",
    # file handles bypass path-based checks
    "open_by_handle_at", "name_to_handle_at",
    # io_uring submits work that seccomp never sees
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)

# clone() flags creating namespaces (CLONE_NEWTIME overlaps clone's exit-signal byte).
CLONE_NEW_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 2, 10, 16, 17
SOCK_RAW = 3
NETLINK_ROUTE = 0
CLONE_THREAD = 0x10000
_SOCK_TYPE_MASK = 0xF
_NON_STREAM_TYPES = (2, 3, 4, 5, 6, 10)  # DGRAM RAW RDM SEQPACKET DCCP PACKET
_IPPROTO_TCP = 6
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
_PERSONALITY_QUERY = 0xFFFFFFFF
# ``int`` arguments (socket's family, ioctl's request) are compared on their low 32 bits,
# as the kernel reads them: an EQ on all 64 would let ``AF_PACKET | 1 << 32`` through.
_INT = 0xFFFFFFFF
_ALL = 0xFFFFFFFFFFFFFFFF

#: One condition on a syscall argument: (index, op, mask, value), op "eq" meaning
#: ``arg & mask == value``, "ne" ``arg != value`` and "gt" ``arg > value`` (all 64 bits,
#: unsigned, as libseccomp compares on x86-64).
Cond = tuple[int, str, int, int]


class ArgRule:
    """A refusal the filter decides from a syscall's arguments (registers, never memory):
    the conditions (all must hold), the errno Linux's own refusal would give, and why."""

    __slots__ = ("conds", "errno", "syscall", "why")

    def __init__(self, syscall: str, conds: tuple[Cond, ...], err: int, why: str) -> None:
        self.syscall = syscall
        self.conds = conds
        self.errno = err
        self.why = why

    def matches(self, args: tuple[int, ...] | list[int]) -> bool:
        for index, op, mask, value in self.conds:
            arg = args[index] & _ALL
            if op == "eq":
                if arg & mask != value:
                    return False
            elif op == "ne":
                if arg == value:
                    return False
            elif arg <= value:  # "gt"
                return False
        return True

    def __repr__(self) -> str:
        return f"ArgRule({self.syscall}, {self.conds}, {self.errno})"


_MSG_FASTOPEN = 0x20000000


@functools.lru_cache(maxsize=16)
def arg_rules(net_mode: NetMode, fork: bool = True) -> tuple[ArgRule, ...]:
    """The argument-level refusals of a sandbox, first match first (the broker answers
    the first that matches; the filter has them all)."""
    eperm, eagain = errno.EPERM, errno.EAGAIN
    rules = [ArgRule("clone", ((0, "eq", flag, flag),), eperm,
                     f"{name}: creating namespaces is refused in every sandbox")
             for name, flag in CLONE_NEW_FLAGS.items()]
    if not fork:
        # POSIX-X ``fork = false``: no new process, as at a pids limit (threads still run).
        why = "allowed by [posix_x] fork = true"
        rules += [ArgRule("fork", (), eagain, why), ArgRule("vfork", (), eagain, why),
                  ArgRule("clone", ((0, "eq", CLONE_THREAD, 0),), eagain, why)]
    rules += [
        ArgRule("socket", ((0, "eq", _INT, AF_PACKET),), eperm,
                "AF_PACKET: packet sockets are refused in every sandbox"),
        ArgRule("socket", ((0, "ne", _ALL, AF_NETLINK), (1, "eq", _SOCK_TYPE_MASK, SOCK_RAW)),
                eperm, "SOCK_RAW: raw sockets are refused in every sandbox"),
        # NETLINK_ROUTE is read-only here: changing links, addresses or routes needs
        # CAP_NET_ADMIN, which no sandboxed process holds (getifaddrs needs it).
        ArgRule("socket", ((0, "eq", _INT, AF_NETLINK), (2, "ne", _ALL, NETLINK_ROUTE)),
                eperm, "AF_NETLINK: only NETLINK_ROUTE is allowed"),
    ]
    if net_mode == "tcp":
        # Landlock filters TCP ports only: refuse every other inet socket.
        why = "only TCP is granted (net:// ports are filtered by Landlock for TCP alone)"
        for family in (AF_INET, AF_INET6):
            for sock_type in _NON_STREAM_TYPES:
                rules.append(ArgRule("socket", ((0, "eq", _INT, family),
                                                (1, "eq", _SOCK_TYPE_MASK, sock_type)),
                                     eperm, why))
            rules.append(ArgRule("socket", ((0, "eq", _INT, family),
                                            (2, "gt", _ALL, _IPPROTO_TCP)), eperm, why))
            for proto in range(1, _IPPROTO_TCP):
                rules.append(ArgRule("socket", ((0, "eq", _INT, family),
                                                (2, "eq", _ALL, proto)), eperm, why))
        # TCP Fast Open connects from a send, never through connect(), where the broker
        # checks the address (Landlock checks the port alone): a send that asks for it
        # reached any host on a granted port.
        why = "MSG_FASTOPEN: a connection made by a send is refused (connect() is checked)"
        for call, flags_arg in (("sendto", 3), ("sendmsg", 2), ("sendmmsg", 3)):
            rules.append(ArgRule(call, ((flags_arg, "eq", _MSG_FASTOPEN, _MSG_FASTOPEN),),
                                 eperm, why))
    # Terminal input injection into a shared tty.
    for request, name in ((TIOCSTI, "TIOCSTI"), (TIOCLINUX, "TIOCLINUX")):
        rules.append(ArgRule("ioctl", ((1, "eq", _INT, request),), eperm,
                             f"{name}: terminal input injection is refused in every sandbox"))
    # Personality changes (ASLR off, READ_IMPLIES_EXEC); the query form stays allowed.
    rules.append(ArgRule("personality", ((0, "ne", _ALL, _PERSONALITY_QUERY),), eperm,
                         "personality changes (ASLR off, READ_IMPLIES_EXEC) are refused; "
                         "the query personality(0xffffffff) is allowed"))
    return tuple(rules)


def add_arg_rules(filt: Any, sc: Any, rules: tuple[ArgRule, ...], action: Any) -> None:
    """Add ``rules`` to a libseccomp filter, each with ``action`` (None: its own errno)."""
    native = sc.system_arch()
    for rule in rules:
        if sc.resolve_syscall(native, rule.syscall) < 0:
            continue  # not a syscall on this architecture
        args = [sc.Arg(i, sc.MASKED_EQ, mask, value) if op == "eq"
                else sc.Arg(i, sc.NE if op == "ne" else sc.GT, value)
                for i, op, mask, value in rule.conds]
        filt.add_rule(sc.ERRNO(rule.errno) if action is None else action, rule.syscall, *args)


_SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}
_import_lock = threading.Lock()


def binding() -> types.ModuleType:
    """The libseccomp binding, imported without its ``find_library`` subprocesses.

    pyseccomp finds libc and libseccomp with ``ctypes.util.find_library``, which runs
    ``ldconfig -p`` (and may try gcc): 30-35 ms of the first filter built in a process,
    measured, on a one-command kernel's (``exo run``, ``posix-x run``) only command, and
    at a descriptor shortage an "Unable to find libseccomp". The binding has no other
    way to be given its library, so ``find_library`` is answered for its import by
    loading the two sonames Debian ships (the dynamic loader's own search, as
    ``ctypes.CDLL`` does); a name that does not load falls back to ``find_library``."""
    import ctypes
    import ctypes.util

    with _import_lock:
        if "pyseccomp" in sys.modules:
            return sys.modules["pyseccomp"]
        original = ctypes.util.find_library

        def find(name: str) -> str | None:
            soname = _SONAMES.get(name)
            if soname is not None:
                try:
                    ctypes.CDLL(soname)
                except OSError:
                    pass
                else:
                    return soname
            return original(name)

        ctypes.util.find_library = find
        try:
            import pyseccomp  # noqa: F401
        finally:
            ctypes.util.find_library = original
        return sys.modules["pyseccomp"]


def _build(net_mode: NetMode, deny_errno: int, fork: bool = True,
           broker: bool = False) -> bytes:
    try:
        sc = binding()
    except (ImportError, OSError, RuntimeError) as exc:  # pragma: no cover - the host
        raise SandboxUnavailable(f"seccomp: libseccomp/pyseccomp unavailable ({exc})") from exc

    eperm = sc.ERRNO(deny_errno)
    filt = sc.SyscallFilter(sc.ALLOW)
    native = sc.system_arch()

    def deny(name: str, *args: object, action: int = eperm) -> None:
        if sc.resolve_syscall(native, name) < 0:
            return  # not a syscall on this architecture
        filt.add_rule(action, name, *args)

    # With a broker (POSIX-X), every refusal is a notification: the newer, listening filter
    # the program installs before it runs takes it (it notifies on exactly the same calls
    # and arguments; of equal actions the newest filter's wins), and the kernel answers
    # the errno and audits it. With no listener Linux answers ENOSYS: the call never runs.
    for name in DENIED_SYSCALLS:
        deny(name, action=sc.NOTIFY if broker else eperm)
    # glibc falls back to clone() on ENOSYS; clone's flags are a register seccomp can read,
    # clone3's live in memory it cannot.
    deny("clone3", action=sc.ERRNO(errno.ENOSYS))
    rules = arg_rules(net_mode, fork)
    if broker:
        add_arg_rules(filt, sc, rules, sc.NOTIFY)
    else:
        # The marker errno of tests replaces EPERM; EAGAIN (fork = false) stays.
        for err in {r.errno for r in rules}:
            add_arg_rules(filt, sc, tuple(r for r in rules if r.errno == err),
                          eperm if err == errno.EPERM else None)

    return export(filt)


def export(filt: Any) -> bytes:
    """A libseccomp filter (``pyseccomp.SyscallFilter``) as the BPF program to install:
    libseccomp writes it only to a file, so through a memfd."""
    fd = os.memfd_create("exo-seccomp-build")
    try:
        with os.fdopen(os.dup(fd), "wb") as fobj:
            filt.export_bpf(fobj)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=16)
def compiled_filter(net_mode: NetMode, deny_errno: int = errno.EPERM,
                    fork: bool = True, broker: bool = False) -> bytes:
    """The BPF program (raw ``struct sock_filter`` array) for a network mode, cached.

    ``deny_errno`` is EPERM in production; tests pass a marker errno to prove that a refusal
    came from this filter and not from a missing capability.
    """
    return _build(net_mode, deny_errno, fork, broker)


def available() -> bool:
    try:
        compiled_filter("none")
    except SandboxUnavailable:
        return False
    return os.path.exists("/proc/self/status") and _kernel_has_seccomp()


def supported() -> bool:
    """Cheap check: the host kernel has seccomp and the libseccomp binding is installed."""
    import importlib.util

    return _kernel_has_seccomp() and importlib.util.find_spec("pyseccomp") is not None


def _kernel_has_seccomp() -> bool:
    with open("/proc/self/status", encoding="ascii", errors="replace") as f:
        return any(line.startswith("Seccomp:") for line in f)
