/* exo-stage2: the last step of a sandbox start, run by bubblewrap inside the sandbox.
 *
 *     exo-stage2 CONFIG_FD
 *
 * Bubblewrap has built the namespaces and the mount view, dropped capabilities, set
 * no_new_privs and installed the seccomp filter. This program then closes every inherited
 * descriptor the target must not see, applies Landlock (last, because a Landlock domain
 * forbids the mount changes bubblewrap makes) and execs the target.
 *
 * It is C rather than Python because it runs once per spawn: a `python3 -I -S` stage 2 with
 * ctypes cost ~15 ms of a ~35 ms spawn; this costs well under 1 ms. It decides nothing: the
 * kernel (exo.sandbox.launcher) computes every right and mask, and writes them into the
 * CONFIG_FD memfd as a sequence of NUL-terminated strings, one record after another:
 *
 *     status FD              report fd: "R" just before exec (it is close-on-exec, so EOF
 *                            right after "R" means the exec succeeded), then
 *                            "X<errno> <message>" if execve failed; "E<message>" on any
 *                            earlier error
 *     account UID GID        become UID and GID (real, effective, saved; no
 *                            supplementary groups) before Landlock and exec: bubblewrap left
 *                            CAP_SETUID, CAP_SETGID and CAP_SETPCAP for this alone: the
 *                            bounding set is emptied, the ids changed (which clears the
 *                            permitted and effective sets), the inheritable and ambient sets
 *                            cleared; any step failing is an error
 *     umask MASK             the program's file mode mask (a shell's umask)
 *     rlimit RES SOFT HARD   setrlimit(RES) just before exec, after the account's uid
 *                            (so it can only lower a hard limit; repeated, at most
 *                            MAX_RLIMITS; 18446744073709551615 is RLIM_INFINITY)
 *     await FD               read one byte "g" from FD before dropping to the account
 *                            (the per-session zygote's "go": it sends it once the process
 *                            is in its cgroup, so that the setup overlaps that move);
 *                            anything else is an error. A spare then makes a cgroup
 *                            namespace rooted there and loads the seccomp program
 *     keep FD                a descriptor the target inherits (repeated; 0-2 always are)
 *     ruleset FS NET SCOPED SIZE FILEMASK
 *                            create a Landlock ruleset handling those rights (SIZE: bytes of
 *                            the attribute struct the ABI knows); FILEMASK: the rights a rule
 *                            on a non-directory may carry
 *     path ACCESS PATH       allow ACCESS beneath PATH (masked by FILEMASK for a file)
 *     port ACCESS PORT       allow ACCESS (TCP bind/connect bits) on PORT
 *     argv N ARG...          the target's argv (N strings)
 *     env N KEY=VALUE...     the target's whole environment (N strings)
 *
 * Records come in exactly this order (account, umask, rlimit, await, keep, ruleset, path
 * and port optional; one ruleset at most; the config ends with env), and any other order, a duplicate or a trailing byte is
 * refused: no string can smuggle in a record. Numbers are plain decimal digits;
 * descriptors are >= 3 (stdio is always inherited) and a kept one must be open.
 * Any error is reported on the status fd and exits 127 before anything is exec'd.
 *
 * The per-session zygote (exo.sandbox.zygote) also runs it ahead of a command, as its
 * *spare*:
 *
 *     exo-stage2 --spare SOCKET_FD
 *
 * Started by the zygote and already in the command's session, namespaces and private
 * /tmp and /dev/shm, it waits for one datagram on SOCKET_FD: the command's descriptors
 * (SCM_RIGHTS, as the kernel sent them) and NUL-terminated records, in this order:
 *
 *     status IDX             the status pipe among the received descriptors (errors)
 *     seccomp IDX            the memfd holding the seccomp program (struct sock_filter[])
 *     dev IDX                (optional) a /dev of the command's own, with the terminal's
 *                            node, the detached mount IDX, at /dev/tty (private_dev)
 *     mount DEST RO DIR IDX  move the detached mount IDX to DEST (created on the
 *                            zygote's root tmpfs if missing, never inside an earlier
 *                            grant), remounted nosuid,nodev, read-only if RO is 1
 *                            (repeated); a later Landlock "path" record naming DEST
 *                            takes its rule from IDX and DIR (1: a directory), without
 *                            opening DEST again
 *     cwd PATH               the working directory
 *     fd NUMBER IDX          put descriptor IDX at NUMBER (repeated)
 *     config NUMBER          then go on as `exo-stage2 NUMBER` (above)
 *
 * With `--prepare KEPT...` after SOCKET_FD it first puts itself there (so that the
 * zygote can start a spare with posix_spawn, a vfork, instead of forking its whole
 * Python process): the zygote starts it as pid 1 of a new pid namespace, in a session
 * of its own, with default signal dispositions; it makes mount (every mount private),
 * IPC and network namespaces (the loopback up), a /proc of its own and a fresh tmpfs
 * (mode 1777, nosuid, nodev) on /tmp and on /dev/shm, each KEPT path below one of them
 * (the Exo runtime when the checkout lives in /tmp) taken along and put back read-only
 * at its path. It then forks: the child (pid 2) goes on as the spare above, and this
 * process stays its init (command_init), sending the zygote on SOCKET_FD "P" with the
 * child's pidfd, later "X<raw wait status>" when the child ended, or "E<message>" if
 * preparing failed.
 *
 * It then remounts / read-only, changes directory, places the descriptors, sets
 * no_new_privs, reads the seccomp program and goes on as stage 2 without an exec (which
 * loads that program after "go", see await): what the Python child of the zygote did
 * after the fork, without its copy-on-write faults and the exec that tore its memory
 * down (~3 ms of a command's start, measured).
 *
 * The target is exec'd with execvp, which searches PATH in the target's own environment
 * (environ is set to it first) and, as POSIX specifies, runs a script without a "#!" line
 * with /bin/sh -- which still needs Landlock's EXECUTE on the file and READ for sh to read it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sched.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x4
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#define MAX_KEPT 64
#define SPARE_MAX_FDS 253  /* SCM_MAX_FD */
#define SPARE_MAX_MSG 65536
#define SPARE_MAX_MOUNTS 128
#define PARK_FD 512        /* received descriptors are parked above every kept number */
#define RULE_PATH_BENEATH 1
#define RULE_NET_PORT 2
#define MAX_KEEP 256
#define MAX_RLIMITS 16  /* RLIM_NLIMITS: each resource once (the kernel checks it) */

extern char **environ;

/* The uapi structs, spelled out: this host's headers may predate the ABI in use. */
struct ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};
struct path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));
struct net_port_attr {
    uint64_t allowed_access;
    uint64_t port;
};

static int status_fd = -1;
/* --prepare: the socket to the zygote (SOCKET_FD) while no status fd is known: where the
 * spare's init and, until the request comes, the command-to-be say why they failed
 * ("E<message>": the zygote then starts the command on another spare, or answers with
 * the reason). -1 once the command-to-be has closed it. */
static int spare_sock = -1;
static int ruleset = -1;  /* the Landlock ruleset being built, enforced after the fds close */
/* --spare: each grant's mount, kept open (above every number a descriptor is put at) for
 * its Landlock rule: a "path" record naming a mount point takes the rule from this
 * descriptor and the kind the kernel sent, instead of opening the path and fstat'ing it
 * (a GETATTR to the kernel's FUSE server for an export, a round trip per command). */
static struct { const char *dest; int fd; int is_dir; } grant_mounts[SPARE_MAX_MOUNTS];
static int ngrant_mounts = 0;

/* Report on the status fd, the first byte saying what kind of report it is, and exit. */
__attribute__((noreturn)) static void report_and_exit(char kind, const char *fmt,
                                                     va_list ap) {
    char msg[1024] = {kind};
    vsnprintf(msg + 1, sizeof msg - 1, fmt, ap);
    if (status_fd >= 0 ? write(status_fd, msg, strlen(msg)) < 0
                       : spare_sock >= 0 && send(spare_sock, msg, strlen(msg), MSG_NOSIGNAL) < 0) {
        /* nothing more we can say */
    }
    _exit(127);
}

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report_and_exit('E', fmt, ap);
}

/* execve failed: the launcher turns the errno into a shell's 127 or 126. */
__attribute__((noreturn, format(printf, 1, 2))) static void exec_failed(const char *fmt,
                                                                         ...) {
    va_list ap;
    va_start(ap, fmt);
    report_and_exit('X', fmt, ap);
}

/* The config: the memfd's bytes, and a cursor over its NUL-terminated strings. */
static char *cfg;
static size_t cfg_len, cfg_pos;

static const char *next_str(const char *what) {
    if (cfg_pos >= cfg_len) fail("stage 2 config: missing %s", what);
    const char *s = cfg + cfg_pos;
    const char *end = memchr(s, '\0', cfg_len - cfg_pos);
    if (end == NULL) fail("stage 2 config: unterminated %s", what);
    cfg_pos += (size_t)(end - s) + 1;
    return s;
}

/* A plain decimal number (digits only: no sign, space or 0x), at most ``max``. */
static uint64_t parse_num(const char *s, uint64_t max, const char *what) {
    uint64_t v = 0;
    if (*s == '\0' || strlen(s) > 20) fail("stage 2 config: bad %s '%s'", what, s);
    for (const char *c = s; *c; c++) {
        if (*c < '0' || *c > '9' || v > (UINT64_MAX - (uint64_t)(*c - '0')) / 10)
            fail("stage 2 config: bad %s '%s'", what, s);
        v = v * 10 + (uint64_t)(*c - '0');
    }
    if (v > max) fail("stage 2 config: %s %s out of range", what, s);
    return v;
}

static uint64_t next_num(const char *what) { return parse_num(next_str(what), UINT64_MAX, what); }

/* A descriptor number from the config: >= 3 (stdio is always inherited anyway). */
static int next_fd(const char *what) {
    int fd = (int)parse_num(next_str(what), INT_MAX, what);
    if (fd < 3) fail("stage 2 config: %s %d is stdio", what, fd);
    return fd;
}

/* The next record's tag, or NULL at the end of the config. */
static const char *next_tag(void) { return cfg_pos < cfg_len ? next_str("record") : NULL; }

static char **next_list(const char *what) {
    uint64_t n = next_num("count");
    if (n > cfg_len) fail("stage 2 config: bad %s count", what);
    char **list = calloc((size_t)n + 1, sizeof *list);
    if (list == NULL) fail("stage 2: out of memory");
    for (uint64_t i = 0; i < n; i++) list[i] = (char *)next_str(what);
    return list;
}

static void read_config(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) fail("stage 2 config fd %d unusable", fd);
    cfg_len = (size_t)st.st_size;
    cfg = malloc(cfg_len);
    if (cfg == NULL) fail("stage 2: out of memory");
    size_t got = 0;
    while (got < cfg_len) {
        ssize_t n = pread(fd, cfg + got, cfg_len - got, (off_t)got);
        if (n <= 0) fail("stage 2 config: read: %s", n < 0 ? strerror(errno) : "short");
        got += (size_t)n;
    }
    close(fd);
}

/* Close every descriptor but stdio, the kept ones, the status fd and the ruleset. Listed
 * first and closed after (closing while reading /proc/self/fd would skip entries), in
 * rounds until nothing is left to close, however many descriptors came in. */
static int await_fd = -1;  /* the zygote's "go" pipe, read just before exec */

static void close_inherited(const int *keep, int nkeep) {
    for (;;) {
        DIR *dir = opendir("/proc/self/fd");
        if (dir == NULL) fail("cannot list /proc/self/fd: %s", strerror(errno));
        int self = dirfd(dir);
        int victims[1024], nvictims = 0;
        struct dirent *d;
        while (nvictims < 1024 && (d = readdir(dir)) != NULL) {
            if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
            int fd = atoi(d->d_name);
            int kept = fd <= 2 || fd == self || fd == status_fd || fd == ruleset ||
                       fd == await_fd;
            for (int i = 0; i < nkeep && !kept; i++) kept = fd == keep[i];
            if (!kept) victims[nvictims++] = fd;
        }
        closedir(dir);
        if (nvictims == 0) return;
        for (int i = 0; i < nvictims; i++) close(victims[i]);
    }
}

/* --spare: create DEST as a mount point on the zygote's root tmpfs when it is missing,
 * never inside a grant already mounted (that would write into the user's tree). */
static void mount_point(const char *dest, int is_dir, const char **mounted, int nmounted) {
    struct stat st;
    if (lstat(dest, &st) == 0) return;
    for (int i = 0; i < nmounted; i++) {
        size_t n = strlen(mounted[i]);
        while (n > 1 && mounted[i][n - 1] == '/') n--;
        if (strncmp(dest, mounted[i], n) == 0 && dest[n] == '/')
            fail("zygote: mount point %s is missing inside a grant", dest);
    }
    char path[PATH_MAX];
    if (strlen(dest) >= sizeof path) fail("zygote: mount point too long");
    strcpy(path, dest);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            fail("zygote: mkdir %s: %s", path, strerror(errno));
        *p = '/';
    }
    if (is_dir) {
        if (mkdir(dest, 0755) != 0) fail("zygote: mkdir %s: %s", dest, strerror(errno));
    } else {
        int fd = open(dest, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) fail("zygote: create %s: %s", dest, strerror(errno));
        close(fd);
    }
}

static void do_mount(const char *target, unsigned long flags) {
    if (mount(NULL, target, NULL, flags, NULL) != 0)
        fail("zygote: mount %s: %s", target, strerror(errno));
}

static void move_mount_to(int fd, const char *path) {
    if (syscall(SYS_move_mount, fd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) != 0)
        fail("zygote: move_mount %s: %s", path, strerror(errno));
    close(fd);
}

static int clone_tree(const char *path, unsigned flags) {
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | O_CLOEXEC | flags);
    if (fd < 0) fail("zygote: open_tree %s: %s", path, strerror(errno));
    return fd;
}

/* --prepare: a fresh tmpfs on TARGET, the KEPT paths below it carried over read-only
 * (outermost ones only: what is mounted below them comes along, AT_RECURSIVE). */
static void private_tmpfs(const char *target, char **kept, int nkept) {
    const char *paths[MAX_KEPT];
    int trees[MAX_KEPT], n = 0;
    size_t len = strlen(target);
    for (int i = 0; i < nkept; i++) {
        const char *k = kept[i];
        if (strncmp(k, target, len) != 0 || k[len] != '/') continue;
        int inner = 0;
        for (int j = 0; j < n && !inner; j++) {
            size_t m = strlen(paths[j]);
            inner = strncmp(k, paths[j], m) == 0 && (k[m] == '/' || k[m] == '\0');
        }
        if (inner) continue;
        if (n == MAX_KEPT) fail("zygote: too many runtime paths under %s", target);
        paths[n] = k;
        trees[n++] = clone_tree(k, AT_RECURSIVE);
    }
    if (mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
        fail("zygote: tmpfs on %s: %s", target, strerror(errno));
    for (int i = 0; i < n; i++) {
        char path[PATH_MAX];
        if (strlen(paths[i]) >= sizeof path) fail("zygote: runtime path too long");
        strcpy(path, paths[i]);
        for (char *p = path + 1;; p++) {  /* mkdir -p, the last component included */
            if (*p != '/' && *p != '\0') continue;
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                fail("zygote: mkdir %s: %s", path, strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
        move_mount_to(trees[i], paths[i]);
        if (mount(NULL, paths[i], NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
                  NULL) != 0)
            fail("zygote: remount %s read-only: %s", paths[i], strerror(errno));
    }
}

/* --prepare: the loopback of a fresh network namespace up, as bubblewrap's
 * --unshare-net leaves it (a command's own datagrams to 127.0.0.1 keep working). */
static int loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return rc;
}

/* --prepare: a /proc of the command's own, hidepid=invisible: a process it cannot ptrace
 * (every other command of the session, each in a Landlock domain of its own, and the
 * zygote, root) has no /proc/PID there, so no command reads another's command line. The
 * directories bubblewrap's /proc covers read-only are covered again. */
static void private_proc(void) {
    static const char *covered[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq",
                                    "/proc/bus"};
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "hidepid=invisible") != 0)
        fail("zygote: mount /proc: %s", strerror(errno));
    for (size_t i = 0; i < sizeof covered / sizeof *covered; i++) {
        if (access(covered[i], F_OK) != 0) continue;
        if (mount(covered[i], covered[i], NULL, MS_BIND | MS_REC, NULL) != 0 ||
            mount(NULL, covered[i], NULL,
                  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  NULL) != 0)
            fail("zygote: cover %s: %s", covered[i], strerror(errno));
    }
}

/* --prepare: the command's init. Pid 1 of the namespace, it stays out of the command's
 * reach (root, not dumpable, no handler: a signal from inside is dropped, as for any
 * init) and does three things: tells the zygote which process is the command ("P" and
 * its pidfd: the zygote moves it into the command's cgroup, and the kernel signals and
 * watches the command itself, so SIGSTOP stops the command, not its init), reaps
 * whatever the command orphans, and when the command ends reports its raw wait status
 * and the CPU time (user and system, microseconds) of everything it reaped, the command
 * and what it waited for included ("X<status> <user> <system>"), and exits -- and the
 * namespace ends with it: what the command left behind is killed there and then, as
 * under bubblewrap's init. */
__attribute__((noreturn)) static void command_init(pid_t command) {
    int pidfd = (int)syscall(SYS_pidfd_open, command, 0);
    if (pidfd < 0) fail("zygote: pidfd_open: %s", strerror(errno));
    char tag = 'P';
    struct iovec iov = {&tag, 1};
    union { struct cmsghdr hdr; char space[CMSG_SPACE(sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.space;
    msg.msg_controllen = sizeof ctl.space;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pidfd, sizeof(int));
    if (sendmsg(spare_sock, &msg, MSG_NOSIGNAL) != 1) _exit(127);  /* the command dies too */
    close(pidfd);
    /* Nothing but the socket: no descriptor of the zygote's stays open in here. */
    if (spare_sock > 3) syscall(SYS_close_range, 3, spare_sock - 1, 0);
    syscall(SYS_close_range, spare_sock + 1, ~0U, 0);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    int status = 0;
    long long user_us = 0, system_us = 0;
    for (;;) {
        struct rusage usage;
        pid_t pid = wait4(-1, &status, __WALL, &usage);
        if (pid > 0) {
            user_us += (long long)usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec;
            system_us += (long long)usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec;
        }
        if (pid == command) break;
        if (pid < 0 && errno != EINTR) {
            status = SIGKILL;  /* cannot happen: the command is a child until reaped */
            break;
        }
    }
    char report[64];
    int n = snprintf(report, sizeof report, "X%d %lld %lld", status, user_us, system_us);
    if (send(spare_sock, report, (size_t)n, MSG_NOSIGNAL) < 0) {
        /* the zygote is gone; so is this namespace, in a moment */
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

/* Empty the bounding set (needs CAP_SETPCAP), so that nothing exec'd from here can ever
 * gain a capability; the capabilities this process holds now are untouched (the bounding
 * set only bounds what an exec gives). Once a process: a spare does it while it waits for
 * its request (prepare), not on the command's start (64 prctl calls, ~55 us measured);
 * it stops at the first number past the kernel's last capability (EINVAL). */
static int bounding_dropped = 0;
static void drop_bounding_set(void) {
    if (bounding_dropped) return;
    for (int cap = 0; cap <= 63; cap++) {
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) continue;
        if (errno == EINVAL) break;
        fail("account: drop capability %d: %s", cap, strerror(errno));
    }
    bounding_dropped = 1;
}

/* --prepare: before its request is known, what every command's start does first: mount,
 * IPC and network namespaces of its own (so two commands of a session meet neither in
 * System V IPC or POSIX message queues nor on a loopback), its own /proc, a private /tmp
 * and /dev/shm. The zygote started this process as pid 1 of a pid namespace of its own:
 * it forks the command-to-be (pid 2, which returns from here and waits for the request)
 * and stays its init (command_init). So no command can name another process of the
 * session by pid, for prlimit64, setpriority, sched_setaffinity or ioprio_set, which
 * neither Landlock nor hidepid covers. Any failure is said to the zygote and exits 127. */
static void prepare(int sock, char **kept, int nkept) {
    spare_sock = sock;
    if (getpid() != 1) fail("zygote: not started in a pid namespace of its own");
    if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET) != 0)
        fail("zygote: unshare: %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
        fail("zygote: make / private: %s", strerror(errno));
    if (loopback_up() != 0) fail("zygote: loopback: %s", strerror(errno));
    private_proc();
    private_tmpfs("/tmp", kept, nkept);
    private_tmpfs("/dev/shm", kept, nkept);
    pid_t command = fork();
    if (command < 0) fail("zygote: fork: %s", strerror(errno));
    if (command > 0) command_init(command);
    /* A process group of its own, in its init's session: a group with a parent in
     * another group of its session is not orphaned, so a SIGTSTP it sends itself (less
     * and vi do so, once the terminal is put back, at Ctrl-Z) stops it. In its init's
     * group, the stop was discarded and less went on in its screen. */
    if (setpgid(0, 0) != 0) fail("zygote: setpgid: %s", strerror(errno));
    drop_bounding_set();
}

/* --spare, a "dev" record: a /dev of the command's own, for a command on a terminal (as
 * the launcher builds it): the base view's device nodes, this command's private /dev/shm
 * (with the runtime's paths in it), the usual links, and the terminal's node TERMINAL (a
 * detached mount) at /dev/tty, on a fresh tmpfs, read-only: the session's other commands
 * never see a /dev/tty of this one. */
static void private_dev(int terminal) {
    static const char *nodes[] = {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom",
                                  "/dev/tty"};
    enum { NNODES = sizeof nodes / sizeof *nodes };
    int trees[NNODES];
    for (int i = 0; i < NNODES - 1; i++) trees[i] = clone_tree(nodes[i], 0);
    trees[NNODES - 1] = terminal;
    int shm = clone_tree("/dev/shm", AT_RECURSIVE);
    if (mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=0755") != 0)
        fail("zygote: tmpfs on /dev: %s", strerror(errno));
    for (int i = 0; i < NNODES; i++) {
        int fd = open(nodes[i], O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) fail("zygote: create %s: %s", nodes[i], strerror(errno));
        close(fd);
        move_mount_to(trees[i], nodes[i]);
        do_mount(nodes[i], MS_REMOUNT | MS_BIND | MS_NOSUID);
    }
    if (mkdir("/dev/shm", 01777) != 0) fail("zygote: mkdir /dev/shm: %s", strerror(errno));
    move_mount_to(shm, "/dev/shm");
    static const char *links[][2] = {{"/proc/self/fd", "/dev/fd"},
                                     {"/proc/self/fd/0", "/dev/stdin"},
                                     {"/proc/self/fd/1", "/dev/stdout"},
                                     {"/proc/self/fd/2", "/dev/stderr"}};
    for (size_t i = 0; i < sizeof links / sizeof *links; i++)
        if (symlink(links[i][0], links[i][1]) != 0)
            fail("zygote: link %s: %s", links[i][1], strerror(errno));
    do_mount("/dev", MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID);
}

/* --spare: the command's seccomp program, loaded by main after "go" (its cgroup
 * namespace is made first: seccomp refuses unshare). */
static struct sock_fprog spare_filter;

/* --spare: wait for the command, build its mount view and descriptors, read its seccomp
 * program; returns the config descriptor stage 2 goes on with. */
static int spare(int sock) {
    static char buf[SPARE_MAX_MSG];
    union { struct cmsghdr hdr; char space[CMSG_SPACE(sizeof(int) * SPARE_MAX_FDS)]; } ctl;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl.space;
    msg.msg_controllen = sizeof ctl.space;
    ssize_t got;
    do got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); while (got < 0 && errno == EINTR);
    if (got <= 0) _exit(got == 0 ? 0 : 127);  /* the zygote gave up on this spare */
    close(sock);
    spare_sock = -1;
    int fds[SPARE_MAX_FDS], nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        if (n > SPARE_MAX_FDS - nfds) _exit(127);
        memcpy(fds + nfds, CMSG_DATA(c), sizeof(int) * (size_t)n);
        nfds += n;
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) _exit(127);
    cfg = buf;
    cfg_len = (size_t)got;
    cfg_pos = 0;
#define IDX(what) fds[parse_num(next_str(what), (uint64_t)(nfds > 0 ? nfds - 1 : 0), what)]
    const char *tag = next_tag();
    if (nfds == 0 || tag == NULL || strcmp(tag, "status") != 0) _exit(127);
    /* A copy above every number a descriptor is put at below, so that a report still
     * reaches the status pipe after those moves (the received number may be one). */
    status_fd = fcntl(IDX("status index"), F_DUPFD_CLOEXEC, PARK_FD);
    if (status_fd < 0) _exit(127);
    tag = next_tag();
    if (tag == NULL || strcmp(tag, "seccomp") != 0) fail("zygote request: seccomp expected");
    int bpf = IDX("seccomp index");
    tag = next_tag();
    if (tag != NULL && strcmp(tag, "dev") == 0) {
        private_dev(IDX("terminal index"));
        tag = next_tag();
    }
    const char *mounted[SPARE_MAX_MOUNTS];
    int nmounted = 0;
    for (; tag != NULL && strcmp(tag, "mount") == 0; tag = next_tag()) {
        if (nmounted == SPARE_MAX_MOUNTS) fail("zygote request: too many mounts");
        const char *dest = next_str("mount point");
        int ro = (int)parse_num(next_str("read-only"), 1, "read-only");
        int is_dir = (int)parse_num(next_str("kind"), 1, "kind");
        int fd = IDX("mount index");
        if (dest[0] != '/') fail("zygote request: mount point %s is not absolute", dest);
        mount_point(dest, is_dir, mounted, nmounted);
        if (syscall(SYS_move_mount, fd, "", AT_FDCWD, dest, MOVE_MOUNT_F_EMPTY_PATH) != 0)
            fail("zygote: move_mount %s: %s", dest, strerror(errno));
        int kept = fcntl(fd, F_DUPFD_CLOEXEC, PARK_FD);
        if (kept < 0) fail("zygote: keep mount %s: %s", dest, strerror(errno));
        close(fd);
        grant_mounts[ngrant_mounts].dest = dest;
        grant_mounts[ngrant_mounts].fd = kept;
        grant_mounts[ngrant_mounts++].is_dir = is_dir;
        do_mount(dest, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (ro ? MS_RDONLY : 0));
        mounted[nmounted++] = dest;
    }
    do_mount("/", MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV);
    if (tag == NULL || strcmp(tag, "cwd") != 0) fail("zygote request: cwd expected");
    const char *cwd = next_str("cwd");
    if (chdir(cwd) != 0) fail("zygote: cd %s: %s", cwd, strerror(errno));
    /* The seccomp program, read before the descriptors move. */
    struct stat st;
    if (fstat(bpf, &st) != 0 || st.st_size <= 0 || st.st_size % 8 != 0 ||
        st.st_size > 8 * 4096)
        fail("zygote: seccomp program unusable");
    struct sock_filter *prog = malloc((size_t)st.st_size);
    if (prog == NULL) fail("stage 2: out of memory");
    for (size_t off = 0; off < (size_t)st.st_size;) {
        ssize_t n = pread(bpf, (char *)prog + off, (size_t)st.st_size - off, (off_t)off);
        if (n <= 0) fail("zygote: seccomp program: short read");
        off += (size_t)n;
    }
    /* Park each descriptor high, then put each at its number (a number may be another
     * one's received number). */
    int numbers[SPARE_MAX_FDS], parked[SPARE_MAX_FDS], nplaced = 0;
    for (tag = next_tag(); tag != NULL && strcmp(tag, "fd") == 0; tag = next_tag()) {
        if (nplaced == SPARE_MAX_FDS) fail("zygote request: too many descriptors");
        numbers[nplaced] = (int)parse_num(next_str("fd number"), PARK_FD - 1, "fd number");
        parked[nplaced] = fcntl(IDX("fd index"), F_DUPFD_CLOEXEC, PARK_FD);
        if (parked[nplaced] < 0) fail("zygote: park descriptor: %s", strerror(errno));
        nplaced++;
    }
    for (int i = 0; i < nplaced; i++)
        if (dup2(parked[i], numbers[i]) < 0)
            fail("zygote: descriptor %d: %s", numbers[i], strerror(errno));
    if (tag == NULL || strcmp(tag, "config") != 0) fail("zygote request: config expected");
    int config = (int)parse_num(next_str("config fd"), PARK_FD - 1, "config fd");
    if (next_tag() != NULL) fail("zygote request: trailing record");
#undef IDX
    /* Loaded by main once the command is in its cgroup (spare_filter). */
    spare_filter.len = (unsigned short)(st.st_size / 8);
    spare_filter.filter = prog;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail("zygote: no_new_privs: %s", strerror(errno));
    cfg = NULL;
    cfg_len = cfg_pos = 0;
    return config;
}

int main(int argc, char **argv) {
    int config_fd;
    if (argc >= 3 && strcmp(argv[1], "--spare") == 0 &&
        (argc == 3 || strcmp(argv[3], "--prepare") == 0)) {
        int sock = (int)parse_num(argv[2], INT_MAX, "spare socket");
        if (argc > 3) prepare(sock, argv + 4, argc - 4);
        config_fd = spare(sock);
    } else if (argc == 2) {
        config_fd = (int)parse_num(argv[1], INT_MAX, "config fd");
    } else {
        fprintf(stderr, "usage: exo-stage2 CONFIG_FD (run by the Exo sandbox launcher)\n");
        return 2;
    }
    read_config(config_fd);

    const char *tag = next_tag();
    if (tag == NULL || strcmp(tag, "status") != 0) fail("stage 2 config: status first");
    status_fd = next_fd("status fd");
    if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) != 0) fail("status fd: %s", strerror(errno));

    uint64_t account = 0, account_gid = 0;
    int has_account = 0;
    tag = next_tag();
    if (tag != NULL && strcmp(tag, "account") == 0) {
        account = parse_num(next_str("account uid"), INT32_MAX, "account uid");
        if (account < 1000) fail("stage 2 config: account uid %llu is privileged",
                                 (unsigned long long)account);
        account_gid = parse_num(next_str("account gid"), INT32_MAX, "account gid");
        if (account_gid < 1000) fail("stage 2 config: account gid %llu is privileged",
                                     (unsigned long long)account_gid);
        has_account = 1;
        tag = next_tag();
    }
    if (tag != NULL && strcmp(tag, "umask") == 0) {  /* the shell's umask, for its files */
        umask((mode_t)parse_num(next_str("umask"), 0777, "umask"));
        tag = next_tag();
    }
    /* The shell's ulimit: set last, just before exec (a low RLIMIT_NOFILE or RLIMIT_AS
     * would stop this program's own setup). */
    struct { int resource; struct rlimit limit; } rlimits[MAX_RLIMITS];
    int nrlimits = 0;
    for (; tag != NULL && strcmp(tag, "rlimit") == 0; tag = next_tag()) {
        if (nrlimits == MAX_RLIMITS) fail("stage 2 config: too many rlimit records");
        rlimits[nrlimits].resource =
            (int)parse_num(next_str("rlimit resource"), RLIM_NLIMITS - 1, "rlimit resource");
        rlimits[nrlimits].limit.rlim_cur = next_num("rlimit soft");
        rlimits[nrlimits].limit.rlim_max = next_num("rlimit hard");
        nrlimits++;
    }

    if (tag != NULL && strcmp(tag, "await") == 0) {
        await_fd = next_fd("await fd");
        if (await_fd == status_fd || fcntl(await_fd, F_SETFD, FD_CLOEXEC) != 0)
            fail("await descriptor %d is not open", await_fd);
        tag = next_tag();
    }

    int keep[MAX_KEEP], nkeep = 0;
    for (; tag != NULL && strcmp(tag, "keep") == 0; tag = next_tag()) {
        if (nkeep == MAX_KEEP) fail("too many kept descriptors");
        int fd = next_fd("keep fd");
        if (fd == status_fd || fcntl(fd, F_GETFD) < 0)  /* before we open anything */
            fail("kept descriptor %d is not open", fd);
        keep[nkeep++] = fd;
    }

    uint64_t filemask = 0;
    if (tag != NULL && strcmp(tag, "ruleset") == 0) {
        struct ruleset_attr attr = {0};
        attr.handled_access_fs = next_num("handled fs");
        attr.handled_access_net = next_num("handled net");
        attr.scoped = next_num("scoped");
        size_t size = (size_t)next_num("attr size");
        filemask = next_num("file mask");
        /* The size says which fields the kernel reads: it must cover every field in use. */
        if (size < 8 || size > sizeof attr || (attr.handled_access_net && size < 16) ||
            (attr.scoped && size < 24))
            fail("landlock: attribute size %zu does not fit the rights", size);
        ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
        if (ruleset < 0) fail("landlock: create ruleset: %s", strerror(errno));
        while ((tag = next_tag()) != NULL &&
               (strcmp(tag, "path") == 0 || strcmp(tag, "port") == 0)) {
            uint64_t access = next_num("access");
            if (tag[1] == 'o') { /* port */
                struct net_port_attr rule = {access, next_num("port")};
                if (syscall(SYS_landlock_add_rule, ruleset, RULE_NET_PORT, &rule, 0) != 0)
                    fail("landlock: port %llu: %s", (unsigned long long)rule.port,
                         strerror(errno));
                continue;
            }
            const char *path = next_str("path");
            int mounted = -1;
            for (int i = 0; i < ngrant_mounts && mounted < 0; i++)
                if (strcmp(grant_mounts[i].dest, path) == 0) mounted = i;
            int fd, is_dir;
            if (mounted >= 0) {
                fd = grant_mounts[mounted].fd;
                is_dir = grant_mounts[mounted].is_dir;
            } else {
                fd = open(path, O_PATH | O_CLOEXEC);
                if (fd < 0) fail("landlock: %s: %s", path, strerror(errno));
                struct stat st;
                if (fstat(fd, &st) != 0) fail("landlock: %s: %s", path, strerror(errno));
                is_dir = S_ISDIR(st.st_mode);
            }
            if (!is_dir) access &= filemask;
            struct path_beneath_attr rule = {access, fd};
            if (access != 0 && syscall(SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH,
                                       &rule, 0) != 0)
                fail("landlock: %s: %s", path, strerror(errno));
            if (mounted < 0) close(fd);
        }
    }

    if (tag == NULL || strcmp(tag, "argv") != 0) fail("stage 2 config: expected argv, got %s",
                                                      tag ? tag : "the end");
    char **target = next_list("argv");
    if (target[0] == NULL || target[0][0] == '\0') fail("stage 2 config: empty argv");
    tag = next_tag();
    if (tag == NULL || strcmp(tag, "env") != 0) fail("stage 2 config: expected env, got %s",
                                                     tag ? tag : "the end");
    char **env = next_list("env");
    if ((tag = next_tag()) != NULL) fail("stage 2 config: unexpected record %s after env", tag);

    for (int i = 0; i < ngrant_mounts; i++) close(grant_mounts[i].fd);
    ngrant_mounts = 0;
    close_inherited(keep, nkeep);
    for (int i = 0; i < nkeep; i++) {
        int flags = fcntl(keep[i], F_GETFD);
        if (flags < 0 || fcntl(keep[i], F_SETFD, flags & ~FD_CLOEXEC) != 0)
            fail("kept descriptor %d: %s", keep[i], strerror(errno));
    }
    if (await_fd >= 0) {
        char go = 0;
        ssize_t n;
        do n = read(await_fd, &go, 1); while (n < 0 && errno == EINTR);
        if (n != 1 || go != 'g') fail("start cancelled by the kernel");
        close(await_fd);
    }
    if (spare_filter.filter != NULL) {
        /* In its cgroup now ("go"): a cgroup namespace rooted there, so that
         * /proc/self/cgroup names no group of the kernel's (its Exo pid, the kernel's
         * host pid, how many commands the session ran), as bubblewrap's --unshare-cgroup
         * gives the launcher's processes; then the seccomp program. */
        if (unshare(CLONE_NEWCGROUP) != 0)
            fail("zygote: cgroup namespace: %s", strerror(errno));
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &spare_filter, 0, 0) != 0)
            fail("zygote: seccomp: %s", strerror(errno));
        free(spare_filter.filter);
        spare_filter.filter = NULL;
    }
    if (has_account) {
        uid_t id = (uid_t)account;
        gid_t gid = (gid_t)account_gid;
        /* The bounding set empty first (a spare's is already), so nothing below can ever
         * gain a capability. */
        drop_bounding_set();
        if (setgroups(0, NULL) != 0) fail("account: setgroups: %s", strerror(errno));
        if (setresgid(gid, gid, gid) != 0) fail("account: setresgid: %s", strerror(errno));
        if (setresuid(id, id, id) != 0) fail("account: setresuid: %s", strerror(errno));
        uid_t r, e, sv;
        if (getresuid(&r, &e, &sv) != 0 || r != id || e != id || sv != id)
            fail("account: still uid %u after setresuid", (unsigned)e);
        gid_t rg, eg, sg;
        if (getresgid(&rg, &eg, &sg) != 0 || rg != gid || eg != gid || sg != gid)
            fail("account: still gid %u after setresgid", (unsigned)eg);
        /* Changing every uid away from 0 cleared the permitted and effective sets; the
         * inheritable one is emptied here, the ambient one too. */
        struct { uint32_t version; int pid; } hdr = {0x20080522, 0};
        struct { uint32_t effective, permitted, inheritable; } data[2] = {{0, 0, 0}, {0, 0, 0}};
        if (syscall(SYS_capset, &hdr, data) != 0)
            fail("account: clear capabilities: %s", strerror(errno));
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
            fail("account: clear ambient capabilities: %s", strerror(errno));
    }
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 &&
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail("cannot set no_new_privs: %s", strerror(errno));
    if (ruleset >= 0) {
        if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0)
            fail("landlock: restrict self: %s", strerror(errno));
        close(ruleset);
    }

    for (int i = 0; i < nrlimits; i++)
        if (setrlimit(rlimits[i].resource, &rlimits[i].limit) != 0)
            fail("ulimit: resource %d: %s", rlimits[i].resource, strerror(errno));

    /* execvp searches PATH in the environment the target gets, as os.execvpe did. */
    environ = env;
    if (write(status_fd, "R", 1) != 1) _exit(127);
    execvp(target[0], target);
    int err = errno;
    exec_failed("%d cannot run '%s': %s", err, target[0], strerror(err));
    return 127;
}
