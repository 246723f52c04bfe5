/*
 * exo._sched — scheduler knobs for the calling thread.
 *
 * set_latency_slice() lived in exo.ipc._fring; it is a request to the host scheduler,
 * not part of the ring protocol, so it is a module of its own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

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

static PyMethodDef mod_methods[] = {
    {"set_latency_slice", mod_set_latency_slice, METH_O,
     "set_latency_slice(us) -> bool: short EEVDF slice for the calling thread (0 = default)."},
    {NULL}};

static struct PyModuleDef moddef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "exo._sched",
    .m_doc = "Scheduler knobs for the calling thread (sched_setattr).",
    .m_size = -1,
    .m_methods = mod_methods,
};

PyMODINIT_FUNC PyInit__sched(void) { return PyModule_Create(&moddef); }
