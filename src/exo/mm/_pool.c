/*
 * exo.mm._pool — the sender-owned segment allocator's hot paths.
 *
 * Why C: a fast allocator needs a per-thread cache with no locks, lock-free
 * lists (blocks handed back by a ring's drain of its return queue may come from
 * any thread of the owner) and a buddy tree walked in O(log n). Everything that
 * is policy (memfd creation and sealing, statistics formatting, /proc/meminfo)
 * lives in Python; this file keeps only the data structures and the fast paths.
 *
 * Trust model (docs/memory-pool.md): a pool is a *segment owned by one process*.
 * The memfd holds only the data arena. Every word the allocator acts on — header,
 * counters, lock, meta[], next[], tree[], mask[] — lives in PRIVATE anonymous
 * memory of the owning process, so a peer that maps the arena (read-only, or even
 * writable) can damage message payloads but never the allocator:
 *
 *   private  header_t   geometry, lock, level-3 counters, the owner's slot
 *                       (level-2 lists, statistics)
 *            meta[N]    u32 per 64-byte granule: state | order | slot of the block
 *                       that starts there (0 = not the head of a live block)
 *            next[N]    u32 per granule: link of the level-2 lists
 *            mask[2N], tree[2N]  buddy-tree summaries
 *   memfd    data       the arena, `size` bytes, a power of two; offsets returned
 *                       by alloc() are relative to its start
 *
 * Only the owner allocates and frees. A consumer never calls this allocator: it
 * hands blocks back through a ring's return queue, whose entries the producer
 * validates before calling free_returned() (level 2). After fork() the child holds
 * a copy-on-write copy of the metadata that would diverge from the parent's, so
 * every call in the child is refused.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GRAN_SHIFT 6u
#define GRAN (1u << GRAN_SHIFT)
#define NCLASS 11u    /* cached classes: 64 B .. 64 KiB (orders 0..10) */
#define CAP_MAX 128u  /* level-1 capacity of the smallest classes */
#define MAX_SLOTS 1u     /* one owner per pool: the slot machinery keeps its shape */
#define MAX_ORDER 40u
#define MIN_POOL (1ull << 16)
#define MAX_POOL (1ull << 36)

#define ST_CACHED 1u
#define ST_USED 2u
#define META(st, k, owner) ((uint32_t)(st) | ((uint32_t)(k) << 2) | ((uint32_t)(owner) << 8))
#define M_STATE(m) ((m) & 3u)
#define M_ORDER(m) (((m) >> 2) & 63u)
#define M_OWNER(m) ((m) >> 8)

#define RELAXED memory_order_relaxed
#define ACQUIRE memory_order_acquire
#define RELEASE memory_order_release
#define ACQ_REL memory_order_acq_rel

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

enum {
    C_L1, C_L2, C_L3,               /* allocations served by each level */
    C_FREE_LOCAL, C_FREE_REMOTE,    /* frees by the owner / blocks returned by consumers */
    C_ALLOC_BYTES, C_FREED_BYTES,   /* block bytes handed out / given back */
    C_REQ_BYTES,                    /* bytes asked for (internal waste) */
    C_REFILL_L2, C_REFILL_L3,       /* level-1 refills from each level */
    C_FLUSH,                        /* level-1 overflows written back to level 3 */
    C_ADOPT,
    NCOUNT
};

static const char *const counter_names[NCOUNT] = {
    "l1_hits", "l2_hits", "l3_hits", "frees_local", "frees_returned",
    "alloc_bytes", "freed_bytes", "requested_bytes", "refills_l2", "refills_l3",
    "flushes", "unused",
};

typedef struct {
    _Alignas(64) _Atomic uint32_t state; /* 0 free, 1 alive */
    int32_t pid;
    _Atomic uint32_t gen;                /* bumped on attach, close and reclaim */
    uint32_t _pad;
    _Atomic uint64_t l2[NCLASS];         /* remote-free lists: gen << 32 | head+1 */
    _Atomic uint64_t c[NCOUNT];          /* written only by the slot's process */
} slot_t;

typedef struct {
    uint32_t levels;                 /* log2(ngran) */
    uint64_t size, ngran, meta_len;
    uint64_t meta_off, next_off, tree_off, mask_off;
    _Alignas(64) pthread_mutex_t lock; /* process-private: only the owner's threads */
    /* everything below is written under `lock` */
    _Alignas(64) uint64_t free_gran;
    uint64_t free_count[MAX_ORDER + 1];
    slot_t slots[MAX_SLOTS];
} header_t;

struct Pool;

typedef struct tcache {
    struct tcache *pool_next;   /* the pool's list (under g_lock) */
    struct tcache *thread_next; /* the owning thread's list */
    struct Pool *pool;          /* NULL once the pool closed or forked */
    uint32_t n[NCLASS];
    uint32_t blk[NCLASS][CAP_MAX];
} tcache_t;

typedef struct Pool {
    PyObject_HEAD
    int fd;
    int closed;
    uint64_t size, ngran;
    unsigned levels;
    size_t map_len;
    char *map;              /* the arena: MAP_SHARED over the memfd */
    header_t *H;            /* private anonymous memory: never shared */
    _Atomic uint32_t *meta;
    _Atomic uint32_t *next;
    uint8_t *tree;
    uint16_t *mask;
    char *data;
    uint32_t slot;          /* 1-based; 0 = not initialised */
    long owner;             /* pid of the owning process */
    unsigned long epoch;    /* fork epoch at attach */
    tcache_t *tcaches;      /* under g_lock */
    Py_ssize_t exports;
    PyObject *view;
} Pool;

/* Level-1 capacity and level-3 refill batch per class (64 B .. 64 KiB);
 * overridable at build time (-DCAPS=... -DBATCHES=...) for experiments. */
#ifndef CAPS
#define CAPS {128, 128, 128, 128, 128, 128, 128, 64, 32, 16, 16}
#endif
#ifndef BATCHES
#define BATCHES {64, 64, 64, 64, 64, 64, 64, 32, 16, 8, 8}
#endif
static const uint32_t cap_of[NCLASS] = CAPS;
static const uint32_t batch_of[NCLASS] = BATCHES;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_key;
static unsigned long g_fork_epoch = 1;
static __thread tcache_t *tl_head;
static __thread int tl_registered;

static PyObject *PoolCorruption;

/* ------------------------------------------------------------------ helpers */

static inline void cnt_add(Pool *p, int which, uint64_t v) {
    /* Single writer per slot: a relaxed load + store, no locked instruction. */
    _Atomic uint64_t *c = &p->H->slots[p->slot - 1].c[which];
    atomic_store_explicit(c, atomic_load_explicit(c, RELAXED) + v, RELAXED);
}

static inline unsigned order_for(uint64_t n) {
    if (n <= GRAN) return 0;
    return 64u - (unsigned)__builtin_clzll((n - 1) >> GRAN_SHIFT);
}

/* ------------------------------------------------------------- level 3: buddy */

/* Each node carries two summaries of its subtree, both recomputed bottom-up:
 * tree[] (1 + order of its largest free block) and mask[] (bit j set when it
 * contains a free block of order j, for j < MASK_ORDERS). The mask is what
 * makes exact best fit possible: a small request goes to the smallest free
 * block that holds it, wherever it is, so holes are filled before big free
 * blocks are split. */
#define MASK_ORDERS 16u
static inline uint16_t bit_of(unsigned order) {
    return order < MASK_ORDERS ? (uint16_t)(1u << order) : 0;
}

/* Recomputes node `par` (of order `order`) from its children; 1 if it changed. */
static inline int tree_pull(Pool *p, uint64_t par, unsigned order) {
    uint8_t *t = p->tree;
    uint16_t *mk = p->mask;
    uint8_t l = t[2 * par], r = t[2 * par + 1];
    uint8_t nv;
    uint16_t nm;
    if (l == order && r == order) { /* both children whole and free: they merge */
        nv = (uint8_t)(order + 1);
        nm = bit_of(order);
    } else {
        nv = l > r ? l : r;
        nm = mk[2 * par] | mk[2 * par + 1];
    }
    if (t[par] == nv && mk[par] == nm) return 0;
    t[par] = nv;
    mk[par] = nm;
    return 1;
}

static void tree_update_up(Pool *p, uint64_t node, unsigned order) {
    while (node > 1) {
        node >>= 1;
        order++;
        if (!tree_pull(p, node, order)) break;
    }
}

/* Marks block (node, k) allocated; it must lie inside a free block. */
static int tree_take(Pool *p, uint64_t node, unsigned k) {
    uint8_t *t = p->tree;
    header_t *H = p->H;
    int m = -1;
    for (int order = (int)p->levels; order >= (int)k; order--) {
        uint64_t anc = node >> (order - (int)k);
        uint8_t v = t[anc];
        if (v == order + 1) { m = order; break; }
        if (v == 0) return -1;
    }
    if (m < 0) return -1;
    H->free_count[m]--;
    for (unsigned j = k; j < (unsigned)m; j++) H->free_count[j]++;
    /* the free block being split: its children on the path become whole free
     * blocks of their own (their summaries were already "whole free") */
    t[node] = 0;
    p->mask[node] = 0;
    tree_update_up(p, node, k);
    H->free_gran -= 1ull << k;
    return 0;
}

/* Exact best fit: the smallest free block of order >= k, the lowest-addressed
 * one among equals; split from its low end. Above MASK_ORDERS (blocks of 4 MiB
 * and more) the largest-free summary guides a best-fit descent instead. */
static int64_t tree_alloc(Pool *p, unsigned k) {
    uint8_t *t = p->tree;
    uint16_t *mk = p->mask;
    if (k > p->levels || t[1] < k + 1) return -1;
    uint64_t node = 1;
    unsigned order = p->levels;
    uint16_t want = k < MASK_ORDERS ? (uint16_t)(mk[1] & (uint16_t)~((1u << k) - 1)) : 0;
    if (want) {
        unsigned j = (unsigned)__builtin_ctz(want);
        uint16_t b = (uint16_t)(1u << j);
        while (order > j) { /* follow the free block of order j, leftmost */
            uint64_t l = 2 * node;
            int inl = (mk[l] & b) != 0, inr = (mk[l + 1] & b) != 0;
            /* both halves hold one: go where less is free (fuller), so sparse
             * regions drain and coalesce; ties go to the lower address */
            node = (inl && inr) ? (t[l + 1] < t[l] ? l + 1 : l) : (inl ? l : l + 1);
            order--;
        }
    }
    while (order > k) {
        uint64_t l = 2 * node;
        uint8_t vl = t[l], vr = t[l + 1];
        int okl = vl >= k + 1, okr = vr >= k + 1;
        if (okl && okr) node = (vr < vl) ? l + 1 : l;
        else node = okl ? l : l + 1;
        order--;
    }
    if (tree_take(p, node, k) < 0) return -1;
    return (int64_t)((node << k) - p->ngran);
}

static void tree_free(Pool *p, uint64_t g, unsigned k) {
    header_t *H = p->H;
    uint64_t n = (p->ngran + g) >> k;
    unsigned order = k, cur = k;
    int merging = 1;
    p->tree[n] = (uint8_t)(k + 1);
    p->mask[n] = bit_of(k);
    while (n > 1) {
        if (merging && p->tree[n ^ 1] == order + 1) {
            H->free_count[order]--; /* the buddy is absorbed */
            cur = order + 1;
        } else {
            merging = 0;
        }
        n >>= 1;
        order++;
        if (!tree_pull(p, n, order) && !merging) break;
    }
    H->free_count[cur]++;
    H->free_gran += 1ull << k;
}

static void tree_init(Pool *p) {
    header_t *H = p->H;
    for (unsigned d = 0; d <= p->levels; d++) {
        unsigned order = p->levels - d;
        memset(p->tree + (1ull << d), (int)(order + 1), 1ull << d);
        uint16_t b = bit_of(order);
        for (uint64_t i = 1ull << d; i < (2ull << d); i++) p->mask[i] = b;
    }
    memset(H->free_count, 0, sizeof H->free_count);
    H->free_count[p->levels] = 1;
    H->free_gran = p->ngran;
}

/* Rebuilds the tree from meta[]; drops metadata that cannot be a live block. */
static uint64_t tree_rebuild(Pool *p) {
    uint64_t bad = 0;
    tree_init(p);
    for (uint64_t g = 0; g < p->ngran; g++) {
        uint32_t m = atomic_load_explicit(&p->meta[g], RELAXED);
        if (!m) continue;
        unsigned k = M_ORDER(m);
        if (k > p->levels || (g & ((1ull << k) - 1)) || M_STATE(m) == 0 ||
            M_OWNER(m) > MAX_SLOTS || tree_take(p, (p->ngran + g) >> k, k) < 0) {
            atomic_store_explicit(&p->meta[g], 0, RELAXED);
            bad++;
        }
    }
    return bad;
}

/* A process-private mutex: only the owner's threads take it (the metadata is not
 * shared, so no other process can hold it, corrupt it or die holding it). */
static int pool_lock(Pool *p) {
    int r = pthread_mutex_lock(&p->H->lock);
    if (LIKELY(r == 0)) return 0;
    errno = r;
    return -1;
}

static inline void pool_unlock(Pool *p) { pthread_mutex_unlock(&p->H->lock); }

static int lock_or_raise(Pool *p) {
    if (pool_lock(p) == 0) return 0;
    PyErr_Format(PoolCorruption, "cannot take the pool lock: %s", strerror(errno));
    return -1;
}

/* --------------------------------------------------- level 2: lock-free lists */

#define L2_PACK(gen, idx1) (((uint64_t)(gen) << 32) | (uint32_t)(idx1))

/* Pushes the chain first..last (linked through next[]) if the list still
 * belongs to incarnation `gen` of its slot; -1 if the slot was reclaimed. */
static int l2_push_chain(Pool *p, slot_t *s, unsigned k, uint32_t gen, uint32_t first,
                         uint32_t last) {
    uint64_t h = atomic_load_explicit(&s->l2[k], ACQUIRE);
    for (;;) {
        if ((uint32_t)(h >> 32) != gen) return -1;
        atomic_store_explicit(&p->next[last], (uint32_t)h, RELAXED);
        if (atomic_compare_exchange_weak_explicit(&s->l2[k], &h, L2_PACK(gen, first + 1),
                                                  RELEASE, ACQUIRE))
            return 0;
    }
}

/* Takes the whole list (push + take-all stacks have no ABA problem). */
static uint32_t l2_take_all(slot_t *s, unsigned k) {
    uint64_t h = atomic_load_explicit(&s->l2[k], ACQUIRE);
    for (;;) {
        if ((uint32_t)h == 0) return 0;
        if (atomic_compare_exchange_weak_explicit(&s->l2[k], &h, h & 0xffffffff00000000ull,
                                                  ACQ_REL, ACQUIRE))
            return (uint32_t)h;
    }
}

/* Under the lock: gives a chain of cached blocks of slot `owner` back to level 3. */
static uint64_t chain_to_l3_locked(Pool *p, uint32_t idx1, unsigned k, uint32_t owner) {
    uint64_t n = 0;
    uint32_t want = META(ST_CACHED, k, owner);
    while (idx1) {
        uint32_t g = idx1 - 1;
        idx1 = atomic_load_explicit(&p->next[g], RELAXED);
        uint32_t m = want;
        if (atomic_compare_exchange_strong_explicit(&p->meta[g], &m, 0, ACQ_REL, RELAXED)) {
            tree_free(p, g, k);
            n++;
        }
    }
    return n;
}

/* ------------------------------------------------ level 1: per-thread caches */

/* Order of a 64 KiB block: the largest cached class, and the request size the
 * fragmentation index is measured against (docs/memory-pool.md, Statistics). */
#define REGION_ORDER (NCLASS - 1u)
/* At most this many cached blocks are gathered to complete one region. */
#define GATHER_MAX 16u

typedef struct {
    uint32_t n, max;
    uint32_t g[GATHER_MAX];
    uint8_t k[GATHER_MAX];
} gather_t;

static inline uint8_t tree_peek(const Pool *p, uint64_t node) {
    return __atomic_load_n(&p->tree[node], __ATOMIC_RELAXED);
}

/* 1 if subtree `node` (of order `order`) holds nothing but level-3 free space and
 * blocks this process caches in a class of which thread cache `tc` holds at least
 * half a cache; those blocks are collected in *out (none at all when out->max is 0).
 * The class condition leaves alone a class the thread is working through: a fresh
 * refill batch is a run of neighbours, and giving it back would make every free return
 * it and every allocation refill it.
 * Stops at the first block that does not qualify, so it usually costs a read or two.
 * Without the lock the answer is only a hint (the caller asks again under the lock
 * before acting on it); the recursion is bounded by the depth and GATHER_MAX. */
static int subtree_reclaimable(const Pool *p, const tcache_t *tc, uint64_t node, unsigned order,
                               gather_t *out) {
    if (tree_peek(p, node) == order + 1) return 1; /* one whole free block */
    if (out->n >= out->max) return 0; /* free space alone would be one whole block */
    uint32_t base = (uint32_t)((node << order) - p->ngran);
    uint32_t m = atomic_load_explicit(&p->meta[base], RELAXED);
    if (m && M_ORDER(m) >= order) { /* a block starts here and covers the node */
        if (m != META(ST_CACHED, order, p->slot) || tc->n[order] < cap_of[order] / 2)
            return 0;
        out->g[out->n] = base;
        out->k[out->n++] = (uint8_t)order;
        return 1;
    }
    if (order == 0) return 0;
    return subtree_reclaimable(p, tc, 2 * node, order - 1, out) &&
           subtree_reclaimable(p, tc, 2 * node + 1, order - 1, out);
}

/* 1 if, once block (g, k) is free, its whole 64 KiB region would be level-3 free
 * space plus the cached blocks collected in *out: given back together, they
 * coalesce into a free block of 64 KiB or more. Cached neighbours are gathered only
 * when class k itself has a surplus, for the reason above. */
static int region_reclaimable(const Pool *p, const tcache_t *tc, uint32_t g, unsigned k,
                              gather_t *out) {
    out->n = 0;
    out->max = tc->n[k] >= cap_of[k] / 2 ? GATHER_MAX : 0;
    uint64_t node = (p->ngran + g) >> k;
    for (unsigned order = k; order < REGION_ORDER; order++, node >>= 1)
        if (!subtree_reclaimable(p, tc, node ^ 1, order, out)) return 0;
    return 1;
}

static inline int l1_index(const tcache_t *tc, uint32_t g, unsigned k) {
    for (uint32_t i = tc->n[k]; i-- > 0;)
        if (tc->blk[k][i] == g) return (int)i;
    return -1;
}

/* The gathered blocks sit in this thread's level 1 (blocks on the level-2 lists or in
 * another thread's cache are left alone). */
static int gather_in_l1(const tcache_t *tc, const gather_t *gb) {
    for (uint32_t i = 0; i < gb->n; i++)
        if (l1_index(tc, gb->g[i], gb->k[i]) < 0) return 0;
    return 1;
}

/* Owner's free of block (g, k), already marked cached: if its 64 KiB region would then
 * hold nothing but free space and blocks this thread caches, give the block and those
 * neighbours back to level 3 now, where they coalesce, instead of keeping a block that
 * pins free memory in pieces (docs/memory-pool.md, "Level 1"). 1 if given back. */
static int give_back_region(Pool *p, tcache_t *tc, uint32_t g, unsigned k) {
    gather_t gb;
    if (k >= REGION_ORDER || !region_reclaimable(p, tc, g, k, &gb) || !gather_in_l1(tc, &gb))
        return 0;
    if (pool_lock(p) < 0) return 0; /* the block simply stays cached */
    int ok = region_reclaimable(p, tc, g, k, &gb) && gather_in_l1(tc, &gb);
    if (ok) {
        for (uint32_t i = 0; i < gb.n; i++) {
            unsigned c = gb.k[i];
            int at = l1_index(tc, gb.g[i], c);
            memmove(&tc->blk[c][at], &tc->blk[c][at + 1],
                    (tc->n[c] - (uint32_t)at - 1) * sizeof tc->blk[c][0]);
            tc->n[c]--;
            atomic_store_explicit(&p->meta[gb.g[i]], 0, RELAXED);
            tree_free(p, gb.g[i], c);
        }
        uint32_t want = META(ST_CACHED, k, p->slot);
        if (atomic_compare_exchange_strong_explicit(&p->meta[g], &want, 0, ACQ_REL, RELAXED))
            tree_free(p, g, k);
    }
    pool_unlock(p);
    return ok;
}

/* Gives the `count` oldest cached blocks of class k back to level 3. The oldest
 * are the rest of a refill batch, neighbours of each other: returned together
 * they coalesce, where recently freed (scattered) blocks would leave holes. */
static void flush_locked(Pool *p, tcache_t *tc, unsigned k, uint32_t count) {
    uint32_t want = META(ST_CACHED, k, p->slot);
    if (count > tc->n[k]) count = tc->n[k];
    for (uint32_t i = 0; i < count; i++) {
        uint32_t g = tc->blk[k][i];
        if (atomic_load_explicit(&p->meta[g], RELAXED) == want) {
            atomic_store_explicit(&p->meta[g], 0, RELAXED);
            tree_free(p, g, k);
        }
    }
    tc->n[k] -= count;
    memmove(tc->blk[k], tc->blk[k] + count, tc->n[k] * sizeof tc->blk[k][0]);
}

static void flush_all_locked(Pool *p, tcache_t *tc) {
    for (unsigned k = 0; k < NCLASS; k++) flush_locked(p, tc, k, tc->n[k]);
}

static tcache_t *new_tcache(Pool *p) {
    tcache_t *tc = calloc(1, sizeof *tc);
    if (!tc) { PyErr_NoMemory(); return NULL; }
    tc->pool = p;
    pthread_mutex_lock(&g_lock);
    tc->pool_next = p->tcaches;
    p->tcaches = tc;
    pthread_mutex_unlock(&g_lock);
    tc->thread_next = tl_head;
    tl_head = tc;
    if (!tl_registered) {
        pthread_setspecific(g_key, (void *)1);
        tl_registered = 1;
    }
    return tc;
}

static inline tcache_t *get_tcache(Pool *p) {
    tcache_t **pp = &tl_head, *tc;
    while ((tc = *pp)) {
        if (LIKELY(tc->pool == p)) return tc;
        if (tc->pool == NULL) { *pp = tc->thread_next; free(tc); continue; }
        pp = &tc->thread_next;
    }
    return new_tcache(p);
}

/* Thread exit: give the thread's cached blocks back to every open pool. */
static void tl_destructor(void *unused) {
    (void)unused;
    pthread_mutex_lock(&g_lock);
    tcache_t *tc = tl_head;
    while (tc) {
        tcache_t *nx = tc->thread_next;
        Pool *p = tc->pool;
        if (p) {
            if (pool_lock(p) == 0) {
                flush_all_locked(p, tc);
                pool_unlock(p);
            }
            for (tcache_t **pp = &p->tcaches; *pp; pp = &(*pp)->pool_next)
                if (*pp == tc) { *pp = tc->pool_next; break; }
        }
        free(tc);
        tc = nx;
    }
    tl_head = NULL;
    pthread_mutex_unlock(&g_lock);
}

static void atfork_child(void) {
    g_fork_epoch++;
    pthread_mutex_init(&g_lock, NULL);
}

/* --------------------------------------------------------------- the slot */

static void slot_init(Pool *p, long pid) {
    slot_t *s = &p->H->slots[0];
    atomic_store_explicit(&s->gen, 1, RELAXED);
    for (unsigned k = 0; k < NCLASS; k++) atomic_store_explicit(&s->l2[k], L2_PACK(1, 0), RELAXED);
    s->pid = (int32_t)pid;
    atomic_store_explicit(&s->state, 1, RELEASE);
    p->slot = 1;
    p->owner = pid;
    p->epoch = g_fork_epoch;
}

/* ---------------------------------------------------------------- the type */

static int pool_check_open(Pool *p);

static void pool_unmap(Pool *p) {
    if (p->map) {
        munmap(p->map, p->map_len);
        p->map = NULL;
    }
    if (p->H) {
        munmap(p->H, p->H->meta_len);
        p->H = NULL;
    }
}

static int pool_check_open(Pool *p) {
    if (UNLIKELY(p->closed || !p->H)) {
        PyErr_SetString(PyExc_ValueError, "memory pool is closed");
        return -1;
    }
    if (UNLIKELY(p->epoch != g_fork_epoch)) {
        /* The child's copy of the private metadata would diverge from the owner's
         * while both carve the same shared arena: refuse instead. */
        PyErr_Format(PyExc_RuntimeError,
                     "memory pool belongs to process %ld: a forked child cannot allocate or "
                     "free in it (map its arena read-only with PoolView.attach(pool.fd))",
                     p->owner);
        return -1;
    }
    return 0;
}

/* Pool(fd): become the owner of the arena in memfd `fd` (its whole size, a power of
 * two): map it shared and writable, and build the allocator in private memory. */
static int Pool_init(Pool *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", NULL};
    int fd;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i", kwlist, &fd)) return -1;
    if (self->map || self->H) {
        PyErr_SetString(PyExc_RuntimeError, "memory pool already initialised");
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) { PyErr_SetFromErrno(PyExc_OSError); return -1; }
    uint64_t size = (uint64_t)st.st_size;
    if (size < MIN_POOL || size > MAX_POOL || (size & (size - 1))) {
        PyErr_Format(PyExc_ValueError,
                     "fd %d is not a pool segment: its size %llu is not a power of two in "
                     "%llu..%llu", fd, (unsigned long long)size, MIN_POOL, MAX_POOL);
        return -1;
    }
    header_t probe;
    memset(&probe, 0, sizeof probe);
    probe.size = size;
    probe.ngran = size >> GRAN_SHIFT;
    probe.levels = (uint32_t)__builtin_ctzll(probe.ngran);
    probe.meta_off = (sizeof(header_t) + 4095) & ~4095ull;
    probe.next_off = probe.meta_off + probe.ngran * 4;
    probe.mask_off = probe.next_off + probe.ngran * 4;
    probe.tree_off = probe.mask_off + probe.ngran * 4;
    probe.meta_len = (probe.tree_off + probe.ngran * 2 + 4095) & ~4095ull;
    void *data = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (data == MAP_FAILED) {
        if (errno == EPERM || errno == EACCES)
            PyErr_Format(PyExc_PermissionError,
                         "fd %d cannot be mapped writable (sealed F_SEAL_FUTURE_WRITE, or opened "
                         "read-only): it is another process's segment; use PoolView.attach", fd);
        else
            PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* private: MAP_PRIVATE|MAP_ANONYMOUS, never visible to any other process; pages
     * of regions nobody allocated from are never touched */
    void *meta = mmap(NULL, probe.meta_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                      -1, 0);
    if (meta == MAP_FAILED) {
        munmap(data, size);
        PyErr_NoMemory();
        return -1;
    }
    self->map = data;
    self->map_len = size;
    self->H = (header_t *)meta;
    self->size = size;
    self->ngran = probe.ngran;
    self->levels = probe.levels;
    self->meta = (_Atomic uint32_t *)((char *)meta + probe.meta_off);
    self->next = (_Atomic uint32_t *)((char *)meta + probe.next_off);
    self->tree = (uint8_t *)meta + probe.tree_off;
    self->mask = (uint16_t *)((char *)meta + probe.mask_off);
    self->data = (char *)data;
    self->fd = fd;
    memcpy(self->H, &probe, offsetof(header_t, lock));
    pthread_mutex_init(&self->H->lock, NULL);
    tree_init(self);
    slot_init(self, (long)getpid());
    return 0;
}

static PyObject *Pool_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Pool *self = (Pool *)type->tp_alloc(type, 0);
    if (self) self->fd = -1;
    return (PyObject *)self;
}

/* Owner path of free: return the block to this thread's cache. */
static PyObject *free_local(Pool *p, uint32_t g, uint32_t m, unsigned k) {
    if (!atomic_compare_exchange_strong_explicit(&p->meta[g], &m, META(ST_CACHED, k, p->slot),
                                                 RELEASE, RELAXED)) {
        PyErr_Format(PyExc_ValueError, "double free of block at offset %llu (concurrent free)",
                     (unsigned long long)g << GRAN_SHIFT);
        return NULL;
    }
    tcache_t *tc = get_tcache(p);
    if (UNLIKELY(!tc)) return NULL;
    if (give_back_region(p, tc, g, k)) {
        cnt_add(p, C_FREE_LOCAL, 1);
        cnt_add(p, C_FREED_BYTES, (uint64_t)GRAN << k);
        Py_RETURN_NONE;
    }
    if (UNLIKELY(tc->n[k] >= cap_of[k])) {
        if (lock_or_raise(p) < 0) return NULL;
        flush_locked(p, tc, k, cap_of[k] / 2);
        pool_unlock(p);
        cnt_add(p, C_FLUSH, 1);
    }
    tc->blk[k][tc->n[k]++] = g;
    cnt_add(p, C_FREE_LOCAL, 1);
    cnt_add(p, C_FREED_BYTES, (uint64_t)GRAN << k);
    Py_RETURN_NONE;
}

static PyObject *free_to_l3(Pool *p, uint32_t g, uint32_t m, unsigned k, int remote) {
    if (lock_or_raise(p) < 0) return NULL;
    if (!atomic_compare_exchange_strong_explicit(&p->meta[g], &m, 0, ACQ_REL, RELAXED)) {
        pool_unlock(p);
        PyErr_Format(PyExc_ValueError, "double free of block at offset %llu (concurrent free)",
                     (unsigned long long)g << GRAN_SHIFT);
        return NULL;
    }
    tree_free(p, g, k);
    pool_unlock(p);
    cnt_add(p, remote ? C_FREE_REMOTE : C_FREE_LOCAL, 1);
    cnt_add(p, C_FREED_BYTES, (uint64_t)GRAN << k);
    Py_RETURN_NONE;
}

static int parse_block(Pool *p, PyObject *arg, uint32_t *g_out, uint32_t *m_out) {
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    if (off == -1 && PyErr_Occurred()) return -1;
    if (UNLIKELY(off < 0 || (uint64_t)off >= p->size)) {
        PyErr_Format(PyExc_ValueError, "offset %zd is outside the pool (0..%llu)", off,
                     (unsigned long long)p->size - 1);
        return -1;
    }
    if (UNLIKELY(off & (GRAN - 1))) {
        PyErr_Format(PyExc_ValueError, "offset %zd is not the start of a block", off);
        return -1;
    }
    uint32_t g = (uint32_t)((uint64_t)off >> GRAN_SHIFT);
    uint32_t m = atomic_load_explicit(&p->meta[g], ACQUIRE);
    if (UNLIKELY(M_STATE(m) != ST_USED)) {
        if (m) PyErr_Format(PyExc_ValueError, "double free: block at offset %zd is already free", off);
        else PyErr_Format(PyExc_ValueError, "offset %zd is not an allocated block (never allocated, "
                          "already freed, or inside another block)", off);
        return -1;
    }
    *g_out = g;
    *m_out = m;
    return 0;
}

static PyObject *Pool_free(Pool *self, PyObject *arg) {
    if (UNLIKELY(pool_check_open(self) < 0)) return NULL;
    uint32_t g, m;
    if (parse_block(self, arg, &g, &m) < 0) return NULL;
    unsigned k = M_ORDER(m);
    if (LIKELY(k < NCLASS)) return free_local(self, g, m, k);
    return free_to_l3(self, g, m, k, 0);
}

/* free_returned(offset): a block a consumer handed back through a ring's return
 * queue (the ring validated the entry against the blocks it sent). It goes onto the
 * pool's level-2 list of its class; level 1 takes such lists whole, in batches, when
 * it runs dry. The metadata check here is the second line of defence: an offset that
 * is not a block in use raises ValueError and changes nothing. */
static PyObject *Pool_free_returned(Pool *self, PyObject *arg) {
    if (UNLIKELY(pool_check_open(self) < 0)) return NULL;
    uint32_t g, m;
    if (parse_block(self, arg, &g, &m) < 0) return NULL;
    unsigned k = M_ORDER(m);
    if (k >= NCLASS) return free_to_l3(self, g, m, k, 1);
    slot_t *s = &self->H->slots[0];
    uint32_t want = m;
    if (!atomic_compare_exchange_strong_explicit(&self->meta[g], &want,
                                                 META(ST_CACHED, k, self->slot), ACQ_REL,
                                                 ACQUIRE)) {
        PyErr_Format(PyExc_ValueError, "double free of block at offset %llu (concurrent free)",
                     (unsigned long long)g << GRAN_SHIFT);
        return NULL;
    }
    (void)l2_push_chain(self, s, k, atomic_load_explicit(&s->gen, ACQUIRE), g, g);
    cnt_add(self, C_FREE_REMOTE, 1);
    cnt_add(self, C_FREED_BYTES, (uint64_t)GRAN << k);
    Py_RETURN_NONE;
}

/* Frees cached blocks everywhere (this thread's level 1, every level-2 list)
 * back to level 3, so a request that fails for lack of space can coalesce. */
static uint64_t relieve_locked(Pool *p, tcache_t *tc) {
    uint64_t before = p->H->free_gran;
    if (tc) flush_all_locked(p, tc);
    for (uint32_t i = 0; i < MAX_SLOTS; i++) {
        slot_t *s = &p->H->slots[i];
        if (!atomic_load_explicit(&s->state, ACQUIRE)) continue;
        for (unsigned k = 0; k < NCLASS; k++) {
            uint32_t head = l2_take_all(s, k);
            if (head) chain_to_l3_locked(p, head, k, i + 1);
        }
    }
    return p->H->free_gran - before;
}

static PyObject *alloc_fail(Pool *p, uint64_t n) {
    PyErr_Format(PyExc_MemoryError, "memory pool full: no free block of %llu bytes "
                 "(pool %llu bytes, %llu free, largest free block %llu)",
                 (unsigned long long)n, (unsigned long long)p->size,
                 (unsigned long long)p->H->free_gran << GRAN_SHIFT,
                 p->tree[1] ? (unsigned long long)GRAN << (p->tree[1] - 1) : 0ull);
    return NULL;
}

static PyObject *alloc_large(Pool *p, unsigned k, uint64_t n) {
    if (k > p->levels) return alloc_fail(p, n);
    tcache_t *tc = get_tcache(p); /* before the lock: lock order is g_lock, then pool */
    if (!tc) return NULL;
    if (lock_or_raise(p) < 0) return NULL;
    int64_t g = tree_alloc(p, k);
    if (g < 0) {
        relieve_locked(p, tc);
        g = tree_alloc(p, k);
        if (g < 0) { pool_unlock(p); return alloc_fail(p, n); }
    }
    atomic_store_explicit(&p->meta[g], META(ST_USED, k, p->slot), RELEASE);
    pool_unlock(p);
    cnt_add(p, C_L3, 1);
    cnt_add(p, C_ALLOC_BYTES, (uint64_t)GRAN << k);
    cnt_add(p, C_REQ_BYTES, n);
    return PyLong_FromUnsignedLongLong((uint64_t)g << GRAN_SHIFT);
}

static PyObject *alloc_refill(Pool *p, tcache_t *tc, unsigned k, uint64_t n) {
    uint32_t cap = cap_of[k];
    int level = C_L2;
    slot_t *s = &p->H->slots[p->slot - 1];
    uint32_t idx1 = l2_take_all(s, k);
    uint32_t want = META(ST_CACHED, k, p->slot);
    while (idx1 && tc->n[k] < cap) {
        uint32_t g = idx1 - 1;
        idx1 = atomic_load_explicit(&p->next[g], RELAXED);
        if (atomic_load_explicit(&p->meta[g], ACQUIRE) == want) tc->blk[k][tc->n[k]++] = g;
    }
    if (idx1) { /* more than fits: the rest stays on level 2 */
        uint32_t last = idx1 - 1, nx;
        while ((nx = atomic_load_explicit(&p->next[last], RELAXED))) last = nx - 1;
        uint32_t gen = atomic_load_explicit(&s->gen, ACQUIRE);
        if (l2_push_chain(p, s, k, gen, idx1 - 1, last) < 0) {
            if (lock_or_raise(p) < 0) return NULL;
            chain_to_l3_locked(p, idx1, k, p->slot);
            pool_unlock(p);
        }
    }
    if (tc->n[k]) {
        cnt_add(p, C_REFILL_L2, 1);
    } else {
        level = C_L3;
        if (lock_or_raise(p) < 0) return NULL;
        /* A batch is half a cache, but never more than 1/64 of what is free:
         * a small pool is not emptied into one thread's cache. */
        uint64_t avail = (p->H->free_gran >> k) / 64;
        uint32_t batch = avail < batch_of[k] ? (avail ? (uint32_t)avail : 1) : batch_of[k];
        int64_t got[CAP_MAX];
        uint32_t ng = 0;
        while (ng < batch) {
            int64_t g = tree_alloc(p, k);
            if (g < 0) {
                if (ng == 0 && relieve_locked(p, tc) > 0) continue;
                break;
            }
            atomic_store_explicit(&p->meta[g], want, RELEASE);
            got[ng++] = g;
        }
        pool_unlock(p);
        if (ng == 0) return alloc_fail(p, n);
        /* lowest offsets on top of the stack: handed out first, in address order */
        while (ng) tc->blk[k][tc->n[k]++] = (uint32_t)got[--ng];
        cnt_add(p, C_REFILL_L3, 1);
    }
    uint32_t g = tc->blk[k][--tc->n[k]];
    atomic_store_explicit(&p->meta[g], META(ST_USED, k, p->slot), RELAXED);
    cnt_add(p, level, 1);
    cnt_add(p, C_ALLOC_BYTES, (uint64_t)GRAN << k);
    cnt_add(p, C_REQ_BYTES, n);
    return PyLong_FromUnsignedLongLong((uint64_t)g << GRAN_SHIFT);
}

static PyObject *Pool_alloc(Pool *self, PyObject *arg) {
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (UNLIKELY(n == -1 && PyErr_Occurred())) return NULL;
    if (UNLIKELY(pool_check_open(self) < 0)) return NULL;
    if (UNLIKELY(n <= 0)) {
        PyErr_Format(PyExc_ValueError, "cannot allocate %zd bytes: size must be positive", n);
        return NULL;
    }
    unsigned k = order_for((uint64_t)n);
    if (UNLIKELY(k >= NCLASS)) return alloc_large(self, k, (uint64_t)n);
    tcache_t *tc = get_tcache(self);
    if (UNLIKELY(!tc)) return NULL;
    if (UNLIKELY(!tc->n[k])) return alloc_refill(self, tc, k, (uint64_t)n);
    /* Level 1: no lock, no atomic read-modify-write. */
    uint32_t g = tc->blk[k][--tc->n[k]];
    atomic_store_explicit(&self->meta[g], META(ST_USED, k, self->slot), RELAXED);
    cnt_add(self, C_L1, 1);
    cnt_add(self, C_ALLOC_BYTES, (uint64_t)GRAN << k);
    cnt_add(self, C_REQ_BYTES, (uint64_t)n);
    return PyLong_FromUnsignedLongLong((uint64_t)g << GRAN_SHIFT);
}

static PyObject *Pool_usable_size(Pool *self, PyObject *arg) {
    if (pool_check_open(self) < 0) return NULL;
    uint32_t g, m;
    if (parse_block(self, arg, &g, &m) < 0) return NULL;
    return PyLong_FromUnsignedLongLong((uint64_t)GRAN << M_ORDER(m));
}

static PyObject *Pool_trim(Pool *self, PyObject *unused) {
    if (pool_check_open(self) < 0) return NULL;
    tcache_t *tc = get_tcache(self);
    if (!tc) return NULL;
    if (lock_or_raise(self) < 0) return NULL;
    uint64_t before = self->H->free_gran;
    flush_all_locked(self, tc);
    slot_t *s = &self->H->slots[self->slot - 1];
    for (unsigned k = 0; k < NCLASS; k++) {
        uint32_t head = l2_take_all(s, k);
        if (head) chain_to_l3_locked(self, head, k, self->slot);
    }
    uint64_t released = self->H->free_gran - before;
    pool_unlock(self);
    return PyLong_FromUnsignedLongLong(released << GRAN_SHIFT);
}

static int set_u64(PyObject *d, const char *k, uint64_t v) {
    PyObject *o = PyLong_FromUnsignedLongLong(v);
    if (!o) return -1;
    int r = PyDict_SetItemString(d, k, o);
    Py_DECREF(o);
    return r;
}

static PyObject *Pool_stats_raw(Pool *self, PyObject *unused) {
    if (pool_check_open(self) < 0) return NULL;
    header_t *H = self->H;
    uint64_t tot[NCOUNT], fc[MAX_ORDER + 1], free_gran, largest;
    if (lock_or_raise(self) < 0) return NULL;
    memset(tot, 0, sizeof tot);
    for (uint32_t i = 0; i < MAX_SLOTS; i++) {
        slot_t *s = &H->slots[i];
        if (!atomic_load_explicit(&s->state, ACQUIRE)) continue;
        for (unsigned c = 0; c < NCOUNT; c++) tot[c] += atomic_load_explicit(&s->c[c], RELAXED);
    }
    memcpy(fc, H->free_count, sizeof fc);
    free_gran = H->free_gran;
    largest = self->tree[1] ? (uint64_t)GRAN << (self->tree[1] - 1) : 0;
    pool_unlock(self);
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (unsigned c = 0; c < NCOUNT; c++)
        if (set_u64(d, counter_names[c], tot[c]) < 0) goto fail;
    if (set_u64(d, "size", self->size) < 0 || set_u64(d, "granule", GRAN) < 0 ||
        set_u64(d, "l3_free_bytes", free_gran << GRAN_SHIFT) < 0 ||
        set_u64(d, "l3_largest_free", largest) < 0 || set_u64(d, "owner_pid", (uint64_t)self->owner) < 0 ||
        set_u64(d, "cached_classes", NCLASS) < 0)
        goto fail;
    PyObject *lst = PyList_New(self->levels + 1);
    if (!lst) goto fail;
    for (unsigned k = 0; k <= self->levels; k++) {
        PyObject *o = PyLong_FromUnsignedLongLong(fc[k]);
        if (!o) { Py_DECREF(lst); goto fail; }
        PyList_SET_ITEM(lst, k, o);
    }
    if (PyDict_SetItemString(d, "l3_free_blocks_by_order", lst) < 0) { Py_DECREF(lst); goto fail; }
    Py_DECREF(lst);
    return d;
fail:
    Py_DECREF(d);
    return NULL;
}

/* Full consistency check (tests, fsck): blocks do not overlap, and the buddy
 * tree and its counters equal a fresh rebuild from the metadata. */
static PyObject *Pool_check(Pool *self, PyObject *unused) {
    if (pool_check_open(self) < 0) return NULL;
    size_t tlen = (size_t)self->ngran * 2, mlen = (size_t)self->ngran * 4;
    uint8_t *saved = malloc(tlen + mlen);
    if (!saved) return PyErr_NoMemory();
    if (lock_or_raise(self) < 0) { free(saved); return NULL; }
    header_t *H = self->H;
    uint64_t used = 0, cached = 0, used_bytes = 0, cached_bytes = 0;
    const char *err = NULL;
    uint64_t err_g = 0;
    for (uint64_t g = 0; g < self->ngran && !err;) {
        uint32_t m = atomic_load_explicit(&self->meta[g], ACQUIRE);
        if (!m) { g++; continue; }
        unsigned k = M_ORDER(m);
        if (k > self->levels || (g & ((1ull << k) - 1)) || M_STATE(m) == 0) {
            err = "malformed block metadata"; err_g = g; break;
        }
        for (uint64_t i = 1; i < (1ull << k); i++)
            if (atomic_load_explicit(&self->meta[g + i], RELAXED)) {
                err = "overlapping blocks"; err_g = g + i; break;
            }
        if (M_STATE(m) == ST_USED) used++, used_bytes += (uint64_t)GRAN << k;
        else cached++, cached_bytes += (uint64_t)GRAN << k;
        g += 1ull << k;
    }
    uint64_t fc[MAX_ORDER + 1], fg = H->free_gran;
    memcpy(fc, H->free_count, sizeof fc);
    memcpy(saved, self->tree, tlen);
    memcpy(saved + tlen, self->mask, mlen);
    if (!err) {
        if (tree_rebuild(self)) err = "rebuild dropped blocks";
        else if (memcmp(saved + 1, self->tree + 1, tlen - 1)) err = "buddy tree differs from metadata";
        else if (memcmp(saved + tlen + 2, (char *)self->mask + 2, mlen - 2))
            err = "buddy order masks differ from metadata";
        else if (memcmp(fc, H->free_count, sizeof fc)) err = "free block counts differ";
        else if (fg != H->free_gran) err = "free byte count differs";
        else if ((fg << GRAN_SHIFT) + used_bytes + cached_bytes != self->size)
            err = "bytes do not add up";
    }
    if (err) { /* leave the rebuilt (consistent) state in place */ }
    pool_unlock(self);
    free(saved);
    if (err) {
        PyErr_Format(PoolCorruption, "memory pool inconsistent: %s (granule %llu)", err,
                     (unsigned long long)err_g);
        return NULL;
    }
    return Py_BuildValue("{sKsKsKsKsK}", "used_blocks", (unsigned long long)used,
                         "cached_blocks", (unsigned long long)cached,
                         "used_bytes", (unsigned long long)used_bytes,
                         "cached_bytes", (unsigned long long)cached_bytes,
                         "free_bytes", (unsigned long long)(fg << GRAN_SHIFT));
}

static void pool_do_close(Pool *p) {
    if (p->closed || !p->H) { p->closed = 1; return; }
    p->closed = 1;
    int forked = p->epoch != g_fork_epoch;
    pthread_mutex_lock(&g_lock);
    int locked = !forked && pool_lock(p) == 0;
    for (tcache_t *tc = p->tcaches; tc;) {
        tcache_t *nx = tc->pool_next;
        if (locked) flush_all_locked(p, tc);
        tc->pool = NULL; /* freed by its thread */
        tc = nx;
    }
    p->tcaches = NULL;
    pthread_mutex_unlock(&g_lock);
    /* Blocks in use stay where they are: a consumer may still read them through its
     * own mapping, and the arena lives until its last mapping goes. */
    if (locked) pool_unlock(p);
}

static PyObject *Pool_close(Pool *self, PyObject *unused) {
    pool_do_close(self);
    Py_CLEAR(self->view);
    if (self->fd >= 0) { close(self->fd); self->fd = -1; }
    if (self->exports == 0) pool_unmap(self);
    Py_RETURN_NONE;
}

static void Pool_dealloc(Pool *self) {
    PyObject_ClearWeakRefs((PyObject *)self);
    pool_do_close(self);
    Py_CLEAR(self->view);
    if (self->fd >= 0) { close(self->fd); self->fd = -1; }
    pool_unmap(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Pool_getbuffer(Pool *self, Py_buffer *view, int flags) {
    if (!self->H || self->closed) {
        PyErr_SetString(PyExc_BufferError, "memory pool is closed");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->data, (Py_ssize_t)self->size, 0, flags) < 0)
        return -1;
    self->exports++;
    return 0;
}

static void Pool_releasebuffer(Pool *self, Py_buffer *view) {
    if (--self->exports == 0 && self->closed) pool_unmap(self);
}

static PyObject *Pool_get_buffer(Pool *self, void *c) {
    if (!self->view) {
        if (pool_check_open(self) < 0) return NULL;
        self->view = PyMemoryView_FromObject((PyObject *)self);
        if (!self->view) return NULL;
    }
    return Py_NewRef(self->view);
}

static PyObject *Pool_get_fd(Pool *self, void *c) { return PyLong_FromLong(self->fd); }
static PyObject *Pool_get_size(Pool *self, void *c) { return PyLong_FromUnsignedLongLong(self->size); }
static PyObject *Pool_get_closed(Pool *self, void *c) { return PyBool_FromLong(self->closed); }
static PyObject *Pool_get_owner(Pool *self, void *c) { return PyLong_FromLong(self->owner); }

static PyMethodDef Pool_methods[] = {
    {"alloc", (PyCFunction)Pool_alloc, METH_O, "alloc(nbytes) -> offset of a block of at least nbytes"},
    {"free", (PyCFunction)Pool_free, METH_O, "free(offset): the owner gives a block back"},
    {"free_returned", (PyCFunction)Pool_free_returned, METH_O,
     "free_returned(offset): a block a consumer returned (validated by the ring): level 2"},
    {"usable_size", (PyCFunction)Pool_usable_size, METH_O, "usable_size(offset) -> block size"},
    {"trim", (PyCFunction)Pool_trim, METH_NOARGS, "trim() -> bytes given back from caches"},
    {"close", (PyCFunction)Pool_close, METH_NOARGS, "close(): drop the allocator"},
    {"_stats_raw", (PyCFunction)Pool_stats_raw, METH_NOARGS, "raw counters"},
    {"check", (PyCFunction)Pool_check, METH_NOARGS, "full consistency check"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Pool_getset[] = {
    {"buffer", (getter)Pool_get_buffer, NULL, "the whole arena, writable, shared", NULL},
    {"fd", (getter)Pool_get_fd, NULL, "the memfd", NULL},
    {"size", (getter)Pool_get_size, NULL, "arena size in bytes", NULL},
    {"closed", (getter)Pool_get_closed, NULL, "True after close()", NULL},
    {"owner", (getter)Pool_get_owner, NULL, "pid of the owning process", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyBufferProcs Pool_as_buffer = {
    (getbufferproc)Pool_getbuffer,
    (releasebufferproc)Pool_releasebuffer,
};

static PyTypeObject PoolType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "exo.mm._pool.Pool",
    .tp_basicsize = sizeof(Pool),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Three-level allocator over a memfd arena; its metadata is private to the owner "
              "(see docs/memory-pool.md).",
    .tp_new = Pool_new,
    .tp_init = (initproc)Pool_init,
    .tp_dealloc = (destructor)Pool_dealloc,
    .tp_methods = Pool_methods,
    .tp_getset = Pool_getset,
    .tp_as_buffer = &Pool_as_buffer,
};

static PyMethodDef mod_methods[] = {
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT, "exo.mm._pool", "Shared-memory allocator hot paths.", -1, mod_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__pool(void) {
    static int once;
    if (!once) {
        if (pthread_key_create(&g_key, tl_destructor) != 0) return PyErr_NoMemory();
        pthread_atfork(NULL, NULL, atfork_child);
        once = 1;
    }
    if (PyType_Ready(&PoolType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moddef);
    if (!m) return NULL;
    PoolCorruption = PyErr_NewException("exo.mm._pool.PoolCorruption", PyExc_RuntimeError, NULL);
    if (!PoolCorruption || PyModule_AddObjectRef(m, "PoolCorruption", PoolCorruption) < 0 ||
        PyModule_AddObjectRef(m, "Pool", (PyObject *)&PoolType) < 0 ||
        PyModule_AddIntConstant(m, "GRANULE", GRAN) < 0 ||
        PyModule_AddIntConstant(m, "CACHED_CLASSES", NCLASS) < 0 ||
        PyModule_AddIntConstant(m, "MIN_SIZE", (long)MIN_POOL) < 0 ||
        PyModule_AddIntConstant(m, "MAX_SIZE", (long)MAX_POOL) < 0 ||
        PyModule_AddIntConstant(m, "HEADER_SIZE", (long)sizeof(header_t)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
