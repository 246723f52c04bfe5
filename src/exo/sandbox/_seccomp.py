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

from .errors import SandboxUnavailable

TYPE_CHECKING = False  # the spec (a dataclass) loads at the first spawn, not at boot
if TYPE_CHECKING:
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

AF_INET, AF_INET6, AF_PACKET = 2, 10, 17
SOCK_RAW = 3
CLONE_THREAD = 0x10000
_SOCK_TYPE_MASK = 0xF
_NON_STREAM_TYPES = (2, 3, 4, 5, 6, 10)  # DGRAM RAW RDM SEQPACKET DCCP PACKET
_IPPROTO_TCP = 6
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
_PERSONALITY_QUERY = 0xFFFFFFFF


def _build(net_mode: NetMode, deny_errno: int, fork: bool = True,
           broker: bool = False) -> bytes:
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:  # pragma: no cover - depends on the host
        raise SandboxUnavailable(f"seccomp: libseccomp/pyseccomp unavailable ({exc})") from exc

    eperm = sc.ERRNO(deny_errno)
    filt = sc.SyscallFilter(sc.ALLOW)
    native = sc.system_arch()

    def deny(name: str, *args: object, action: int = eperm) -> None:
        if sc.resolve_syscall(native, name) < 0:
            return  # not a syscall on this architecture
        filt.add_rule(action, name, *args)

    for name in DENIED_SYSCALLS:
        # With a broker (POSIX-X), a notification: the newer, listening filter the program
        # installs before it runs takes it (equal actions: the newest filter's wins); with
        # no listener Linux answers ENOSYS. Either way the call never runs.
        deny(name, action=sc.NOTIFY if broker else eperm)
    # glibc falls back to clone() on ENOSYS; clone's flags are a register seccomp can read,
    # clone3's live in memory it cannot.
    deny("clone3", action=sc.ERRNO(errno.ENOSYS))
    for flag in CLONE_NEW_FLAGS.values():
        deny("clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    if not fork:
        # POSIX-X ``fork = false``: no new process, as at a pids limit (threads still run).
        eagain = sc.ERRNO(errno.EAGAIN)
        deny("fork", action=eagain)
        deny("vfork", action=eagain)
        deny("clone", sc.Arg(0, sc.MASKED_EQ, CLONE_THREAD, 0), action=eagain)
    deny("socket", sc.Arg(0, sc.EQ, AF_PACKET))
    deny("socket", sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, SOCK_RAW))
    if net_mode == "tcp":
        # Landlock filters TCP ports only: refuse every other inet socket.
        for family in (AF_INET, AF_INET6):
            for sock_type in _NON_STREAM_TYPES:
                deny("socket", sc.Arg(0, sc.EQ, family),
                     sc.Arg(1, sc.MASKED_EQ, _SOCK_TYPE_MASK, sock_type))
            deny("socket", sc.Arg(0, sc.EQ, family), sc.Arg(2, sc.GT, _IPPROTO_TCP))
            for proto in range(1, _IPPROTO_TCP):
                deny("socket", sc.Arg(0, sc.EQ, family), sc.Arg(2, sc.EQ, proto))
    # Terminal input injection into a shared tty.
    for request in (TIOCSTI, TIOCLINUX):
        deny("ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, request))
    # Personality changes (ASLR off, READ_IMPLIES_EXEC); the query form stays allowed.
    deny("personality", sc.Arg(0, sc.NE, _PERSONALITY_QUERY))

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
