/* What a seccomp filter costs a syscall, by itself: getpid, pread of 64 bytes of a cached
 * file and write of 64 bytes to /dev/null, timed (best of 5 runs of N calls) after
 * installing the filter named on the command line:
 *   none       no filter (what plain bubblewrap runs under)
 *   allow      one instruction, RET_ALLOW: every syscall is in the kernel's action
 *              cache, so the program never runs; what remains is the entry's slow path
 *   FILE       the raw struct sock_filter array in FILE (Exo's own filter), once
 *   FILE,FILE  that, then another (POSIX-X's second, the broker's, filter)
 * Prints JSON: {"getpid": ns, "pread_64": ns, "write_64": ns}. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void install(struct sock_filter *prog, unsigned short len) {
    struct sock_fprog fprog = {len, prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog)) {
        perror("seccomp");
        exit(2);
    }
}

static void install_file(const char *path) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || st.st_size == 0 || st.st_size % sizeof(struct sock_filter)) {
        fprintf(stderr, "%s: not a BPF program\n", path);
        exit(2);
    }
    struct sock_filter *prog = malloc(st.st_size);
    if (!prog || read(fd, prog, st.st_size) != st.st_size) exit(2);
    close(fd);
    install(prog, st.st_size / sizeof(struct sock_filter));
}

#define BEST(var, n, body) do { double best = 1e18; for (int r = 0; r < 5; r++) { \
    double t0 = now(); for (long i = 0; i < (n); i++) { body; } \
    double d = (now() - t0) / (n); if (d < best) best = d; } var = best; } while (0)

int main(int argc, char **argv) {
    char buf[64] = {0};
    int file = open("/etc/ld.so.cache", O_RDONLY), null = open("/dev/null", O_WRONLY);
    if (argc != 2 || file < 0 || null < 0) return 2;
    if (strcmp(argv[1], "allow") == 0) {
        struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
        install(allow, 1);
    } else if (strcmp(argv[1], "none") != 0) {
        for (char *path = strtok(argv[1], ","); path; path = strtok(NULL, ","))
            install_file(path);
    }
    double getpid_ns, pread_ns, write_ns;
    BEST(getpid_ns, 200000, syscall(SYS_getpid));
    BEST(pread_ns, 200000, if (pread(file, buf, 64, 0) != 64) return 1);
    BEST(write_ns, 200000, if (write(null, buf, 64) != 64) return 1);
    printf("{\"getpid\": %.1f, \"pread_64\": %.1f, \"write_64\": %.1f}\n", getpid_ns, pread_ns,
           write_ns);
    return 0;
}
