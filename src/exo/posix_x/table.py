"""Every x86-64 Linux syscall with its POSIX-X tier: the one table the tools and docs share.

The numbers and names are those of Linux 6.18's ``arch/x86/entry/syscalls/syscall_64.tbl``
(0–334 and 424–469; 335–423 are unassigned on x86-64, 512–547 are x32-only and not listed).
Each row says how POSIX-X treats the call:

* **fast** — allowed straight through by the seccomp filter: no added cost. Confinement comes
  from the namespaces, Landlock and cgroups the sandbox sets up around the process.
* **hybrid** — the answer depends on the process's Exo capabilities (a path, an address, a
  program), so the Exo kernel decides: seccomp user notification hands the call to the kernel,
  which checks its own capability space, performs the operation itself and injects the result
  (``SECCOMP_IOCTL_NOTIF_ADDFD`` for a descriptor). The notification is read once and never
  trusted beyond that (the kernel documents a time-of-check race for it).
* **legacy** — emulated or refused with the errno Linux gives an unprivileged process, and
  logged to the audit log.

``today`` records what the seccomp filter the sandbox installs *now* does with the call
(``exo.sandbox._seccomp``): ``allow``, ``EPERM``, ``ENOSYS``, or ``args`` (refused for some
argument values only). A test compares it with the sandbox's deny list, so the two cannot
drift apart silently; where the design and today's sandbox differ the note says so.

Standard library only and no dataclasses: the shell and the kernel may import this at boot.
``python -m exo.posix_x.table --markdown`` prints ``docs/posix-x-compatibility.md``.
"""

from __future__ import annotations

import sys

FAST, HYBRID, LEGACY = "fast", "hybrid", "legacy"
TIERS = (FAST, HYBRID, LEGACY)

# Capability or manifest keys that allow a mediated call (docs/posix-x.md proposes them).
CAP_FILES = "storage://… or [posix_x] system_dirs"
CAP_FILES_WRITE = "storage://…=WRITE"
CAP_NET = "net://…"
CAP_EXEC = "[posix_x] exec"
CAP_FORK = "[posix_x] fork"

# Numbers with no syscall on x86-64: 335–386 were never used, 387–423 are kept free so that
# every architecture numbers the calls added since 4.20 (the 2038-safe time calls and later)
# alike. The x32 range 512–547 is a different ABI that the sandbox kills on sight.
UNASSIGNED = range(335, 424)
KERNEL_VERSION = "6.18"

_P = "EPERM"
_NS = "ENOSYS"
_PATH = "path checked against storage:// capabilities and the system directories"
_PATHW = "creates or changes a name: needs WRITE on a covering storage:// capability"
_GONE = "removed from Linux: Linux itself answers ENOSYS"
_GONE_NOW = ("Today: posix-x run (its broker) answers ENOSYS; the sandbox's filter answers "
             "EPERM to other Exo processes")


class Syscall:
    """One row: ``errno`` is set for refused legacy calls, ``cap`` names what would allow a
    mediated or refused call where something can."""

    __slots__ = ("cap", "errno", "name", "note", "number", "tier", "today")

    def __init__(self, number: int, name: str, tier: str, errno: str, cap: str, today: str,
                 note: str) -> None:
        self.number = number
        self.name = name
        self.tier = tier
        self.errno = errno
        self.cap = cap
        self.today = today
        self.note = note

    def as_dict(self) -> dict[str, object]:
        return {"number": self.number, "name": self.name, "tier": self.tier,
                "errno": self.errno or None, "cap": self.cap or None, "today": self.today,
                "note": self.note}

    def __repr__(self) -> str:
        return f"Syscall({self.number}, {self.name!r}, {self.tier!r})"


_Row = tuple[int, str, str, str, str, str, str]


def _f(number: int, name: str, note: str = "", cap: str = "", today: str = "allow") -> _Row:
    return (number, name, FAST, "", cap, today, note)


def _h(number: int, name: str, cap: str, note: str, today: str = "allow") -> _Row:
    return (number, name, HYBRID, "", cap, today, note)


def _l(number: int, name: str, errno: str, note: str, today: str = _P, cap: str = "") -> _Row:
    return (number, name, LEGACY, errno, cap, today, note)


_ROWS: tuple[_Row, ...] = (
    _f(0, "read"),
    _f(1, "write"),
    _h(2, "open", CAP_FILES, _PATH),
    _f(3, "close"),
    _h(4, "stat", CAP_FILES, _PATH),
    _f(5, "fstat"),
    _h(6, "lstat", CAP_FILES, _PATH),
    _f(7, "poll"),
    _f(8, "lseek"),
    _f(9, "mmap", "memory counted by the cgroup; PROT_EXEC on files needs them executable"),
    _f(10, "mprotect"),
    _f(11, "munmap"),
    _f(12, "brk"),
    _f(13, "rt_sigaction"),
    _f(14, "rt_sigprocmask"),
    _f(15, "rt_sigreturn"),
    _f(16, "ioctl", "TIOCSTI and TIOCLINUX (terminal input injection) refused with EPERM",
       today="args"),
    _f(17, "pread64"),
    _f(18, "pwrite64"),
    _f(19, "readv"),
    _f(20, "writev"),
    _h(21, "access", CAP_FILES, _PATH),
    _f(22, "pipe"),
    _f(23, "select"),
    _f(24, "sched_yield"),
    _f(25, "mremap"),
    _f(26, "msync"),
    _f(27, "mincore"),
    _f(28, "madvise"),
    _f(29, "shmget", "System V IPC lives in the process's own IPC namespace: shared only "
       "with its own children"),
    _f(30, "shmat", "private IPC namespace"),
    _f(31, "shmctl", "private IPC namespace"),
    _f(32, "dup"),
    _f(33, "dup2"),
    _f(34, "pause"),
    _f(35, "nanosleep"),
    _f(36, "getitimer"),
    _f(37, "alarm"),
    _f(38, "setitimer"),
    _f(39, "getpid", "the pid inside the process's pid namespace"),
    _f(40, "sendfile"),
    _f(41, "socket", "AF_PACKET, SOCK_RAW and netlink other than NETLINK_ROUTE refused with "
       "EPERM (NETLINK_ROUTE is read-only here: changing links, addresses or routes needs "
       "CAP_NET_ADMIN, which no sandbox holds); with port-level net:// grants only TCP inet "
       "sockets are allowed (Landlock filters TCP only)", CAP_NET, today="args"),
    _h(42, "connect", CAP_NET, "inet address checked against net:// capabilities; AF_UNIX "
       "paths as files. Today: Landlock TCP connect rules or an empty network namespace"),
    _f(43, "accept", "on a socket the process was allowed to bind"),
    _f(44, "sendto", "a destination address on an unconnected socket is what connect() "
       "would check; today the network namespace and socket() filter confine it. "
       "MSG_FASTOPEN (a connection made by a send) is refused with port-level grants"),
    _f(45, "recvfrom"),
    _f(46, "sendmsg", "as sendto; also carries descriptors (SCM_RIGHTS) between the "
       "process's own sockets"),
    _f(47, "recvmsg"),
    _f(48, "shutdown"),
    _h(49, "bind", CAP_NET, "inet port checked against net:// capabilities; AF_UNIX paths "
       "need WRITE on the directory. Today: Landlock TCP bind rules"),
    _f(50, "listen", "on a socket bind() allowed"),
    _f(51, "getsockname"),
    _f(52, "getpeername"),
    _f(53, "socketpair"),
    _f(54, "setsockopt"),
    _f(55, "getsockopt"),
    _f(56, "clone", "thread creation is free; a new process needs [posix_x] fork; namespace "
       "flags (CLONE_NEW*) refused with EPERM", CAP_FORK, today="args"),
    _f(57, "fork", "under posix-x run needs [posix_x] fork (refused with EAGAIN, as at a "
       "pids limit, when not granted); ordinary Exo processes may fork, the cgroup's pids "
       "limit bounds them", CAP_FORK),
    _f(58, "vfork", "as fork", CAP_FORK),
    _h(59, "execve", CAP_EXEC, "under an exec list ([posix_x] exec = [...]) the program "
       "must be in it (its path after resolution, read once by the kernel; Landlock's "
       "EXECUTE rules decide); under exec = true the filter lets it through, unnotified "
       "(Fast): any executable in the mount view that Landlock lets it execute"),
    _f(60, "exit"),
    _f(61, "wait4"),
    _f(62, "kill", "only processes in its own pid namespace are visible"),
    _f(63, "uname", "the host's kernel release; a private UTS namespace"),
    _f(64, "semget", "private IPC namespace"),
    _f(65, "semop", "private IPC namespace"),
    _f(66, "semctl", "private IPC namespace"),
    _f(67, "shmdt"),
    _f(68, "msgget", "private IPC namespace"),
    _f(69, "msgsnd", "private IPC namespace"),
    _f(70, "msgrcv", "private IPC namespace"),
    _f(71, "msgctl", "private IPC namespace"),
    _f(72, "fcntl"),
    _f(73, "flock"),
    _f(74, "fsync"),
    _f(75, "fdatasync"),
    _h(76, "truncate", CAP_FILES_WRITE, _PATHW),
    _f(77, "ftruncate", "on a descriptor opened for writing"),
    _f(78, "getdents"),
    _f(79, "getcwd"),
    _h(80, "chdir", CAP_FILES, _PATH),
    _f(81, "fchdir"),
    _h(82, "rename", CAP_FILES_WRITE, _PATHW),
    _h(83, "mkdir", CAP_FILES_WRITE, _PATHW),
    _h(84, "rmdir", CAP_FILES_WRITE, _PATHW),
    _h(85, "creat", CAP_FILES_WRITE, _PATHW),
    _h(86, "link", CAP_FILES_WRITE, _PATHW),
    _h(87, "unlink", CAP_FILES_WRITE, _PATHW),
    _h(88, "symlink", CAP_FILES_WRITE, _PATHW),
    _h(89, "readlink", CAP_FILES, _PATH),
    _h(90, "chmod", CAP_FILES_WRITE, _PATHW),
    _f(91, "fchmod"),
    _h(92, "chown", CAP_FILES_WRITE, _PATHW + "; Linux refuses other owners (no CAP_CHOWN)"),
    _f(93, "fchown", "Linux refuses other owners (no CAP_CHOWN)"),
    _h(94, "lchown", CAP_FILES_WRITE, _PATHW),
    _f(95, "umask"),
    _f(96, "gettimeofday", "vDSO: usually no syscall at all"),
    _f(97, "getrlimit"),
    _f(98, "getrusage"),
    _f(99, "sysinfo", "host-wide memory figures, not the cgroup's"),
    _f(100, "times"),
    _l(101, "ptrace", _P, "debugging needs the process's own debugger, not Linux's"),
    _f(102, "getuid"),
    _l(103, "syslog", _P, "the kernel log belongs to the host"),
    _f(104, "getgid"),
    _f(105, "setuid", "no capabilities: Linux allows only the process's own ids"),
    _f(106, "setgid", "as setuid"),
    _f(107, "geteuid"),
    _f(108, "getegid"),
    _f(109, "setpgid"),
    _f(110, "getppid"),
    _f(111, "getpgrp"),
    _f(112, "setsid"),
    _f(113, "setreuid", "as setuid"),
    _f(114, "setregid", "as setuid"),
    _f(115, "getgroups"),
    _f(116, "setgroups", "Linux refuses it with EPERM (no CAP_SETGID)"),
    _f(117, "setresuid", "as setuid"),
    _f(118, "getresuid"),
    _f(119, "setresgid", "as setuid"),
    _f(120, "getresgid"),
    _f(121, "getpgid"),
    _f(122, "setfsuid", "as setuid"),
    _f(123, "setfsgid", "as setuid"),
    _f(124, "getsid"),
    _f(125, "capget"),
    _f(126, "capset", "can only drop: the bounding set is empty"),
    _f(127, "rt_sigpending"),
    _f(128, "rt_sigtimedwait"),
    _f(129, "rt_sigqueueinfo"),
    _f(130, "rt_sigsuspend"),
    _f(131, "sigaltstack"),
    _h(132, "utime", CAP_FILES_WRITE, _PATHW),
    _h(133, "mknod", CAP_FILES_WRITE, _PATHW + "; FIFOs and sockets only (no CAP_MKNOD)"),
    _l(134, "uselib", _NS, _GONE + " (CONFIG_USELIB off). " + _GONE_NOW),
    _f(135, "personality", "queries only; changes (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC) "
       "refused with EPERM", today="args"),
    _f(136, "ustat", "obsolete; harmless"),
    _h(137, "statfs", CAP_FILES, _PATH),
    _f(138, "fstatfs"),
    _f(139, "sysfs", "obsolete; lists filesystem types"),
    _f(140, "getpriority"),
    _f(141, "setpriority", "can only lower priority (no CAP_SYS_NICE); CPU share is the "
       "cgroup's"),
    _f(142, "sched_setparam"),
    _f(143, "sched_getparam"),
    _f(144, "sched_setscheduler", "real-time policies need CAP_SYS_NICE: EPERM from Linux"),
    _f(145, "sched_getscheduler"),
    _f(146, "sched_get_priority_max"),
    _f(147, "sched_get_priority_min"),
    _f(148, "sched_rr_get_interval"),
    _f(149, "mlock", "bounded by RLIMIT_MEMLOCK and the memory cgroup"),
    _f(150, "munlock"),
    _f(151, "mlockall", "as mlock"),
    _f(152, "munlockall"),
    _l(153, "vhangup", _P, "terminal hang-up belongs to the session's owner"),
    _f(154, "modify_ldt", "allowed (Wine, old threading libraries); Docker's default "
       "profile refuses it"),
    _l(155, "pivot_root", _P, "the mount view is fixed by the sandbox"),
    _l(156, "_sysctl", _NS, _GONE + ". " + _GONE_NOW),
    _f(157, "prctl", "no_new_privs is already set and cannot be cleared"),
    _f(158, "arch_prctl"),
    _l(159, "adjtimex", _P, "setting the clock belongs to the host; Linux allows the "
       "read-only query (modes = 0) to anyone, today's filter refuses it too"),
    _f(160, "setrlimit", "raising a hard limit needs CAP_SYS_RESOURCE"),
    _l(161, "chroot", _P, "the mount view is fixed by the sandbox"),
    _f(162, "sync"),
    _l(163, "acct", _P, "process accounting belongs to the host"),
    _l(164, "settimeofday", _P, "the clock belongs to the host"),
    _l(165, "mount", _P, "the mount view is fixed by the sandbox; storage comes from "
       "storage:// capabilities"),
    _l(166, "umount2", _P, "the mount view is fixed by the sandbox"),
    _l(167, "swapon", _P, "swap belongs to the host"),
    _l(168, "swapoff", _P, "swap belongs to the host"),
    _l(169, "reboot", _P, "the host's; the Exo shutdown is a kernel call"),
    _l(170, "sethostname", _P, "the UTS namespace is private but fixed"),
    _l(171, "setdomainname", _P, "as sethostname"),
    _l(172, "iopl", _P, "port I/O belongs to drivers"),
    _l(173, "ioperm", _P, "port I/O belongs to drivers"),
    _l(174, "create_module", _NS, _GONE + ". " + _GONE_NOW),
    _l(175, "init_module", _P, "kernel modules are never loaded from a sandbox"),
    _l(176, "delete_module", _P, "kernel modules are never unloaded from a sandbox"),
    _l(177, "get_kernel_syms", _NS, _GONE, today="allow"),
    _l(178, "query_module", _NS, _GONE, today="allow"),
    _l(179, "quotactl", _P, "disk quotas belong to the host"),
    _l(180, "nfsservctl", _NS, _GONE + ". " + _GONE_NOW),
    _l(181, "getpmsg", _NS, "never implemented (STREAMS)", today="allow"),
    _l(182, "putpmsg", _NS, "never implemented (STREAMS)", today="allow"),
    _l(183, "afs_syscall", _NS, "never implemented", today="allow"),
    _l(184, "tuxcall", _NS, "never implemented", today="allow"),
    _l(185, "security", _NS, "never implemented", today="allow"),
    _f(186, "gettid"),
    _f(187, "readahead"),
    _h(188, "setxattr", CAP_FILES_WRITE, _PATHW),
    _h(189, "lsetxattr", CAP_FILES_WRITE, _PATHW),
    _f(190, "fsetxattr", "on a descriptor: user.* only without capabilities"),
    _h(191, "getxattr", CAP_FILES, _PATH),
    _h(192, "lgetxattr", CAP_FILES, _PATH),
    _f(193, "fgetxattr"),
    _h(194, "listxattr", CAP_FILES, _PATH),
    _h(195, "llistxattr", CAP_FILES, _PATH),
    _f(196, "flistxattr"),
    _h(197, "removexattr", CAP_FILES_WRITE, _PATHW),
    _h(198, "lremovexattr", CAP_FILES_WRITE, _PATHW),
    _f(199, "fremovexattr"),
    _f(200, "tkill", "own pid namespace"),
    _f(201, "time", "vDSO"),
    _f(202, "futex"),
    _f(203, "sched_setaffinity", "within the cgroup's cpuset"),
    _f(204, "sched_getaffinity"),
    _l(205, "set_thread_area", _NS, "32-bit only: Linux answers ENOSYS to 64-bit callers",
       today="allow"),
    _f(206, "io_setup", "Linux AIO (libaio); bounded by fs.aio-max-nr"),
    _f(207, "io_destroy"),
    _f(208, "io_getevents"),
    _f(209, "io_submit", "on descriptors the process already holds"),
    _f(210, "io_cancel"),
    _l(211, "get_thread_area", _NS, "32-bit only: Linux answers ENOSYS to 64-bit callers",
       today="allow"),
    _l(212, "lookup_dcookie", _NS, _GONE + " (oprofile). " + _GONE_NOW),
    _f(213, "epoll_create"),
    _l(214, "epoll_ctl_old", _NS, "never implemented on x86-64", today="allow"),
    _l(215, "epoll_wait_old", _NS, "never implemented on x86-64", today="allow"),
    _f(216, "remap_file_pages", "deprecated; Linux emulates it"),
    _f(217, "getdents64"),
    _f(218, "set_tid_address"),
    _f(219, "restart_syscall"),
    _f(220, "semtimedop", "private IPC namespace"),
    _f(221, "fadvise64"),
    _f(222, "timer_create"),
    _f(223, "timer_settime"),
    _f(224, "timer_gettime"),
    _f(225, "timer_getoverrun"),
    _f(226, "timer_delete"),
    _l(227, "clock_settime", _P, "the clock belongs to the host"),
    _f(228, "clock_gettime", "vDSO: usually no syscall at all"),
    _f(229, "clock_getres"),
    _f(230, "clock_nanosleep"),
    _f(231, "exit_group"),
    _f(232, "epoll_wait"),
    _f(233, "epoll_ctl"),
    _f(234, "tgkill", "own pid namespace"),
    _h(235, "utimes", CAP_FILES_WRITE, _PATHW),
    _l(236, "vserver", _NS, "never implemented", today="allow"),
    _f(237, "mbind"),
    _f(238, "set_mempolicy"),
    _f(239, "get_mempolicy"),
    _f(240, "mq_open", "POSIX message queues live in the private IPC namespace"),
    _f(241, "mq_unlink", "private IPC namespace"),
    _f(242, "mq_timedsend"),
    _f(243, "mq_timedreceive"),
    _f(244, "mq_notify"),
    _f(245, "mq_getsetattr"),
    _l(246, "kexec_load", _P, "booting another kernel belongs to the host"),
    _f(247, "waitid"),
    _l(248, "add_key", _P, "kernel keyrings are shared host state; Exo secrets are "
       "capabilities"),
    _l(249, "request_key", _P, "as add_key"),
    _l(250, "keyctl", _P, "as add_key"),
    _f(251, "ioprio_set", "best-effort classes only without CAP_SYS_ADMIN"),
    _f(252, "ioprio_get"),
    _f(253, "inotify_init"),
    _h(254, "inotify_add_watch", CAP_FILES, _PATH),
    _f(255, "inotify_rm_watch"),
    _f(256, "migrate_pages", "other processes' pages need ptrace rights: only its own"),
    _h(257, "openat", CAP_FILES, _PATH + "; inside the granted tree Landlock decides at "
       "native speed, outside it the kernel opens the file itself and injects the "
       "descriptor (ADDFD). Today: Landlock and the mount view only"),
    _h(258, "mkdirat", CAP_FILES_WRITE, _PATHW),
    _h(259, "mknodat", CAP_FILES_WRITE, _PATHW + "; FIFOs and sockets only (no CAP_MKNOD)"),
    _h(260, "fchownat", CAP_FILES_WRITE, _PATHW),
    _h(261, "futimesat", CAP_FILES_WRITE, _PATHW),
    _h(262, "newfstatat", CAP_FILES, _PATH + "; with AT_EMPTY_PATH it is fstat (fast)"),
    _h(263, "unlinkat", CAP_FILES_WRITE, _PATHW),
    _h(264, "renameat", CAP_FILES_WRITE, _PATHW),
    _h(265, "linkat", CAP_FILES_WRITE, _PATHW),
    _h(266, "symlinkat", CAP_FILES_WRITE, _PATHW),
    _h(267, "readlinkat", CAP_FILES, _PATH),
    _h(268, "fchmodat", CAP_FILES_WRITE, _PATHW),
    _h(269, "faccessat", CAP_FILES, _PATH),
    _f(270, "pselect6"),
    _f(271, "ppoll"),
    _l(272, "unshare", _P, "namespaces are the sandbox's; CLONE_FILES/CLONE_FS-only "
       "unshares are refused too today"),
    _f(273, "set_robust_list"),
    _f(274, "get_robust_list"),
    _f(275, "splice"),
    _f(276, "tee"),
    _f(277, "sync_file_range"),
    _f(278, "vmsplice"),
    _f(279, "move_pages", "other processes' pages need ptrace rights: only its own"),
    _h(280, "utimensat", CAP_FILES_WRITE, _PATHW),
    _f(281, "epoll_pwait"),
    _f(282, "signalfd"),
    _f(283, "timerfd_create"),
    _f(284, "eventfd"),
    _f(285, "fallocate", "bounded by the storage the capability names"),
    _f(286, "timerfd_settime"),
    _f(287, "timerfd_gettime"),
    _f(288, "accept4"),
    _f(289, "signalfd4"),
    _f(290, "eventfd2"),
    _f(291, "epoll_create1"),
    _f(292, "dup3"),
    _f(293, "pipe2"),
    _f(294, "inotify_init1"),
    _f(295, "preadv"),
    _f(296, "pwritev"),
    _f(297, "rt_tgsigqueueinfo"),
    _l(298, "perf_event_open", _P, "performance counters expose the host; Linux answers "
       "EACCES or EPERM under perf_event_paranoid"),
    _f(299, "recvmmsg"),
    _l(300, "fanotify_init", _P, "watches whole mounts; needs CAP_SYS_ADMIN on Linux too"),
    _f(301, "fanotify_mark", "useless without fanotify_init (EBADF)"),
    _f(302, "prlimit64", "its own and its children's limits"),
    _l(303, "name_to_handle_at", _P, "file handles bypass path checks (Linux allows this "
       "one unprivileged; refused so no handle ever leaves the sandbox)"),
    _l(304, "open_by_handle_at", _P, "file handles bypass path checks"),
    _l(305, "clock_adjtime", _P, "the clock belongs to the host; Linux allows the read-only "
       "query, today's filter refuses it too"),
    _f(306, "syncfs"),
    _f(307, "sendmmsg", "as sendmsg"),
    _l(308, "setns", _P, "namespaces are the sandbox's"),
    _f(309, "getcpu", "vDSO"),
    _l(310, "process_vm_readv", _P, "other processes' memory"),
    _l(311, "process_vm_writev", _P, "other processes' memory"),
    _l(312, "kcmp", _P, "compares kernel objects of other processes (used by CRIU)"),
    _l(313, "finit_module", _P, "kernel modules are never loaded from a sandbox"),
    _f(314, "sched_setattr", "real-time and deadline policies need CAP_SYS_NICE"),
    _f(315, "sched_getattr"),
    _h(316, "renameat2", CAP_FILES_WRITE, _PATHW),
    _f(317, "seccomp", "a process may add filters: they only narrow"),
    _f(318, "getrandom"),
    _f(319, "memfd_create"),
    _l(320, "kexec_file_load", _P, "booting another kernel belongs to the host"),
    _l(321, "bpf", _P, "Linux answers EPERM without CAP_BPF (unprivileged BPF disabled)"),
    _h(322, "execveat", CAP_EXEC, "as execve"),
    _l(323, "userfaultfd", _P, "a classic exploitation aid; Linux answers EPERM when "
       "vm.unprivileged_userfaultfd = 0"),
    _f(324, "membarrier"),
    _f(325, "mlock2", "as mlock"),
    _f(326, "copy_file_range"),
    _f(327, "preadv2"),
    _f(328, "pwritev2"),
    _f(329, "pkey_mprotect"),
    _f(330, "pkey_alloc"),
    _f(331, "pkey_free"),
    _h(332, "statx", CAP_FILES, _PATH + "; with AT_EMPTY_PATH it is fstat (fast)"),
    _f(333, "io_pgetevents"),
    _f(334, "rseq"),
    _f(424, "pidfd_send_signal", "own pid namespace"),
    _l(425, "io_uring_setup", _P, "io_uring submits work that seccomp never sees; Linux "
       "answers EPERM when kernel.io_uring_disabled = 2, and liburing users fall back to "
       "plain syscalls"),
    _l(426, "io_uring_enter", _P, "as io_uring_setup"),
    _l(427, "io_uring_register", _P, "as io_uring_setup"),
    _l(428, "open_tree", _P, "the mount view is fixed by the sandbox"),
    _l(429, "move_mount", _P, "the mount view is fixed by the sandbox"),
    _l(430, "fsopen", _P, "the mount view is fixed by the sandbox"),
    _l(431, "fsconfig", _P, "the mount view is fixed by the sandbox"),
    _l(432, "fsmount", _P, "the mount view is fixed by the sandbox"),
    _l(433, "fspick", _P, "the mount view is fixed by the sandbox"),
    _f(434, "pidfd_open", "own pid namespace"),
    _l(435, "clone3", _NS, "emulated: its flags live in memory seccomp cannot read, so "
       "it answers ENOSYS and glibc falls back to clone(), whose flags are checked",
       today=_NS, cap=CAP_FORK),
    _f(436, "close_range"),
    _h(437, "openat2", CAP_FILES, "as openat"),
    _l(438, "pidfd_getfd", _P, "takes other processes' descriptors"),
    _h(439, "faccessat2", CAP_FILES, _PATH),
    _l(440, "process_madvise", _P, "acts on other processes' memory"),
    _f(441, "epoll_pwait2"),
    _l(442, "mount_setattr", _P, "the mount view is fixed by the sandbox"),
    _l(443, "quotactl_fd", _P, "disk quotas belong to the host"),
    _f(444, "landlock_create_ruleset", "a process may add rules: they only narrow"),
    _f(445, "landlock_add_rule"),
    _f(446, "landlock_restrict_self"),
    _f(447, "memfd_secret", "memory hidden from the kernel's own mappings; counted by "
       "the memory cgroup"),
    _f(448, "process_mrelease", "needs a pidfd of a dying process in its own namespace"),
    _f(449, "futex_waitv"),
    _f(450, "set_mempolicy_home_node"),
    _f(451, "cachestat", "on descriptors the process holds"),
    _h(452, "fchmodat2", CAP_FILES_WRITE, _PATHW),
    _l(453, "map_shadow_stack", _NS, "this kernel is built without user shadow stacks "
       "(CONFIG_X86_USER_SHADOW_STACK off): Linux answers ENOSYS", today="allow"),
    _f(454, "futex_wake"),
    _f(455, "futex_wait"),
    _f(456, "futex_requeue"),
    _f(457, "statmount", "describes mounts of its own mount namespace"),
    _f(458, "listmount", "lists mounts of its own mount namespace"),
    _f(459, "lsm_get_self_attr"),
    _f(460, "lsm_set_self_attr", "only what the LSMs let an unprivileged process set"),
    _f(461, "lsm_list_modules"),
    _f(462, "mseal"),
    _h(463, "setxattrat", CAP_FILES_WRITE, _PATHW),
    _h(464, "getxattrat", CAP_FILES, _PATH),
    _h(465, "listxattrat", CAP_FILES, _PATH),
    _h(466, "removexattrat", CAP_FILES_WRITE, _PATHW),
    _l(467, "open_tree_attr", _P, "the mount view is fixed by the sandbox. Not in today's "
       "deny list (added in 6.15): Linux refuses the cloning forms anyway without "
       "CAP_SYS_ADMIN, which the sandbox drops", today="allow"),
    _h(468, "file_getattr", CAP_FILES, _PATH),
    _h(469, "file_setattr", CAP_FILES_WRITE, _PATHW),
)

SYSCALLS: tuple[Syscall, ...] = tuple(Syscall(*row) for row in _ROWS)
BY_NAME: dict[str, Syscall] = {s.name: s for s in SYSCALLS}
BY_NUMBER: dict[int, Syscall] = {s.number: s for s in SYSCALLS}
MAX_NUMBER = max(BY_NUMBER)


def lookup(name_or_number: str | int) -> Syscall | None:
    """The row for a name (``"openat"``) or a number (``257`` or ``"257"``)."""
    if isinstance(name_or_number, int):
        return BY_NUMBER.get(name_or_number)
    if name_or_number.isdigit():
        return BY_NUMBER.get(int(name_or_number))
    return BY_NAME.get(name_or_number)


def counts() -> dict[str, int]:
    """How many rows each tier has."""
    result = dict.fromkeys(TIERS, 0)
    for s in SYSCALLS:
        result[s.tier] += 1
    return result


def differs_from_today(s: Syscall) -> bool:
    """True when today's seccomp filter treats the call otherwise than the design says:
    a refusal it does not make, a different errno, or an allowed call it refuses."""
    if s.today == "args":
        return False  # an argument-level rule both in the design and today
    if s.errno == "ENOSYS" and s.today == "allow":
        return False  # Linux itself answers ENOSYS: allowing it changes nothing
    if s.tier == LEGACY and s.errno:
        return s.today != s.errno
    return s.today != "allow"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """``docs/posix-x-compatibility.md``, generated from the rows."""
    c = counts()
    lines = [
        "# POSIX-X syscall compatibility (x86-64)",
        "",
        "<!-- Generated by `python -m exo.posix_x.table --markdown`; do not edit by hand. -->",
        "",
        f"Every x86-64 syscall of Linux {KERNEL_VERSION} (numbers 0–{UNASSIGNED.start - 1} "
        f"and {UNASSIGNED.stop}–{MAX_NUMBER}; {UNASSIGNED.start}–{UNASSIGNED.stop - 1} are "
        "unassigned on x86-64 and the x32 range 512–547 is killed by the sandbox) and how "
        "POSIX-X treats it. See [posix-x.md](posix-x.md) for the tiers and the manifest keys.",
        "",
        f"- **fast** ({c[FAST]}): allowed straight through by seccomp, no added cost.",
        f"- **hybrid** ({c[HYBRID]}): decided by the Exo kernel against the process's "
        "capabilities, through seccomp user notification.",
        f"- **legacy** ({c[LEGACY]}): emulated, or refused with the errno shown (the one "
        "Linux gives an unprivileged process), and audited.",
        "",
        "*today* is what the seccomp filter the sandbox installs now (`exo.sandbox._seccomp`) "
        "does: `allow`, the errno it answers, or `args` (refused for some argument values). "
        "Under `posix-x run` every refusal, `args` ones included, is answered by the kernel's "
        "broker with that errno and written to the audit log (rate-limited per process); "
        "only the refused argument values reach it. "
        "Rows marked ⚠ are where today's sandbox and this table differ; the note says how.",
        "",
        "| # | syscall | tier | errno | allowed by | today | note |",
        "|---:|---|---|---|---|---|---|",
    ]
    for s in SYSCALLS:
        today = s.today + (" ⚠" if differs_from_today(s) else "")
        lines.append(f"| {s.number} | `{s.name}` | {s.tier} | {s.errno} | {_cell(s.cap)} | "
                     f"{today} | {_cell(s.note)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--markdown"]:
        sys.stdout.write(markdown())
        return 0
    if args in ([], ["--json"]):
        import json

        json.dump([s.as_dict() for s in SYSCALLS], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    print("usage: python -m exo.posix_x.table [--markdown | --json]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
