/* The floor of a confined pipeline when the process that forks its stages is C, not
 * Python (bench/shell_floor.py's c_* modes): reads pipelines, one a line, on stdin
 * ("PROG ARG... | PROG ARG...", words split on spaces, no quoting), forks one child per
 * stage wired with pipes, waits for all of them and writes "__done__\n". Each child, by
 * MODE:
 *   c_exec      nothing: exec
 *   c_confined  Landlock (read and execute beneath /usr, read beneath /etc, read of the
 *               one granted file: the first stage's last argument, /etc/hostname for the
 *               others; every other filesystem right refused), no_new_privs and the
 *               seccomp program in FILTER (Exo's, raw struct sock_filter[]), then exec
 *   c_isolated  first what a zygote spare does for a command (mount, IPC and network
 *               namespaces of its own, the loopback up, a /proc mounted
 *               hidepid=invisible, a read-only bind of the granted file), then as
 *               c_confined
 * Usage: pipeline_floor MODE FILTER (root for c_isolated). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_STAGES 16
#define MAX_ARGS 32
#define READ_FILE (1ULL << 2)
#define READ_DIR (1ULL << 3)
#define EXECUTE (1ULL << 0)
#define HANDLED ((1ULL << 16) - 1) /* every filesystem right of ABI >= 5 */

struct beneath { uint64_t access; int32_t fd; } __attribute__((packed));

static struct sock_fprog filter;

static void check(long rc, const char *what) {
    if (rc < 0) {
        perror(what);
        _exit(126);
    }
}

static void isolate(const char *granted) {
    check(unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET), "unshare");
    check(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "private");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    check(ioctl(s, SIOCGIFFLAGS, &ifr), "SIOCGIFFLAGS");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    check(ioctl(s, SIOCSIFFLAGS, &ifr), "SIOCSIFFLAGS");
    close(s);
    check(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "hidepid=invisible"), "proc");
    check(mount(granted, granted, NULL, MS_BIND, NULL), "bind");
    check(mount(NULL, granted, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), "ro");
}

static void confine(const char *granted) {
    uint64_t attr = HANDLED;
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    check(rs, "landlock_create_ruleset");
    const char *paths[] = {"/usr", "/etc", granted};
    const uint64_t rights[] = {READ_FILE | READ_DIR | EXECUTE, READ_FILE | READ_DIR,
                               READ_FILE};
    for (int i = 0; i < 3; i++) {
        struct beneath rule = {rights[i], open(paths[i], O_PATH | O_CLOEXEC)};
        check(rule.fd, paths[i]);
        check(syscall(SYS_landlock_add_rule, rs, 1, &rule, 0), "landlock_add_rule");
        close(rule.fd);
    }
    check(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
    check(syscall(SYS_landlock_restrict_self, rs, 0), "landlock_restrict_self");
    close(rs);
    check(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0), "seccomp");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: pipeline_floor c_exec|c_confined|c_isolated FILTER\n");
        return 2;
    }
    const char *mode = argv[1];
    int isolated = strcmp(mode, "c_isolated") == 0;
    int confined = isolated || strcmp(mode, "c_confined") == 0;
    FILE *f = fopen(argv[2], "rb");
    if (f == NULL) { perror(argv[2]); return 1; }
    static struct sock_filter prog[4096];
    size_t n = fread(prog, sizeof *prog, 4096, f);
    fclose(f);
    filter.len = (unsigned short)n;
    filter.filter = prog;

    char line[4096];
    while (fgets(line, sizeof line, stdin) != NULL) {
        char *stages[MAX_STAGES];
        int nstages = 0;
        for (char *save = NULL, *s = strtok_r(line, "|\n", &save);
             s != NULL && nstages < MAX_STAGES; s = strtok_r(NULL, "|\n", &save))
            stages[nstages++] = s;
        pid_t pids[MAX_STAGES];
        int prev = -1;
        for (int i = 0; i < nstages; i++) {
            char *args[MAX_ARGS + 1];
            int nargs = 0;
            for (char *save = NULL, *w = strtok_r(stages[i], " ", &save);
                 w != NULL && nargs < MAX_ARGS; w = strtok_r(NULL, " ", &save))
                args[nargs++] = w;
            args[nargs] = NULL;
            int last = i == nstages - 1, p[2] = {-1, -1};
            if (!last && pipe2(p, O_CLOEXEC) != 0) { perror("pipe"); return 1; }
            pids[i] = fork();
            if (pids[i] == 0) {
                if (prev >= 0) dup2(prev, 0);
                if (!last) dup2(p[1], 1);
                char granted[PATH_MAX];
                if (i == 0 && nargs > 1) {
                    if (realpath(args[nargs - 1], granted) == NULL) check(-1, "realpath");
                } else {
                    strcpy(granted, "/etc/hostname");
                }
                if (isolated) isolate(granted);
                if (confined) confine(granted);
                execv(args[0], args);
                _exit(127);
            }
            if (prev >= 0) close(prev);
            if (!last) { close(p[1]); prev = p[0]; }
        }
        for (int i = 0; i < nstages; i++) waitpid(pids[i], NULL, 0);
        fputs("__done__\n", stdout);
        fflush(stdout);
    }
    return 0;
}
