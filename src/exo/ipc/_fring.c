/*
 * exo.ipc._fring — the CPython binding of the Fusion Ring protocol.
 *
 * The protocol itself (layout, publish/consume, validation of everything read from
 * shared memory, waits, the return queue) lives in fring.h / fring.c, which include no
 * Python header (docs/fusion-rings.md, "File layout").  This file adds what only Python
 * needs: the Ring and Block types, argument parsing, exceptions, the pool's Python
 * callables, and the GIL: every wait of the protocol runs with it released (the hooks
 * below), because what a waiter watches is memory the peer controls.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "fring.h"

#include <stdint.h>
#include <string.h>

static PyObject *ProtocolError, *PeerDiedError, *PeerClosedError;

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
static PyTypeObject RingType;

/* ------------------------------------------------------------------ Ring */

typedef struct Ring {
    PyObject_HEAD
    struct fr_end e; /* the protocol's end: everything it decides with (fring.h) */
    PyObject *dict;
    Py_buffer buf;
    int has_buf;
    Py_buffer pool; /* held while e.has_pool */
    PyObject *pool_alloc, *pool_free, *pool_returned;
    Py_ssize_t blocks_out;
    int busy;            /* a thread is inside a call that released the GIL */
    int nogil;           /* recv_msg_or_answer holds no GIL around the protocol's waits */
    int closed;
    PyThreadState *ts;   /* the thread state saved while the protocol waits */
} Ring;

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
    *deadline = fr_now_ns() + (int64_t)(s * 1e9);
    return 0;
}

/* A protocol code as the exception it means.  FR_EINTR: the interrupted hook already
 * set one (a signal handler raised). */
static int raise_fr(Ring *r, int64_t rc, const char *what) {
    switch (rc) {
    case FR_ETIMEDOUT:
        PyErr_Format(PyExc_TimeoutError, "%s timed out", what);
        break;
    case FR_ECLOSED:
        PyErr_SetString(PeerClosedError, "the peer closed its end of the ring");
        break;
    case FR_EDIED:
        PyErr_SetString(PeerDiedError, "the peer process is gone (its end of the ring died)");
        break;
    case FR_EPROTO:
        PyErr_SetString(ProtocolError, r->e.err);
        break;
    default:
        break;
    }
    return -1;
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
/* ------------------------------------------------------------------ protocol hooks */

/* Every wait of the protocol runs between these two: the GIL released, the end marked
 * busy (a second thread using it meanwhile gets RuntimeError, not a corrupt ring). */
static void gil_release(struct fr_end *e) {
    Ring *r = e->user;
    if (r->nogil)
        return; /* released already, for the whole call */
    r->busy = 1;
    r->ts = PyEval_SaveThread();
}

static void gil_acquire(struct fr_end *e) {
    Ring *r = e->user;
    if (r->nogil)
        return;
    PyEval_RestoreThread(r->ts);
    r->ts = NULL;
    r->busy = 0;
}

/* Between ticks of a wait (the GIL held): a signal handler that raised ends the wait. */
static int signalled(struct fr_end *e) {
    /* without the GIL (recv_msg_or_answer) no signal can be looked at: the serving thread
     * that uses it is never the main thread, which alone runs signal handlers */
    return ((Ring *)e->user)->nogil ? 0 : PyErr_CheckSignals() < 0;
}

/* A block of the producer's pool goes back to its allocator (free_returned for one the
 * consumer returned, free for one reclaimed).  Called from the protocol's drain with the
 * GIL held; a caller's pending exception survives the call. */
static void give_back(struct fr_end *e, uint64_t off, int returned) {
    Ring *r = e->user;
    PyObject *fn = returned ? r->pool_returned : r->pool_free;
    if (!fn)
        return;
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    PyObject *res = call_u64(fn, off);
    if (!res)
        PyErr_WriteUnraisable(fn);
    Py_XDECREF(res);
    PyErr_Restore(et, ev, tb);
}

static const struct fr_hooks ring_hooks = {gil_release, gil_acquire, signalled, give_back};

/* Producer: take back what the consumer returned; -1 with ProtocolError when the queue's
 * indices are corrupt (the ring is then broken: every later send raises). */
static int64_t drain_returns(Ring *r) {
    int64_t n = fr_drain_returns(&r->e);
    if (n < 0)
        raise_fr(r, n, "drain");
    return n;
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
    if (r->e.role == ROLE_CONSUMER) { /* a received block: back through the return queue */
        fr_rq_push(&r->e, b->offset);
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
    struct fr_msg m;    /* what the protocol writes (inline src, or a descriptor) */
    Py_buffer view;     /* a message object's buffer, held until the slot is written */
    int has_view;
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
        PyObject *res = call_u64(r->pool_free, p->m.off);
        if (!res)
            PyErr_WriteUnraisable(r->pool_free);
        Py_XDECREF(res);
        PyErr_Restore(et, ev, tb);
        p->allocated = 0;
    }
}

static int pool_alloc(Ring *r, uint64_t n, uint64_t *off) {
    if (!r->e.has_pool) {
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
        p->m.size = (uint32_t)n;
        p->m.src = src;
        return 0;
    }
    if (pool_alloc(r, (uint64_t)n, &p->m.off) < 0)
        return -1;
    p->allocated = 1;
    p->m.len = (uint64_t)n;
    memcpy((uint8_t *)r->pool.buf + p->m.off, src, (size_t)n);
    p->m.flags = F_ZC;
    p->m.size = FR_DESC;
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
        p->m.flags = F_ZC;
        p->m.size = FR_DESC;
        p->m.off = b->offset;
        p->m.len = (uint64_t)b->len;
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
    if (p->m.flags & F_ZC) { /* copied into the pool: the source is no longer needed */
        PyBuffer_Release(&p->view);
        p->has_view = 0;
    }
    return 0;
}

/* A prepared message was written: a loan's ownership moves to the consumer, and a
 * block we allocated is no longer ours to free. */
static void mark_sent(prep_t *p) {
    if (!(p->m.flags & F_ZC))
        return;
    if (p->loan) {
        p->loan->released = 1;
        p->loan->ring->blocks_out--;
    }
    p->allocated = 0;
}

/* write a prepared message (already reserved) at the end's position */
static void write_msg(Ring *r, prep_t *p, const uint32_t *handles, int nh) {
    fr_write_msg(&r->e, &p->m, handles, nh);
    mark_sent(p);
}

/* Write a batch of single-slot messages, its first slot last (fr_write_batch). */
static void write_batch(Ring *r, prep_t *p, Py_ssize_t n) {
    struct fr_msg ms[FR_BATCH_MAX];
    if (n <= 0 || n > FR_BATCH_MAX) /* callers pass 1..16 */
        return;
    for (Py_ssize_t i = 0; i < n; i++)
        ms[i] = p[i].m;
    fr_write_batch(&r->e, ms, (size_t)n);
    for (Py_ssize_t i = 0; i < n; i++)
        mark_sent(&p[i]);
}

static uint32_t batch_zc_count(const prep_t *p, Py_ssize_t n) {
    uint32_t c = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        c += (p[i].m.flags & F_ZC) != 0;
    return c;
}

static uint64_t batch_zc_bytes(const prep_t *p, Py_ssize_t n) {
    uint64_t zc = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i].m.flags & F_ZC)
            zc += p[i].m.len;
    return zc;
}

/* Producer: make room (fr_reserve), or raise what stopped the wait. */
static int reserve(Ring *r, uint32_t n, uint64_t zc, uint32_t nzc, int64_t deadline) {
    int rc = fr_reserve(&r->e, n, zc, nzc, deadline);
    return rc == FR_OK ? 0 : raise_fr(r, rc, "send");
}

static int check_producer(Ring *r) {
    if (ring_ready(r) < 0)
        return -1;
    if (r->e.role != ROLE_PRODUCER) {
        PyErr_SetString(PyExc_TypeError, "this ring endpoint is the consumer: it cannot send");
        return -1;
    }
    if (r->e.ret_broken) {
        PyErr_SetString(ProtocolError, "ring broken: its return queue was corrupted by the peer");
        return -1;
    }
    if (atomic_load_explicit(&r->e.hdr->cons_closed, memory_order_relaxed)) {
        fr_reclaim_outstanding(&r->e);
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
    if (need > r->e.cap) {
        PyErr_SetString(PyExc_ValueError, "message needs more slots than the ring has");
        return NULL;
    }
    prep_t p;
    if (prep_msg(r, data, &p) < 0)
        return NULL;
    if (reserve(r, need, p.m.flags & F_ZC ? p.m.len : 0, (p.m.flags & F_ZC) != 0, deadline) < 0) {
        prep_cleanup(r, &p, 1);
        return NULL;
    }
    write_msg(r, &p, hv, nh);
    prep_cleanup(r, &p, 0);
    fr_publish(&r->e, 1);
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
    if (n > FR_BATCH_MAX || (uint32_t)n > r->e.cap) {
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
    fr_publish(&r->e, (uint32_t)n);
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
    if ((uint32_t)n > r->e.cap) {
        PyErr_Format(PyExc_ValueError, "a batch of %zd messages exceeds the ring's %u slots", n,
                     r->e.cap);
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
        fr_write_packed_inline(&r->e, view.buf, (size_t)view.len, len, (size_t)n);
        PyBuffer_Release(&view);
        fr_publish(&r->e, (uint32_t)n);
        Py_RETURN_NONE;
    }
    prep_t p[FR_BATCH_MAX];
    const uint8_t *src = view.buf;
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        p[i].m.flags = 0;
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
    fr_publish(&r->e, (uint32_t)n);
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
    if (r->e.role != ROLE_CONSUMER) {
        PyErr_SetString(PyExc_TypeError, "this ring endpoint is the producer: it cannot receive");
        return -1;
    }
    return 0;
}

/* Make at least one slot available; returns the number available, or -1 raised. */
static int64_t await_data(Ring *r, int64_t deadline) {
    int64_t avail = fr_await_data(&r->e, deadline);
    return avail < 0 ? raise_fr(r, avail, "recv") : avail;
}

/* Skip a malformed message: count it, free its slots, raise ProtocolError. */
static void reject_msg(Ring *r, const fr_msg_t *m) {
    fr_reject_msg(&r->e, m);
    PyErr_SetString(ProtocolError, m->err);
}

static void raise_has_handles(void) {
    PyErr_SetString(ProtocolError, "the next message carries handles: receive it with recv_msg()");
}

/* The message's payload as an object: bytes (inline, copied out of the slot) or a
 * Block (zero-copy, in place in the pool). */
static PyObject *msg_object(Ring *r, const fr_msg_t *m) {
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
    fr_msg_t m;
    if (fr_decode_msg(&r->e, &av, &m) < 0) {
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
    r->e.pos += m.used;
    if (m.zc)
        r->e.zc_pending += m.len;
    fr_consume(&r->e, 1);
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

/* The token of a question: 1-18 decimal digits, no leading zero (the canonical form of a
 * JSON integer that fits 64 bits, so echoing it writes what an encoder would). */
static int question_token(const uint8_t *p, uint64_t n, const Py_buffer *pre, const Py_buffer *suf,
                          const uint8_t **tok, size_t *tlen) {
    size_t a = (size_t)pre->len, b = (size_t)suf->len;
    if (n < a + b + 1 || n > a + b + 18 || memcmp(p, pre->buf, a) != 0 ||
        memcmp(p + n - b, suf->buf, b) != 0)
        return 0;
    size_t k = (size_t)n - a - b;
    const uint8_t *d = p + a;
    if (k > 1 && d[0] == '0')
        return 0;
    for (size_t i = 0; i < k; i++)
        if (d[i] < '0' || d[i] > '9')
            return 0;
    *tok = d;
    *tlen = k;
    return 1;
}

/* recv_msg_or_answer(tx, question_prefix, question_suffix, answer_prefix, answer_suffix,
 * budget_us, timeout=None): recv_msg, except that every message that is exactly question_prefix + token
 * + question_suffix (inline, no handles; token as question_token says) is answered on
 * `tx` with answer_prefix + token + answer_suffix and consumed, all without the GIL: a
 * request/reply channel's constant answers (the kernel's null syscall) cost no Python
 * and wait for no other thread.  Returns the number answered (an int) once budget_us has
 * passed since the first answer (the caller's turn to account for them), or, at the first
 * other message or condition, exactly what recv_msg() returns or raises for it.  Both
 * rings are busy meanwhile (another thread using or closing either gets RuntimeError). */
static PyObject *ring_recv_msg_or_answer(Ring *r, PyObject *args) {
    Ring *tx;
    Py_buffer qp, qs, ap, as;
    double budget_us;
    PyObject *timeout = NULL;
    if (!PyArg_ParseTuple(args, "O!y*y*y*y*d|O:recv_msg_or_answer", &RingType, &tx, &qp, &qs,
                          &ap, &as, &budget_us, &timeout))
        return NULL;
    PyObject *res = NULL;
    int64_t deadline;
    if (check_consumer(r) < 0 || check_producer(tx) < 0 || parse_timeout(timeout, &deadline) < 0)
        goto out;
    if (tx == r) {
        PyErr_SetString(PyExc_ValueError, "tx must be another ring");
        goto out;
    }
    if ((size_t)ap.len + (size_t)as.len + 1 > FR_INLINE || qp.len < 1 || qs.len < 1 ||
        !(budget_us >= 0 && budget_us <= 1e6)) {
        PyErr_SetString(PyExc_ValueError, "answers must fit one inline slot; questions need "
                                          "a prefix and a suffix; budget_us within [0, 1e6]");
        goto out;
    }
    long answered = 0;
    int spent = 0;     /* the budget ran out (after an answer) */
    int timed_out = 0; /* the deadline passed with nothing to read */
    uint8_t q[FR_INLINE]; /* the question, copied: the peer may rewrite its slot meanwhile */
    int64_t budget_ns = (int64_t)(budget_us * 1000.0), until = 0;
    uint8_t reply[FR_INLINE];
    r->busy = tx->busy = 1;
    r->nogil = tx->nogil = 1;
    PyThreadState *ts = PyEval_SaveThread();
    for (;;) {
        /* Once something was answered, the budget bounds the wait too: the count goes
         * back to the caller by `until` whether or not more questions come. */
        int64_t avail = fr_await_data(&r->e, answered && until < deadline ? until : deadline);
        if (avail == FR_ETIMEDOUT) {
            if (answered) {
                spent = 1;
                break;
            }
            timed_out = 1;
            break;
        }
        if (avail <= 0)
            break; /* closed, died, corrupt: recv_msg below says it as usual */
        /* The budget is checked before serving, not only after: a question that arrives
         * once it is spent stays in the ring for the next call, after the caller has
         * accounted for these (and waited out a debt). */
        if (answered && fr_now_ns() >= until) {
            spent = 1;
            break;
        }
        uint32_t av = (uint32_t)avail;
        fr_msg_t m;
        const uint8_t *tok;
        size_t tlen;
        if (fr_decode_msg(&r->e, &av, &m) < 0 || m.zc || m.nh || m.len > FR_INLINE)
            break; /* anything else is recv_msg's (and its caller's) */
        memcpy(q, m.ptr, (size_t)m.len);
        if (!question_token(q, m.len, &qp, &qs, &tok, &tlen) ||
            (size_t)ap.len + tlen + (size_t)as.len > FR_INLINE)
            break; /* anything else is recv_msg's (and its caller's) */
        /* room for the answer now, or recv_msg's caller answers (and waits) as usual */
        uint32_t h = atomic_load_explicit(&tx->e.hdr->head, memory_order_acquire);
        uint32_t used = tx->e.pos - h;
        if (used >= tx->e.cap || atomic_load_explicit(&tx->e.hdr->cons_closed, memory_order_relaxed))
            break;
        tx->e.cached = h;
        size_t n = 0;
        memcpy(reply, ap.buf, (size_t)ap.len);
        n += (size_t)ap.len;
        memcpy(reply + n, tok, tlen);
        n += tlen;
        memcpy(reply + n, as.buf, (size_t)as.len);
        n += (size_t)as.len;
        fr_take(&r->e, &m); /* the question's slot is read: free it before answering */
        fr_consume(&r->e, 1);
        struct fr_msg out = {0, (uint32_t)n, reply, 0, 0};
        fr_write_msg(&tx->e, &out, NULL, 0);
        fr_publish(&tx->e, 1);
        int64_t now = fr_now_ns();
        if (answered++ == 0)
            until = now + budget_ns;
        if (now >= until) {
            spent = 1;
            break;
        }
    }
    PyEval_RestoreThread(ts);
    r->nogil = tx->nogil = 0;
    r->busy = tx->busy = 0;
    if (spent)
        res = PyLong_FromLong(answered);
    else if (timed_out)
        res = answered ? PyLong_FromLong(answered) : (raise_fr(r, FR_ETIMEDOUT, "recv"), NULL);
    else
        res = recv_common(r, NULL, 0, NULL, 1); /* the message (or condition) is there now */
out:
    PyBuffer_Release(&qp);
    PyBuffer_Release(&qs);
    PyBuffer_Release(&ap);
    PyBuffer_Release(&as);
    return res;
}

/* Decimal digits of v (v >= 0) at out; returns how many (at most 20). */
static size_t put_decimal(uint8_t *out, unsigned long long v) {
    uint8_t tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* call_int(rx, id, question_prefix, question_suffix, answer_prefix, answer_middle,
 * answer_suffix): the caller's side of a request/reply channel in one C call.  Sends
 * question_prefix + id + question_suffix (inline) on this producer ring, waits for the
 * reply on `rx` (both waits without the GIL, as send and recv_msg), and returns an int
 * N when the reply is exactly answer_prefix + id + answer_middle + N + answer_suffix
 * (N: 1-18 digits, no leading zero, as an encoder writes it); any other reply is
 * returned as recv_msg() returns its data (bytes, or a Block; handles are dropped), and
 * every condition raises as send() or recv_msg() raise it.  The null syscall's app side:
 * no request object, no reply decoding, one Python call (exo_std._kernel). */
static PyObject *ring_call_int(Ring *tx, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7 || !PyObject_TypeCheck(args[0], &RingType) || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "call_int(rx, id, question_prefix, question_suffix, "
                                         "answer_prefix, answer_middle, answer_suffix)");
        return NULL;
    }
    for (int i = 2; i < 7; i++)
        if (!PyBytes_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "call_int: the question's and answer's parts are bytes");
            return NULL;
        }
    Ring *rx = (Ring *)args[0];
    unsigned long long id = PyLong_AsUnsignedLongLong(args[1]);
    if (id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    if (rx == tx) {
        PyErr_SetString(PyExc_ValueError, "rx must be another ring");
        return NULL;
    }
    if (check_producer(tx) < 0 || check_consumer(rx) < 0)
        return NULL;
    const uint8_t *qp = (const uint8_t *)PyBytes_AS_STRING(args[2]);
    const uint8_t *qs = (const uint8_t *)PyBytes_AS_STRING(args[3]);
    size_t qpn = (size_t)PyBytes_GET_SIZE(args[2]), qsn = (size_t)PyBytes_GET_SIZE(args[3]);
    uint8_t q[FR_INLINE], idt[20];
    size_t idn = put_decimal(idt, id);
    if (qpn + idn + qsn > FR_INLINE) {
        PyErr_SetString(PyExc_ValueError, "call_int: the question must fit one inline slot");
        return NULL;
    }
    memcpy(q, qp, qpn);
    memcpy(q + qpn, idt, idn);
    memcpy(q + qpn + idn, qs, qsn);
    if (reserve(tx, 1, 0, 0, INT64_MAX) < 0)
        return NULL;
    struct fr_msg out = {0, (uint32_t)(qpn + idn + qsn), q, 0, 0};
    fr_write_msg(&tx->e, &out, NULL, 0);
    fr_publish(&tx->e, 1);

    int64_t avail = await_data(rx, INT64_MAX);
    if (avail < 0)
        return NULL;
    uint32_t av = (uint32_t)avail;
    fr_msg_t m;
    if (fr_decode_msg(&rx->e, &av, &m) == 0 && !m.zc && !m.nh && m.len <= FR_INLINE) {
        uint8_t a[FR_INLINE]; /* copied: the peer may rewrite its slot meanwhile */
        size_t n = (size_t)m.len;
        memcpy(a, m.ptr, n);
        const uint8_t *ap = (const uint8_t *)PyBytes_AS_STRING(args[4]);
        const uint8_t *am = (const uint8_t *)PyBytes_AS_STRING(args[5]);
        const uint8_t *as = (const uint8_t *)PyBytes_AS_STRING(args[6]);
        size_t apn = (size_t)PyBytes_GET_SIZE(args[4]), amn = (size_t)PyBytes_GET_SIZE(args[5]),
               asn = (size_t)PyBytes_GET_SIZE(args[6]);
        size_t fixed = apn + idn + amn + asn;
        if (n > fixed && n - fixed <= 18 && memcmp(a, ap, apn) == 0 &&
            memcmp(a + apn, idt, idn) == 0 && memcmp(a + apn + idn, am, amn) == 0 &&
            memcmp(a + n - asn, as, asn) == 0) {
            const uint8_t *d = a + apn + idn + amn;
            size_t k = n - fixed;
            int ok = !(k > 1 && d[0] == '0');
            unsigned long long v = 0;
            for (size_t i = 0; ok && i < k; i++) {
                ok = d[i] >= '0' && d[i] <= '9';
                v = v * 10 + (unsigned long long)(d[i] - '0');
            }
            if (ok) {
                fr_take(&rx->e, &m);
                fr_consume(&rx->e, 1);
                return PyLong_FromUnsignedLongLong(v);
            }
        }
    }
    /* anything else (or a malformed message): exactly what recv_msg() does with it */
    PyObject *got = recv_common(rx, NULL, 0, NULL, 1);
    if (!got)
        return NULL;
    PyObject *data = PyTuple_GET_ITEM(got, 0);
    Py_INCREF(data);
    Py_DECREF(got);
    return data;
}

/* Batch receive prologue: wait for one message, then count everything published. */
static int64_t batch_avail(Ring *r, int64_t deadline) {
    int64_t avail = fr_batch_avail(&r->e, deadline);
    return avail < 0 ? raise_fr(r, avail, "recv") : avail;
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
        fr_msg_t m;
        if (fr_decode_msg(&r->e, &av, &m) < 0) {
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
        r->e.pos += m.used;
        av -= m.used;
        got++;
        if (m.zc)
            r->e.zc_pending += m.len;
        PyObject *data = msg_object(r, &m);
        if (!data || PyList_Append(list, data) < 0) {
            Py_XDECREF(data);
            Py_DECREF(list);
            fr_consume(&r->e, (uint32_t)got);
            return NULL;
        }
        Py_DECREF(data);
    }
    fr_consume(&r->e, (uint32_t)got);
    return list;
}

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
    uint64_t lmax = lengths && lv.itemsize == 4 ? 0xFFFFFFFFull : UINT64_MAX;
    uint32_t *len32 = lengths && lv.itemsize == 4 ? lv.buf : NULL;
    uint64_t *len64 = lengths && lv.itemsize == 8 ? lv.buf : NULL;
    int stop;
    uint64_t big = 0;
    int64_t got = fr_recv_into(&r->e, (uint32_t)avail, out.buf, (uint64_t)out.len, len32, len64,
                               lmax, maxn, &stop, &big);
    if (got) {
        res = PyLong_FromSsize_t((Py_ssize_t)got);
    } else if (stop == FR_EPROTO) {
        PyErr_SetString(ProtocolError, r->e.err);
    } else if (stop == 1) {
        raise_has_handles();
    } else if (stop == 2) {
        PyErr_Format(PyExc_ValueError, "the next message is %llu bytes but the buffer holds %zd",
                     (unsigned long long)big, out.len);
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
    if (r->e.has_pool) {
        PyErr_SetString(PyExc_ValueError, "a pool is already attached to this ring endpoint");
        return NULL;
    }
    if (!r->has_buf) {
        PyErr_SetString(PyExc_ValueError, "ring endpoint is closed");
        return NULL;
    }
    int producer = r->e.role == ROLE_PRODUCER;
    if (producer && (alloc == Py_None || freefn == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "a producer's pool needs alloc and free (it owns the pool)");
        return NULL;
    }
    if (PyObject_GetBuffer(buffer, &r->pool, producer ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return NULL;
    uint64_t *out_bits = NULL;
    if (producer) {
        uint64_t words = fr_out_words((uint64_t)r->pool.len);
        out_bits = PyMem_Calloc(words ? words : 1, sizeof(uint64_t));
        if (!out_bits) {
            PyBuffer_Release(&r->pool);
            return PyErr_NoMemory();
        }
        r->pool_alloc = Py_NewRef(alloc);
        r->pool_free = Py_NewRef(freefn);
        r->pool_returned = Py_NewRef(retfn == Py_None ? freefn : retfn);
    }
    fr_set_pool(&r->e, r->pool.buf, (uint64_t)r->pool.len, out_bits);
    Py_RETURN_NONE;
}

/* drain_returns() -> int: producer; take back what the consumer returned (also done
 * before every zero-copy allocation and while waiting for blocks). */
static PyObject *ring_drain_returns(Ring *r, PyObject *unused) {
    if (ring_ready(r) < 0)
        return NULL;
    if (r->e.role != ROLE_PRODUCER) {
        PyErr_SetString(PyExc_TypeError, "only the producer drains the return queue");
        return NULL;
    }
    int64_t n = drain_returns(r);
    if (n < 0)
        return NULL;
    return PyLong_FromLongLong(n);
}

static PyObject *ring_configure(Ring *r, PyObject *args, PyObject *kw) {
    static char *kwl[] = {"spin_us", "yields", "tick_ms", "zc_window", "spin_max_us", NULL};
    double spin_us = (double)r->e.spin_min_ns / 1e3, tick_ms = (double)r->e.tick_ns / 1e6;
    double spin_max_us = (double)r->e.spin_max_ns / 1e3;
    int yields = r->e.yields;
    long long zc_window = (long long)r->e.zc_window;
    if (!r->e.spin_max_ns)
        spin_us = (double)r->e.spin_ns / 1e3;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|didLd:configure", kwl, &spin_us, &yields,
                                     &tick_ms, &zc_window, &spin_max_us))
        return NULL;
    if (!(spin_us >= 0 && spin_us < 1e12) || yields < 0 || !(tick_ms > 0 && tick_ms < 1e12) ||
        zc_window < 0 || !(spin_max_us == 0 || (spin_max_us >= spin_us && spin_max_us < 1e12))) {
        PyErr_SetString(PyExc_ValueError, "spin_us >= 0, yields >= 0, tick_ms > 0, zc_window >= 0, "
                                          "spin_max_us 0 (fixed spin) or >= spin_us");
        return NULL;
    }
    r->e.zc_window = (uint64_t)zc_window;
    r->e.spin_ns = r->e.spin_min_ns = (int64_t)(spin_us * 1e3);
    r->e.spin_max_ns = (int64_t)(spin_max_us * 1e3);
    r->e.yields = yields;
    r->e.tick_ns = (int64_t)(tick_ms * 1e6);
    Py_RETURN_NONE;
}

static void ring_drop(Ring *r) {
    if (r->e.has_pool) {
        PyBuffer_Release(&r->pool);
        r->e.has_pool = 0;
    }
    PyMem_Free(r->e.out_bits);
    r->e.out_bits = NULL;
    r->e.rq = NULL;
    Py_CLEAR(r->pool_alloc);
    Py_CLEAR(r->pool_free);
    Py_CLEAR(r->pool_returned);
    if (r->has_buf) {
        PyBuffer_Release(&r->buf);
        r->has_buf = 0;
    }
    r->e.hdr = NULL;
    r->e.slots = NULL;
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
    if (announce && r->e.role == ROLE_PRODUCER && r->e.out_bits) {
        /* take back what was returned; if the consumer is gone, everything still out.
         * A live consumer keeps reading what it holds: those blocks stay allocated.
         * (Not on detach: the end now belongs to another process, and the returns with
         * it.) */
        if (drain_returns(r) < 0)
            PyErr_Clear();
        if (fr_peer_gone(&r->e))
            fr_reclaim_outstanding(&r->e);
    }
    if (announce)
        fr_announce_close(&r->e);
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
    struct fr_hdr *h = r->e.hdr;
    uint32_t head = LD(head), tail = LD(tail);
    PyObject *d = PyDict_New();
    if (!d)
        return NULL;
    SET_ITEM(d, "role", PyUnicode_FromString(r->e.role == ROLE_PRODUCER ? "producer" : "consumer"));
    SET_ITEM(d, "capacity", PyLong_FromUnsignedLong(r->e.cap));
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
    SET_ITEM(d, "zc_window", PyLong_FromUnsignedLongLong(r->e.zc_window));
    SET_ITEM(d, "consumer_sleeping", PyBool_FromLong(LD(cons_sleeping)));
    SET_ITEM(d, "producer_cpu", PyLong_FromLong((int32_t)LD(prod_cpu)));
    SET_ITEM(d, "consumer_cpu", PyLong_FromLong((int32_t)LD(cons_cpu)));
    SET_ITEM(d, "producer_sleeping", PyBool_FromLong(LD(prod_sleeping)));
    SET_ITEM(d, "producer_closed", PyBool_FromLong(LD(prod_closed)));
    SET_ITEM(d, "consumer_closed", PyBool_FromLong(LD(cons_closed)));
    SET_ITEM(d, "pool_attached", PyBool_FromLong(r->e.has_pool));
    SET_ITEM(d, "wake_fence", PyUnicode_FromString(r->e.light_fence ? "membarrier" : "mfence"));
    SET_ITEM(d, "consumer_asks_fence", PyBool_FromLong(LD(cons_heavy) != 0));
    SET_ITEM(d, "producer_asks_fence", PyBool_FromLong(LD(prod_heavy) != 0));
    SET_ITEM(d, "blocks_held", PyLong_FromSsize_t(r->blocks_out));
    SET_ITEM(d, "return_queue", PyLong_FromUnsignedLong(r->e.rq_cap));
    SET_ITEM(d, "blocks_outstanding", PyLong_FromUnsignedLong(r->e.outstanding));
    SET_ITEM(d, "returns_accepted", PyLong_FromUnsignedLongLong(r->e.returns_ok));
    SET_ITEM(d, "returns_rejected", PyLong_FromUnsignedLongLong(r->e.returns_rejected));
    SET_ITEM(d, "returns_dropped", PyLong_FromUnsignedLongLong(r->e.returns_dropped));
    SET_ITEM(d, "blocks_reclaimed", PyLong_FromUnsignedLongLong(r->e.reclaimed));
    SET_ITEM(d, "broken", PyBool_FromLong(r->e.ret_broken));
    SET_ITEM(d, "spin_us", PyFloat_FromDouble((double)r->e.spin_ns / 1e3));
    SET_ITEM(d, "spin_min_us", PyFloat_FromDouble((double)r->e.spin_min_ns / 1e3));
    SET_ITEM(d, "spin_max_us", PyFloat_FromDouble((double)r->e.spin_max_ns / 1e3));
    SET_ITEM(d, "yields", PyLong_FromLong(r->e.yields));
    SET_ITEM(d, "tick_ms", PyFloat_FromDouble((double)r->e.tick_ns / 1e6));
    return d;
}

static PyObject *ring_peer_alive(Ring *r, PyObject *unused) {
    if (!r->has_buf)
        Py_RETURN_FALSE;
    return PyBool_FromLong(fr_peer_gone(&r->e) == 0);
}

static PyObject *ring_get_closed(Ring *r, void *c) { return PyBool_FromLong(!r->has_buf); }
static PyObject *ring_get_capacity(Ring *r, void *c) { return PyLong_FromUnsignedLong(r->e.cap); }
static PyObject *ring_get_role(Ring *r, void *c) {
    return PyUnicode_FromString(r->e.role == ROLE_PRODUCER ? "producer" : "consumer");
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
    r->e.hooks = &ring_hooks;
    r->e.user = r;
    int rc = fr_attach(&r->e, r->buf.buf, (uint64_t)r->buf.len, role, live_fd);
    if (rc == FR_ENOMEMBARRIER) {
        ring_drop(r);
        PyErr_SetString(PyExc_OSError,
                        "this ring's wake-up protocol needs membarrier(2) "
                        "(MEMBARRIER_CMD_GLOBAL_EXPEDITED), which this process cannot use");
        return -1;
    }
    if (rc != FR_OK) {
        ring_drop(r);
        PyErr_SetString(ProtocolError, r->e.err);
        return -1;
    }
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
    {"recv_msg_or_answer", (PyCFunction)ring_recv_msg_or_answer, METH_VARARGS,
     "recv_msg_or_answer(tx, question_prefix, question_suffix, answer_prefix, answer_suffix, "
     "budget_us, timeout=None) -> int answered | (data, handles)."},
    {"call_int", (PyCFunction)(void (*)(void))ring_call_int, METH_FASTCALL,
     "call_int(rx, id, question_prefix, question_suffix, answer_prefix, answer_middle, "
     "answer_suffix) -> int | data: send a question, wait for its reply on rx; an int when "
     "the reply is the expected answer around a decimal."},
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
     "configure(spin_us=, yields=, tick_ms=, zc_window=, spin_max_us=): the adaptive wait's phases "
     "(spin_max_us > 0: the spin adapts between spin_us and spin_max_us); the "
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
    if (fr_init_header(b.buf, (uint64_t)b.len, (uint32_t)cap, (uint32_t)start) != FR_OK) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "buffer too small for this capacity");
        return NULL;
    }
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
}


/* _use_membarrier(flag) -> previous: whether rings created from now on use the
 * membarrier wake-up protocol (when this process can); tests exercise both. */
static PyObject *mod_use_membarrier(PyObject *m, PyObject *arg) {
    int flag = PyObject_IsTrue(arg);
    if (flag < 0)
        return NULL;
    return PyBool_FromLong(fr_set_use_membarrier(flag));
}

/* _adaptive_fence(flag) -> previous: whether sleepers may ask wakers to fence again. */
static PyObject *mod_adaptive_fence(PyObject *m, PyObject *arg) {
    int flag = PyObject_IsTrue(arg);
    if (flag < 0)
        return NULL;
    return PyBool_FromLong(fr_set_adaptive_fence(flag));
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
    return PyLong_FromUnsignedLongLong(fr_ring_size((uint32_t)cap));
}

/* adapt_spin(budget_ns, floor_ns, cap_ns, waited_ns): the ring's adaptive-spin rule,
 * for tests (the same function the consumer's wait applies) */
static PyObject *mod_adapt_spin(PyObject *m, PyObject *args) {
    long long budget, floor, cap, waited;
    if (!PyArg_ParseTuple(args, "LLLL:adapt_spin", &budget, &floor, &cap, &waited))
        return NULL;
    return PyLong_FromLongLong(fr_adapt_spin(budget, floor, cap, waited));
}

static PyMethodDef mod_methods[] = {
    {"adapt_spin", mod_adapt_spin, METH_VARARGS,
     "adapt_spin(budget_ns, floor_ns, cap_ns, waited_ns) -> the next spin budget (tests)."},
    {"init_header", mod_init_header, METH_VARARGS, "init_header(buffer, capacity, start=0)"},
    {"ring_size", mod_ring_size, METH_O, "ring_size(capacity) -> bytes of shared memory"},
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
    .m_doc = "Fusion Ring binding (the protocol: fring.h / fring.c).",
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
    fr_process_init();
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
