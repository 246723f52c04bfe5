/*
 * fring.c — the Fusion Ring protocol (see fring.h), without Python.
 *
 * Every function here works on one end's private state (struct fr_end) and the shared
 * mapping; nothing here allocates, and nothing read from the mapping is used before it
 * is validated.  The CPython binding (_fring.c) is a thin layer over these calls.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fring.h"

#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static int futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t ns) {
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    /* shared (not PRIVATE) futex: the word lives in a mapping shared between processes */
    return (int)syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static inline void hook_block(struct fr_end *e) {
    if (e->hooks && e->hooks->block)
        e->hooks->block(e);
}
static inline void hook_unblock(struct fr_end *e) {
    if (e->hooks && e->hooks->unblock)
        e->hooks->unblock(e);
}
static inline int hook_interrupted(struct fr_end *e) {
    return e->hooks && e->hooks->interrupted && e->hooks->interrupted(e);
}
static inline void hook_give_back(struct fr_end *e, uint64_t off, int returned) {
    if (e->hooks && e->hooks->give_back)
        e->hooks->give_back(e, off, returned);
}

static int proto_error(struct fr_end *e, const char *fmt, unsigned long long a,
                       unsigned long long b, unsigned long long c) {
    snprintf(e->err, sizeof e->err, fmt, a, b, c);
    return FR_EPROTO;
}

/* The peer is gone when it said so (its closed flag) or when its end of the liveness
 * socket is closed (the kernel closes it when the process dies, however it dies). */
int fr_peer_gone(const struct fr_end *e) {
    _Atomic uint32_t *flag = e->role == ROLE_CONSUMER ? &e->hdr->prod_closed : &e->hdr->cons_closed;
    if (atomic_load_explicit(flag, memory_order_acquire))
        return FR_ECLOSED;
    if (e->live_fd >= 0) {
        struct pollfd p = {.fd = e->live_fd, .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)))
            return FR_EDIED;
    }
    return 0;
}

/* ------------------------------------------------------------------ the wake-up fence */

/* The wake-up handshake is Dekker's: the waker stores the index then loads the peer's
 * `sleeping` flag, the sleeper stores its flag then loads the index, and each side needs
 * a full fence between its store and its load.  The waker's side runs on every publish
 * and every consume, the sleeper's only before going to sleep, so the cost is moved
 * (Linux membarrier(2), MEMBARRIER_CMD_GLOBAL_EXPEDITED): the waker keeps only a
 * compiler barrier, and the sleeper, after raising its flag, makes every CPU that runs
 * a registered process execute a full barrier.  Then either the waker's index store
 * was made visible before the sleeper reads the index, or the waker's flag load comes
 * after that barrier and sees the flag (a waker not running at that moment went through
 * a context switch, itself a full barrier).  The fence left out of every publish was
 * measured at ~25 % of a 16-message batch's cost: the store buffer had to drain the
 * batch's cache-line transfers before the producer could go on.
 * Both ends of a ring must be registered: the creator records FRF_MEMBARRIER in the
 * header when its process is, and an end that cannot register refuses to attach. */
static int fr_membarrier; /* this process receives MEMBARRIER_CMD_GLOBAL_EXPEDITED barriers */
static int fr_use_membarrier = 1; /* new rings use it when possible (tests turn it off) */

static void register_membarrier(void) {
    long mask = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    fr_membarrier = mask > 0 && (mask & MEMBARRIER_CMD_GLOBAL_EXPEDITED) &&
                    (mask & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) &&
                    syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0) == 0;
}

int fr_process_init(void) {
    static int installed;
    register_membarrier();
    if (!installed) {
        installed = 1;
        /* the registration is per process: a fork child registers again */
        pthread_atfork(NULL, NULL, register_membarrier);
    }
    return fr_membarrier;
}

int fr_membarrier_ready(void) { return fr_membarrier; }

int fr_set_use_membarrier(int flag) {
    int old = fr_use_membarrier;
    fr_use_membarrier = flag;
    return old;
}

/* Who pays for the fence adapts to the traffic.  membarrier costs the sleeper an
 * interrupt to every other CPU running a registered process (~2.5 us here, in a VM);
 * a fence costs the waker ~50-150 ns per publish.  A sleeper that sleeps after almost
 * every message (a round trip with a busy third process on the machine: both ends sleep
 * at every message) asks the waker to fence again: it raises an epoch in its `heavy`
 * word; the waker, seeing it, fences and acknowledges the epoch in its `ack` word; once
 * the sleeper sees its epoch acknowledged, every publish from then on fences (and every
 * earlier one is visible: the acknowledgement is a release store after them), so a
 * plain fence is enough on its side again.  Until then, and whenever it is not heavy,
 * the sleeper uses membarrier.  Heavy below 64 waker calls per sleep (on average), light
 * again above 1024. */
static int fr_adaptive = 1; /* tests pin the light mode to exercise membarrier sleeps */

int fr_set_adaptive_fence(int flag) {
    int old = fr_adaptive;
    fr_adaptive = flag;
    return old;
}

static inline _Atomic uint32_t *peer_heavy(struct fr_end *e) {
    return e->role == ROLE_PRODUCER ? &e->hdr->cons_heavy : &e->hdr->prod_heavy;
}
static inline _Atomic uint32_t *my_heavy_word(struct fr_end *e) {
    return e->role == ROLE_PRODUCER ? &e->hdr->prod_heavy : &e->hdr->cons_heavy;
}
static inline _Atomic uint32_t *my_ack_word(struct fr_end *e) {
    return e->role == ROLE_PRODUCER ? &e->hdr->prod_ack : &e->hdr->cons_ack;
}
static inline _Atomic uint32_t *peer_ack_word(struct fr_end *e) {
    return e->role == ROLE_PRODUCER ? &e->hdr->cons_ack : &e->hdr->prod_ack;
}

/* The waker's half of the handshake's fence (after its index store, before its load of
 * the peer's sleeping flag). */
static inline void waker_fence(struct fr_end *e) {
    if (!e->light_fence) {
        atomic_thread_fence(memory_order_seq_cst);
        return;
    }
    uint32_t ep = atomic_load_explicit(peer_heavy(e), memory_order_relaxed);
    if (ep) {
        if (ep != e->acked) {
            e->acked = ep;
            atomic_store_explicit(my_ack_word(e), ep, memory_order_release);
        }
        atomic_thread_fence(memory_order_seq_cst);
    } else {
        atomic_signal_fence(memory_order_seq_cst); /* the sleeper's membarrier does the rest */
    }
}

/* Before a sleep: count the waker's calls since the last one and pick the mode. */
static void choose_fence_mode(struct fr_end *e) {
    _Atomic uint64_t *calls =
        e->role == ROLE_CONSUMER ? &e->hdr->sent_batches : &e->hdr->recv_batches;
    uint64_t now = atomic_load_explicit(calls, memory_order_relaxed), d = now - e->calls_mark;
    e->calls_mark = now;
    e->calls_avg = (3 * e->calls_avg + (d < (1u << 20) ? d : (1u << 20))) / 4;
    if (!e->my_heavy && fr_adaptive && e->calls_avg < 64) {
        if (++e->epoch == 0)
            e->epoch = 1;
        e->my_heavy = e->epoch;
        atomic_store_explicit(my_heavy_word(e), e->my_heavy, memory_order_seq_cst);
    } else if (e->my_heavy && (e->calls_avg > 1024 || !fr_adaptive)) {
        e->my_heavy = 0;
        atomic_store_explicit(my_heavy_word(e), 0, memory_order_seq_cst);
    }
}

/* The sleeper's half: its flag is up; make it visible to every waker's next load.
 * Returns 0 if the barrier could not be issued (a seccomp filter installed after the
 * registration): the caller then sleeps in 1 ms ticks, so a wake-up it misses is late
 * by at most 1 ms instead of a whole tick. */
static int sleeper_fence(struct fr_end *e) {
    atomic_thread_fence(memory_order_seq_cst);
    if (!e->light_fence)
        return 1;
    if (e->my_heavy &&
        atomic_load_explicit(peer_ack_word(e), memory_order_acquire) == e->my_heavy)
        return 1; /* the waker fences now */
    return syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

/* Each end announces the CPU it runs on (a store only when it changes; sched_getcpu is
 * a load from the rseq area).  A waiter whose peer last ran on the waiter's own CPU does
 * not spin: the peer cannot make progress while we hold that CPU, so spinning only
 * delays it (on this 2-core machine with a busy third process, a 5 us spin on each side
 * of a round trip made it 18 us instead of 7).  On separate CPUs spinning is what makes
 * a round trip ~1 us. */
static inline void note_cpu(struct fr_end *e) {
    uint32_t c = (uint32_t)sched_getcpu();
    if (c != e->my_cpu) {
        e->my_cpu = c;
        atomic_store_explicit(e->role == ROLE_PRODUCER ? &e->hdr->prod_cpu : &e->hdr->cons_cpu, c,
                              memory_order_relaxed);
    }
}

static inline int peer_on_my_cpu(struct fr_end *e) {
    _Atomic uint32_t *peer = e->role == ROLE_PRODUCER ? &e->hdr->cons_cpu : &e->hdr->prod_cpu;
    return atomic_load_explicit(peer, memory_order_relaxed) == e->my_cpu;
}

/* ------------------------------------------------------------------ waits */

/* How recent a "peer alive" from the liveness socket lets a wait's first sleep skip the
 * check (wait_change). */
#define FR_LIVE_FRESH_NS (1000000LL)

/* Wait until *word != v (or, for a consumer, the slot `slotw` is ready for `expect`).
 * Spin (short), then yield, then sleep on the futex in ticks, every phase inside the
 * embedder's block/unblock hooks; between ticks check the interrupt hook, the deadline
 * and the peer. */
static int wait_change(struct fr_end *e, _Atomic uint32_t *word, uint32_t v,
                       _Atomic uint32_t *sleeping, int64_t deadline, _Atomic uint64_t *sleeps,
                       _Atomic uint64_t *tmo, _Atomic uint64_t *slotw, uint32_t expect) {
    if (atomic_load_explicit(word, memory_order_acquire) != v || fr_slot_ready(slotw, expect))
        return FR_OK;
    note_cpu(e);
    /* Every phase of the wait runs inside block/unblock (the binding: GIL released), the
     * spin included: what it waits on is shared memory the peer controls, and a peer
     * that never delivers (or flips an index back and forth) must not stall this
     * process's other threads. */
    int changed = 0;
    hook_block(e);
    if (deadline == INT64_MAX || deadline > fr_now_ns()) {
        if (e->spin_ns > 0 && !peer_on_my_cpu(e)) {
            /* A producer waiting for room polls `head`, the line the consumer writes at
             * every receive: each poll takes the line away from the consumer, whose next
             * store must fetch it back.  It backs off (up to 16 pauses between polls);
             * a consumer waiting for data polls tightly (the round-trip latency). */
            unsigned gap = 1, cap = e->role == ROLE_PRODUCER ? 16 : 1;
            int64_t t0 = fr_now_ns();
            for (unsigned i = 1;; i++) {
                for (unsigned k = 0; k < gap; k++)
                    fr_cpu_relax();
                if (atomic_load_explicit(word, memory_order_acquire) != v ||
                    fr_slot_ready(slotw, expect)) {
                    changed = 1;
                    break;
                }
                if (gap < cap)
                    gap *= 2;
                if ((i & 7) == 0 && fr_now_ns() - t0 > e->spin_ns)
                    break;
            }
        }
    }
    for (int i = 0; !changed && i < e->yields; i++) {
        sched_yield();
        if (atomic_load_explicit(word, memory_order_acquire) != v)
            changed = 1;
    }
    hook_unblock(e);
    if (changed)
        return FR_OK;
    /* The flag stays up across ticks: one (membarrier) fence per sleep, not per tick.
     * A waker that sees it takes it down (and wakes us): then it is raised again. */
    int rc, fenced = 0;
    for (int tick = 0;; tick++) {
        /* The liveness socket's poll(2) is a system call: before the first sleep of a
         * wait it is skipped when it said "alive" within the last FR_LIVE_FRESH_NS (a
         * round trip whose ends share one CPU sleeps at every message, and paid it each
         * time).  A peer that died since is found at the end of this tick instead (the
         * check comes before the deadline's: a dead peer is still reported as such), as
         * one dying while we sleep always was: the bound on noticing a death is
         * unchanged.  A wait that will not sleep (deadline passed) checks at once. */
        int64_t now = fr_now_ns();
        int g;
        if (tick == 0 && e->live_fd >= 0 && now < deadline && now - e->live_ns < FR_LIVE_FRESH_NS) {
            _Atomic uint32_t *flag =
                e->role == ROLE_CONSUMER ? &e->hdr->prod_closed : &e->hdr->cons_closed;
            g = atomic_load_explicit(flag, memory_order_acquire) ? FR_ECLOSED : 0;
        } else {
            g = fr_peer_gone(e);
            if (!g)
                e->live_ns = now;
        }
        if (g) {
            rc = g;
            break;
        }
        if (now >= deadline) {
            rc = FR_ETIMEDOUT;
            break;
        }
        int64_t ns = deadline - now;
        if (ns > e->tick_ns)
            ns = e->tick_ns;
        int timed_out = 0;
        hook_block(e);
        if (!fenced || !atomic_load_explicit(sleeping, memory_order_relaxed)) {
            if (e->light_fence)
                choose_fence_mode(e);
            atomic_store_explicit(sleeping, 1, memory_order_seq_cst);
            fenced = sleeper_fence(e);
        }
        if (!fenced && ns > 1000000)
            ns = 1000000;
        if (atomic_load_explicit(word, memory_order_seq_cst) != v) {
            changed = 1;
        } else {
            fr_add_stat(sleeps, 1);
            /* the kernel compares *word with v atomically with queueing us: a store
             * made after our check makes futex_wait return EAGAIN at once */
            if (futex_wait(word, v, ns) != 0 && errno == ETIMEDOUT)
                timed_out = 1;
            if (atomic_load_explicit(word, memory_order_acquire) != v)
                changed = 1;
        }
        hook_unblock(e);
        if (changed) {
            rc = FR_OK;
            break;
        }
        if (timed_out)
            fr_add_stat(tmo, 1);
        if (hook_interrupted(e)) {
            rc = FR_EINTR;
            break;
        }
    }
    atomic_store_explicit(sleeping, 0, memory_order_relaxed);
    return rc;
}

/* A waiter whose index keeps changing without bringing what it waits for (a peer
 * flipping `tail` or `head` back and forth) would loop as fast as the peer flips: after
 * FR_SPURIOUS such changes it sleeps 1 ms (inside block/unblock) and checks its
 * deadline, the interrupt hook and the peer, so the peer controls neither its CPU use
 * nor its timeout. */
static int throttle(struct fr_end *e, int *spurious, int64_t deadline) {
    if (++*spurious < FR_SPURIOUS)
        return FR_OK;
    *spurious = 0;
    if (fr_now_ns() >= deadline)
        return FR_ETIMEDOUT;
    int g = fr_peer_gone(e);
    if (g)
        return g;
    hook_block(e);
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    hook_unblock(e);
    if (hook_interrupted(e))
        return FR_EINTR;
    return FR_OK;
}

/* ------------------------------------------------------------------ setup */

int fr_init_header(void *mem, uint64_t len, uint32_t cap, uint32_t start) {
    if (cap == 0 || cap > FR_MAX_CAP || (cap & (cap - 1)) || len < fr_ring_size(cap))
        return -1;
    memset(mem, 0, fr_ring_size(cap));
    struct fr_hdr *h = (struct fr_hdr *)mem;
    h->version = FR_VERSION;
    h->capacity = cap;
    h->rq_cap = rq_cap_for(cap);
    h->slot_size = FR_SLOT;
    h->header_size = FR_HDR;
    h->creator_pid = (uint32_t)getpid();
    h->features = fr_membarrier && fr_use_membarrier ? FRF_MEMBARRIER : 0;
    atomic_store_explicit(&h->tail, start, memory_order_relaxed);
    atomic_store_explicit(&h->head, start, memory_order_relaxed);
    atomic_store_explicit(&h->prod_cpu, UINT32_MAX, memory_order_relaxed);
    atomic_store_explicit(&h->cons_cpu, UINT32_MAX, memory_order_relaxed);
    /* slots start with a sequence that can never match: position - capacity */
    for (uint32_t i = 0; i < cap; i++) {
        uint32_t p = start + i;
        uint8_t *s = (uint8_t *)mem + FR_HDR + (size_t)(p & (cap - 1)) * FR_SLOT;
        uint64_t w = fr_slot_word(p - cap, 0, 0, 0);
        memcpy(s, &w, 8);
    }
    atomic_thread_fence(memory_order_release);
    h->magic = FR_MAGIC; /* last: a half-initialised mapping is never accepted */
    return FR_OK;
}

int fr_attach(struct fr_end *e, void *mem, uint64_t len, int role, int live_fd) {
    const struct fr_hooks *hooks = e->hooks;
    void *user = e->user;
    memset(e, 0, sizeof *e);
    e->hooks = hooks;
    e->user = user;
    e->live_fd = -1;
    struct fr_hdr *h = (struct fr_hdr *)mem;
    if ((uintptr_t)h % 64 || len < (uint64_t)FR_HDR || h->magic != FR_MAGIC ||
        h->version != FR_VERSION || h->slot_size != FR_SLOT || h->header_size != FR_HDR ||
        h->capacity == 0 || h->capacity > FR_MAX_CAP || (h->capacity & (h->capacity - 1)) ||
        h->rq_cap != rq_cap_for(h->capacity) ||
        len < (uint64_t)FR_HDR + (uint64_t)h->capacity * FR_SLOT + (uint64_t)h->rq_cap * 8)
        return proto_error(e, "not a Fusion Ring (bad magic, version, geometry or size)", 0, 0, 0);
    if (h->features & ~FRF_MEMBARRIER)
        return proto_error(e, "ring uses unknown protocol features 0x%llx", h->features, 0, 0);
    if ((h->features & FRF_MEMBARRIER) && !fr_membarrier)
        register_membarrier();
    if ((h->features & FRF_MEMBARRIER) && !fr_membarrier)
        return FR_ENOMEMBARRIER;
    e->light_fence = (h->features & FRF_MEMBARRIER) != 0;
    {
        /* continue the mode and epochs of whoever held this end before */
        _Atomic uint32_t *mine = role == ROLE_PRODUCER ? &h->prod_heavy : &h->cons_heavy;
        _Atomic uint32_t *seen = role == ROLE_PRODUCER ? &h->cons_ack : &h->prod_ack;
        _Atomic uint32_t *ack = role == ROLE_PRODUCER ? &h->prod_ack : &h->cons_ack;
        e->my_heavy = atomic_load_explicit(mine, memory_order_relaxed);
        uint32_t a = atomic_load_explicit(seen, memory_order_relaxed);
        e->epoch = e->my_heavy > a ? e->my_heavy : a;
        e->acked = atomic_load_explicit(ack, memory_order_relaxed);
        _Atomic uint64_t *calls = role == ROLE_CONSUMER ? &h->sent_batches : &h->recv_batches;
        e->calls_mark = atomic_load_explicit(calls, memory_order_relaxed);
        e->calls_avg = 1024;
    }
    e->hdr = h;
    e->slots = (uint8_t *)h + FR_HDR;
    e->cap = h->capacity; /* geometry read once, validated above, then never again */
    e->mask = h->capacity - 1;
    e->rq_cap = rq_cap_for(e->cap);
    e->rq_mask = e->rq_cap - 1;
    e->rq = (_Atomic uint64_t *)(e->slots + (size_t)e->cap * FR_SLOT);
    e->ret_idx = atomic_load_explicit(role == ROLE_PRODUCER ? &h->ret_head : &h->ret_tail,
                                      memory_order_acquire);
    e->role = role;
    e->live_fd = live_fd;
    e->zc_window = FR_ZC_WINDOW;
    e->zc_pending = 0;
    e->my_cpu = UINT32_MAX; /* announced at the first publish, consume or wait */
    if (role == ROLE_PRODUCER) {
        e->pos = atomic_load_explicit(&h->tail, memory_order_acquire);
        e->cached = atomic_load_explicit(&h->head, memory_order_acquire);
        e->zc_sent = atomic_load_explicit(&h->sent_zc_bytes, memory_order_relaxed);
        e->zc_seen = atomic_load_explicit(&h->recv_zc_bytes, memory_order_relaxed);
        atomic_store_explicit(&h->prod_pid, (uint32_t)getpid(), memory_order_relaxed);
    } else {
        e->pos = atomic_load_explicit(&h->head, memory_order_acquire);
        e->cached = e->pos;
        atomic_store_explicit(&h->cons_pid, (uint32_t)getpid(), memory_order_relaxed);
    }
    e->spin_ns = 5000; /* measured: 5 us covers a round trip, yet gives way under oversubscription */
    e->spin_min_ns = 5000;
    e->spin_max_ns = 0;
    e->yields = 0;
    e->tick_ns = 25 * 1000000LL; /* peer-death bound vs idle wake-ups (each ~50 us here) */
    return FR_OK;
}

void fr_set_pool(struct fr_end *e, uint8_t *base, uint64_t len, uint64_t *out_bits) {
    e->pool_base = base;
    e->pool_len = len;
    e->has_pool = 1;
    if (e->role == ROLE_PRODUCER && out_bits) {
        e->out_bits = out_bits;
        e->out_words = fr_out_words(len);
        e->outstanding = 0;
    }
}

void fr_announce_close(struct fr_end *e) {
    struct fr_hdr *h = e->hdr;
    if (e->role == ROLE_PRODUCER) {
        atomic_store_explicit(&h->prod_closed, 1, memory_order_seq_cst);
        futex_wake(&h->tail); /* a consumer asleep on tail must see the close */
    } else {
        atomic_store_explicit(&h->cons_closed, 1, memory_order_seq_cst);
        futex_wake(&h->head);
    }
}

/* ------------------------------------------------------------------ the return queue */

/* The consumer never calls the producer's allocator: it writes the offset of a block it
 * is done with into the return queue (a ring of u64 in this ring's shared memory) and
 * the producer, which keeps the set of blocks it sent here and has not had back, drains
 * it and frees what it recognises.  Nothing read from the queue is trusted: indices
 * farther apart than its capacity break this ring (FR_EPROTO), entries that are not an
 * outstanding block of this ring (unknown, out of range, misaligned, duplicates) are
 * counted and ignored.  The producer bounds the blocks outstanding to the queue's
 * capacity, so an honest consumer's queue never overflows; a release never blocks. */

static inline int out_test(const struct fr_end *e, uint64_t g) {
    return (e->out_bits[g >> 6] >> (g & 63)) & 1;
}

int64_t fr_drain_returns(struct fr_end *e) {
    if (!e->rq || !e->out_bits || e->ret_broken || !e->hdr)
        return 0;
    uint32_t t = atomic_load_explicit(&e->hdr->ret_tail, memory_order_acquire);
    uint32_t d = t - e->ret_idx;
    if (d == 0)
        return 0;
    if (d > e->rq_cap) {
        e->ret_broken = 1;
        return proto_error(e,
                           "corrupt ring: return queue tail %llu is not within %llu entries of "
                           "head %llu; this ring's returns are no longer trusted",
                           t, e->rq_cap, e->ret_idx);
    }
    int64_t ok = 0;
    for (uint32_t i = 0; i < d; i++) {
        uint64_t off = atomic_load_explicit(&e->rq[(e->ret_idx + i) & e->rq_mask],
                                            memory_order_relaxed);
        uint64_t g = off / FR_GRAN;
        if (off % FR_GRAN || off >= e->pool_len || !out_test(e, g)) {
            e->returns_rejected++;
            continue;
        }
        e->out_bits[g >> 6] &= ~(1ull << (g & 63));
        e->outstanding--;
        ok++;
        hook_give_back(e, off, 1);
    }
    e->returns_ok += (uint64_t)ok;
    e->ret_idx = t;
    atomic_store_explicit(&e->hdr->ret_head, t, memory_order_release);
    return ok;
}

void fr_reclaim_outstanding(struct fr_end *e) {
    if (!e->out_bits || !e->outstanding)
        return;
    if (!e->ret_broken && e->hdr)
        (void)fr_drain_returns(e); /* honest returns first; errors are moot now */
    for (uint64_t w = 0; w < e->out_words && e->outstanding; w++) {
        while (e->out_bits[w]) {
            unsigned b = (unsigned)__builtin_ctzll(e->out_bits[w]);
            e->out_bits[w] &= e->out_bits[w] - 1;
            e->outstanding--;
            e->reclaimed++;
            hook_give_back(e, (w * 64 + b) * FR_GRAN, 0);
        }
    }
    e->outstanding = 0;
}

void fr_rq_push(struct fr_end *e, uint64_t off) {
    if (!e->rq || !e->hdr)
        return;
    struct fr_hdr *h = e->hdr;
    uint32_t head = atomic_load_explicit(&h->ret_head, memory_order_acquire);
    if ((uint32_t)(e->ret_idx - head) >= e->rq_cap) {
        e->returns_dropped++;
        fr_add_stat(&h->returns_dropped, 1);
        return;
    }
    atomic_store_explicit(&e->rq[e->ret_idx & e->rq_mask], off, memory_order_relaxed);
    e->ret_idx++;
    atomic_store_explicit(&h->ret_tail, e->ret_idx, memory_order_release);
    waker_fence(e);
    if (atomic_load_explicit(&h->ret_sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&h->ret_sleeping, 0, memory_order_relaxed))
        futex_wake(&h->ret_tail);
}

/* ------------------------------------------------------------------ producer */

/* The consumer is gone: its blocks come back, then the usual error. */
static int producer_wait_failed(struct fr_end *e, int rc) {
    if (rc == FR_ECLOSED || rc == FR_EDIED)
        fr_reclaim_outstanding(e);
    return rc;
}

int fr_reserve(struct fr_end *e, uint32_t n, uint64_t zc, uint32_t nzc, int64_t deadline) {
    if (fr_has_room(e, n, zc, nzc))
        return FR_OK;
    int spurious = 0;
    uint32_t best = e->cached; /* the consumer's furthest head seen: real progress */
    for (;;) {
        int64_t back = nzc ? fr_drain_returns(e) : 0;
        if (back < 0)
            return (int)back;
        uint32_t h = atomic_load_explicit(&e->hdr->head, memory_order_acquire);
        uint32_t used = e->pos - h;
        if (used > e->cap)
            return proto_error(e, "corrupt ring: head %llu is not within %llu slots of tail %llu",
                               h, e->cap, e->pos);
        if ((int32_t)(h - best) > 0 || back > 0) { /* progress, if not yet enough of it */
            best = (int32_t)(h - best) > 0 ? h : best;
            spurious = 0;
        }
        e->cached = h;
        /* stored by the consumer before `head`: at least as recent as h */
        e->zc_seen = atomic_load_explicit(&e->hdr->recv_zc_bytes, memory_order_relaxed);
        if (fr_has_room(e, n, zc, nzc))
            return FR_OK;
        int rc;
        if (fr_has_room(e, n, zc, 0)) { /* only the outstanding bound: wait for returns */
            uint32_t t = atomic_load_explicit(&e->hdr->ret_tail, memory_order_acquire);
            if (t != e->ret_idx)
                rc = FR_OK; /* something to drain already */
            else
                rc = wait_change(e, &e->hdr->ret_tail, t, &e->hdr->ret_sleeping, deadline,
                                 &e->hdr->prod_sleeps, &e->hdr->prod_futex_timeouts, NULL, 0);
        } else {
            rc = wait_change(e, &e->hdr->head, h, &e->hdr->prod_sleeping, deadline,
                             &e->hdr->prod_sleeps, &e->hdr->prod_futex_timeouts, NULL, 0);
        }
        if (rc == FR_OK)
            rc = throttle(e, &spurious, deadline);
        if (rc != FR_OK)
            return producer_wait_failed(e, rc);
    }
}

void fr_write_msg(struct fr_end *e, const struct fr_msg *m, const uint32_t *handles, int nh) {
    for (int i = 0; i < nh; i += FR_HPS) {
        int k = nh - i < FR_HPS ? nh - i : FR_HPS;
        uint8_t *s = fr_slot_at(e, e->pos);
        memcpy(s + 8, handles + i, (size_t)k * 4);
        atomic_store_explicit((_Atomic uint64_t *)s,
                              fr_slot_word(e->pos, T_HANDLES, F_MORE, (uint32_t)k * 4),
                              memory_order_relaxed);
        e->pos++;
    }
    uint8_t *s = fr_slot_at(e, e->pos);
    if (m->flags & F_ZC) {
        uint64_t d[2] = {m->off, m->len};
        memcpy(s + 8, d, sizeof d);
        e->zc_sent += m->len;
        fr_out_mark(e, m->off);
    } else if (m->size) {
        memcpy(s + 8, m->src, m->size);
    }
    /* release: a consumer that sees this word (acquire) sees the payload above; on
     * x86-64 this is a plain store, on ARM64 an STLR */
    atomic_store_explicit((_Atomic uint64_t *)s, fr_slot_word(e->pos, T_DATA, m->flags, m->size),
                          memory_order_release);
    e->pos++;
}

/* Every slot's header is a release store, so each message is complete on its own;
 * writing the first one last means a consumer polling it (the fast path) finds the
 * whole batch written and takes it in one go, instead of taking it piecemeal while it
 * is being written. */
void fr_write_batch(struct fr_end *e, const struct fr_msg *m, size_t n) {
    uint32_t first = e->pos;
    e->pos = first + 1;
    for (size_t i = 1; i < n; i++)
        fr_write_msg(e, &m[i], NULL, 0);
    e->pos = first;
    fr_write_msg(e, &m[0], NULL, 0);
    e->pos = first + (uint32_t)n;
}

/* One inline message into slot `s` for position `pos`.  When the source has 56 bytes
 * left the copy is a fixed 56 bytes (two vector moves instead of a memcpy call): the
 * extra bytes come from inside the source buffer and land inside the slot, whose reader
 * takes only `size` of them. */
static inline void put_inline(uint8_t *s, uint32_t pos, const uint8_t *src, size_t len,
                              const uint8_t *end) {
    if ((size_t)(end - src) >= FR_INLINE)
        memcpy(s + 8, src, FR_INLINE);
    else if (len)
        memcpy(s + 8, src, len);
    atomic_store_explicit((_Atomic uint64_t *)s, fr_slot_word(pos, T_DATA, 0, (uint32_t)len),
                          memory_order_release);
}

/* The first slot last (see fr_write_batch); the end's fields in registers (the slot
 * stores could alias them for the compiler). */
void fr_write_packed_inline(struct fr_end *e, const uint8_t *buf, size_t total,
                            const ptrdiff_t *len, size_t n) {
    const uint8_t *end = buf + total, *src = buf + len[0];
    uint8_t *slots = e->slots;
    const uint32_t first = e->pos, mask = e->mask;
    for (size_t i = 1; i < n; i++) {
        uint32_t pos = first + (uint32_t)i;
        put_inline(slots + (size_t)(pos & mask) * FR_SLOT, pos, src, (size_t)len[i], end);
        src += len[i];
    }
    put_inline(slots + (size_t)(first & mask) * FR_SLOT, first, buf, (size_t)len[0], end);
    e->pos = first + (uint32_t)n;
}

void fr_publish(struct fr_end *e, uint32_t nmsgs) {
    struct fr_hdr *h = e->hdr;
    note_cpu(e);
    atomic_store_explicit(&h->sent_zc_bytes, e->zc_sent, memory_order_relaxed);
    atomic_store_explicit(&h->tail, e->pos, memory_order_release);
    waker_fence(e);
    if (atomic_load_explicit(&h->cons_sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&h->cons_sleeping, 0, memory_order_relaxed)) {
        futex_wake(&h->tail);
        fr_add_stat(&h->prod_wakes, 1);
    } else {
        fr_add_stat(&h->prod_wakes_skipped, 1);
    }
    fr_add_stat(&h->sent_msgs, nmsgs);
    fr_add_stat(&h->sent_batches, 1);
}

int fr_send(struct fr_end *e, const struct fr_msg *m, const uint32_t *handles, int nh,
            int64_t deadline) {
    if (nh < 0 || nh > FR_MAX_HANDLES || (!(m->flags & F_ZC) && m->size > FR_INLINE))
        return proto_error(e, "message not sendable (%llu handles, %llu inline bytes)",
                           (unsigned long long)nh, m->size, 0);
    uint32_t need = 1 + (uint32_t)((nh + FR_HPS - 1) / FR_HPS);
    if (need > e->cap)
        return proto_error(e, "message needs %llu slots, the ring has %llu", need, e->cap, 0);
    int zc = (m->flags & F_ZC) != 0;
    int rc = fr_reserve(e, need, zc ? m->len : 0, (uint32_t)zc, deadline);
    if (rc != FR_OK)
        return rc;
    fr_write_msg(e, m, handles, nh);
    fr_publish(e, 1);
    return FR_OK;
}

/* ------------------------------------------------------------------ consumer */

void fr_consume(struct fr_end *e, uint32_t nmsgs) {
    struct fr_hdr *h = e->hdr;
    note_cpu(e);
    if (e->zc_pending) { /* before `head`: the producer reads it after acquiring head */
        fr_add_stat(&h->recv_zc_bytes, e->zc_pending);
        e->zc_pending = 0;
    }
    atomic_store_explicit(&h->head, e->pos, memory_order_release);
    waker_fence(e);
    if (atomic_load_explicit(&h->prod_sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&h->prod_sleeping, 0, memory_order_relaxed)) {
        futex_wake(&h->head);
        fr_add_stat(&h->cons_wakes, 1);
    } else {
        fr_add_stat(&h->cons_wakes_skipped, 1);
    }
    fr_add_stat(&h->recv_msgs, nmsgs);
    fr_add_stat(&h->recv_batches, 1);
}

/* Slots visible to the consumer from e->pos: those `tail` covers, or else the one
 * slot at e->pos when its release-stored header already says it holds a complete
 * message for e->pos (the fast path: the data's cache line carries the news, no
 * second line to fetch).  The consumer may thus run ahead of `tail` by the slots of
 * one publish; positions are compared as signed distances. */
int64_t fr_visible(struct fr_end *e) {
    int32_t d = (int32_t)(e->cached - e->pos);
    if (d > 0)
        return d;
    uint32_t t = atomic_load_explicit(&e->hdr->tail, memory_order_acquire);
    d = (int32_t)(t - e->pos);
    if (d > (int32_t)e->cap || d < -(int32_t)e->cap)
        return proto_error(e, "corrupt ring: tail %llu is not within %llu slots of head %llu", t,
                           e->cap, e->pos);
    e->cached = t;
    if (d > 0)
        return d;
    return fr_slot_ready((_Atomic uint64_t *)fr_slot_at(e, e->pos), e->pos);
}

/* The adaptive spin (spin_max_ns > 0): a consumer whose peer answers within a few
 * microseconds (a request/reply channel used in a loop) catches the answer with a
 * spin instead of a futex sleep and wake-up (~10 us a round trip here); one whose
 * peer is idle or busy elsewhere stops burning its CPU.  A wait that ended within
 * spin_max_ns sets the budget to twice that wait (unless the budget already caught
 * it); a longer one halves the budget, down to spin_min_ns.  Only waits that
 * happened count (data already there says nothing).  The spin stays bounded by
 * spin_max_ns and skipped while the peer last ran on this CPU (wait_change). */
int64_t fr_adapt_spin(int64_t budget, int64_t floor, int64_t cap, int64_t waited) {
    if (waited < 0)
        waited = 0;
    if (waited <= cap) {
        int64_t want = waited <= cap - waited ? 2 * waited : cap;
        if (want < floor)
            want = floor;
        if (budget >= want && waited <= budget)
            return budget; /* caught by the current budget: keep it */
        return want;
    }
    budget /= 2;
    return budget > floor ? budget : floor;
}

int64_t fr_await_data(struct fr_end *e, int64_t deadline) {
    int spurious = 0;
    int64_t t0 = 0;
    for (;;) {
        int64_t avail = fr_visible(e);
        if (avail != 0) {
            if (t0 && avail > 0)
                e->spin_ns = fr_adapt_spin(e->spin_ns, e->spin_min_ns, e->spin_max_ns,
                                           fr_now_ns() - t0);
            return avail;
        }
        if (!t0 && e->spin_max_ns > 0)
            t0 = fr_now_ns();
        uint32_t t = e->cached;
        int rc = wait_change(e, &e->hdr->tail, t, &e->hdr->cons_sleeping, deadline,
                             &e->hdr->cons_sleeps, &e->hdr->cons_futex_timeouts,
                             (_Atomic uint64_t *)fr_slot_at(e, e->pos), e->pos);
        if (rc == FR_OK)
            rc = throttle(e, &spurious, deadline);
        if (rc == FR_OK)
            continue;
        if (rc == FR_ECLOSED || rc == FR_EDIED) {
            /* deliver what was published before the peer went away */
            avail = fr_visible(e);
            if (avail != 0)
                return avail;
        }
        return rc;
    }
}

int64_t fr_batch_avail(struct fr_end *e, int64_t deadline) {
    int64_t avail = fr_await_data(e, deadline);
    if (avail <= 0)
        return avail;
    uint32_t t = atomic_load_explicit(&e->hdr->tail, memory_order_acquire);
    int32_t d = (int32_t)(t - e->pos);
    if (d > 0 && d <= (int32_t)e->cap && d > avail) {
        e->cached = t;
        avail = d;
    }
    /* slots written but not yet covered by `tail` (a batch being published: its first
     * slot is written last, so when it is ready the others are too): each header is a
     * release store, so a slot whose header says "complete, for this position" is
     * readable now */
    while (avail < FR_BATCH_MAX && avail < (int64_t)e->cap &&
           fr_slot_ready((_Atomic uint64_t *)fr_slot_at(e, e->pos + (uint32_t)avail),
                         e->pos + (uint32_t)avail))
        avail++;
    return avail;
}

static int bad_msg(fr_msg_t *m, uint32_t used, const char *fmt, unsigned long long a,
                   unsigned long long b) {
    m->used = used;
    snprintf(m->err, sizeof m->err, fmt, a, b);
    return -1;
}

/* Each slot's header word is loaded once and validated before anything it says is
 * used: the peer is not trusted.  *avail is extended if the message's chain reaches
 * past it and `tail` covers it. */
int fr_decode_msg(struct fr_end *e, uint32_t *avail, fr_msg_t *m) {
    uint32_t used = 0;
    m->nh = 0;
    for (;;) {
        if (used >= *avail) {
            int32_t d = (int32_t)(atomic_load_explicit(&e->hdr->tail, memory_order_acquire) - e->pos);
            if (d > (int32_t)used && d <= (int32_t)e->cap)
                *avail = (uint32_t)d;
        }
        if (used >= *avail)
            return bad_msg(m, used, "truncated message: %llu of %llu published slot(s) and no end",
                           used, *avail);
        const uint8_t *s = fr_slot_at(e, e->pos + used);
        uint64_t w = atomic_load_explicit((_Atomic uint64_t *)s, memory_order_relaxed);
        uint32_t seq = (uint32_t)w, type = (uint32_t)(w >> 32) & 0xFF,
                 flags = (uint32_t)(w >> 40) & 0xFF, size = (uint32_t)(w >> 48);
        used++;
        if (seq != e->pos + used - 1)
            return bad_msg(m, used, "stale or forged slot: sequence %llu, expected %llu", seq,
                           e->pos + used - 1);
        if (flags & ~F_KNOWN)
            return bad_msg(m, used, "slot has unknown flags %llu (type %llu)", flags, type);
        if (type == T_HANDLES) {
            if (!(flags & F_MORE) || (flags & F_ZC) || size % 4 || size > FR_HPS * 4)
                return bad_msg(m, used, "malformed HANDLES slot (flags %llu, size %llu)", flags,
                               size);
            if (m->nh + (int)size / 4 > FR_MAX_HANDLES)
                return bad_msg(m, used, "too many handles: %llu > %llu", m->nh + size / 4,
                               FR_MAX_HANDLES);
            memcpy(m->hv + m->nh, s + 8, size);
            m->nh += (int)size / 4;
            continue;
        }
        if (type != T_DATA || (flags & F_MORE))
            return bad_msg(m, used, "unknown slot type %llu (flags %llu)", type, flags);
        if (flags & F_ZC) {
            uint64_t d[2];
            memcpy(d, s + 8, sizeof d);
            if (size != FR_DESC)
                return bad_msg(m, used, "zero-copy descriptor of size %llu (expected %llu)", size,
                               FR_DESC);
            if (!e->has_pool)
                return bad_msg(m, used,
                               "zero-copy message (offset %llu, %llu bytes) but no pool attached",
                               d[0], d[1]);
            if (d[1] == 0 || d[0] > e->pool_len || d[1] > e->pool_len - d[0])
                return bad_msg(m, used, "descriptor outside the pool: offset %llu, length %llu",
                               d[0], d[1]);
            m->zc = 1;
            m->off = d[0];
            m->len = d[1];
            m->ptr = e->pool_base + d[0];
        } else {
            if (size > FR_INLINE)
                return bad_msg(m, used, "inline size %llu exceeds %llu bytes", size, FR_INLINE);
            m->zc = 0;
            m->len = size;
            m->ptr = s + 8;
        }
        m->used = used;
        return 0;
    }
}

void fr_reject_msg(struct fr_end *e, const fr_msg_t *m) {
    e->pos += m->used;
    fr_add_stat(&e->hdr->rejected, 1);
    fr_consume(e, 0);
}

int64_t fr_recv_into(struct fr_end *e, uint32_t avail, uint8_t *dst, uint64_t room,
                     uint32_t *len32, uint64_t *len64, uint64_t lmax, int64_t maxn, int *stop,
                     uint64_t *big) {
    /* av: slots known to be published from e->pos.  Past them, a slot is taken on its
     * own header (acquire: its payload was written before the release store of its
     * header) when it holds a complete single-slot message for its position, so a
     * consumer reading a steady stream never needs the producer's `tail` line. */
    uint32_t av = avail;
    int64_t got = 0;
    *stop = 0;
    /* the fast path keeps the position and the cursor in registers */
    uint32_t pos = e->pos;
    const uint32_t mask = e->mask;
    const uint8_t *slots = e->slots;
    while (got < maxn) {
        /* fast path: a single inline DATA slot for this position (type 1, no flags) */
        const uint8_t *s = slots + (size_t)(pos & mask) * FR_SLOT;
        uint64_t w = atomic_load_explicit((_Atomic uint64_t *)s, memory_order_acquire);
        uint32_t size = (uint32_t)(w >> 48);
        if ((uint32_t)w == pos && ((w >> 32) & 0xFFFF) == T_DATA && size <= FR_INLINE &&
            size <= room) {
            if (size == FR_INLINE) /* a full slot: two vector moves, no call */
                memcpy(dst, s + 8, FR_INLINE);
            else
                memcpy(dst, s + 8, size);
            if (len32)
                len32[got] = size;
            else if (len64)
                len64[got] = size;
            dst += size;
            room -= size;
            got++;
            pos++;
            av -= av > 0;
            continue;
        }
        e->pos = pos;
        if (av == 0) { /* past the known published slots: ask `tail` */
            uint32_t t = atomic_load_explicit(&e->hdr->tail, memory_order_acquire);
            int32_t d = (int32_t)(t - pos);
            if (d > 0 && d <= (int32_t)e->cap) {
                e->cached = t;
                av = (uint32_t)d;
            } else if (fr_slot_ready((_Atomic uint64_t *)s, pos)) {
                av = 1; /* a single-slot message (zero-copy) written but not yet in tail */
            } else {
                break; /* nothing more for now */
            }
        }
        fr_msg_t m;
        if (fr_decode_msg(e, &av, &m) < 0) {
            if (!got) {
                fr_reject_msg(e, &m);
                memcpy(e->err, m.err, sizeof e->err);
                *stop = FR_EPROTO;
            }
            break;
        }
        if (m.nh || m.len > room || m.len > lmax) {
            if (!got) {
                *stop = m.nh ? 1 : 2;
                *big = m.len;
            }
            break;
        }
        if (m.len)
            memcpy(dst, m.ptr, (size_t)m.len);
        if (len32)
            len32[got] = (uint32_t)m.len;
        else if (len64)
            len64[got] = m.len;
        dst += m.len;
        room -= m.len;
        got++;
        e->pos += m.used;
        pos = e->pos;
        av = av > m.used ? av - m.used : 0;
        if (m.zc) { /* copied out: the block goes back to the pool */
            e->zc_pending += m.len;
            fr_rq_push(e, m.off);
        }
    }
    if ((int32_t)(pos - e->pos) > 0) /* the fast path's progress (a rejected slot moved e->pos) */
        e->pos = pos;
    if (got)
        fr_consume(e, (uint32_t)got);
    return got;
}

int fr_recv(struct fr_end *e, fr_msg_t *m, int64_t deadline) {
    int64_t avail = fr_await_data(e, deadline);
    if (avail < 0)
        return (int)avail;
    uint32_t av = (uint32_t)avail;
    if (fr_decode_msg(e, &av, m) < 0) {
        fr_reject_msg(e, m);
        memcpy(e->err, m->err, sizeof e->err);
        return FR_EPROTO;
    }
    fr_take(e, m);
    fr_consume(e, 1);
    return FR_OK;
}
