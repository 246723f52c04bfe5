/*
 * exo.ipc._bench — helpers for the IPC benchmark (bench/ipc.py), not part of the ring.
 *
 * checksum() lived in exo.ipc._fring; it has nothing to do with the ring protocol (every
 * transport's consumer uses it), so it is a module of its own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

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

static PyMethodDef mod_methods[] = {
    {"checksum", mod_checksum, METH_VARARGS,
     "checksum(buffer, seed=0) -> int: fast 64-bit checksum reading every byte."},
    {NULL}};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "exo.ipc._bench",
    .m_doc = "Benchmark helpers: a checksum that reads every byte at cache speed.",
    .m_size = -1,
    .m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__bench(void) { return PyModule_Create(&moddef); }
