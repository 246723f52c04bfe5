/*
 * exo.ipc._fring — the Fusion Ring hot path.
 *
 * Python cannot issue acquire/release accesses or a full fence, and a Python-level
 * futex handshake loses wake-ups; this file is the one implementation of the slot
 * protocol (layout and protocol are specified in docs/fusion-rings.md).
 *
 * A ring is one shared mapping: a 512-byte header followed by `capacity` 64-byte
 * slots.  Single producer, single consumer.  Positions are free-running u32
 * counters (wrap at 2^32, unsigned arithmetic); slot index = position & mask.
 *
 * Slot (64 bytes, 64-byte aligned):
 *   [0..8)   header word, stored as one 64-bit value:
 *            bits  0..31  seq   (position this slot was written for)
 *            bits 32..39  type  (1 DATA, 2 HANDLES)
 *            bits 40..47  flags (0x01 ZEROCOPY, 0x02 MORE: next slot continues the message)
 *            bits 48..63  size  (inline bytes 0..56, or 16 for a zero-copy descriptor)
 *   [8..64)  56-byte inline payload, or {u64 pool offset, u64 length}
 *
 * Memory ordering: the producer writes slots with plain/relaxed stores and
 * publishes them with ONE release store of `tail`; the consumer loads `tail` with
 * acquire, reads the slots, and frees them with ONE release store of `head`.
 * Sleep/wake is a Dekker handshake: the sleeper stores its `sleeping` flag, issues a
 * seq_cst fence, re-reads the index, then futex-waits on the index word with the
 * value it saw; the waker stores the index, issues a seq_cst fence, and calls
 * FUTEX_WAKE only when the flag is set.
 *
 * Trust (docs/fusion-rings.md, "Untrusted peers"): the peer may write any byte of the
 * mapping at any time.  Geometry is validated once at attach and cached; every index
 * read from shared memory (tail, head, ret_tail) is checked against this end's private
 * position before use; slot words are loaded once and validated; descriptors are
 * checked against this end's own view of the segment; return-queue entries against the
 * producer's private set of outstanding blocks.  Every loop over shared data is bounded
 * (capacity, batch size, queue size), index changes that bring nothing are throttled,
 * and no wait holds the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if ATOMIC_INT_LOCK_FREE != 2 || ATOMIC_LLONG_LOCK_FREE != 2
#error "Fusion Rings need lock-free (address-free) 32- and 64-bit atomics"
#endif

#define FR_MAGIC 0x31474E52464F5845ULL /* "EXOFRNG1" */
#define FR_VERSION 3u /* 3: the return queue (consumer -> producer, zero-copy blocks) */
#define FR_SLOT 64u
#define FR_HDR 512u
#define FR_INLINE 56u
#define FR_BATCH_MAX 16
#define FR_RECV_MAX (FR_BATCH_MAX * 64) /* recv_batch's max */
#define FR_DESC 16u
#define FR_HPS 14 /* handles per HANDLES slot: 56 / 4 */
#define FR_MAX_HANDLES 64
#define FR_MAX_CAP (1u << 20)
#define FR_ZC_WINDOW (1u << 20) /* default zero-copy window: 1 MiB queued */
#define FR_RQ_MIN 64u           /* return queue: max(2 x capacity, 64) entries */
#define FR_RQ_MAX (2u * FR_MAX_CAP)
#define FR_GRAN 64u             /* pool offsets are multiples of the pool's 64-byte granule */
#define FR_SPURIOUS 64          /* index changes without progress before a waiter throttles */

#define FRF_MEMBARRIER 0x1u /* wakers skip their fence, sleepers issue membarrier(2) */

#define T_DATA 1u
#define T_HANDLES 2u
#define F_ZC 0x01u
#define F_MORE 0x02u
#define F_KNOWN (F_ZC | F_MORE)

#define ROLE_PRODUCER 0
#define ROLE_CONSUMER 1

struct fr_hdr {
    /* line 0: written once by the creator */
    uint64_t magic;
    uint32_t version;
    uint32_t capacity;
    uint32_t slot_size;
    uint32_t header_size;
    uint32_t creator_pid;
    uint32_t features; /* FRF_*: protocol options both ends follow */
    uint32_t rq_cap;   /* return-queue entries (a power of two) after the slots */
    uint32_t _pad0[7];
    /* line 1: producer-owned; the consumer reads `tail` */
    _Alignas(64) _Atomic uint32_t tail;
    _Atomic uint32_t prod_pid;
    _Atomic uint64_t sent_msgs;
    _Atomic uint64_t sent_batches;
    _Atomic uint64_t prod_wakes;
    _Atomic uint64_t prod_wakes_skipped;
    _Atomic uint64_t prod_sleeps;
    _Atomic uint64_t prod_futex_timeouts;
    _Atomic uint64_t sent_zc_bytes; /* zero-copy payload bytes published */
    /* line 2: consumer-owned; the producer reads `head` */
    _Alignas(64) _Atomic uint32_t head;
    _Atomic uint32_t cons_pid;
    _Atomic uint64_t recv_msgs;
    _Atomic uint64_t recv_batches;
    _Atomic uint64_t cons_wakes;
    _Atomic uint64_t cons_wakes_skipped;
    _Atomic uint64_t cons_sleeps;
    _Atomic uint64_t cons_futex_timeouts;
    _Atomic uint64_t rejected;
    /* line 3: consumer's rarely written flags (the producer reads them on every send) */
    _Alignas(64) _Atomic uint32_t cons_sleeping;
    _Atomic uint32_t cons_closed;
    _Atomic uint32_t cons_cpu; /* CPU the consumer last ran on (stored when it changes) */
    _Atomic uint32_t cons_heavy; /* as a sleeper: epoch asking the producer to fence (0: no) */
    _Atomic uint32_t cons_ack;   /* as a waker: the producer's last prod_heavy epoch seen */
    uint32_t _pad3[11];
    /* line 4: producer's rarely written flags */
    _Alignas(64) _Atomic uint32_t prod_sleeping;
    _Atomic uint32_t prod_closed;
    _Atomic uint32_t prod_cpu; /* CPU the producer last ran on (stored when it changes) */
    _Atomic uint32_t prod_heavy; /* as a sleeper: epoch asking the consumer to fence (0: no) */
    _Atomic uint32_t prod_ack;   /* as a waker: the consumer's last cons_heavy epoch seen */
    _Atomic uint32_t ret_sleeping; /* the producer sleeps on ret_tail (waiting for returns) */
    uint32_t _pad4[10];
    /* line 5: consumer; zero-copy payload bytes consumed, stored before `head` (the
     * producer reads it only when its zero-copy window looks full) */
    _Alignas(64) _Atomic uint64_t recv_zc_bytes;
    uint64_t _pad5[7];
    /* line 6: consumer; the return queue's write index (the producer's futex word when
     * it waits for blocks to come back) and the returns it had to drop (queue full) */
    _Alignas(64) _Atomic uint32_t ret_tail;
    uint32_t _pad6a;
    _Atomic uint64_t returns_dropped;
    uint64_t _pad6[6];
    /* line 7: producer; the return queue's read index */
    _Alignas(64) _Atomic uint32_t ret_head;
    uint32_t _pad7[15];
};

_Static_assert(offsetof(struct fr_hdr, tail) == 64, "tail on line 1");
_Static_assert(offsetof(struct fr_hdr, head) == 128, "head on line 2");
_Static_assert(offsetof(struct fr_hdr, cons_sleeping) == 192, "line 3");
_Static_assert(offsetof(struct fr_hdr, prod_sleeping) == 256, "line 4");
_Static_assert(offsetof(struct fr_hdr, recv_zc_bytes) == 320, "line 5");
_Static_assert(offsetof(struct fr_hdr, ret_tail) == 384, "line 6");
_Static_assert(offsetof(struct fr_hdr, ret_head) == 448, "line 7");
_Static_assert(sizeof(struct fr_hdr) <= FR_HDR, "header fits");

static inline uint32_t rq_cap_for(uint32_t cap) {
    return 2 * cap > FR_RQ_MIN ? 2 * cap : FR_RQ_MIN;
}

static PyObject *ProtocolError, *PeerDiedError, *PeerClosedError;

/* ------------------------------------------------------------------ helpers */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline uint64_t slot_word(uint32_t seq, uint32_t type, uint32_t flags, uint32_t size) {
    return (uint64_t)seq | ((uint64_t)type << 32) | ((uint64_t)flags << 40) | ((uint64_t)size << 48);
}

static inline void add_stat(_Atomic uint64_t *c, uint64_t n) {
    /* single writer: a relaxed load+store, no locked instruction */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static int futex_wait(_Atomic uint32_t *addr, uint32_t val, int64_t ns) {
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    /* shared (not PRIVATE) futex: the word lives in a mapping shared between processes */
    return (int)syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ------------------------------------------------------------------ Block */

struct Ring;

typedef struct {
    PyObject_HEAD
    struct Ring *ring; /* strong ref: keeps the pool mapping alive */
    uint8_t *ptr;
    Py_ssize_t len;
    uint64_t offset;
    int exports;
    int released; /* block handed back to the pool, or sent */
    int writable; /* a producer's loan */
    PyObject *entered; /* memoryview returned by __enter__ */
} Block;

static PyTypeObject BlockType;

/* ------------------------------------------------------------------ Ring */

typedef struct Ring {
    PyObject_HEAD
    PyObject *dict;
    Py_buffer buf;
    int has_buf;
    struct fr_hdr *hdr;
    uint8_t *slots;
    uint32_t cap, mask;
    int role;
    uint32_t pos;    /* producer: next position to write; consumer: next to read */
    uint32_t cached; /* producer: last seen head; consumer: last seen tail */
    int live_fd;     /* liveness socket: HUP when the peer process is gone */
    Py_buffer pool;
    int has_pool;
    PyObject *pool_alloc, *pool_free, *pool_returned;
    Py_ssize_t blocks_out;
    /* the return queue: zero-copy blocks travel back from the consumer (docs/fusion-rings.md).
     * Everything the producer decides with is private: its read index, and the set of
     * blocks it sent on this ring and has not had back (a bitmap over pool granules). */
    _Atomic uint64_t *rq;
    uint32_t rq_cap, rq_mask;
    uint32_t ret_idx;        /* producer: next entry to read; consumer: next to write */
    uint64_t *out_bits;      /* producer: blocks outstanding on this ring */
    uint64_t out_words;
    uint32_t outstanding;
    int ret_broken;          /* producer: the queue's indices were corrupt; ring unusable */
    uint64_t returns_ok, returns_rejected, returns_dropped, reclaimed;
    int64_t spin_ns;
    int yields;
    int64_t tick_ns;
    int busy;
    int closed;
    uint64_t zc_sent;    /* producer: zero-copy bytes published */
    uint64_t zc_seen;    /* producer: consumer's zero-copy bytes consumed, last seen */
    uint64_t zc_window;  /* producer: most zero-copy bytes queued at once (0: no limit) */
    uint64_t zc_pending; /* consumer: zero-copy bytes consumed, not yet announced */
    uint32_t my_cpu;     /* CPU this end last announced */
    int light_fence;     /* the ring follows FRF_MEMBARRIER */
    uint32_t my_heavy;   /* as a sleeper: the epoch I asked the waker to fence for (0: none) */
    uint32_t epoch;      /* last epoch I used */
    uint32_t acked;      /* as a waker: the peer's epoch I last acknowledged */
    uint64_t calls_mark; /* the waker's publish/consume count at my last sleep */
    uint64_t calls_avg;  /* ... and its running average between sleeps */
} Ring;

static int64_t drain_returns(Ring *r);
static void reclaim_outstanding(Ring *r);

static inline uint8_t *slot_at(Ring *r, uint32_t pos) {
    return r->slots + (size_t)(pos & r->mask) * FR_SLOT;
}

static int ring_ready(Ring *r) {
    if (!r->has_buf) {
        PyErr_SetString(PyExc_ValueError, "ring endpoint is closed");
        return -1;
    }
    if (r->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "ring endpoint used by two threads at once (it is single-producer/single-consumer)");
        return -1;
    }
    return 0;
}

static int parse_timeout(PyObject *t, int64_t *deadline) {
    if (t == NULL || t == Py_None) {
        *deadline = INT64_MAX;
        return 0;
    }
    double s = PyFloat_AsDouble(t);
    if (s == -1.0 && PyErr_Occurred())
        return -1;
    if (s < 0) {
        PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 or None");
        return -1;
    }
    *deadline = now_ns() + (int64_t)(s * 1e9);
    return 0;
}

enum { W_CHANGED = 0, W_TIMEOUT = 1, W_CLOSED = 2, W_DIED = 3, W_ERROR = -1 };

/* The peer is gone when it said so (its closed flag) or when its end of the liveness
 * socket is closed (the kernel closes it when the process dies, however it dies). */
static int peer_gone(Ring *r) {
    _Atomic uint32_t *flag = r->role == ROLE_CONSUMER ? &r->hdr->prod_closed : &r->hdr->cons_closed;
    if (atomic_load_explicit(flag, memory_order_acquire))
        return W_CLOSED;
    if (r->live_fd >= 0) {
        struct pollfd p = {.fd = r->live_fd, .events = POLLIN | POLLRDHUP};
        if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)))
            return W_DIED;
    }
    return 0;
}

/* Wait until *word != v.  Spin (short), then yield, then sleep on the futex in ticks,
 * all with the GIL released; between ticks check signals, the deadline and the peer. */
static inline int slot_ready(_Atomic uint64_t *slotw, uint32_t expect) {
    if (!slotw)
        return 0;
    uint64_t w = atomic_load_explicit(slotw, memory_order_acquire);
    return (uint32_t)w == expect && !((w >> 40) & F_MORE);
}

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

static inline _Atomic uint32_t *peer_heavy(Ring *r) {
    return r->role == ROLE_PRODUCER ? &r->hdr->cons_heavy : &r->hdr->prod_heavy;
}
static inline _Atomic uint32_t *my_heavy_word(Ring *r) {
    return r->role == ROLE_PRODUCER ? &r->hdr->prod_heavy : &r->hdr->cons_heavy;
}
static inline _Atomic uint32_t *my_ack_word(Ring *r) {
    return r->role == ROLE_PRODUCER ? &r->hdr->prod_ack : &r->hdr->cons_ack;
}
static inline _Atomic uint32_t *peer_ack_word(Ring *r) {
    return r->role == ROLE_PRODUCER ? &r->hdr->cons_ack : &r->hdr->prod_ack;
}

/* The waker's half of the handshake's fence (after its index store, before its load of
 * the peer's sleeping flag). */
static inline void waker_fence(Ring *r) {
    if (!r->light_fence) {
        atomic_thread_fence(memory_order_seq_cst);
        return;
    }
    uint32_t e = atomic_load_explicit(peer_heavy(r), memory_order_relaxed);
    if (e) {
        if (e != r->acked) {
            r->acked = e;
            atomic_store_explicit(my_ack_word(r), e, memory_order_release);
        }
        atomic_thread_fence(memory_order_seq_cst);
    } else {
        atomic_signal_fence(memory_order_seq_cst); /* the sleeper's membarrier does the rest */
    }
}

/* Before a sleep: count the waker's calls since the last one and pick the mode. */
static void choose_fence_mode(Ring *r) {
    _Atomic uint64_t *calls =
        r->role == ROLE_CONSUMER ? &r->hdr->sent_batches : &r->hdr->recv_batches;
    uint64_t now = atomic_load_explicit(calls, memory_order_relaxed), d = now - r->calls_mark;
    r->calls_mark = now;
    r->calls_avg = (3 * r->calls_avg + (d < (1u << 20) ? d : (1u << 20))) / 4;
    if (!r->my_heavy && fr_adaptive && r->calls_avg < 64) {
        if (++r->epoch == 0)
            r->epoch = 1;
        r->my_heavy = r->epoch;
        atomic_store_explicit(my_heavy_word(r), r->my_heavy, memory_order_seq_cst);
    } else if (r->my_heavy && (r->calls_avg > 1024 || !fr_adaptive)) {
        r->my_heavy = 0;
        atomic_store_explicit(my_heavy_word(r), 0, memory_order_seq_cst);
    }
}

/* The sleeper's half: its flag is up; make it visible to every waker's next load.
 * Returns 0 if the barrier could not be issued (a seccomp filter installed after the
 * registration): the caller then sleeps in 1 ms ticks, so a wake-up it misses is late
 * by at most 1 ms instead of a whole tick. */
static int sleeper_fence(Ring *r) {
    atomic_thread_fence(memory_order_seq_cst);
    if (!r->light_fence)
        return 1;
    if (r->my_heavy &&
        atomic_load_explicit(peer_ack_word(r), memory_order_acquire) == r->my_heavy)
        return 1; /* the waker fences now */
    return syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0) == 0;
}

/* Each end announces the CPU it runs on (a store only when it changes; sched_getcpu is
 * a load from the rseq area).  A waiter whose peer last ran on the waiter's own CPU does
 * not spin: the peer cannot make progress while we hold that CPU, so spinning only
 * delays it (on this 2-core machine with a busy third process, a 5 us spin on each side
 * of a round trip made it 18 us instead of 7).  On separate CPUs spinning is what makes
 * a round trip ~1 us. */
static inline void note_cpu(Ring *r) {
    uint32_t c = (uint32_t)sched_getcpu();
    if (c != r->my_cpu) {
        r->my_cpu = c;
        atomic_store_explicit(r->role == ROLE_PRODUCER ? &r->hdr->prod_cpu : &r->hdr->cons_cpu, c,
                              memory_order_relaxed);
    }
}

static inline int peer_on_my_cpu(Ring *r) {
    _Atomic uint32_t *peer = r->role == ROLE_PRODUCER ? &r->hdr->cons_cpu : &r->hdr->prod_cpu;
    return atomic_load_explicit(peer, memory_order_relaxed) == r->my_cpu;
}

static int wait_change(Ring *r, _Atomic uint32_t *word, uint32_t v, _Atomic uint32_t *sleeping,
                       int64_t deadline, _Atomic uint64_t *sleeps, _Atomic uint64_t *tmo,
                       _Atomic uint64_t *slotw, uint32_t expect) {
    if (atomic_load_explicit(word, memory_order_acquire) != v || slot_ready(slotw, expect))
        return W_CHANGED;
    note_cpu(r);
    /* Every phase of the wait runs with the GIL released, the spin included: what it
     * waits on is shared memory the peer controls, and a peer that never delivers (or
     * flips an index back and forth) must not stall this process's other threads. */
    int changed = 0;
    r->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    if (deadline == INT64_MAX || deadline > now_ns()) {
        if (r->spin_ns > 0 && !peer_on_my_cpu(r)) {
            /* A producer waiting for room polls `head`, the line the consumer writes at
             * every receive: each poll takes the line away from the consumer, whose next
             * store must fetch it back.  It backs off (up to 16 pauses between polls);
             * a consumer waiting for data polls tightly (the round-trip latency). */
            unsigned gap = 1, cap = r->role == ROLE_PRODUCER ? 16 : 1;
            int64_t t0 = now_ns();
            for (unsigned i = 1;; i++) {
                for (unsigned k = 0; k < gap; k++)
                    cpu_relax();
                if (atomic_load_explicit(word, memory_order_acquire) != v ||
                    slot_ready(slotw, expect)) {
                    changed = 1;
                    break;
                }
                if (gap < cap)
                    gap *= 2;
                if ((i & 7) == 0 && now_ns() - t0 > r->spin_ns)
                    break;
            }
        }
    }
    for (int i = 0; !changed && i < r->yields; i++) {
        sched_yield();
        if (atomic_load_explicit(word, memory_order_acquire) != v)
            changed = 1;
    }
    Py_END_ALLOW_THREADS
    r->busy = 0;
    if (changed)
        return W_CHANGED;
    /* The flag stays up across ticks: one (membarrier) fence per sleep, not per tick.
     * A waker that sees it takes it down (and wakes us): then it is raised again. */
    int rc, fenced = 0;
    for (;;) {
        int g = peer_gone(r);
        if (g) {
            rc = g;
            break;
        }
        int64_t now = now_ns();
        if (now >= deadline) {
            rc = W_TIMEOUT;
            break;
        }
        int64_t ns = deadline - now;
        if (ns > r->tick_ns)
            ns = r->tick_ns;
        int timed_out = 0;
        r->busy = 1;
        Py_BEGIN_ALLOW_THREADS
        if (!fenced || !atomic_load_explicit(sleeping, memory_order_relaxed)) {
            if (r->light_fence)
                choose_fence_mode(r);
            atomic_store_explicit(sleeping, 1, memory_order_seq_cst);
            fenced = sleeper_fence(r);
        }
        if (!fenced && ns > 1000000)
            ns = 1000000;
        if (atomic_load_explicit(word, memory_order_seq_cst) != v) {
            changed = 1;
        } else {
            add_stat(sleeps, 1);
            /* the kernel compares *word with v atomically with queueing us: a store
             * made after our check makes futex_wait return EAGAIN at once */
            if (futex_wait(word, v, ns) != 0 && errno == ETIMEDOUT)
                timed_out = 1;
            if (atomic_load_explicit(word, memory_order_acquire) != v)
                changed = 1;
        }
        Py_END_ALLOW_THREADS
        r->busy = 0;
        if (changed) {
            rc = W_CHANGED;
            break;
        }
        if (timed_out)
            add_stat(tmo, 1);
        if (PyErr_CheckSignals() < 0) {
            rc = W_ERROR;
            break;
        }
    }
    atomic_store_explicit(sleeping, 0, memory_order_relaxed);
    return rc;
}

static int raise_wait(int rc, const char *what) {
    switch (rc) {
    case W_TIMEOUT:
        PyErr_Format(PyExc_TimeoutError, "%s timed out", what);
        break;
    case W_CLOSED:
        PyErr_SetString(PeerClosedError, "the peer closed its end of the ring");
        break;
    case W_DIED:
        PyErr_SetString(PeerDiedError, "the peer process is gone (its end of the ring died)");
        break;
    default:
        break;
    }
    return -1;
}

/* Room for n slots carrying zc bytes of zero-copy payload?  The zero-copy window bounds
 * the pool memory a ring holds queued (like a pipe's or a socket's buffer): without it a
 * fast producer of 64 KiB messages queues capacity x 64 KiB (16 MiB for 256 slots),
 * every message lands in a block nobody touched for a while (page faults on fresh
 * memory, cache misses), and a few rings exhaust the pool.  A message is never refused
 * for its own size: with nothing queued, anything goes. */
static inline int has_room(Ring *r, uint32_t n, uint64_t zc, uint32_t nzc) {
    if (r->pos - r->cached + n > r->cap)
        return 0;
    if (zc && r->zc_window) {
        int64_t queued = (int64_t)(r->zc_sent - r->zc_seen);
        if (queued > 0 && (uint64_t)queued + zc > r->zc_window)
            return 0;
    }
    /* blocks out on this ring never exceed the return queue: it cannot overflow */
    if (nzc && r->out_bits && r->outstanding + nzc > r->rq_cap)
        return 0;
    return 1;
}

/* A waiter whose index keeps changing without bringing what it waits for (a peer
 * flipping `tail` or `head` back and forth) would loop as fast as the peer flips: after
 * FR_SPURIOUS such changes it sleeps 1 ms (GIL released) and checks its deadline,
 * signals and the peer, so the peer controls neither its CPU use nor its timeout. */
static int throttle(Ring *r, int *spurious, int64_t deadline) {
    if (++*spurious < FR_SPURIOUS)
        return W_CHANGED;
    *spurious = 0;
    if (now_ns() >= deadline)
        return W_TIMEOUT;
    int g = peer_gone(r);
    if (g)
        return g;
    r->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    Py_END_ALLOW_THREADS
    r->busy = 0;
    if (PyErr_CheckSignals() < 0)
        return W_ERROR;
    return W_CHANGED;
}

/* The consumer is gone: its blocks come back, then the usual error. */
static int producer_wait_failed(Ring *r, int rc) {
    if (rc == W_CLOSED || rc == W_DIED)
        reclaim_outstanding(r);
    return raise_wait(rc, "send");
}

/* Producer: make room for n slots (and zc bytes in the zero-copy window, and nzc more
 * blocks outstanding). */
static int reserve(Ring *r, uint32_t n, uint64_t zc, uint32_t nzc, int64_t deadline) {
    if (has_room(r, n, zc, nzc))
        return 0;
    int spurious = 0;
    uint32_t best = r->cached; /* the consumer's furthest head seen: real progress */
    for (;;) {
        int64_t back = nzc ? drain_returns(r) : 0;
        if (back < 0)
            return -1;
        uint32_t h = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
        uint32_t used = r->pos - h;
        if (used > r->cap) {
            PyErr_Format(ProtocolError, "corrupt ring: head %u is not within %u slots of tail %u", h,
                         r->cap, r->pos);
            return -1;
        }
        if ((int32_t)(h - best) > 0 || back > 0) { /* progress, if not yet enough of it */
            best = (int32_t)(h - best) > 0 ? h : best;
            spurious = 0;
        }
        r->cached = h;
        /* stored by the consumer before `head`: at least as recent as h */
        r->zc_seen = atomic_load_explicit(&r->hdr->recv_zc_bytes, memory_order_relaxed);
        if (has_room(r, n, zc, nzc))
            return 0;
        int rc;
        if (has_room(r, n, zc, 0)) { /* only the outstanding bound: wait for returns */
            uint32_t t = atomic_load_explicit(&r->hdr->ret_tail, memory_order_acquire);
            if (t != r->ret_idx)
                rc = W_CHANGED; /* something to drain already */
            else
                rc = wait_change(r, &r->hdr->ret_tail, t, &r->hdr->ret_sleeping, deadline,
                                 &r->hdr->prod_sleeps, &r->hdr->prod_futex_timeouts, NULL, 0);
        } else {
            rc = wait_change(r, &r->hdr->head, h, &r->hdr->prod_sleeping, deadline,
                             &r->hdr->prod_sleeps, &r->hdr->prod_futex_timeouts, NULL, 0);
        }
        if (rc == W_CHANGED)
            rc = throttle(r, &spurious, deadline);
        if (rc != W_CHANGED)
            return producer_wait_failed(r, rc);
    }
}

/* Producer: one release store publishes everything written since the last publish,
 * then one (usually skipped) wake-up. */
static void publish(Ring *r, uint32_t nmsgs) {
    struct fr_hdr *h = r->hdr;
    note_cpu(r);
    atomic_store_explicit(&h->sent_zc_bytes, r->zc_sent, memory_order_relaxed);
    atomic_store_explicit(&h->tail, r->pos, memory_order_release);
    waker_fence(r);
    if (atomic_load_explicit(&h->cons_sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&h->cons_sleeping, 0, memory_order_relaxed)) {
        futex_wake(&h->tail);
        add_stat(&h->prod_wakes, 1);
    } else {
        add_stat(&h->prod_wakes_skipped, 1);
    }
    add_stat(&h->sent_msgs, nmsgs);
    add_stat(&h->sent_batches, 1);
}

/* Consumer: free slots up to r->pos with one release store, wake a producer waiting for room. */
static void consume(Ring *r, uint32_t nmsgs) {
    struct fr_hdr *h = r->hdr;
    note_cpu(r);
    if (r->zc_pending) { /* before `head`: the producer reads it after acquiring head */
        add_stat(&h->recv_zc_bytes, r->zc_pending);
        r->zc_pending = 0;
    }
    atomic_store_explicit(&h->head, r->pos, memory_order_release);
    waker_fence(r);
    if (atomic_load_explicit(&h->prod_sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&h->prod_sleeping, 0, memory_order_relaxed)) {
        futex_wake(&h->head);
        add_stat(&h->cons_wakes, 1);
    } else {
        add_stat(&h->cons_wakes_skipped, 1);
    }
    add_stat(&h->recv_msgs, nmsgs);
    add_stat(&h->recv_batches, 1);
}

/* fn(v): the pool's alloc/free, one vectorcall (no argument tuple, no format parsing) */
static PyObject *call_u64(PyObject *fn, uint64_t v) {
    PyObject *arg = PyLong_FromUnsignedLongLong(v);
    if (!arg)
        return NULL;
    PyObject *res = PyObject_CallOneArg(fn, arg);
    Py_DECREF(arg);
    return res;
}

/* ------------------------------------------------------------------ the return queue */

/* The consumer never calls the producer's allocator: it writes the offset of a block it
 * is done with into the return queue (a ring of u64 in this ring's shared memory) and
 * the producer, which keeps the set of blocks it sent here and has not had back, drains
 * it and frees what it recognises.  Nothing read from the queue is trusted: indices
 * farther apart than its capacity break this ring (ProtocolError), entries that are not
 * an outstanding block of this ring (unknown, out of range, misaligned, duplicates) are
 * counted and ignored.  The producer bounds the blocks outstanding to the queue's
 * capacity, so an honest consumer's queue never overflows; a release never blocks. */

static inline int out_test(const Ring *r, uint64_t g) {
    return (r->out_bits[g >> 6] >> (g & 63)) & 1;
}

/* Producer: a zero-copy block leaves on this ring. */
static inline void out_mark(Ring *r, uint64_t off) {
    if (!r->out_bits)
        return;
    uint64_t g = off / FR_GRAN;
    r->out_bits[g >> 6] |= 1ull << (g & 63);
    r->outstanding++;
}

static void give_back(Ring *r, PyObject *fn, uint64_t off) {
    PyObject *res = call_u64(fn, off);
    if (!res)
        PyErr_WriteUnraisable(fn);
    Py_XDECREF(res);
}

/* Producer: read every return published so far (at most rq_cap entries: bounded).
 * Returns the number accepted, or -1 with ProtocolError when the indices are corrupt
 * (the ring is then broken: every later send raises). */
static int64_t drain_returns(Ring *r) {
    if (!r->rq || !r->out_bits || r->ret_broken || !r->hdr)
        return 0;
    uint32_t t = atomic_load_explicit(&r->hdr->ret_tail, memory_order_acquire);
    uint32_t d = t - r->ret_idx;
    if (d == 0)
        return 0;
    if (d > r->rq_cap) {
        r->ret_broken = 1;
        PyErr_Format(ProtocolError,
                     "corrupt ring: return queue tail %u is not within %u entries of head %u; "
                     "this ring's returns are no longer trusted",
                     t, r->rq_cap, r->ret_idx);
        return -1;
    }
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb); /* a caller's pending exception survives the frees */
    int64_t ok = 0;
    for (uint32_t i = 0; i < d; i++) {
        uint64_t off = atomic_load_explicit(&r->rq[(r->ret_idx + i) & r->rq_mask],
                                            memory_order_relaxed);
        uint64_t g = off / FR_GRAN;
        if (off % FR_GRAN || off >= (uint64_t)r->pool.len || !out_test(r, g)) {
            r->returns_rejected++;
            continue;
        }
        r->out_bits[g >> 6] &= ~(1ull << (g & 63));
        r->outstanding--;
        ok++;
        give_back(r, r->pool_returned, off);
    }
    PyErr_Restore(et, ev, tb);
    r->returns_ok += (uint64_t)ok;
    r->ret_idx = t;
    atomic_store_explicit(&r->hdr->ret_head, t, memory_order_release);
    return ok;
}

/* Producer, once the consumer is gone (dead or closed): every block still outstanding
 * on this ring comes back to the pool.  Bounded by the bitmap (private memory). */
static void reclaim_outstanding(Ring *r) {
    if (!r->out_bits || !r->outstanding)
        return;
    if (!r->ret_broken && r->hdr)
        (void)drain_returns(r); /* honest returns first; errors are moot now */
    PyErr_Clear();
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    for (uint64_t w = 0; w < r->out_words && r->outstanding; w++) {
        while (r->out_bits[w]) {
            unsigned b = (unsigned)__builtin_ctzll(r->out_bits[w]);
            r->out_bits[w] &= r->out_bits[w] - 1;
            r->outstanding--;
            r->reclaimed++;
            give_back(r, r->pool_free, (w * 64 + b) * FR_GRAN);
        }
    }
    r->outstanding = 0;
    PyErr_Restore(et, ev, tb);
}

/* Consumer: hand a block back.  Never blocks and never trusts the producer's read
 * index: a full queue (or a forged index) drops the return and counts it. */
static void rq_push(Ring *r, uint64_t off) {
    if (!r->rq || !r->hdr)
        return;
    struct fr_hdr *h = r->hdr;
    uint32_t head = atomic_load_explicit(&h->ret_head, memory_order_acquire);
    if ((uint32_t)(r->ret_idx - head) >= r->rq_cap) {
        r->returns_dropped++;
        add_stat(&h->returns_dropped, 1);
        return;
    }
    atomic_store_explicit(&r->rq[r->ret_idx & r->rq_mask], off, memory_order_relaxed);
    r->ret_idx++;
    atomic_store_explicit(&h->ret_tail, r->ret_idx, memory_order_release);
    waker_fence(r);
    if (atomic_load_explicit(&h->ret_sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(&h->ret_sleeping, 0, memory_order_relaxed))
        futex_wake(&h->ret_tail);
}

/* ------------------------------------------------------------------ Block methods */

/* Give the block back to the pool.  Runs from dealloc too, so it must neither
 * clobber a pending exception nor hand the dying block to anything. */
static void block_free_to_pool(Block *b) {
    if (b->released)
        return;
    b->released = 1;
    Ring *r = b->ring;
    r->blocks_out--;
    if (r->role == ROLE_CONSUMER) { /* a received block: back through the return queue */
        rq_push(r, b->offset);
        return;
    }
    if (r->pool_free) { /* a loan never sent: the producer's own block */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *res = call_u64(r->pool_free, b->offset);
        if (res == NULL)
            PyErr_WriteUnraisable(r->pool_free);
        Py_XDECREF(res);
        PyErr_Restore(et, ev, tb);
    }
}

static Block *block_new(Ring *r, uint64_t offset, uint64_t len, int writable) {
    Block *b = PyObject_New(Block, &BlockType);
    if (!b)
        return NULL;
    Py_INCREF(r);
    b->ring = r;
    b->ptr = (uint8_t *)r->pool.buf + offset;
    b->len = (Py_ssize_t)len;
    b->offset = offset;
    b->exports = 0;
    b->released = 0;
    b->writable = writable;
    b->entered = NULL;
    r->blocks_out++;
    return b;
}

static void block_dealloc(Block *b) {
    /* a block dropped without release() goes back to the pool (a loan never sent too) */
    Py_CLEAR(b->entered);
    block_free_to_pool(b);
    Py_CLEAR(b->ring);
    PyObject_Free(b);
}

static int block_getbuffer(Block *b, Py_buffer *view, int flags) {
    if (b->released) {
        PyErr_SetString(PyExc_BufferError, "zero-copy block already released or sent");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)b, b->ptr, b->len, !b->writable, flags) < 0)
        return -1;
    b->exports++;
    return 0;
}

static void block_releasebuffer(Block *b, Py_buffer *view) { b->exports--; }

static PyBufferProcs block_as_buffer = {(getbufferproc)block_getbuffer,
                                        (releasebufferproc)block_releasebuffer};

static PyObject *str_release; /* interned "release" */

static int block_drop_entered(Block *b) {
    if (b->entered) {
        PyObject *res = PyObject_CallMethodNoArgs(b->entered, str_release);
        Py_CLEAR(b->entered);
        if (!res)
            return -1;
        Py_DECREF(res);
    }
    return 0;
}

static PyObject *block_release(Block *b, PyObject *unused) {
    if (block_drop_entered(b) < 0)
        return NULL;
    if (b->exports > 0) {
        PyErr_SetString(PyExc_BufferError,
                        "a memoryview of this block is still alive: release it before the block");
        return NULL;
    }
    block_free_to_pool(b);
    Py_RETURN_NONE;
}

static PyObject *block_enter(Block *b, PyObject *unused) {
    if (b->entered) {
        PyErr_SetString(PyExc_RuntimeError, "block already entered");
        return NULL;
    }
    b->entered = PyMemoryView_FromObject((PyObject *)b);
    if (!b->entered)
        return NULL;
    Py_INCREF(b->entered);
    return b->entered;
}

static PyObject *block_exit(Block *b, PyObject *const *args, Py_ssize_t nargs) {
    if (b->writable) { /* a loan: leave it to be sent */
        if (block_drop_entered(b) < 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    PyObject *res = block_release(b, NULL);
    if (!res)
        return NULL;
    Py_DECREF(res);
    Py_RETURN_FALSE;
}

static PyObject *block_get_offset(Block *b, void *c) { return PyLong_FromUnsignedLongLong(b->offset); }
static PyObject *block_get_nbytes(Block *b, void *c) { return PyLong_FromSsize_t(b->len); }
static PyObject *block_get_released(Block *b, void *c) { return PyBool_FromLong(b->released); }
static PyObject *block_get_address(Block *b, void *c) { return PyLong_FromVoidPtr(b->ptr); }
static Py_ssize_t block_length(Block *b) { return b->len; }

static PyMethodDef block_methods[] = {
    {"release", (PyCFunction)block_release, METH_NOARGS, "Hand the block back to the shared pool."},
    {"__enter__", (PyCFunction)block_enter, METH_NOARGS, "Return a memoryview of the block."},
    {"__exit__", (PyCFunction)(void (*)(void))block_exit, METH_FASTCALL,
     "Release the memoryview, and (received blocks) the block."},
    {NULL}};

static PyGetSetDef block_getset[] = {
    {"offset", (getter)block_get_offset, NULL, "offset of the block in the shared pool", NULL},
    {"nbytes", (getter)block_get_nbytes, NULL, "length of the block", NULL},
    {"released", (getter)block_get_released, NULL, "True once released (or sent)", NULL},
    {"address", (getter)block_get_address, NULL, "virtual address (for zero-copy proofs)", NULL},
    {NULL}};

static PySequenceMethods block_as_seq = {.sq_length = (lenfunc)block_length};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "exo.ipc._fring.Block",
    .tp_basicsize = sizeof(Block),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_as_buffer = &block_as_buffer,
    .tp_as_sequence = &block_as_seq,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A message payload in the shared pool: a loan (writable, producer side) or a "
              "received block (read-only, consumer side).  Use it through memoryview(), "
              "and release() it (or use `with block as mv:`).",
    .tp_methods = block_methods,
    .tp_getset = block_getset,
};

/* ------------------------------------------------------------------ message preparation */

typedef struct {
    uint32_t flags, size;
    const uint8_t *src; /* inline payload (in `view`, or in a packed batch's buffer) */
    Py_buffer view;     /* a message object's buffer, held until the slot is written */
    int has_view;
    uint64_t off, len; /* zero-copy descriptor */
    Block *loan;       /* borrowed: a loan to mark sent */
    int allocated;     /* we allocated the pool block (free it on failure) */
} prep_t;

static void prep_cleanup(Ring *r, prep_t *p, int failed) {
    if (p->has_view) {
        PyBuffer_Release(&p->view);
        p->has_view = 0;
    }
    if (failed && p->allocated && r->pool_free) {
        /* the caller's exception (timeout, peer gone...) must survive the call */
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *res = call_u64(r->pool_free, p->off);
        if (!res)
            PyErr_WriteUnraisable(r->pool_free);
        Py_XDECREF(res);
        PyErr_Restore(et, ev, tb);
        p->allocated = 0;
    }
}

static int pool_alloc(Ring *r, uint64_t n, uint64_t *off) {
    if (!r->has_pool) {
        PyErr_Format(PyExc_ValueError,
                     "a %llu-byte message exceeds the %u-byte inline limit and the ring has no "
                     "shared pool",
                     (unsigned long long)n, FR_INLINE);
        return -1;
    }
    if (!r->pool_alloc) {
        PyErr_SetString(PyExc_ValueError, "this ring end has only a read-only view of the pool");
        return -1;
    }
    /* what the consumer gave back is memory this allocation may reuse */
    if (drain_returns(r) < 0)
        return -1;
    PyObject *res = call_u64(r->pool_alloc, n);
    if (!res)
        return -1;
    unsigned long long o = PyLong_AsUnsignedLongLong(res);
    Py_DECREF(res);
    if (o == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    if (o > (uint64_t)r->pool.len || n > (uint64_t)r->pool.len - o || o % FR_GRAN) {
        PyErr_Format(PyExc_RuntimeError,
                     "pool.alloc returned offset %llu outside the pool or not 64-byte aligned", o);
        return -1;
    }
    *off = o;
    return 0;
}

/* n plain bytes at src: inline when they fit in a slot (copied when the slot is
 * written), else the zero-copy path: the producer's one write of the payload, into a
 * block of the shared pool. */
static int prep_bytes(Ring *r, prep_t *p, const uint8_t *src, Py_ssize_t n) {
    if ((size_t)n <= FR_INLINE) {
        p->size = (uint32_t)n;
        p->src = src;
        return 0;
    }
    if (pool_alloc(r, (uint64_t)n, &p->off) < 0)
        return -1;
    p->allocated = 1;
    p->len = (uint64_t)n;
    memcpy((uint8_t *)r->pool.buf + p->off, src, (size_t)n);
    p->flags = F_ZC;
    p->size = FR_DESC;
    return 0;
}

static int prep_msg(Ring *r, PyObject *data, prep_t *p) {
    memset(p, 0, sizeof(*p));
    if (Py_IS_TYPE(data, &BlockType)) {
        Block *b = (Block *)data;
        if (!b->writable || b->ring != r) {
            PyErr_SetString(PyExc_ValueError, "only a loan from this ring's loan() can be sent");
            return -1;
        }
        if (b->released) {
            PyErr_SetString(PyExc_ValueError, "loan already sent or released");
            return -1;
        }
        if (block_drop_entered(b) < 0)
            return -1;
        if (b->exports > 0) {
            PyErr_SetString(PyExc_BufferError,
                            "a memoryview of the loan is still alive: release it before sending");
            return -1;
        }
        p->flags = F_ZC;
        p->size = FR_DESC;
        p->off = b->offset;
        p->len = (uint64_t)b->len;
        p->loan = b;
        return 0;
    }
    if (PyObject_GetBuffer(data, &p->view, PyBUF_SIMPLE) < 0)
        return -1;
    p->has_view = 1;
    if (prep_bytes(r, p, p->view.buf, p->view.len) < 0) {
        prep_cleanup(r, p, 1);
        return -1;
    }
    if (p->flags & F_ZC) { /* copied into the pool: the source is no longer needed */
        PyBuffer_Release(&p->view);
        p->has_view = 0;
    }
    return 0;
}

/* write a prepared message (already reserved) at r->pos; advances r->pos */
static void write_msg(Ring *r, prep_t *p, const uint32_t *handles, int nh) {
    for (int i = 0; i < nh; i += FR_HPS) {
        int k = nh - i < FR_HPS ? nh - i : FR_HPS;
        uint8_t *s = slot_at(r, r->pos);
        memcpy(s + 8, handles + i, (size_t)k * 4);
        atomic_store_explicit((_Atomic uint64_t *)s,
                              slot_word(r->pos, T_HANDLES, F_MORE, (uint32_t)k * 4),
                              memory_order_relaxed);
        r->pos++;
    }
    uint8_t *s = slot_at(r, r->pos);
    if (p->flags & F_ZC) {
        uint64_t d[2] = {p->off, p->len};
        memcpy(s + 8, d, sizeof d);
        if (p->loan) {
            p->loan->released = 1; /* ownership moves to the consumer */
            p->loan->ring->blocks_out--;
        }
        p->allocated = 0;
        r->zc_sent += p->len;
        out_mark(r, p->off);
    } else if (p->size) {
        memcpy(s + 8, p->src, p->size);
    }
    /* release: a consumer that sees this word (acquire) sees the payload above; on
     * x86-64 this is a plain store, on ARM64 an STLR */
    atomic_store_explicit((_Atomic uint64_t *)s, slot_word(r->pos, T_DATA, p->flags, p->size),
                          memory_order_release);
    r->pos++;
}

/* Write a batch of single-slot messages at r->pos, its first slot last.  Every slot's
 * header is a release store, so each message is complete on its own; writing the first
 * one last means a consumer polling it (the fast path) finds the whole batch written
 * and takes it in one go, instead of taking it piecemeal while it is being written. */
static void write_batch(Ring *r, prep_t *p, Py_ssize_t n) {
    uint32_t first = r->pos;
    r->pos = first + 1;
    for (Py_ssize_t i = 1; i < n; i++)
        write_msg(r, &p[i], NULL, 0);
    r->pos = first;
    write_msg(r, &p[0], NULL, 0);
    r->pos = first + (uint32_t)n;
}

static uint32_t batch_zc_count(const prep_t *p, Py_ssize_t n) {
    uint32_t c = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        c += (p[i].flags & F_ZC) != 0;
    return c;
}

static uint64_t batch_zc_bytes(const prep_t *p, Py_ssize_t n) {
    uint64_t zc = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i].flags & F_ZC)
            zc += p[i].len;
    return zc;
}

static int check_producer(Ring *r) {
    if (ring_ready(r) < 0)
        return -1;
    if (r->role != ROLE_PRODUCER) {
        PyErr_SetString(PyExc_TypeError, "this ring endpoint is the consumer: it cannot send");
        return -1;
    }
    if (r->ret_broken) {
        PyErr_SetString(ProtocolError, "ring broken: its return queue was corrupted by the peer");
        return -1;
    }
    if (atomic_load_explicit(&r->hdr->cons_closed, memory_order_relaxed)) {
        reclaim_outstanding(r);
        PyErr_SetString(PeerClosedError, "the consumer closed its end of the ring");
        return -1;
    }
    return 0;
}

static int parse_handles(PyObject *seq, uint32_t *out, int *n) {
    *n = 0;
    if (seq == NULL || seq == Py_None)
        return 0;
    PyObject *fast = PySequence_Fast(seq, "handles must be a sequence of ints");
    if (!fast)
        return -1;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(fast);
    if (k > FR_MAX_HANDLES) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "at most %d handles per message (got %zd)", FR_MAX_HANDLES, k);
        return -1;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        unsigned long v = PyLong_AsUnsignedLong(PySequence_Fast_GET_ITEM(fast, i));
        if ((v == (unsigned long)-1 && PyErr_Occurred()) || v > 0xFFFFFFFFul) {
            Py_DECREF(fast);
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "a handle must be an int in [0, 2**32)");
            return -1;
        }
        out[i] = (uint32_t)v;
    }
    *n = (int)k;
    Py_DECREF(fast);
    return 0;
}

/* send(data, handles=None, timeout=None) */
static PyObject *ring_send(Ring *r, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *data = NULL, *handles = NULL, *timeout = NULL;
    if (kwnames == NULL && nargs == 1) {
        data = args[0];
    } else {
        static const char *const kw[] = {"data", "handles", "timeout", NULL};
        static _PyArg_Parser parser = {.format = "O|OO:send", .keywords = kw};
        if (!_PyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &data, &handles, &timeout))
            return NULL;
    }
    if (check_producer(r) < 0)
        return NULL;
    uint32_t hv[FR_MAX_HANDLES];
    int nh;
    int64_t deadline;
    if (parse_handles(handles, hv, &nh) < 0 || parse_timeout(timeout, &deadline) < 0)
        return NULL;
    uint32_t need = 1 + (uint32_t)((nh + FR_HPS - 1) / FR_HPS);
    if (need > r->cap) {
        PyErr_SetString(PyExc_ValueError, "message needs more slots than the ring has");
        return NULL;
    }
    prep_t p;
    if (prep_msg(r, data, &p) < 0)
        return NULL;
    if (reserve(r, need, p.flags & F_ZC ? p.len : 0, (p.flags & F_ZC) != 0, deadline) < 0) {
        prep_cleanup(r, &p, 1);
        return NULL;
    }
    write_msg(r, &p, hv, nh);
    prep_cleanup(r, &p, 0);
    publish(r, 1);
    Py_RETURN_NONE;
}

/* send_batch(messages, timeout=None): up to 16 messages, one release store, one wake-up */
static PyObject *ring_send_batch(Ring *r, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    PyObject *msgs = NULL, *timeout = NULL;
    static const char *const kw[] = {"messages", "timeout", NULL};
    static _PyArg_Parser parser = {.format = "O|O:send_batch", .keywords = kw};
    if (!_PyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &msgs, &timeout))
        return NULL;
    if (check_producer(r) < 0)
        return NULL;
    int64_t deadline;
    if (parse_timeout(timeout, &deadline) < 0)
        return NULL;
    PyObject *fast = PySequence_Fast(msgs, "send_batch needs a sequence of messages");
    if (!fast)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n > FR_BATCH_MAX || (uint32_t)n > r->cap) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "a batch holds at most %d messages (and no more than the ring's capacity)",
                     FR_BATCH_MAX);
        return NULL;
    }
    if (n == 0) {
        Py_DECREF(fast);
        Py_RETURN_NONE;
    }
    prep_t p[FR_BATCH_MAX];
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        if (prep_msg(r, PySequence_Fast_GET_ITEM(fast, i), &p[i]) < 0)
            break;
        for (Py_ssize_t j = 0; j < i; j++) /* one loan cannot be sent twice */
            if (p[i].loan && p[i].loan == p[j].loan) {
                PyErr_SetString(PyExc_ValueError, "the same loan appears twice in the batch");
                prep_cleanup(r, &p[i], 1);
                goto fail;
            }
    }
    if (i < n || reserve(r, (uint32_t)n, batch_zc_bytes(p, n), batch_zc_count(p, n), deadline) < 0)
        goto fail;
    write_batch(r, p, n);
    for (i = 0; i < n; i++)
        prep_cleanup(r, &p[i], 0);
    Py_DECREF(fast);
    publish(r, (uint32_t)n);
    Py_RETURN_NONE;
fail:
    for (Py_ssize_t j = 0; j < i; j++)
        prep_cleanup(r, &p[j], 1);
    Py_DECREF(fast);
    return NULL;
}

/* Lengths of a packed batch: an int (every message that many bytes, as many as the
 * buffer holds) or a sequence of ints that add up to the buffer's length. */
static Py_ssize_t packed_lengths(PyObject *lengths, Py_ssize_t total, Py_ssize_t *out) {
    if (PyLong_Check(lengths)) {
        Py_ssize_t each = PyLong_AsSsize_t(lengths);
        if (each == -1 && PyErr_Occurred())
            return -1;
        if (each <= 0) {
            PyErr_Format(PyExc_ValueError, "message length must be > 0, got %zd", each);
            return -1;
        }
        if (total % each) {
            PyErr_Format(PyExc_ValueError,
                         "a %zd-byte buffer is not a whole number of %zd-byte messages", total, each);
            return -1;
        }
        Py_ssize_t n = total / each;
        if (n > FR_BATCH_MAX) {
            PyErr_Format(PyExc_ValueError, "a batch holds at most %d messages, got %zd",
                         FR_BATCH_MAX, n);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            out[i] = each;
        return n;
    }
    PyObject *fast = PySequence_Fast(lengths, "lengths must be an int or a sequence of ints");
    if (!fast)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast), sum = 0;
    if (n > FR_BATCH_MAX) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "a batch holds at most %d messages, got %zd", FR_BATCH_MAX,
                     n);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(fast, i);
        Py_ssize_t v = PyLong_Check(o) ? PyLong_AsSsize_t(o) : -1;
        if (v < 0) {
            Py_DECREF(fast);
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "lengths[%zd] is not a non-negative int", i);
            return -1;
        }
        if (v > total - sum) {
            Py_DECREF(fast);
            PyErr_Format(PyExc_ValueError, "lengths add up to more than the buffer's %zd bytes",
                         total);
            return -1;
        }
        sum += v;
        out[i] = v;
    }
    Py_DECREF(fast);
    if (sum != total) {
        PyErr_Format(PyExc_ValueError, "lengths add up to %zd bytes but the buffer holds %zd", sum,
                     total);
        return -1;
    }
    return n;
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
    atomic_store_explicit((_Atomic uint64_t *)s, slot_word(pos, T_DATA, 0, (uint32_t)len),
                          memory_order_release);
}

/* A packed batch of inline messages at r->pos, its first slot last (see write_batch);
 * the ring's fields in registers (the slot stores could alias them for the compiler). */
static void write_packed_inline(Ring *r, const uint8_t *buf, Py_ssize_t total,
                                const Py_ssize_t *len, Py_ssize_t n) {
    const uint8_t *end = buf + total, *src = buf + len[0];
    uint8_t *slots = r->slots;
    const uint32_t first = r->pos, mask = r->mask;
    for (Py_ssize_t i = 1; i < n; i++) {
        uint32_t pos = first + (uint32_t)i;
        put_inline(slots + (size_t)(pos & mask) * FR_SLOT, pos, src, (size_t)len[i], end);
        src += len[i];
    }
    put_inline(slots + (size_t)(first & mask) * FR_SLOT, first, buf, (size_t)len[0], end);
    r->pos = first + (uint32_t)n;
}

/* send_batch_packed(buffer, lengths, timeout=None): up to 16 messages laid end to end
 * in one buffer, one publish, one wake-up; no Python object per message. */
static PyObject *ring_send_batch_packed(Ring *r, PyObject *const *args, Py_ssize_t nargs,
                                        PyObject *kwnames) {
    PyObject *buffer = NULL, *lengths = NULL, *timeout = NULL;
    if (kwnames == NULL && nargs == 2) {
        buffer = args[0];
        lengths = args[1];
    } else {
        static const char *const kw[] = {"buffer", "lengths", "timeout", NULL};
        static _PyArg_Parser parser = {.format = "OO|O:send_batch_packed", .keywords = kw};
        if (!_PyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &buffer, &lengths,
                                          &timeout))
            return NULL;
    }
    if (check_producer(r) < 0)
        return NULL;
    int64_t deadline;
    if (parse_timeout(timeout, &deadline) < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(buffer, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    Py_ssize_t len[FR_BATCH_MAX];
    Py_ssize_t n = packed_lengths(lengths, view.len, len);
    if (n < 0)
        goto fail_view;
    if ((uint32_t)n > r->cap) {
        PyErr_Format(PyExc_ValueError, "a batch of %zd messages exceeds the ring's %u slots", n,
                     r->cap);
        goto fail_view;
    }
    if (n == 0) {
        PyBuffer_Release(&view);
        Py_RETURN_NONE;
    }
    int all_inline = 1;
    for (Py_ssize_t k = 0; k < n; k++)
        all_inline &= len[k] <= (Py_ssize_t)FR_INLINE;
    if (all_inline) { /* the common case: no pool, no per-message preparation */
        if (reserve(r, (uint32_t)n, 0, 0, deadline) < 0)
            goto fail_view;
        write_packed_inline(r, view.buf, view.len, len, n);
        PyBuffer_Release(&view);
        publish(r, (uint32_t)n);
        Py_RETURN_NONE;
    }
    prep_t p[FR_BATCH_MAX];
    const uint8_t *src = view.buf;
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        p[i].flags = 0;
        p[i].has_view = 0;
        p[i].loan = NULL;
        p[i].allocated = 0;
        if (prep_bytes(r, &p[i], src, len[i]) < 0)
            goto fail;
        src += len[i];
    }
    if (reserve(r, (uint32_t)n, batch_zc_bytes(p, n), batch_zc_count(p, n), deadline) < 0)
        goto fail;
    write_batch(r, p, n);
    PyBuffer_Release(&view);
    publish(r, (uint32_t)n);
    Py_RETURN_NONE;
fail:
    for (Py_ssize_t j = 0; j < i; j++)
        prep_cleanup(r, &p[j], 1);
fail_view:
    PyBuffer_Release(&view);
    return NULL;
}

/* loan(nbytes) -> writable Block in the shared pool */
static PyObject *ring_loan(Ring *r, PyObject *arg) {
    if (check_producer(r) < 0)
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n <= 0) {
        PyErr_SetString(PyExc_ValueError, "a loan needs a positive size");
        return NULL;
    }
    uint64_t off;
    if (pool_alloc(r, (uint64_t)n, &off) < 0)
        return NULL;
    return (PyObject *)block_new(r, off, (uint64_t)n, 1);
}

/* ------------------------------------------------------------------ receive */

static int check_consumer(Ring *r) {
    if (ring_ready(r) < 0)
        return -1;
    if (r->role != ROLE_CONSUMER) {
        PyErr_SetString(PyExc_TypeError, "this ring endpoint is the producer: it cannot receive");
        return -1;
    }
    return 0;
}

/* Slots visible to the consumer from r->pos: those `tail` covers, or else the one
 * slot at r->pos when its release-stored header already says it holds a complete
 * message for r->pos (the fast path: the data's cache line carries the news, no
 * second line to fetch).  The consumer may thus run ahead of `tail` by the slots of
 * one publish; positions are compared as signed distances.  -1: corrupt indices. */
static int64_t visible(Ring *r) {
    int32_t d = (int32_t)(r->cached - r->pos);
    if (d > 0)
        return d;
    uint32_t t = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
    d = (int32_t)(t - r->pos);
    if (d > (int32_t)r->cap || d < -(int32_t)r->cap) {
        PyErr_Format(ProtocolError, "corrupt ring: tail %u is not within %u slots of head %u", t,
                     r->cap, r->pos);
        return -1;
    }
    r->cached = t;
    if (d > 0)
        return d;
    return slot_ready((_Atomic uint64_t *)slot_at(r, r->pos), r->pos);
}

/* Make at least one slot available; returns the number available or -1. */
static int64_t await_data(Ring *r, int64_t deadline) {
    int spurious = 0;
    for (;;) {
        int64_t avail = visible(r);
        if (avail != 0)
            return avail;
        uint32_t t = r->cached;
        int rc = wait_change(r, &r->hdr->tail, t, &r->hdr->cons_sleeping, deadline,
                             &r->hdr->cons_sleeps, &r->hdr->cons_futex_timeouts,
                             (_Atomic uint64_t *)slot_at(r, r->pos), r->pos);
        if (rc == W_CHANGED)
            rc = throttle(r, &spurious, deadline);
        if (rc == W_CHANGED)
            continue;
        if (rc == W_CLOSED || rc == W_DIED) {
            /* deliver what was published before the peer went away */
            avail = visible(r);
            if (avail != 0)
                return avail;
        }
        return raise_wait(rc, "recv");
    }
}

/* A message decoded at r->pos: validated, nothing created or consumed yet. */
typedef struct {
    uint32_t used;      /* slots it occupies (its HANDLES slots and its DATA slot) */
    int zc;             /* the payload is a block of the shared pool */
    const uint8_t *ptr; /* the payload: in the slot, or in the pool */
    uint64_t off, len;  /* pool offset (zc), payload length */
    int nh;
    uint32_t hv[FR_MAX_HANDLES];
    char err[160]; /* why it is malformed */
} msg_t;

static int bad_msg(msg_t *m, uint32_t used, const char *fmt, unsigned long long a,
                   unsigned long long b) {
    m->used = used;
    snprintf(m->err, sizeof m->err, fmt, a, b);
    return -1;
}

/* Decode the message at r->pos (*avail slots visible; extended if the message's chain
 * reaches past them and `tail` covers it).  Each slot's header word is loaded once and
 * validated before anything it says is used: the peer is not trusted.  Returns 0, or
 * -1 for a malformed message (m->used slots to skip, m->err says why); never raises. */
static int decode_msg(Ring *r, uint32_t *avail, msg_t *m) {
    uint32_t used = 0;
    m->nh = 0;
    for (;;) {
        if (used >= *avail) {
            int32_t d = (int32_t)(atomic_load_explicit(&r->hdr->tail, memory_order_acquire) - r->pos);
            if (d > (int32_t)used && d <= (int32_t)r->cap)
                *avail = (uint32_t)d;
        }
        if (used >= *avail)
            return bad_msg(m, used, "truncated message: %llu of %llu published slot(s) and no end",
                           used, *avail);
        const uint8_t *s = slot_at(r, r->pos + used);
        uint64_t w = atomic_load_explicit((_Atomic uint64_t *)s, memory_order_relaxed);
        uint32_t seq = (uint32_t)w, type = (uint32_t)(w >> 32) & 0xFF,
                 flags = (uint32_t)(w >> 40) & 0xFF, size = (uint32_t)(w >> 48);
        used++;
        if (seq != r->pos + used - 1)
            return bad_msg(m, used, "stale or forged slot: sequence %llu, expected %llu", seq,
                           r->pos + used - 1);
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
            if (!r->has_pool)
                return bad_msg(m, used,
                               "zero-copy message (offset %llu, %llu bytes) but no pool attached",
                               d[0], d[1]);
            if (d[1] == 0 || d[0] > (uint64_t)r->pool.len || d[1] > (uint64_t)r->pool.len - d[0])
                return bad_msg(m, used, "descriptor outside the pool: offset %llu, length %llu",
                               d[0], d[1]);
            m->zc = 1;
            m->off = d[0];
            m->len = d[1];
            m->ptr = (const uint8_t *)r->pool.buf + d[0];
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

/* Skip a malformed message: count it, free its slots, raise ProtocolError. */
static void reject_msg(Ring *r, const msg_t *m) {
    r->pos += m->used;
    add_stat(&r->hdr->rejected, 1);
    consume(r, 0);
    PyErr_SetString(ProtocolError, m->err);
}

static void raise_has_handles(void) {
    PyErr_SetString(ProtocolError, "the next message carries handles: receive it with recv_msg()");
}

/* The message's payload as an object: bytes (inline, copied out of the slot) or a
 * Block (zero-copy, in place in the pool). */
static PyObject *msg_object(Ring *r, const msg_t *m) {
    if (m->zc)
        return (PyObject *)block_new(r, m->off, m->len, 0);
    return PyBytes_FromStringAndSize((const char *)m->ptr, (Py_ssize_t)m->len);
}

static PyObject *recv_common(Ring *r, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                            int want_handles) {
    PyObject *timeout = NULL;
    if (nargs || kwnames) {
        static const char *const kw[] = {"timeout", NULL};
        static _PyArg_Parser parser = {.format = "|O:recv", .keywords = kw};
        if (!_PyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &timeout))
            return NULL;
    }
    if (check_consumer(r) < 0)
        return NULL;
    int64_t deadline;
    if (parse_timeout(timeout, &deadline) < 0)
        return NULL;
    int64_t avail = await_data(r, deadline);
    if (avail < 0)
        return NULL;
    uint32_t av = (uint32_t)avail;
    msg_t m;
    if (decode_msg(r, &av, &m) < 0) {
        reject_msg(r, &m);
        return NULL;
    }
    if (m.nh && !want_handles) { /* the caller cannot take handles: leave it in the ring */
        raise_has_handles();
        return NULL;
    }
    PyObject *handles = NULL;
    if (want_handles) {
        handles = PyTuple_New(m.nh);
        if (!handles)
            return NULL;
        for (int i = 0; i < m.nh; i++) {
            PyObject *v = PyLong_FromUnsignedLong(m.hv[i]);
            if (!v) {
                Py_DECREF(handles);
                return NULL;
            }
            PyTuple_SET_ITEM(handles, i, v);
        }
    }
    /* created last: a Block that exists owns its pool block, so nothing may fail after */
    PyObject *data = msg_object(r, &m);
    if (!data) {
        Py_XDECREF(handles);
        return NULL;
    }
    r->pos += m.used;
    if (m.zc)
        r->zc_pending += m.len;
    consume(r, 1);
    if (!want_handles)
        return data;
    PyObject *res = PyTuple_Pack(2, data, handles);
    Py_DECREF(data);
    Py_DECREF(handles);
    return res;
}

static PyObject *ring_recv(Ring *r, PyObject *const *a, Py_ssize_t n, PyObject *k) {
    return recv_common(r, a, n, k, 0);
}

static PyObject *ring_recv_msg(Ring *r, PyObject *const *a, Py_ssize_t n, PyObject *k) {
    return recv_common(r, a, n, k, 1);
}

/* Batch receive prologue: wait for one message, then count everything published. */
static int64_t batch_avail(Ring *r, int64_t deadline) {
    int64_t avail = await_data(r, deadline);
    if (avail < 0)
        return -1;
    uint32_t t = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
    int32_t d = (int32_t)(t - r->pos);
    if (d > 0 && d <= (int32_t)r->cap && d > avail) {
        r->cached = t;
        avail = d;
    }
    /* slots written but not yet covered by `tail` (a batch being published: its first
     * slot is written last, so when it is ready the others are too): each header is a
     * release store, so a slot whose header says "complete, for this position" is
     * readable now */
    while (avail < FR_BATCH_MAX && avail < (int64_t)r->cap &&
           slot_ready((_Atomic uint64_t *)slot_at(r, r->pos + (uint32_t)avail),
                      r->pos + (uint32_t)avail))
        avail++;
    return avail;
}

/* Batches stop before a message they cannot deliver (malformed, with handles, too big
 * for the buffer): the messages before it are delivered now, and the next call
 * reports it. */

/* recv_batch(max=16, timeout=None) -> list: waits for one message, takes up to max
 * that are available, frees them with one release store */
static PyObject *ring_recv_batch(Ring *r, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames) {
    Py_ssize_t maxn = FR_BATCH_MAX;
    PyObject *timeout = NULL;
    if (nargs || kwnames) {
        static const char *const kw[] = {"max", "timeout", NULL};
        static _PyArg_Parser parser = {.format = "|nO:recv_batch", .keywords = kw};
        if (!_PyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &maxn, &timeout))
            return NULL;
    }
    if (check_consumer(r) < 0)
        return NULL;
    if (maxn < 1 || maxn > FR_RECV_MAX) {
        PyErr_Format(PyExc_ValueError, "max must be in [1, %d], got %zd", FR_RECV_MAX, maxn);
        return NULL;
    }
    int64_t deadline;
    if (parse_timeout(timeout, &deadline) < 0)
        return NULL;
    int64_t avail = batch_avail(r, deadline);
    if (avail < 0)
        return NULL;
    uint32_t av = (uint32_t)avail;
    PyObject *list = PyList_New(0);
    if (!list)
        return NULL;
    Py_ssize_t got = 0;
    while (av > 0 && got < maxn) {
        msg_t m;
        if (decode_msg(r, &av, &m) < 0) {
            if (got)
                break;
            Py_DECREF(list);
            reject_msg(r, &m);
            return NULL;
        }
        if (m.nh) {
            if (got)
                break;
            Py_DECREF(list);
            raise_has_handles();
            return NULL;
        }
        /* consumed before the object exists: a Block that fails to reach the list
         * returns its pool block, and the ring never hands out that descriptor again */
        r->pos += m.used;
        av -= m.used;
        got++;
        if (m.zc)
            r->zc_pending += m.len;
        PyObject *data = msg_object(r, &m);
        if (!data || PyList_Append(list, data) < 0) {
            Py_XDECREF(data);
            Py_DECREF(list);
            consume(r, (uint32_t)got);
            return NULL;
        }
        Py_DECREF(data);
    }
    consume(r, (uint32_t)got);
    return list;
}

/* Give a pool block back (a zero-copy message recv_batch_into copied out). */
static void free_pool_block(Ring *r, uint64_t off) { rq_push(r, off); }

/* The optional `lengths` argument of recv_batch_into: a writable array of unsigned
 * 4- or 8-byte ints (array('I'), array('Q'), a cast memoryview...). */
static int lengths_view(PyObject *obj, Py_buffer *v) {
    if (PyObject_GetBuffer(obj, v, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError,
                     "lengths must be a writable array of unsigned ints (e.g. array('I')), not %.80s",
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    const char *f = v->format ? v->format : "B";
    if (*f == '@' || *f == '=' || *f == '<')
        f++;
    if ((v->itemsize != 4 && v->itemsize != 8) || strlen(f) != 1 || !strchr("ILQN", *f) ||
        v->len < v->itemsize) {
        PyErr_Format(PyExc_ValueError,
                     "lengths must be a non-empty writable array of unsigned 4- or 8-byte ints "
                     "(e.g. array('I', bytes(64))), got format %s with item size %zd",
                     v->format ? v->format : "B", v->itemsize);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

/* recv_batch_into(buffer, lengths=None, max=16, timeout=None) -> int: waits for one
 * message, copies up to max available messages end to end into buffer (and their
 * lengths into `lengths`), frees their slots with one release store, returns how many.
 * No Python object per message: the result is one small int. */
static PyObject *ring_recv_batch_into(Ring *r, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames) {
    PyObject *buffer = NULL, *lengths = NULL, *timeout = NULL;
    Py_ssize_t maxn = FR_BATCH_MAX;
    if (kwnames == NULL && nargs >= 1 && nargs <= 3) { /* positional: no parser */
        buffer = args[0];
        lengths = nargs >= 2 ? args[1] : NULL;
        if (nargs == 3 && (maxn = PyLong_AsSsize_t(args[2])) == -1 && PyErr_Occurred())
            return NULL;
    } else {
        static const char *const kw[] = {"buffer", "lengths", "max", "timeout", NULL};
        static _PyArg_Parser parser = {.format = "O|OnO:recv_batch_into", .keywords = kw};
        if (!_PyArg_ParseStackAndKeywords(args, nargs, kwnames, &parser, &buffer, &lengths,
                                          &maxn, &timeout))
            return NULL;
    }
    if (lengths == Py_None)
        lengths = NULL;
    if (check_consumer(r) < 0)
        return NULL;
    if (maxn < 1 || maxn > FR_RECV_MAX) {
        PyErr_Format(PyExc_ValueError, "max must be in [1, %d], got %zd", FR_RECV_MAX, maxn);
        return NULL;
    }
    int64_t deadline;
    if (parse_timeout(timeout, &deadline) < 0)
        return NULL;
    Py_buffer out, lv;
    if (PyObject_GetBuffer(buffer, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError,
                     "recv_batch_into needs a writable contiguous buffer (bytearray, memoryview...), "
                     "not %.80s",
                     Py_TYPE(buffer)->tp_name);
        return NULL;
    }
    if (out.len == 0) {
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "recv_batch_into needs a non-empty writable buffer");
        return NULL;
    }
    if (lengths) {
        if (lengths_view(lengths, &lv) < 0) {
            PyBuffer_Release(&out);
            return NULL;
        }
        if (lv.len / lv.itemsize < maxn)
            maxn = lv.len / lv.itemsize;
    }
    PyObject *res = NULL;
    int64_t avail = await_data(r, deadline);
    if (avail < 0)
        goto done;
    /* av: slots known to be published from r->pos.  Past them, a slot is taken on its
     * own header (acquire: its payload was written before the release store of its
     * header) when it holds a complete single-slot message for its position, so a
     * consumer reading a steady stream never needs the producer's `tail` line. */
    uint32_t av = (uint32_t)avail;
    uint8_t *dst = out.buf;
    uint64_t room = (uint64_t)out.len;
    uint64_t lmax = lengths && lv.itemsize == 4 ? 0xFFFFFFFFull : UINT64_MAX;
    Py_ssize_t got = 0;
    uint32_t *len32 = lengths && lv.itemsize == 4 ? lv.buf : NULL;
    uint64_t *len64 = lengths && lv.itemsize == 8 ? lv.buf : NULL;
    /* the fast path keeps the position and the cursor in registers */
    uint32_t pos = r->pos;
    const uint32_t mask = r->mask;
    const uint8_t *slots = r->slots;
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
        r->pos = pos;
        if (av == 0) { /* past the known published slots: ask `tail` */
            uint32_t t = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
            int32_t d = (int32_t)(t - pos);
            if (d > 0 && d <= (int32_t)r->cap) {
                r->cached = t;
                av = (uint32_t)d;
            } else if (slot_ready((_Atomic uint64_t *)s, pos)) {
                av = 1; /* a single-slot message (zero-copy) written but not yet in tail */
            } else {
                break; /* nothing more for now */
            }
        }
        msg_t m;
        if (decode_msg(r, &av, &m) < 0) {
            if (!got)
                reject_msg(r, &m);
            break;
        }
        if (m.nh || m.len > room || m.len > lmax) {
            if (got)
                break;
            if (m.nh)
                raise_has_handles();
            else
                PyErr_Format(PyExc_ValueError,
                             "the next message is %llu bytes but the buffer holds %zd",
                             (unsigned long long)m.len, out.len);
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
        r->pos += m.used;
        pos = r->pos;
        av = av > m.used ? av - m.used : 0;
        if (m.zc) { /* copied out: the block goes back to the pool */
            r->zc_pending += m.len;
            free_pool_block(r, m.off);
        }
    }
    if ((int32_t)(pos - r->pos) > 0) /* the fast path's progress (a rejected slot moved r->pos) */
        r->pos = pos;
    if (got) {
        consume(r, (uint32_t)got);
        res = PyLong_FromSsize_t(got);
    }
done:
    PyBuffer_Release(&out);
    if (lengths)
        PyBuffer_Release(&lv);
    return res;
}

/* ------------------------------------------------------------------ lifecycle, stats */

/* set_pool(buffer, alloc=None, free=None, free_returned=None).  The producer owns the
 * pool: it needs a writable buffer, alloc and free (free_returned, for blocks that came
 * back through the return queue, defaults to free).  The consumer needs only a view of
 * the producer's segment, read-only in another process. */
static PyObject *ring_set_pool(Ring *r, PyObject *args) {
    PyObject *buffer, *alloc = Py_None, *freefn = Py_None, *retfn = Py_None;
    if (!PyArg_ParseTuple(args, "O|OOO:set_pool", &buffer, &alloc, &freefn, &retfn))
        return NULL;
    if (r->has_pool) {
        PyErr_SetString(PyExc_ValueError, "a pool is already attached to this ring endpoint");
        return NULL;
    }
    if (!r->has_buf) {
        PyErr_SetString(PyExc_ValueError, "ring endpoint is closed");
        return NULL;
    }
    int producer = r->role == ROLE_PRODUCER;
    if (producer && (alloc == Py_None || freefn == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "a producer's pool needs alloc and free (it owns the pool)");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer, &r->pool, producer ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return NULL;
    if (producer) {
        r->out_words = ((uint64_t)r->pool.len / FR_GRAN + 63) / 64;
        r->out_bits = PyMem_Calloc(r->out_words ? r->out_words : 1, sizeof(uint64_t));
        if (!r->out_bits) {
            PyBuffer_Release(&r->pool);
            return PyErr_NoMemory();
        }
        r->outstanding = 0;
        r->pool_alloc = Py_NewRef(alloc);
        r->pool_free = Py_NewRef(freefn);
        r->pool_returned = Py_NewRef(retfn == Py_None ? freefn : retfn);
    }
    r->has_pool = 1;
    Py_RETURN_NONE;
}

/* drain_returns() -> int: producer; take back what the consumer returned (also done
 * before every zero-copy allocation and while waiting for blocks). */
static PyObject *ring_drain_returns(Ring *r, PyObject *unused) {
    if (ring_ready(r) < 0)
        return NULL;
    if (r->role != ROLE_PRODUCER) {
        PyErr_SetString(PyExc_TypeError, "only the producer drains the return queue");
        return NULL;
    }
    int64_t n = drain_returns(r);
    if (n < 0)
        return NULL;
    return PyLong_FromLongLong(n);
}

static PyObject *ring_configure(Ring *r, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"spin_us", "yields", "tick_ms", "zc_window", NULL};
    double spin_us = (double)r->spin_ns / 1e3, tick_ms = (double)r->tick_ns / 1e6;
    int yields = r->yields;
    long long zc_window = (long long)r->zc_window;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|didL:configure", kwl, &spin_us, &yields,
                                     &tick_ms, &zc_window))
        return NULL;
    if (spin_us < 0 || yields < 0 || tick_ms <= 0 || zc_window < 0) {
        PyErr_SetString(PyExc_ValueError, "spin_us >= 0, yields >= 0, tick_ms > 0, zc_window >= 0");
        return NULL;
    }
    r->zc_window = (uint64_t)zc_window;
    r->spin_ns = (int64_t)(spin_us * 1e3);
    r->yields = yields;
    r->tick_ns = (int64_t)(tick_ms * 1e6);
    Py_RETURN_NONE;
}

static void ring_drop(Ring *r) {
    if (r->has_pool) {
        PyBuffer_Release(&r->pool);
        r->has_pool = 0;
    }
    PyMem_Free(r->out_bits);
    r->out_bits = NULL;
    r->rq = NULL;
    Py_CLEAR(r->pool_alloc);
    Py_CLEAR(r->pool_free);
    Py_CLEAR(r->pool_returned);
    if (r->has_buf) {
        PyBuffer_Release(&r->buf);
        r->has_buf = 0;
    }
    r->hdr = NULL;
    r->slots = NULL;
}

/* _shutdown(announce): announce=True tells the peer we closed (graceful close);
 * False just lets go of the mapping (after handing this end to another process). */
static PyObject *ring_shutdown(Ring *r, PyObject *arg) {
    int announce = PyObject_IsTrue(arg);
    if (announce < 0)
        return NULL;
    if (!r->has_buf)
        Py_RETURN_NONE;
    if (r->busy) {
        PyErr_SetString(PyExc_RuntimeError, "ring endpoint is in use by another thread");
        return NULL;
    }
    if (r->blocks_out > 0) {
        PyErr_Format(PyExc_BufferError, "%zd zero-copy block(s) still held: release them first",
                     r->blocks_out);
        return NULL;
    }
    if (announce && r->role == ROLE_PRODUCER && r->out_bits) {
        /* take back what was returned; if the consumer is gone, everything still out.
         * A live consumer keeps reading what it holds: those blocks stay allocated.
         * (Not on detach: the end now belongs to another process, and the returns with
         * it.) */
        if (drain_returns(r) < 0)
            PyErr_Clear();
        if (peer_gone(r))
            reclaim_outstanding(r);
    }
    if (announce) {
        struct fr_hdr *h = r->hdr;
        if (r->role == ROLE_PRODUCER) {
            atomic_store_explicit(&h->prod_closed, 1, memory_order_seq_cst);
            futex_wake(&h->tail); /* a consumer asleep on tail must see the close */
        } else {
            atomic_store_explicit(&h->cons_closed, 1, memory_order_seq_cst);
            futex_wake(&h->head);
        }
    }
    ring_drop(r);
    Py_RETURN_NONE;
}

#define SET_ITEM(d, k, v)                                                                        \
    do {                                                                                         \
        PyObject *_v = (v);                                                                      \
        if (!_v || PyDict_SetItemString(d, k, _v) < 0) {                                         \
            Py_XDECREF(_v);                                                                      \
            Py_DECREF(d);                                                                        \
            return NULL;                                                                         \
        }                                                                                        \
        Py_DECREF(_v);                                                                           \
    } while (0)
#define LD(x) atomic_load_explicit(&h->x, memory_order_relaxed)

static PyObject *ring_stats(Ring *r, PyObject *unused) {
    if (!r->has_buf) {
        PyErr_SetString(PyExc_ValueError, "ring endpoint is closed");
        return NULL;
    }
    struct fr_hdr *h = r->hdr;
    uint32_t head = LD(head), tail = LD(tail);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    SET_ITEM(d, "role", PyUnicode_FromString(r->role == ROLE_PRODUCER ? "producer" : "consumer"));
    SET_ITEM(d, "capacity", PyLong_FromUnsignedLong(r->cap));
    SET_ITEM(d, "head", PyLong_FromUnsignedLong(head));
    SET_ITEM(d, "tail", PyLong_FromUnsignedLong(tail));
    SET_ITEM(d, "occupancy", PyLong_FromLong((int32_t)(tail - head) > 0 ? (long)(int32_t)(tail - head) : 0));
    SET_ITEM(d, "producer_pid", PyLong_FromUnsignedLong(LD(prod_pid)));
    SET_ITEM(d, "consumer_pid", PyLong_FromUnsignedLong(LD(cons_pid)));
    SET_ITEM(d, "sent_msgs", PyLong_FromUnsignedLongLong(LD(sent_msgs)));
    SET_ITEM(d, "sent_batches", PyLong_FromUnsignedLongLong(LD(sent_batches)));
    SET_ITEM(d, "recv_msgs", PyLong_FromUnsignedLongLong(LD(recv_msgs)));
    SET_ITEM(d, "recv_batches", PyLong_FromUnsignedLongLong(LD(recv_batches)));
    SET_ITEM(d, "producer_wakes", PyLong_FromUnsignedLongLong(LD(prod_wakes)));
    SET_ITEM(d, "producer_wakes_skipped", PyLong_FromUnsignedLongLong(LD(prod_wakes_skipped)));
    SET_ITEM(d, "consumer_wakes", PyLong_FromUnsignedLongLong(LD(cons_wakes)));
    SET_ITEM(d, "consumer_wakes_skipped", PyLong_FromUnsignedLongLong(LD(cons_wakes_skipped)));
    SET_ITEM(d, "producer_sleeps", PyLong_FromUnsignedLongLong(LD(prod_sleeps)));
    SET_ITEM(d, "consumer_sleeps", PyLong_FromUnsignedLongLong(LD(cons_sleeps)));
    SET_ITEM(d, "producer_futex_timeouts", PyLong_FromUnsignedLongLong(LD(prod_futex_timeouts)));
    SET_ITEM(d, "consumer_futex_timeouts", PyLong_FromUnsignedLongLong(LD(cons_futex_timeouts)));
    SET_ITEM(d, "rejected", PyLong_FromUnsignedLongLong(LD(rejected)));
    SET_ITEM(d, "zc_bytes_sent", PyLong_FromUnsignedLongLong(LD(sent_zc_bytes)));
    SET_ITEM(d, "zc_bytes_received", PyLong_FromUnsignedLongLong(LD(recv_zc_bytes)));
    SET_ITEM(d, "zc_window", PyLong_FromUnsignedLongLong(r->zc_window));
    SET_ITEM(d, "consumer_sleeping", PyBool_FromLong(LD(cons_sleeping)));
    SET_ITEM(d, "producer_cpu", PyLong_FromLong((int32_t)LD(prod_cpu)));
    SET_ITEM(d, "consumer_cpu", PyLong_FromLong((int32_t)LD(cons_cpu)));
    SET_ITEM(d, "producer_sleeping", PyBool_FromLong(LD(prod_sleeping)));
    SET_ITEM(d, "producer_closed", PyBool_FromLong(LD(prod_closed)));
    SET_ITEM(d, "consumer_closed", PyBool_FromLong(LD(cons_closed)));
    SET_ITEM(d, "pool_attached", PyBool_FromLong(r->has_pool));
    SET_ITEM(d, "wake_fence", PyUnicode_FromString(r->light_fence ? "membarrier" : "mfence"));
    SET_ITEM(d, "consumer_asks_fence", PyBool_FromLong(LD(cons_heavy) != 0));
    SET_ITEM(d, "producer_asks_fence", PyBool_FromLong(LD(prod_heavy) != 0));
    SET_ITEM(d, "blocks_held", PyLong_FromSsize_t(r->blocks_out));
    SET_ITEM(d, "return_queue", PyLong_FromUnsignedLong(r->rq_cap));
    SET_ITEM(d, "blocks_outstanding", PyLong_FromUnsignedLong(r->outstanding));
    SET_ITEM(d, "returns_accepted", PyLong_FromUnsignedLongLong(r->returns_ok));
    SET_ITEM(d, "returns_rejected", PyLong_FromUnsignedLongLong(r->returns_rejected));
    SET_ITEM(d, "returns_dropped", PyLong_FromUnsignedLongLong(r->returns_dropped));
    SET_ITEM(d, "blocks_reclaimed", PyLong_FromUnsignedLongLong(r->reclaimed));
    SET_ITEM(d, "broken", PyBool_FromLong(r->ret_broken));
    SET_ITEM(d, "spin_us", PyFloat_FromDouble((double)r->spin_ns / 1e3));
    SET_ITEM(d, "yields", PyLong_FromLong(r->yields));
    SET_ITEM(d, "tick_ms", PyFloat_FromDouble((double)r->tick_ns / 1e6));
    return d;
}

static PyObject *ring_peer_alive(Ring *r, PyObject *unused) {
    if (!r->has_buf)
        Py_RETURN_FALSE;
    return PyBool_FromLong(peer_gone(r) == 0);
}

static PyObject *ring_get_closed(Ring *r, void *c) { return PyBool_FromLong(!r->has_buf); }
static PyObject *ring_get_capacity(Ring *r, void *c) { return PyLong_FromUnsignedLong(r->cap); }
static PyObject *ring_get_role(Ring *r, void *c) {
    return PyUnicode_FromString(r->role == ROLE_PRODUCER ? "producer" : "consumer");
}

/* Ring(buffer, role, live_fd=-1): bind to an initialised ring mapping */
static int ring_init(Ring *r, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"buffer", "role", "live_fd", NULL};
    PyObject *buffer;
    int role, live_fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Oi|i:Ring", kwl, &buffer, &role, &live_fd))
        return -1;
    if (r->has_buf) {
        PyErr_SetString(PyExc_RuntimeError, "Ring already initialised");
        return -1;
    }
    if (role != ROLE_PRODUCER && role != ROLE_CONSUMER) {
        PyErr_SetString(PyExc_ValueError, "role must be 0 (producer) or 1 (consumer)");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &r->buf, PyBUF_WRITABLE) < 0)
        return -1;
    r->has_buf = 1;
    struct fr_hdr *h = (struct fr_hdr *)r->buf.buf;
    if ((uintptr_t)h % 64 || r->buf.len < (Py_ssize_t)FR_HDR || h->magic != FR_MAGIC ||
        h->version != FR_VERSION || h->slot_size != FR_SLOT || h->header_size != FR_HDR ||
        h->capacity == 0 || h->capacity > FR_MAX_CAP || (h->capacity & (h->capacity - 1)) ||
        h->rq_cap != rq_cap_for(h->capacity) ||
        (uint64_t)r->buf.len < (uint64_t)FR_HDR + (uint64_t)h->capacity * FR_SLOT +
                                   (uint64_t)h->rq_cap * 8) {
        ring_drop(r);
        PyErr_SetString(ProtocolError, "not a Fusion Ring (bad magic, version, geometry or size)");
        return -1;
    }
    if (h->features & ~FRF_MEMBARRIER) {
        ring_drop(r);
        PyErr_Format(ProtocolError, "ring uses unknown protocol features 0x%x", h->features);
        return -1;
    }
    if ((h->features & FRF_MEMBARRIER) && !fr_membarrier)
        register_membarrier();
    if ((h->features & FRF_MEMBARRIER) && !fr_membarrier) {
        ring_drop(r);
        PyErr_SetString(PyExc_OSError,
                        "this ring's wake-up protocol needs membarrier(2) "
                        "(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which this process cannot use");
        return -1;
    }
    r->light_fence = (h->features & FRF_MEMBARRIER) != 0;
    {
        /* continue the mode and epochs of whoever held this end before */
        _Atomic uint32_t *mine = role == ROLE_PRODUCER ? &h->prod_heavy : &h->cons_heavy;
        _Atomic uint32_t *seen = role == ROLE_PRODUCER ? &h->cons_ack : &h->prod_ack;
        _Atomic uint32_t *ack = role == ROLE_PRODUCER ? &h->prod_ack : &h->cons_ack;
        r->my_heavy = atomic_load_explicit(mine, memory_order_relaxed);
        uint32_t a = atomic_load_explicit(seen, memory_order_relaxed);
        r->epoch = r->my_heavy > a ? r->my_heavy : a;
        r->acked = atomic_load_explicit(ack, memory_order_relaxed);
        _Atomic uint64_t *calls = role == ROLE_CONSUMER ? &h->sent_batches : &h->recv_batches;
        r->calls_mark = atomic_load_explicit(calls, memory_order_relaxed);
        r->calls_avg = 1024;
    }
    r->hdr = h;
    r->slots = (uint8_t *)h + FR_HDR;
    r->cap = h->capacity; /* geometry read once, validated above, then never again */
    r->mask = h->capacity - 1;
    r->rq_cap = rq_cap_for(r->cap);
    r->rq_mask = r->rq_cap - 1;
    r->rq = (_Atomic uint64_t *)(r->slots + (size_t)r->cap * FR_SLOT);
    r->ret_idx = atomic_load_explicit(role == ROLE_PRODUCER ? &h->ret_head : &h->ret_tail,
                                      memory_order_acquire);
    r->role = role;
    r->live_fd = live_fd;
    r->zc_window = FR_ZC_WINDOW;
    r->zc_pending = 0;
    r->my_cpu = UINT32_MAX; /* announced at the first publish, consume or wait */
    if (role == ROLE_PRODUCER) {
        r->pos = atomic_load_explicit(&h->tail, memory_order_acquire);
        r->cached = atomic_load_explicit(&h->head, memory_order_acquire);
        r->zc_sent = atomic_load_explicit(&h->sent_zc_bytes, memory_order_relaxed);
        r->zc_seen = atomic_load_explicit(&h->recv_zc_bytes, memory_order_relaxed);
        atomic_store_explicit(&h->prod_pid, (uint32_t)getpid(), memory_order_relaxed);
    } else {
        r->pos = atomic_load_explicit(&h->head, memory_order_acquire);
        r->cached = r->pos;
        atomic_store_explicit(&h->cons_pid, (uint32_t)getpid(), memory_order_relaxed);
    }
    r->spin_ns = 5000; /* measured: 5 us covers a round trip, yet gives way under oversubscription */
    r->yields = 0;
    r->tick_ns = 25 * 1000000LL; /* peer-death bound vs idle wake-ups (each ~50 us here) */
    return 0;
}

static int ring_traverse(Ring *r, visitproc visit, void *arg) {
    Py_VISIT(r->dict);
    Py_VISIT(r->pool_alloc);
    Py_VISIT(r->pool_free);
    Py_VISIT(r->pool_returned);
    Py_VISIT(Py_TYPE(r));
    return 0;
}

static int ring_clear(Ring *r) {
    Py_CLEAR(r->dict);
    Py_CLEAR(r->pool_alloc);
    Py_CLEAR(r->pool_free);
    Py_CLEAR(r->pool_returned);
    return 0;
}

static void ring_dealloc(Ring *r) {
    PyTypeObject *tp = Py_TYPE(r);
    PyObject_GC_UnTrack(r);
    ring_drop(r);
    ring_clear(r);
    tp->tp_free((PyObject *)r);
}

static PyMethodDef ring_methods[] = {
    {"send", (PyCFunction)(void (*)(void))ring_send, METH_FASTCALL | METH_KEYWORDS,
     "send(data, handles=None, timeout=None): one message (inline, or zero-copy via the pool)."},
    {"send_batch", (PyCFunction)(void (*)(void))ring_send_batch, METH_FASTCALL | METH_KEYWORDS,
     "send_batch(messages, timeout=None): up to 16 messages, one publish, one wake-up."},
    {"send_batch_packed", (PyCFunction)(void (*)(void))ring_send_batch_packed,
     METH_FASTCALL | METH_KEYWORDS,
     "send_batch_packed(buffer, lengths, timeout=None): up to 16 messages laid end to end in "
     "one buffer (lengths: an int for equal sizes, or a sequence of ints); one publish."},
    {"loan", (PyCFunction)ring_loan, METH_O, "loan(nbytes) -> writable Block in the shared pool."},
    {"recv", (PyCFunction)(void (*)(void))ring_recv, METH_FASTCALL | METH_KEYWORDS,
     "recv(timeout=None) -> bytes (inline) or Block (zero-copy)."},
    {"recv_msg", (PyCFunction)(void (*)(void))ring_recv_msg, METH_FASTCALL | METH_KEYWORDS,
     "recv_msg(timeout=None) -> (data, handles)."},
    {"recv_batch", (PyCFunction)(void (*)(void))ring_recv_batch, METH_FASTCALL | METH_KEYWORDS,
     "recv_batch(max=16, timeout=None) -> list of available messages (at least one)."},
    {"recv_batch_into", (PyCFunction)(void (*)(void))ring_recv_batch_into,
     METH_FASTCALL | METH_KEYWORDS,
     "recv_batch_into(buffer, lengths=None, max=16, timeout=None) -> int: available messages "
     "copied end to end into buffer (their lengths into `lengths`), one release store."},
    {"set_pool", (PyCFunction)ring_set_pool, METH_VARARGS,
     "set_pool(buffer, alloc=None, free=None, free_returned=None): the producer's own pool, "
     "or (consumer) a view of the producer's segment."},
    {"drain_returns", (PyCFunction)ring_drain_returns, METH_NOARGS,
     "drain_returns() -> int: producer; free the blocks the consumer returned (validated)."},
    {"configure", (PyCFunction)(void (*)(void))ring_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(spin_us=, yields=, tick_ms=, zc_window=): the adaptive wait's phases; the "
     "most zero-copy bytes a producer keeps queued (0: no limit)."},
    {"stats", (PyCFunction)ring_stats, METH_NOARGS, "Ring state and counters (a dict)."},
    {"peer_alive", (PyCFunction)ring_peer_alive, METH_NOARGS,
     "False once the peer closed its end or its process is gone."},
    {"_shutdown", (PyCFunction)ring_shutdown, METH_O, "_shutdown(announce)."},
    {NULL}};

static PyGetSetDef ring_getset[] = {
    {"closed", (getter)ring_get_closed, NULL, "True once this endpoint let go of the ring", NULL},
    {"capacity", (getter)ring_get_capacity, NULL, "number of slots", NULL},
    {"role", (getter)ring_get_role, NULL, "'producer' or 'consumer'", NULL},
    {NULL}};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "exo.ipc._fring.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_dictoffset = offsetof(Ring, dict),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One endpoint (producer or consumer) of a Fusion Ring mapping.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ring_init,
    .tp_dealloc = (destructor)ring_dealloc,
    .tp_traverse = (traverseproc)ring_traverse,
    .tp_clear = (inquiry)ring_clear,
    .tp_methods = ring_methods,
    .tp_getset = ring_getset,
};

/* ------------------------------------------------------------------ module */

/* init_header(buffer, capacity, start=0): format a fresh mapping */
static PyObject *mod_init_header(PyObject *m, PyObject *args) {
    PyObject *buffer;
    unsigned long cap, start = 0;
    if (!PyArg_ParseTuple(args, "Ok|k:init_header", &buffer, &cap, &start))
        return NULL;
    if (cap == 0 || cap > FR_MAX_CAP || (cap & (cap - 1))) {
        PyErr_Format(PyExc_ValueError, "capacity must be a power of two in [1, %u]", FR_MAX_CAP);
        return NULL;
    }
    Py_buffer b;
    if (PyObject_GetBuffer(buffer, &b, PyBUF_WRITABLE) < 0)
        return NULL;
    uint64_t total = (uint64_t)FR_HDR + (uint64_t)cap * FR_SLOT + (uint64_t)rq_cap_for(cap) * 8;
    if ((uint64_t)b.len < total) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "buffer too small for this capacity");
        return NULL;
    }
    memset(b.buf, 0, total);
    struct fr_hdr *h = (struct fr_hdr *)b.buf;
    h->version = FR_VERSION;
    h->capacity = (uint32_t)cap;
    h->rq_cap = rq_cap_for((uint32_t)cap);
    h->slot_size = FR_SLOT;
    h->header_size = FR_HDR;
    h->creator_pid = (uint32_t)getpid();
    h->features = fr_membarrier && fr_use_membarrier ? FRF_MEMBARRIER : 0;
    atomic_store_explicit(&h->tail, (uint32_t)start, memory_order_relaxed);
    atomic_store_explicit(&h->head, (uint32_t)start, memory_order_relaxed);
    atomic_store_explicit(&h->prod_cpu, UINT32_MAX, memory_order_relaxed);
    atomic_store_explicit(&h->cons_cpu, UINT32_MAX, memory_order_relaxed);
    /* slots start with a sequence that can never match: position - capacity */
    for (uint32_t i = 0; i < cap; i++) {
        uint32_t p = (uint32_t)start + i;
        uint8_t *s = (uint8_t *)b.buf + FR_HDR + (size_t)(p & (cap - 1)) * FR_SLOT;
        uint64_t w = slot_word(p - (uint32_t)cap, 0, 0, 0);
        memcpy(s, &w, 8);
    }
    atomic_thread_fence(memory_order_release);
    h->magic = FR_MAGIC; /* last: a half-initialised mapping is never accepted */
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}

/* set_latency_slice(us): ask the (EEVDF) scheduler for a short time slice for the
 * calling thread (sched_setattr, SCHED_OTHER, sched_runtime = slice).  Since Linux 6.12
 * a task with a shorter slice may preempt the running task when woken, so a ring
 * waiter woken by FUTEX_WAKE runs at once instead of after a busy task's 3 ms slice.
 * 0 restores the default.  Returns False where the kernel does not support it. */
struct fr_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
    uint32_t sched_util_min, sched_util_max;
};

static PyObject *mod_set_latency_slice(PyObject *m, PyObject *arg) {
    double us = PyFloat_AsDouble(arg);
    if (us == -1.0 && PyErr_Occurred())
        return NULL;
    if (us < 0 || us > 100000) {
        PyErr_SetString(PyExc_ValueError, "slice must be in [0, 100000] microseconds");
        return NULL;
    }
    struct fr_sched_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.sched_policy = 0; /* SCHED_OTHER */
    a.sched_nice = (int32_t)getpriority(PRIO_PROCESS, 0);
    a.sched_runtime = (uint64_t)(us * 1000.0);
#ifdef SYS_sched_setattr
    if (syscall(SYS_sched_setattr, 0, &a, 0) == 0)
        Py_RETURN_TRUE;
#endif
    Py_RETURN_FALSE;
}

/* checksum(buffer, seed=0) -> int: a position-sensitive 64-bit Fletcher-style sum that
 * reads every byte (the benchmark's consumers, whatever the transport, verify every
 * payload with it).  zlib.crc32 runs at ~2.5 GB/s here, slower than a copy, and would
 * hide the transports' costs; a scalar Fletcher sum ~10 GB/s.  This one keeps eight
 * 64-bit lanes (four 16-byte vectors: SSE2 on x86-64, NEON on ARM64) of running sums
 * and sums of sums: ~3 cycles per 64 bytes, so it runs at cache speed.  Each word
 * lands in the lane of its position in the 64-byte block, each lane is folded with its
 * own odd multiplier, and the sums of sums weigh every block by its position: moved,
 * swapped, lost or duplicated words change the result.  Chaining: pass the previous
 * result as the seed. */
typedef uint64_t fr_v2u64 __attribute__((vector_size(16)));

static uint64_t checksum_bytes(const uint8_t *p, size_t n, uint64_t seed) {
    /* named variables, not arrays: the sums must live in registers */
    fr_v2u64 a0 = {seed, 0}, a1 = {0, 0}, a2 = {0, 0}, a3 = {0, 0};
    fr_v2u64 s0 = {0, 0}, s1 = {0, 0}, s2 = {0, 0}, s3 = {0, 0};
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        fr_v2u64 w0, w1, w2, w3;
        memcpy(&w0, p + i, 16);
        memcpy(&w1, p + i + 16, 16);
        memcpy(&w2, p + i + 32, 16);
        memcpy(&w3, p + i + 48, 16);
        a0 += w0;
        a1 += w1;
        a2 += w2;
        a3 += w3;
        s0 += a0;
        s1 += a1;
        s2 += a2;
        s3 += a3;
    }
    const uint64_t lanes[16] = {a0[0], a0[1], a1[0], a1[1], a2[0], a2[1], a3[0], a3[1],
                                s0[0], s0[1], s1[0], s1[1], s2[0], s2[1], s3[0], s3[1]};
    static const uint64_t mul[4] = {0x9E3779B97F4A7C15ULL, 0xC2B2AE3D27D4EB4FULL,
                                    0xFF51AFD7ED558CCDULL, 0xC4CEB9FE1A85EC53ULL};
    uint64_t h = 0x94D049BB133111EBULL ^ (uint64_t)n;
    for (int k = 0; k < 16; k++) { /* each lane folded with its own multiplier and rotation */
        h = (h ^ (lanes[k] * mul[k & 3])) * 0xBF58476D1CE4E5B9ULL;
        h ^= h >> (27 + (k & 7));
    }
    uint64_t ta = h, ts = 0; /* the last < 64 bytes, one at a time */
    for (; i < n; i++) {
        ta += p[i];
        ts += ta;
    }
    h ^= ts * 0xFF51AFD7ED558CCDULL;
    h ^= h >> 31;
    return h;
}

static PyObject *mod_checksum(PyObject *m, PyObject *args) {
    Py_buffer b;
    unsigned long long seed = 0;
    if (!PyArg_ParseTuple(args, "y*|K:checksum", &b, &seed))
        return NULL;
    uint64_t h;
    if (b.len < (1 << 20)) { /* releasing the GIL costs more than summing a small buffer */
        h = checksum_bytes(b.buf, (size_t)b.len, seed);
    } else {
        Py_BEGIN_ALLOW_THREADS
        h = checksum_bytes(b.buf, (size_t)b.len, seed);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(h);
}

/* _use_membarrier(flag) -> previous: whether rings created from now on use the
 * membarrier wake-up protocol (when this process can); tests exercise both. */
static PyObject *mod_use_membarrier(PyObject *m, PyObject *arg) {
    int flag = PyObject_IsTrue(arg);
    if (flag < 0)
        return NULL;
    int old = fr_use_membarrier;
    fr_use_membarrier = flag;
    return PyBool_FromLong(old);
}

/* _adaptive_fence(flag) -> previous: whether sleepers may ask wakers to fence again. */
static PyObject *mod_adaptive_fence(PyObject *m, PyObject *arg) {
    int flag = PyObject_IsTrue(arg);
    if (flag < 0)
        return NULL;
    int old = fr_adaptive;
    fr_adaptive = flag;
    return PyBool_FromLong(old);
}

static PyObject *mod_set_exceptions(PyObject *m, PyObject *args) {
    PyObject *a, *b, *c;
    if (!PyArg_ParseTuple(args, "OOO", &a, &b, &c))
        return NULL;
    Py_XSETREF(ProtocolError, Py_NewRef(a));
    Py_XSETREF(PeerDiedError, Py_NewRef(b));
    Py_XSETREF(PeerClosedError, Py_NewRef(c));
    Py_RETURN_NONE;
}

/* ring_size(capacity) -> bytes of shared memory a ring needs (header, slots, return queue) */
static PyObject *mod_ring_size(PyObject *m, PyObject *arg) {
    unsigned long cap = PyLong_AsUnsignedLong(arg);
    if (cap == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (cap == 0 || cap > FR_MAX_CAP || (cap & (cap - 1))) {
        PyErr_Format(PyExc_ValueError, "capacity must be a power of two in [1, %u]", FR_MAX_CAP);
        return NULL;
    }
    return PyLong_FromUnsignedLongLong((uint64_t)FR_HDR + (uint64_t)cap * FR_SLOT +
                                       (uint64_t)rq_cap_for((uint32_t)cap) * 8);
}

static PyMethodDef mod_methods[] = {
    {"init_header", mod_init_header, METH_VARARGS, "init_header(buffer, capacity, start=0)"},
    {"ring_size", mod_ring_size, METH_O, "ring_size(capacity) -> bytes of shared memory"},
    {"set_latency_slice", mod_set_latency_slice, METH_O,
     "set_latency_slice(us) -> bool: short EEVDF slice for the calling thread (0 = default)."},
    {"checksum", mod_checksum, METH_VARARGS,
     "checksum(buffer, seed=0) -> int: fast 64-bit checksum reading every byte."},
    {"_adaptive_fence", mod_adaptive_fence, METH_O,
     "_adaptive_fence(flag) -> previous: sleepers may ask wakers to fence again."},
    {"_use_membarrier", mod_use_membarrier, METH_O,
     "_use_membarrier(flag) -> previous: rings created from now on use membarrier(2) wake-ups."},
    {"_set_exceptions", mod_set_exceptions, METH_VARARGS,
     "_set_exceptions(ProtocolError, PeerDiedError, PeerClosedError)"},
    {NULL}};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "exo.ipc._fring",
    .m_doc = "Fusion Ring hot path (C11 atomics, futex).",
    .m_size = -1,
    .m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__fring(void) {
    if (PyType_Ready(&RingType) < 0 || PyType_Ready(&BlockType) < 0)
        return NULL;
    str_release = PyUnicode_InternFromString("release");
    if (!str_release)
        return NULL;
    PyObject *m = PyModule_Create(&moddef);
    register_membarrier();
    pthread_atfork(NULL, NULL, register_membarrier);
    if (!m)
        return NULL;
    ProtocolError = Py_NewRef(PyExc_ValueError);
    PeerDiedError = Py_NewRef(PyExc_BrokenPipeError);
    PeerClosedError = Py_NewRef(PyExc_EOFError);
    if (PyModule_AddObjectRef(m, "Ring", (PyObject *)&RingType) < 0 ||
        PyModule_AddObjectRef(m, "Block", (PyObject *)&BlockType) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_SIZE", FR_SLOT) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_SIZE", FR_HDR) < 0 ||
        PyModule_AddIntConstant(m, "INLINE_MAX", FR_INLINE) < 0 ||
        PyModule_AddIntConstant(m, "BATCH_MAX", FR_BATCH_MAX) < 0 ||
        PyModule_AddIntConstant(m, "HANDLES_PER_SLOT", FR_HPS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_HANDLES", FR_MAX_HANDLES) < 0 ||
        PyModule_AddIntConstant(m, "MAX_CAPACITY", FR_MAX_CAP) < 0 ||
        PyModule_AddIntConstant(m, "TAIL_OFFSET", offsetof(struct fr_hdr, tail)) < 0 ||
        PyModule_AddIntConstant(m, "HEAD_OFFSET", offsetof(struct fr_hdr, head)) < 0 ||
        PyModule_AddIntConstant(m, "RET_TAIL_OFFSET", offsetof(struct fr_hdr, ret_tail)) < 0 ||
        PyModule_AddIntConstant(m, "RET_HEAD_OFFSET", offsetof(struct fr_hdr, ret_head)) < 0 ||
        PyModule_AddIntConstant(m, "TYPE_DATA", T_DATA) < 0 ||
        PyModule_AddIntConstant(m, "TYPE_HANDLES", T_HANDLES) < 0 ||
        PyModule_AddIntConstant(m, "FLAG_ZEROCOPY", F_ZC) < 0 ||
        PyModule_AddIntConstant(m, "FLAG_MORE", F_MORE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
