"""Which syscalls the common glibc functions issue on x86-64, for ``posix-x analyze``.

A dynamically linked program's imports say which libc functions it calls, not which syscalls
it makes; this table bridges the two for about 690 functions (the ``_chk`` fortified variants
and the ``64`` aliases included). It follows glibc 2.36 (Debian 12): ``open``, ``fopen`` and
``creat`` issue ``openat``; ``stat`` issues ``newfstatat``; ``fork`` issues ``clone``;
``pthread_create`` and ``posix_spawn`` issue ``clone3`` (answered ENOSYS by the sandbox, so
glibc falls back to ``clone``); ``nanosleep`` issues ``clock_nanosleep``. ``fstat`` is listed
as ``fstat``: glibc issues ``newfstatat(fd, "", AT_EMPTY_PATH)``, which a filter can tell from
a path lookup by its flags. Functions answered from the vDSO (``clock_gettime``,
``gettimeofday``, ``time``, ``sched_getcpu``) are listed with the syscall they fall back to.

Functions that issue no syscall (``strlen``, ``memcpy``, ``qsort``…) are simply absent.
Standard library only; data parsed once at import from the text below.
"""

from __future__ import annotations

# "function function …: syscall syscall …", one group per line.
_TEXT = """
open open64 __open_2 __open64_2 openat openat64 __openat_2 __openat64_2: openat
creat creat64: openat
fopen fopen64 freopen freopen64: openat
fdopen: fcntl
close fclose fcloseall: close
closefrom close_range: close_range
read __read_chk: read
pread pread64 __pread_chk __pread64_chk: pread64
readv: readv
preadv preadv64: preadv
preadv2 preadv64v2: preadv2
write: write
pwrite pwrite64: pwrite64
writev: writev
pwritev pwritev64: pwritev
pwritev2 pwritev64v2: pwritev2
fread fread_unlocked __fread_chk fgets fgets_unlocked __fgets_chk fgetc getc getc_unlocked: read
getchar getchar_unlocked getline getdelim __getdelim fscanf __isoc99_fscanf scanf: read
__isoc99_scanf vfscanf __isoc99_vfscanf gets ungetc: read
fwrite fwrite_unlocked fputs fputs_unlocked fputc fputc_unlocked putc putc_unlocked: write
puts putchar putchar_unlocked printf __printf_chk fprintf __fprintf_chk vprintf: write
__vprintf_chk vfprintf __vfprintf_chk dprintf __dprintf_chk vdprintf __vdprintf_chk: write
perror psignal psiginfo err errx warn warnx verr verrx vwarn vwarnx error error_at_line: write
fflush fflush_unlocked: write
setvbuf setbuf setlinebuf: fstat
lseek lseek64 fseek fseeko fseeko64 ftell ftello ftello64 rewind fsetpos fgetpos: lseek
stat stat64 lstat lstat64 __xstat __xstat64 __lxstat __lxstat64: newfstatat
fstatat fstatat64 __fxstatat __fxstatat64: newfstatat
fstat fstat64 __fxstat __fxstat64: fstat
statx: statx
access euidaccess eaccess: access
faccessat: faccessat2 faccessat
readlink __readlink_chk: readlink
readlinkat __readlinkat_chk: readlinkat
realpath __realpath_chk canonicalize_file_name: readlink getcwd newfstatat
mkdir: mkdir
mkdirat: mkdirat
rmdir: rmdir
unlink: unlink
unlinkat: unlinkat
remove: unlink rmdir
rename: rename
renameat: renameat
renameat2: renameat2
link: link
linkat: linkat
symlink: symlink
symlinkat: symlinkat
chmod: chmod
fchmod: fchmod
fchmodat: fchmodat2 fchmodat
chown: chown
fchown: fchown
lchown: lchown
fchownat: fchownat
truncate truncate64: truncate
ftruncate ftruncate64: ftruncate
utime utimes lutimes utimensat: utimensat
futimens futimes: utimensat
futimesat: futimesat
mknod mknodat mkfifo mkfifoat __xmknod __xmknodat: mknodat
opendir: openat fstat
fdopendir: fstat fcntl
readdir readdir64 readdir_r readdir64_r getdents64 getdirentries getdirentries64: getdents64
closedir: close
scandir scandir64 scandirat: openat getdents64 close
glob glob64: openat getdents64 newfstatat close
nftw nftw64 ftw ftw64 fts_open fts_read fts64_open fts64_read: openat getdents64 newfstatat
chdir: chdir
fchdir: fchdir
getcwd __getcwd_chk get_current_dir_name getwd: getcwd
dup: dup
dup2: dup2
dup3: dup3
fcntl fcntl64 __fcntl lockf lockf64: fcntl
flock: flock
fsync: fsync
fdatasync: fdatasync
sync: sync
syncfs: syncfs
sync_file_range: sync_file_range
fallocate fallocate64 posix_fallocate posix_fallocate64: fallocate
posix_fadvise posix_fadvise64: fadvise64
readahead: readahead
pipe: pipe2
pipe2: pipe2
mkstemp mkstemp64 mkostemp mkostemp64 mkstemps mkostemps tempnam tmpnam mktemp: openat
tmpfile tmpfile64: openat unlink
mkdtemp: mkdir
ioctl: ioctl
tcgetattr tcsetattr tcflush tcdrain tcflow tcsendbreak tcgetpgrp tcsetpgrp isatty: ioctl
ttyname ttyname_r __ttyname_r_chk: readlink ioctl newfstatat
posix_openpt getpt: openat
grantpt unlockpt ptsname ptsname_r: ioctl
openpty forkpty: openat ioctl
login_tty: setsid ioctl dup2
sendfile sendfile64: sendfile
splice: splice
tee: tee
vmsplice: vmsplice
copy_file_range: copy_file_range
getxattr: getxattr
lgetxattr: lgetxattr
fgetxattr: fgetxattr
setxattr: setxattr
lsetxattr: lsetxattr
fsetxattr: fsetxattr
listxattr: listxattr
llistxattr: llistxattr
flistxattr: flistxattr
removexattr: removexattr
lremovexattr: lremovexattr
fremovexattr: fremovexattr
statfs statfs64 statvfs statvfs64: statfs
fstatfs fstatfs64 fstatvfs fstatvfs64: fstatfs
inotify_init: inotify_init1
inotify_init1: inotify_init1
inotify_add_watch: inotify_add_watch
inotify_rm_watch: inotify_rm_watch
fanotify_init: fanotify_init
fanotify_mark: fanotify_mark
name_to_handle_at: name_to_handle_at
open_by_handle_at: open_by_handle_at
mmap mmap64: mmap
munmap: munmap
mprotect: mprotect
mremap: mremap
madvise posix_madvise: madvise
msync: msync
mlock: mlock
mlock2: mlock2
munlock: munlock
mlockall: mlockall
munlockall: munlockall
mincore: mincore
brk sbrk: brk
malloc calloc realloc reallocarray free cfree posix_memalign aligned_alloc memalign: brk mmap munmap
valloc pvalloc malloc_trim: brk mmap munmap madvise
memfd_create: memfd_create
shm_open: openat
shm_unlink: unlink
pkey_alloc: pkey_alloc
pkey_free: pkey_free
pkey_mprotect: pkey_mprotect
mbind: mbind
set_mempolicy: set_mempolicy
get_mempolicy: get_mempolicy
fork __fork _Fork: clone
vfork __vfork: vfork
clone __clone: clone
clone3: clone3
posix_spawn posix_spawnp: clone3 clone execve
system: clone3 clone execve wait4 rt_sigaction rt_sigprocmask
popen: clone3 clone execve pipe2
pclose: wait4 close
execve execv execvp execvpe execl execlp execle: execve
fexecve: execveat
execveat: execveat
daemon: clone setsid openat dup2
_exit _Exit exit quick_exit: exit_group
pthread_exit: exit
wait waitpid wait3 wait4: wait4
waitid: waitid
kill killpg: kill
raise gsignal abort: tgkill rt_sigprocmask
pthread_kill pthread_cancel pthread_sigqueue: tgkill
getpid: getpid
getppid: getppid
gettid: gettid
getuid: getuid
geteuid: geteuid
getgid: getgid
getegid: getegid
getgroups __getgroups_chk: getgroups
setgroups: setgroups
initgroups: setgroups openat read
setuid: setuid
seteuid: setresuid
setreuid: setreuid
setresuid: setresuid
getresuid: getresuid
setgid: setgid
setegid: setresgid
setregid: setregid
setresgid: setresgid
getresgid: getresgid
setfsuid: setfsuid
setfsgid: setfsgid
setsid: setsid
getsid: getsid
setpgid setpgrp: setpgid
getpgid: getpgid
getpgrp: getpgrp
getrlimit getrlimit64 setrlimit setrlimit64 prlimit prlimit64 ulimit: prlimit64
getrusage: getrusage
times clock: times
nice: getpriority setpriority
getpriority: getpriority
setpriority: setpriority
sched_yield pthread_yield: sched_yield
sched_setaffinity pthread_setaffinity_np: sched_setaffinity
sched_getaffinity pthread_getaffinity_np: sched_getaffinity
sched_setscheduler: sched_setscheduler
sched_getscheduler: sched_getscheduler
sched_setparam pthread_setschedparam: sched_setparam
sched_getparam pthread_getschedparam: sched_getparam
sched_get_priority_max: sched_get_priority_max
sched_get_priority_min: sched_get_priority_min
sched_rr_get_interval: sched_rr_get_interval
sched_getcpu getcpu: getcpu
prctl pthread_setname_np: prctl
arch_prctl: arch_prctl
personality: personality
uname gethostname getdomainname: uname
sethostname: sethostname
setdomainname: setdomainname
sysinfo get_phys_pages get_avphys_pages: sysinfo
get_nprocs get_nprocs_conf getloadavg: openat read close
umask: umask
pthread_create: clone3 clone mmap mprotect rt_sigprocmask
pthread_join pthread_timedjoin_np pthread_tryjoin_np pthread_clockjoin_np: futex
pthread_mutex_lock pthread_mutex_unlock pthread_mutex_timedlock pthread_mutex_clocklock: futex
pthread_cond_wait pthread_cond_timedwait pthread_cond_clockwait: futex
pthread_cond_signal pthread_cond_broadcast: futex
pthread_rwlock_rdlock pthread_rwlock_wrlock pthread_rwlock_unlock: futex
pthread_rwlock_timedrdlock pthread_rwlock_timedwrlock: futex
pthread_barrier_wait pthread_once: futex
sem_wait sem_post sem_timedwait sem_clockwait: futex
sem_open: openat mmap
sem_unlink: unlink
pthread_sigmask sigprocmask sigblock sigsetmask sighold sigrelse: rt_sigprocmask
pthread_getattr_np: openat read
signal sigaction __sysv_signal bsd_signal sigset siginterrupt sigignore: rt_sigaction
sigsuspend sigpause: rt_sigsuspend
sigwait sigwaitinfo sigtimedwait: rt_sigtimedwait
sigqueue: rt_sigqueueinfo
sigpending: rt_sigpending
sigaltstack: sigaltstack
signalfd: signalfd4
alarm: alarm
ualarm: setitimer
setitimer: setitimer
getitimer: getitimer
pause: pause
time: time
gettimeofday: gettimeofday
clock_gettime: clock_gettime
clock_getres: clock_getres
clock_settime: clock_settime
settimeofday stime: settimeofday
adjtime adjtimex ntp_adjtime ntp_gettime ntp_gettimex: adjtimex
clock_adjtime: clock_adjtime
nanosleep sleep usleep clock_nanosleep thrd_sleep: clock_nanosleep
timer_create: timer_create
timer_settime: timer_settime
timer_gettime: timer_gettime
timer_getoverrun: timer_getoverrun
timer_delete: timer_delete
timerfd_create: timerfd_create
timerfd_settime: timerfd_settime
timerfd_gettime: timerfd_gettime
eventfd: eventfd2
eventfd_read: read
eventfd_write: write
socket: socket
socketpair: socketpair
connect: connect
bind bindresvport: bind
listen: listen
accept: accept
accept4: accept4
send sendto: sendto
sendmsg: sendmsg
sendmmsg: sendmmsg
recv __recv_chk recvfrom __recvfrom_chk: recvfrom
recvmsg: recvmsg
recvmmsg: recvmmsg
shutdown: shutdown
getsockname: getsockname
getpeername: getpeername
setsockopt: setsockopt
getsockopt: getsockopt
getaddrinfo gethostbyname gethostbyname2: socket connect sendto recvfrom poll openat
gethostbyname_r gethostbyname2_r: socket connect sendto recvfrom poll openat
gethostbyaddr gethostbyaddr_r getnameinfo: socket connect sendto recvfrom poll openat
res_query res_search res_nquery res_nsearch: socket connect sendto recvfrom poll openat
__res_query __res_search res_init: socket connect sendto recvfrom poll openat
getservbyname getservbyport getprotobyname getprotobynumber: openat read close
getifaddrs: socket bind sendto recvmsg
if_nametoindex if_indextoname if_nameindex: socket ioctl close
getpwnam getpwuid getpwnam_r getpwuid_r getpwent: openat read close
getgrnam getgrgid getgrnam_r getgrgid_r: openat read close
getgrent getgrouplist getlogin getlogin_r getusershell: openat read close
getspnam getspnam_r getspent: openat read close
syslog vsyslog __syslog_chk __vsyslog_chk openlog: socket connect sendto
closelog: close
epoll_create: epoll_create1
epoll_create1: epoll_create1
epoll_ctl: epoll_ctl
epoll_wait: epoll_wait
epoll_pwait: epoll_pwait
epoll_pwait2: epoll_pwait2
poll __poll_chk: poll
ppoll __ppoll_chk: ppoll
select: select
pselect: pselect6
dlopen dlmopen: openat mmap mprotect read fstat close
dlclose: munmap
getrandom: getrandom
getentropy arc4random arc4random_buf arc4random_uniform: getrandom
mount: mount
umount umount2: umount2
chroot: chroot
pivot_root: pivot_root
unshare: unshare
setns: setns
ptrace: ptrace
reboot: reboot
swapon: swapon
swapoff: swapoff
acct: acct
init_module: init_module
finit_module: finit_module
delete_module: delete_module
klogctl: syslog
ioperm: ioperm
iopl: iopl
quotactl: quotactl
capget: capget
capset: capset
vhangup: vhangup
modify_ldt: modify_ldt
shmget: shmget
shmat: shmat
shmdt: shmdt
shmctl: shmctl
semget: semget
semop: semop
semtimedop: semtimedop
semctl: semctl
msgget: msgget
msgsnd: msgsnd
msgrcv: msgrcv
msgctl: msgctl
ftok: newfstatat
mq_open: mq_open
mq_close: close
mq_unlink: mq_unlink
mq_send mq_timedsend: mq_timedsend
mq_receive mq_timedreceive: mq_timedreceive
mq_notify: mq_notify
mq_getattr mq_setattr: mq_getsetattr
io_setup: io_setup
io_destroy: io_destroy
io_submit: io_submit
io_getevents: io_getevents
io_cancel: io_cancel
process_vm_readv: process_vm_readv
process_vm_writev: process_vm_writev
process_madvise: process_madvise
process_mrelease: process_mrelease
pidfd_open: pidfd_open
pidfd_send_signal: pidfd_send_signal
pidfd_getfd: pidfd_getfd
membarrier: membarrier
mseal: mseal
set_robust_list: set_robust_list
get_robust_list: get_robust_list
"""


def _parse(text: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    for line in text.strip().splitlines():
        functions, _, syscalls = line.partition(":")
        calls = tuple(syscalls.split())
        for function in functions.split():
            if function in table:
                raise ValueError(f"libc_map: {function} listed twice")
            table[function] = calls
    return table


LIBC_SYSCALLS: dict[str, tuple[str, ...]] = _parse(_TEXT)

# What every dynamically linked glibc program does before main() (the dynamic loader maps
# its libraries, libc sets up threads, TLS and stack protection) and at exit: what
# ``strace /bin/true`` shows.
STARTUP_DYNAMIC: tuple[str, ...] = (
    "execve", "brk", "arch_prctl", "mmap", "access", "openat", "newfstatat", "fstat", "read",
    "pread64", "close", "mprotect", "munmap", "set_tid_address", "set_robust_list", "rseq",
    "prlimit64", "getrandom", "exit_group",
)
# A static glibc program skips the loader's file work.
STARTUP_STATIC: tuple[str, ...] = (
    "execve", "brk", "arch_prctl", "set_tid_address", "set_robust_list", "rseq",
    "prlimit64", "readlinkat", "getrandom", "mprotect", "exit_group",
)

# Imports that make inet networking likely: the capability analysis asks for net:// only
# for these (syslog also opens a socket, but a local AF_UNIX one to /dev/log).
NETWORK_FUNCTIONS = frozenset({
    "connect", "bind", "bindresvport", "listen", "accept", "accept4", "getaddrinfo",
    "gethostbyname", "gethostbyname2", "gethostbyname_r", "gethostbyname2_r",
    "gethostbyaddr", "gethostbyaddr_r", "getnameinfo", "res_query", "res_search",
    "res_nquery", "res_nsearch", "__res_query", "__res_search", "res_init",
})
SERVER_FUNCTIONS = frozenset({"bind", "listen", "accept", "accept4"})
FORK_FUNCTIONS = frozenset({
    "fork", "__fork", "_Fork", "vfork", "__vfork", "clone", "__clone", "clone3", "daemon",
    "forkpty", "posix_spawn", "posix_spawnp", "system", "popen",
})
EXEC_FUNCTIONS = frozenset({
    "execve", "execv", "execvp", "execvpe", "execl", "execlp", "execle", "fexecve",
    "execveat", "posix_spawn", "posix_spawnp", "system", "popen",
})
# system() and popen() run /bin/sh -c.
SHELL_FUNCTIONS = frozenset({"system", "popen"})
# Raw syscall entry points: whatever they issue cannot be read from the imports.
RAW_SYSCALL_FUNCTIONS = frozenset({"syscall"})
