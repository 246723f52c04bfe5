/*
 * fring.h — the Fusion Ring protocol, without Python.
 *
 * This header and fring.c are the one implementation of the slot protocol (layout and
 * protocol are specified in docs/fusion-rings.md): the shared-memory layout (header,
 * slots, return queue), publish/consume, the validation of everything read from shared
 * memory, the waits (spin / yield / futex, the membarrier fence protocol, the index-flip
 * throttle) and the return-queue drain.  They include no Python header, so any C
 * program (a POSIX-X helper, a native module, tests/ipc/c/ring_roundtrip.c) speaks
 * Fusion Rings exactly as the CPython binding (_fring.c) does.
 *
 * A ring is one shared mapping: a 512-byte header followed by `capacity` 64-byte
 * slots, then the return queue.  Single producer, single consumer.  Positions are
 * free-running u32 counters (wrap at 2^32, unsigned arithmetic); slot index =
 * position & mask.
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
 * (capacity, batch size, queue size), index changes that bring nothing are throttled.
 * The embedder's hooks (struct fr_hooks) run around every wait: a Python binding
 * releases its GIL there, so no wait holds it.
 *
 * Errors never leave through a side channel: a function returns FR_OK or an FR_E*
 * code; FR_EPROTO leaves the reason in end->err.
 */
#ifndef EXO_FRING_H
#define EXO_FRING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

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

/* What a protocol call reports: FR_OK (0), or a negative FR_E* code (functions that
 * return a count return the code in its place). */
enum {
    FR_OK = 0,
    FR_EINTR = -1,         /* a hook asked to stop (the binding: a signal handler raised) */
    FR_EPROTO = -2,        /* the peer broke the protocol: end->err says how */
    FR_ENOMEMBARRIER = -3, /* the ring needs membarrier(2), which this process cannot use */
    FR_ETIMEDOUT = -4,     /* the deadline passed */
    FR_ECLOSED = -5,       /* the peer closed its end (its closed flag) */
    FR_EDIED = -6,         /* the peer's process is gone (its liveness socket hung up) */
};

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

/* Bytes of shared memory a ring of `cap` slots needs (header, slots, return queue). */
static inline uint64_t fr_ring_size(uint32_t cap) {
    return (uint64_t)FR_HDR + (uint64_t)cap * FR_SLOT + (uint64_t)rq_cap_for(cap) * 8;
}

struct fr_end;

/* The embedder's part of every wait.  block/unblock bracket each phase that spins,
 * yields or sleeps on memory the peer controls (a Python binding releases and retakes
 * its GIL: a peer that never delivers must not stall the process's other threads);
 * interrupted runs between ticks, outside that bracket, and stops the wait with
 * FR_EINTR when it returns nonzero (signals).  give_back hands a block of the
 * producer's pool back to its allocator: `returned` 1 for a block the consumer
 * returned through the queue, 0 for one reclaimed after the consumer went away.
 * Any hook may be NULL. */
struct fr_hooks {
    void (*block)(struct fr_end *e);
    void (*unblock)(struct fr_end *e);
    int (*interrupted)(struct fr_end *e);
    void (*give_back)(struct fr_end *e, uint64_t off, int returned);
};

/* One end of a ring: everything it decides with is private (docs/fusion-rings.md,
 * "Untrusted peers"); only `hdr`, the slots and `rq` are shared with the peer. */
struct fr_end {
    struct fr_hdr *hdr;
    uint8_t *slots;
    uint32_t cap, mask;
    int role;
    uint32_t pos;    /* producer: next position to write; consumer: next to read */
    uint32_t cached; /* producer: last seen head; consumer: last seen tail */
    int live_fd;     /* liveness socket: HUP when the peer process is gone (-1: none) */
    /* this end's view of the producer's segment (the consumer's may be read-only) */
    uint8_t *pool_base;
    uint64_t pool_len;
    int has_pool;
    /* the return queue: zero-copy blocks travel back from the consumer (docs/fusion-rings.md).
     * Everything the producer decides with is private: its read index, and the set of
     * blocks it sent on this ring and has not had back (a bitmap over pool granules). */
    _Atomic uint64_t *rq;
    uint32_t rq_cap, rq_mask;
    uint32_t ret_idx;        /* producer: next entry to read; consumer: next to write */
    uint64_t *out_bits;      /* producer: blocks outstanding on this ring (caller's memory) */
    uint64_t out_words;
    uint32_t outstanding;
    int ret_broken;          /* producer: the queue's indices were corrupt; ring unusable */
    uint64_t returns_ok, returns_rejected, returns_dropped, reclaimed;
    int64_t spin_ns;     /* the spin before a sleep (adapted, see spin_max_ns) */
    int64_t spin_min_ns; /* adaptive spin (consumer's data waits): the floor ... */
    int64_t spin_max_ns; /* ... and the cap; 0: spin_ns stays as configured */
    int yields;
    int64_t tick_ns;
    int64_t live_ns;     /* when the liveness socket last said the peer was there */
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
    const struct fr_hooks *hooks;
    void *user;          /* the embedder's */
    char err[160];       /* why the last FR_EPROTO */
};

/* One message to write: inline bytes at `src` (size <= 56), or (flags F_ZC) a
 * descriptor {off, len} of a block of the producer's pool. */
struct fr_msg {
    uint32_t flags, size;
    const uint8_t *src;
    uint64_t off, len;
};

/* A message decoded at end->pos: validated, nothing consumed yet. */
typedef struct {
    uint32_t used;      /* slots it occupies (its HANDLES slots and its DATA slot) */
    int zc;             /* the payload is a block of the shared pool */
    const uint8_t *ptr; /* the payload: in the slot, or in the pool */
    uint64_t off, len;  /* pool offset (zc), payload length */
    int nh;
    uint32_t hv[FR_MAX_HANDLES];
    char err[160]; /* why it is malformed */
} fr_msg_t;

/* ------------------------------------------------------------------ small inline helpers */

static inline void fr_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

static inline int64_t fr_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline uint64_t fr_slot_word(uint32_t seq, uint32_t type, uint32_t flags, uint32_t size) {
    return (uint64_t)seq | ((uint64_t)type << 32) | ((uint64_t)flags << 40) | ((uint64_t)size << 48);
}

static inline void fr_add_stat(_Atomic uint64_t *c, uint64_t n) {
    /* single writer: a relaxed load+store, no locked instruction */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static inline uint8_t *fr_slot_at(const struct fr_end *e, uint32_t pos) {
    return e->slots + (size_t)(pos & e->mask) * FR_SLOT;
}

/* A slot whose release-stored header already says it holds a complete single-slot
 * message for `expect` (acquire: its payload is visible). */
static inline int fr_slot_ready(_Atomic uint64_t *slotw, uint32_t expect) {
    if (!slotw)
        return 0;
    uint64_t w = atomic_load_explicit(slotw, memory_order_acquire);
    return (uint32_t)w == expect && !((w >> 40) & F_MORE);
}

/* Room for n slots carrying zc bytes of zero-copy payload?  The zero-copy window bounds
 * the pool memory a ring holds queued (like a pipe's or a socket's buffer): without it a
 * fast producer of 64 KiB messages queues capacity x 64 KiB (16 MiB for 256 slots),
 * every message lands in a block nobody touched for a while (page faults on fresh
 * memory, cache misses), and a few rings exhaust the pool.  A message is never refused
 * for its own size: with nothing queued, anything goes. */
static inline int fr_has_room(const struct fr_end *e, uint32_t n, uint64_t zc, uint32_t nzc) {
    if (e->pos - e->cached + n > e->cap)
        return 0;
    if (zc && e->zc_window) {
        int64_t queued = (int64_t)(e->zc_sent - e->zc_seen);
        if (queued > 0 && (uint64_t)queued + zc > e->zc_window)
            return 0;
    }
    /* blocks out on this ring never exceed the return queue: it cannot overflow */
    if (nzc && e->out_bits && e->outstanding + nzc > e->rq_cap)
        return 0;
    return 1;
}

/* Producer: a zero-copy block leaves on this ring. */
static inline void fr_out_mark(struct fr_end *e, uint64_t off) {
    if (!e->out_bits)
        return;
    uint64_t g = off / FR_GRAN;
    e->out_bits[g >> 6] |= 1ull << (g & 63);
    e->outstanding++;
}

/* ------------------------------------------------------------------ process setup */

/* Register this process for membarrier(2) wake-ups (once, and again in every fork
 * child: fr_process_init installs that).  Returns whether it is registered. */
int fr_process_init(void);
int fr_membarrier_ready(void);
/* Whether rings created from now on use membarrier wake-ups; returns the previous. */
int fr_set_use_membarrier(int flag);
/* Whether sleepers may ask wakers to fence again; returns the previous. */
int fr_set_adaptive_fence(int flag);

/* ------------------------------------------------------------------ setup */

/* Format a fresh mapping of at least fr_ring_size(cap) bytes (cap a power of two in
 * [1, FR_MAX_CAP]).  Positions start at `start`.  Returns FR_OK or -1 (bad arguments). */
int fr_init_header(void *mem, uint64_t len, uint32_t cap, uint32_t start);

/* Bind `e` to an initialised mapping as `role`.  The geometry is validated here, once,
 * and never read again.  Returns FR_OK; FR_EPROTO (not a ring, unknown features:
 * e->err), or FR_ENOMEMBARRIER. */
int fr_attach(struct fr_end *e, void *mem, uint64_t len, int role, int live_fd);

/* Attach this end's view of the producer's segment.  A producer passes a zeroed bitmap
 * of fr_out_words(len) words (its set of outstanding blocks; the caller owns it). */
static inline uint64_t fr_out_words(uint64_t pool_len) { return (pool_len / FR_GRAN + 63) / 64; }
void fr_set_pool(struct fr_end *e, uint8_t *base, uint64_t len, uint64_t *out_bits);

/* Orderly close: raise this end's closed flag and wake the peer. */
void fr_announce_close(struct fr_end *e);

/* The peer is gone: FR_ECLOSED (its flag), FR_EDIED (its liveness socket), or 0. */
int fr_peer_gone(const struct fr_end *e);

/* ------------------------------------------------------------------ producer */

/* Make room for n slots (zc bytes in the zero-copy window, nzc more blocks
 * outstanding), waiting until `deadline` (fr_now_ns() clock; INT64_MAX: forever). */
int fr_reserve(struct fr_end *e, uint32_t n, uint64_t zc, uint32_t nzc, int64_t deadline);
/* Write one message (after its handles, HANDLES slots chained in front) at e->pos. */
void fr_write_msg(struct fr_end *e, const struct fr_msg *m, const uint32_t *handles, int nh);
/* Write n single-slot messages at e->pos, the first slot last. */
void fr_write_batch(struct fr_end *e, const struct fr_msg *m, size_t n);
/* Write n inline messages laid end to end in buf (total bytes), lengths len[]. */
void fr_write_packed_inline(struct fr_end *e, const uint8_t *buf, size_t total,
                            const ptrdiff_t *len, size_t n);
/* One release store of `tail` publishes everything written, then one (usually skipped)
 * wake-up. */
void fr_publish(struct fr_end *e, uint32_t nmsgs);
/* Reserve, write and publish one message. */
int fr_send(struct fr_end *e, const struct fr_msg *m, const uint32_t *handles, int nh,
            int64_t deadline);
/* Take back what the consumer returned (bounded: one queue's worth).  Returns the
 * number accepted, or FR_EPROTO when the queue's indices are corrupt (then broken). */
int64_t fr_drain_returns(struct fr_end *e);
/* The consumer is gone: every block still outstanding comes back (give_back). */
void fr_reclaim_outstanding(struct fr_end *e);

/* ------------------------------------------------------------------ consumer */

/* Slots visible from e->pos (0: none yet), or FR_EPROTO. */
int64_t fr_visible(struct fr_end *e);
/* The adaptive spin's rule (spin_max_ns > 0; docs/fusion-rings.md): the next spin
 * budget after a data wait of `waited` ns, within [floor, cap]. */
int64_t fr_adapt_spin(int64_t budget, int64_t floor, int64_t cap, int64_t waited);
/* Wait until at least one slot is visible; returns how many, or an FR_E* code (after
 * the peer closed or died, what it published before is still delivered); with
 * spin_max_ns set, a wait that happened adapts spin_ns (fr_adapt_spin). */
int64_t fr_await_data(struct fr_end *e, int64_t deadline);
/* fr_await_data, then everything published (and single slots written ahead of tail). */
int64_t fr_batch_avail(struct fr_end *e, int64_t deadline);
/* Decode and validate the message at e->pos (*avail slots visible).  0, or -1 for a
 * malformed message (m->used slots to skip, m->err says why); never waits. */
int fr_decode_msg(struct fr_end *e, uint32_t *avail, fr_msg_t *m);
/* Skip a malformed message: count it and free its slots. */
void fr_reject_msg(struct fr_end *e, const fr_msg_t *m);
/* Free every slot up to e->pos with one release store; wake a producer waiting. */
void fr_consume(struct fr_end *e, uint32_t nmsgs);
/* Hand a zero-copy block back through the return queue; never blocks. */
void fr_rq_push(struct fr_end *e, uint64_t off);
/* A received message is taken: advance past it, count its zero-copy bytes. */
static inline void fr_take(struct fr_end *e, const fr_msg_t *m) {
    e->pos += m->used;
    if (m->zc)
        e->zc_pending += m->len;
}

/* Copy up to maxn available messages end to end into dst (room bytes), lengths into
 * len32 or len64 (either may be NULL; lmax bounds a length), zero-copy blocks handed
 * back at once.  `avail` from fr_await_data.  Stops before a message it cannot deliver.
 * Returns the count copied (slots consumed with one release store when > 0); when 0,
 * *stop says why: 0 nothing more, FR_EPROTO a malformed message (rejected, e->err),
 * 1 handles, 2 too big (*big its length). */
int64_t fr_recv_into(struct fr_end *e, uint32_t avail, uint8_t *dst, uint64_t room,
                     uint32_t *len32, uint64_t *len64, uint64_t lmax, int64_t maxn, int *stop,
                     uint64_t *big);

/* Wait for, decode and take one message into m; its slots are freed.  A zero-copy
 * payload (m->zc) stays the caller's until fr_rq_push(e, m->off). */
int fr_recv(struct fr_end *e, fr_msg_t *m, int64_t deadline);

#endif /* EXO_FRING_H */
