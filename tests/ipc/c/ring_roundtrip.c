/*
 * ring_roundtrip.c — two processes speak Fusion Rings through the protocol alone
 * (src/exo/ipc/fring.c, no Python): the proof that the protocol is usable from C.
 *
 * The parent creates two rings in memfds (requests parent -> child, replies child ->
 * parent) and a pool segment it owns, forks, and then:
 *   1. round-trips inline messages of every size 0..56 (the child echoes each back),
 *      starting just below the u32 wrap of the positions;
 *   2. sends a message carrying handles (the child echoes the handles);
 *   3. round-trips zero-copy descriptors: the payload is written once into the pool,
 *      the child reads it in place, replies with its checksum and hands the block back
 *      through the return queue, which the parent drains (every block must come back);
 *   4. publishes a forged slot: the child must reject it (FR_EPROTO) and go on;
 *   5. closes its end: the child sees FR_ECLOSED and exits.
 * Exit status 0 when every check passed; a failed check prints what and where.
 *
 * Built and run by tests/ipc/test_ipc_c_protocol.py:
 *   gcc -std=c11 -O2 -Wall -Wextra -Werror -Isrc/exo/ipc ring_roundtrip.c fring.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fring.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CAP 64u
#define POOL_SIZE (1u << 20)
#define BLOCK 4096u
#define ZC_ROUNDS 500u
#define TIMEOUT_NS (10LL * 1000000000LL) /* a lost message fails the test, never hangs it */

#define CHECK(cond)                                                                            \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__,               \
                    getpid() == parent_pid ? "parent" : "child", #cond);                      \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

static pid_t parent_pid;

static void *map_memfd(const char *name, size_t len) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
        return NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd); /* the mapping keeps the memory; fork shares it */
    return p == MAP_FAILED ? NULL : p;
}

static int64_t deadline(void) { return fr_now_ns() + TIMEOUT_NS; }

static uint64_t sum_bytes(const uint8_t *p, uint64_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: order-sensitive */
    for (uint64_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

/* The producer's allocator: fixed 4 KiB blocks, a free flag each (private memory). */
static uint8_t block_free_flag[POOL_SIZE / BLOCK];
static unsigned blocks_returned;

static void give_back(struct fr_end *e, uint64_t off, int returned) {
    (void)e;
    CHECK(off % BLOCK == 0 && off < POOL_SIZE && !block_free_flag[off / BLOCK]);
    block_free_flag[off / BLOCK] = 1;
    blocks_returned += returned != 0;
}

static const struct fr_hooks parent_hooks = {.give_back = give_back};

static uint64_t alloc_block(struct fr_end *e) {
    for (int spin = 0; spin < 2; spin++) {
        for (unsigned i = 0; i < POOL_SIZE / BLOCK; i++)
            if (block_free_flag[i]) {
                block_free_flag[i] = 0;
                return (uint64_t)i * BLOCK;
            }
        CHECK(fr_drain_returns(e) >= 0); /* what came back may be reused */
    }
    CHECK(!"pool exhausted");
    return 0;
}

/* ------------------------------------------------------------------ child: the echo */

static int child(void *req_mem, void *rep_mem, uint8_t *pool, int live_fd) {
    struct fr_end in = {0}, out = {0};
    CHECK(fr_attach(&in, req_mem, fr_ring_size(CAP), ROLE_CONSUMER, live_fd) == FR_OK);
    CHECK(fr_attach(&out, rep_mem, fr_ring_size(CAP), ROLE_PRODUCER, live_fd) == FR_OK);
    fr_set_pool(&in, pool, POOL_SIZE, NULL); /* a view of the parent's segment */
    int rejected = 0;
    for (;;) {
        fr_msg_t m;
        int rc = fr_recv(&in, &m, deadline());
        if (rc == FR_ECLOSED)
            break;
        if (rc == FR_EPROTO) { /* the forged slot: counted, skipped, the ring goes on */
            rejected++;
            continue;
        }
        CHECK(rc == FR_OK);
        struct fr_msg reply = {.flags = 0};
        uint64_t sum;
        if (m.zc) { /* read in place, reply with the checksum, hand the block back */
            CHECK(m.ptr == pool + m.off);
            sum = sum_bytes(m.ptr, m.len);
            fr_rq_push(&in, m.off);
            reply.src = (const uint8_t *)&sum;
            reply.size = sizeof sum;
        } else {
            reply.src = m.ptr;
            reply.size = (uint32_t)m.len;
        }
        CHECK(fr_send(&out, &reply, m.hv, m.nh, deadline()) == FR_OK);
    }
    CHECK(rejected == 1);
    CHECK(atomic_load(&in.hdr->rejected) == 1);
    return 0;
}

/* ------------------------------------------------------------------ parent: the driver */

static void expect_reply(struct fr_end *in, const void *data, uint32_t len, const uint32_t *hv,
                         int nh) {
    fr_msg_t m;
    CHECK(fr_recv(in, &m, deadline()) == FR_OK);
    CHECK(!m.zc && m.len == len && memcmp(m.ptr, data, len) == 0);
    CHECK(m.nh == nh && (nh == 0 || memcmp(m.hv, hv, (size_t)nh * 4) == 0));
}

int main(void) {
    parent_pid = getpid();
    fr_process_init();
    void *req = map_memfd("fr-req", fr_ring_size(CAP));
    void *rep = map_memfd("fr-rep", fr_ring_size(CAP));
    uint8_t *pool = map_memfd("fr-pool", POOL_SIZE);
    CHECK(req && rep && pool);
    /* positions start just below the u32 wrap: the round trips cross it */
    CHECK(fr_init_header(req, fr_ring_size(CAP), CAP, 0xFFFFFFF0u) == FR_OK);
    CHECK(fr_init_header(rep, fr_ring_size(CAP), CAP, 0xFFFFFFF8u) == FR_OK);
    int live[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, live) == 0);

    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(live[0]);
        _exit(child(req, rep, pool, live[1]));
    }
    close(live[1]);

    struct fr_end out = {.hooks = &parent_hooks}, in = {0};
    CHECK(fr_attach(&out, req, fr_ring_size(CAP), ROLE_PRODUCER, live[0]) == FR_OK);
    CHECK(fr_attach(&in, rep, fr_ring_size(CAP), ROLE_CONSUMER, live[0]) == FR_OK);
    uint64_t *out_bits = calloc(fr_out_words(POOL_SIZE), sizeof(uint64_t));
    CHECK(out_bits);
    fr_set_pool(&out, pool, POOL_SIZE, out_bits);
    memset(block_free_flag, 1, sizeof block_free_flag);

    /* 1. inline round trips, every size */
    uint8_t buf[FR_INLINE];
    for (unsigned round = 0; round < 4; round++)
        for (uint32_t n = 0; n <= FR_INLINE; n++) {
            for (uint32_t i = 0; i < n; i++)
                buf[i] = (uint8_t)(round * 131 + n * 7 + i);
            struct fr_msg m = {.flags = 0, .size = n, .src = buf};
            CHECK(fr_send(&out, &m, NULL, 0, deadline()) == FR_OK);
            expect_reply(&in, buf, n, NULL, 0);
        }

    /* 2. handles travel in HANDLES slots chained in front of the data */
    uint32_t hv[20];
    for (int i = 0; i < 20; i++)
        hv[i] = 1000u + (uint32_t)i;
    struct fr_msg hm = {.flags = 0, .size = 5, .src = (const uint8_t *)"hello"};
    CHECK(fr_send(&out, &hm, hv, 20, deadline()) == FR_OK);
    expect_reply(&in, "hello", 5, hv, 20);

    /* 3. zero-copy: descriptor out, checksum back, block back through the return queue */
    for (uint32_t k = 0; k < ZC_ROUNDS; k++) {
        uint64_t off = alloc_block(&out);
        uint64_t len = 57 + (k * 97) % (BLOCK - 57);
        for (uint64_t i = 0; i < len; i++)
            pool[off + i] = (uint8_t)(k + i * 31);
        struct fr_msg m = {.flags = F_ZC, .size = FR_DESC, .off = off, .len = len};
        CHECK(fr_send(&out, &m, NULL, 0, deadline()) == FR_OK);
        uint64_t want = sum_bytes(pool + off, len);
        expect_reply(&in, &want, sizeof want, NULL, 0);
    }
    /* the child pushed each return before its reply: all of them are in the queue */
    CHECK(fr_drain_returns(&out) >= 0);
    CHECK(blocks_returned == ZC_ROUNDS);
    CHECK(out.outstanding == 0 && out.returns_rejected == 0);

    /* 4. a forged slot (wrong sequence) is rejected by the consumer, not trusted */
    uint8_t *s = fr_slot_at(&out, out.pos);
    atomic_store((_Atomic uint64_t *)s, fr_slot_word(out.pos + 12345u, T_DATA, 0, 3));
    out.pos++;
    fr_publish(&out, 1);
    struct fr_msg after = {.flags = 0, .size = 5, .src = (const uint8_t *)"after"};
    CHECK(fr_send(&out, &after, NULL, 0, deadline()) == FR_OK);
    expect_reply(&in, "after", 5, NULL, 0);

    /* 5. an orderly close ends the child's loop */
    fr_announce_close(&out);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    fr_msg_t m;
    CHECK(fr_recv(&in, &m, fr_now_ns()) == FR_EDIED || fr_peer_gone(&in) != 0);
    free(out_bits);
    printf("ok: %u inline, 1 with handles, %u zero-copy round trips, 1 forged slot rejected\n",
           4 * (FR_INLINE + 1), ZC_ROUNDS);
    return 0;
}
