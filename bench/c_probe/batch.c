/* The physical limit of the Fusion Ring's slot layout for a stream of small messages:
 * two processes, a 256-slot ring of 64-byte slots in shared memory, the producer
 * writing batches of 16 x 56-byte messages (first slot last, one release store of
 * `tail`), the consumer taking everything published (one release store of `head`)
 * and copying every payload out.  No Python, no wake-ups: both sides spin.  Every
 * message is one cache line that moves from the producer's core to the consumer's,
 * so this is what the Python ring is measured against.  Prints JSON. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CAP 256u
#define BATCH 16u
#define INLINE 56u

struct ring {
    _Alignas(64) _Atomic uint32_t tail;
    _Alignas(64) _Atomic uint32_t head;
    _Alignas(64) uint8_t slots[CAP][64];
};

static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t word(uint32_t pos) {
    return (uint64_t)pos | (1ull << 32) | ((uint64_t)INLINE << 48); /* DATA, 56 bytes */
}

int main(int argc, char **argv) {
    long batches = argc > 1 ? atol(argv[1]) : 2000000;
    struct ring *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                          -1, 0);
    if (r == MAP_FAILED)
        return 1;
    for (uint32_t i = 0; i < CAP; i++) /* a sequence no position matches yet */
        memcpy(r->slots[i], &(uint64_t){(uint64_t)(uint32_t)(i - CAP)}, 8);
    pid_t pid = fork();
    if (pid == 0) { /* consumer */
        static uint8_t out[65536];
        uint64_t total = (uint64_t)batches * BATCH, got = 0, warm = total / 5, t0 = 0;
        uint32_t pos = 0;
        while (got < total) {
            uint32_t n = 0;
            for (;;) {
                uint8_t *s = r->slots[pos & (CAP - 1)];
                uint64_t w = atomic_load_explicit((_Atomic uint64_t *)s, memory_order_acquire);
                if ((uint32_t)w != pos || n == 1024)
                    break;
                memcpy(out + INLINE * (n & 1023), s + 8, INLINE);
                pos++;
                n++;
            }
            if (!n) {
                __builtin_ia32_pause();
                continue;
            }
            atomic_store_explicit(&r->head, pos, memory_order_release);
            got += n;
            if (!t0 && got >= warm) {
                t0 = now_ns();
                warm = got;
            }
        }
        printf("{\"batch16_msgs_per_s\": %.0f, \"batches\": %ld}\n",
               (double)(total - warm) / ((double)(now_ns() - t0) / 1e9), batches);
        fflush(stdout);
        _exit(0);
    }
    uint8_t src[BATCH * INLINE];
    memset(src, 0x5a, sizeof src);
    uint32_t pos = 0, head = 0;
    for (long b = 0; b < batches; b++) {
        while (pos - head + BATCH > CAP) {
            head = atomic_load_explicit(&r->head, memory_order_acquire);
            __builtin_ia32_pause();
        }
        for (uint32_t i = 1; i <= BATCH; i++) { /* the first slot last */
            uint32_t k = i % BATCH;
            uint8_t *s = r->slots[(pos + k) & (CAP - 1)];
            memcpy(s + 8, src + INLINE * k, INLINE);
            atomic_store_explicit((_Atomic uint64_t *)s, word(pos + k), memory_order_release);
        }
        pos += BATCH;
        atomic_store_explicit(&r->tail, pos, memory_order_release);
    }
    waitpid(pid, NULL, 0);
    return 0;
}
