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
 *                            right after "R" means the exec succeeded), "E<message>" on error
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
 * Numbers are decimal. Any error is reported on the status fd and exits 127.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif
#define RULE_PATH_BENEATH 1
#define RULE_NET_PORT 2
#define MAX_KEEP 256

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
static int ruleset = -1;  /* the Landlock ruleset being built, enforced after the fds close */

static void fail(const char *fmt, ...) {
    char msg[1024] = "E";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + 1, sizeof msg - 1, fmt, ap);
    va_end(ap);
    if (status_fd >= 0 && write(status_fd, msg, strlen(msg)) < 0) {
        /* nothing more we can say */
    }
    _exit(127);
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

static uint64_t next_num(const char *what) {
    const char *s = next_str(what);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0') fail("stage 2 config: bad %s %s", what, s);
    return (uint64_t)v;
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
            int kept = fd <= 2 || fd == self || fd == status_fd || fd == ruleset;
            for (int i = 0; i < nkeep && !kept; i++) kept = fd == keep[i];
            if (!kept) victims[nvictims++] = fd;
        }
        closedir(dir);
        if (nvictims == 0) return;
        for (int i = 0; i < nvictims; i++) close(victims[i]);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: exo-stage2 CONFIG_FD (run by the Exo sandbox launcher)\n");
        return 2;
    }
    read_config(atoi(argv[1]));

    if (strcmp(next_str("record"), "status") != 0) fail("stage 2 config: status first");
    status_fd = (int)next_num("status fd");
    if (fcntl(status_fd, F_SETFD, FD_CLOEXEC) != 0) fail("status fd: %s", strerror(errno));

    int keep[MAX_KEEP], nkeep = 0;
    uint64_t filemask = 0;
    char **target = NULL, **env = NULL;
    while (cfg_pos < cfg_len) {
        const char *tag = next_str("record");
        if (strcmp(tag, "keep") == 0) {
            if (nkeep == MAX_KEEP) fail("too many kept descriptors");
            keep[nkeep++] = (int)next_num("keep fd");
        } else if (strcmp(tag, "ruleset") == 0) {
            struct ruleset_attr attr = {0};
            attr.handled_access_fs = next_num("handled fs");
            attr.handled_access_net = next_num("handled net");
            attr.scoped = next_num("scoped");
            size_t size = (size_t)next_num("attr size");
            filemask = next_num("file mask");
            if (size > sizeof attr) fail("landlock: attribute size %zu", size);
            ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
            if (ruleset < 0) fail("landlock: create ruleset: %s", strerror(errno));
        } else if (strcmp(tag, "path") == 0 || strcmp(tag, "port") == 0) {
            if (ruleset < 0) fail("stage 2 config: %s before ruleset", tag);
            uint64_t access = next_num("access");
            if (tag[1] == 'o') { /* port */
                struct net_port_attr rule = {access, next_num("port")};
                if (syscall(SYS_landlock_add_rule, ruleset, RULE_NET_PORT, &rule, 0) != 0)
                    fail("landlock: port %llu: %s", (unsigned long long)rule.port,
                         strerror(errno));
                continue;
            }
            const char *path = next_str("path");
            int fd = open(path, O_PATH | O_CLOEXEC);
            if (fd < 0) fail("landlock: %s: %s", path, strerror(errno));
            struct stat st;
            if (fstat(fd, &st) != 0) fail("landlock: %s: %s", path, strerror(errno));
            if (!S_ISDIR(st.st_mode)) access &= filemask;
            struct path_beneath_attr rule = {access, fd};
            if (access != 0 && syscall(SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH,
                                       &rule, 0) != 0)
                fail("landlock: %s: %s", path, strerror(errno));
            close(fd);
        } else if (strcmp(tag, "argv") == 0 || strcmp(tag, "env") == 0) {
            uint64_t n = next_num("count");
            if (n > cfg_len) fail("stage 2 config: bad %s count", tag);
            char **list = calloc((size_t)n + 1, sizeof *list);
            if (list == NULL) fail("stage 2: out of memory");
            for (uint64_t i = 0; i < n; i++) list[i] = (char *)next_str(tag);
            *(tag[0] == 'a' ? &target : &env) = list;
        } else {
            fail("stage 2 config: unknown record %s", tag);
        }
    }
    if (target == NULL || target[0] == NULL || env == NULL)
        fail("stage 2 config: no argv or env");

    close_inherited(keep, nkeep);
    for (int i = 0; i < nkeep; i++) {
        int flags = fcntl(keep[i], F_GETFD);
        if (flags < 0 || fcntl(keep[i], F_SETFD, flags & ~FD_CLOEXEC) != 0)
            fail("kept descriptor %d is not open", keep[i]);
    }
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1 &&
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail("cannot set no_new_privs: %s", strerror(errno));
    if (ruleset >= 0) {
        if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0)
            fail("landlock: restrict self: %s", strerror(errno));
        close(ruleset);
    }

    /* execvp searches PATH in the environment the target gets, as os.execvpe did. */
    environ = env;
    if (write(status_fd, "R", 1) != 1) _exit(127);
    execvp(target[0], target);
    fail("exec '%s': %s (errno %d)", target[0], strerror(errno), errno);
    return 127;
}
