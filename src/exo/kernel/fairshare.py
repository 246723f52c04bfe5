"""Fair shares of the kernel's time: one process's requests cannot starve the others.

The kernel serves every process on threads of one interpreter: its syscalls on its own
thread, its file operations on the FUSE servers' threads. They share one interpreter
lock, so while the kernel works for a process that floods it with costly requests (huge
names, malformed JSON, thousands of file creations), every other process's syscall
waits. The Linux scheduler cannot help: to it the kernel is one process.

So each Exo process has a token bucket of kernel CPU time (seconds of ``thread_time``
spent on its behalf, syscalls and file operations together): it refills at ``rate`` (a
fraction of one CPU) up to ``burst``. (A share of 1/n while n processes want the
kernel was tried: it let a flooding process hold the interpreter lock half the time,
and a well-behaved app's null syscall p99 got 5-50x worse beside it in
bench/isolation.py.) A process whose bucket is empty is *in debt*, and while another
process is using the kernel too (asked within ``RECENT_S``) its next request waits until
the debt is paid: its syscall thread sleeps (lock released), and a FUSE server puts its
request aside and serves others first. Alone, a process may have all
of the kernel (work-conserving, as CFS is). A syscall thread charges its CPU clock every
``SETTLE_S`` (``Meter``), not at every request: reading it is a system call.
"""

from __future__ import annotations

import threading
import time

#: A process may run this long in one go before its share applies.
BURST_S = 0.010
#: Its share of one CPU's worth of kernel time while others want the kernel.
RATE = 0.25
#: Another process counts as "wanting the kernel" this long after its last request.
RECENT_S = 0.050
#: No single wait is longer than this (the bucket refills meanwhile anyway).
MAX_PAUSE_S = 0.1
#: A serving thread's CPU time is read and charged at most this often (``Meter``): 2 %
#: of the burst, so a debt is found at most that much later.
SETTLE_S = 0.0002


#: How many exited processes' final figures ``final()`` still answers for.
KEEP_EXITED = 64


class _Bucket:
    __slots__ = ("deferred", "paused_s", "pauses", "refilled", "spent_s", "tokens")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.refilled = now
        self.pauses = 0
        self.paused_s = 0.0
        self.spent_s = 0.0
        self.deferred = 0  # file requests a FUSE server put aside while it was in debt

    def row(self) -> dict[str, float]:
        return {"kernel_cpu_s": round(self.spent_s, 6), "pauses": self.pauses,
                "paused_s": round(self.paused_s, 6), "deferred": self.deferred}


class FairShare:
    """Every process's bucket, and who asked for the kernel lately."""

    __slots__ = ("_buckets", "_exited", "_last", "_lock", "burst", "rate")

    def __init__(self, rate: float = RATE, burst: float = BURST_S) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._buckets: dict[int, _Bucket] = {}
        self._last: dict[int, float] = {}  # pid -> monotonic time of its last request
        # The last KEEP_EXITED exited processes' rows: how much the policy made a process
        # wait is known only once it is done (bench/isolation.py reads it then).
        self._exited: dict[int, dict[str, float]] = {}

    def seen(self, pid: int) -> None:
        """``pid`` asked for the kernel now."""
        self._last[pid] = time.monotonic()  # one dict store: atomic under the GIL

    def charge(self, pid: int, spent: float) -> float:
        """Charge ``spent`` seconds of kernel CPU to ``pid``; return its debt in seconds
        of waiting (0: within its share, or nobody else wants the kernel)."""
        now = time.monotonic()
        with self._lock:
            b = self._buckets.get(pid)
            if b is None:
                b = self._buckets[pid] = _Bucket(self.burst, now)
            rate = self.rate
            b.tokens = min(self.burst, b.tokens + (now - b.refilled) * rate) - spent
            b.refilled = now
            b.spent_s += spent
            if b.tokens >= 0 or not self._others_active(pid, now):
                return 0.0
            return min(MAX_PAUSE_S, -b.tokens / rate)

    def debt(self, pid: int) -> float:
        """How long ``pid`` must wait before the kernel works for it again (0: now)."""
        return self.charge(pid, 0.0)

    def paused(self, pid: int, seconds: float) -> None:
        with self._lock:
            b = self._buckets.get(pid)
            if b is not None:
                b.pauses += 1
                b.paused_s += seconds

    def deferred(self, pid: int) -> None:
        """A FUSE server put one of ``pid``'s requests aside because it was in debt."""
        with self._lock:
            b = self._buckets.get(pid)
            if b is not None:
                b.deferred += 1

    def forget(self, pid: int) -> None:
        """``pid`` exited: its bucket goes, its last figures stay for ``final()``."""
        with self._lock:
            b = self._buckets.pop(pid, None)
            self._last.pop(pid, None)
            if b is not None:
                self._exited.pop(pid, None)
                self._exited[pid] = b.row()
                while len(self._exited) > KEEP_EXITED:
                    del self._exited[next(iter(self._exited))]

    def final(self, pid: int) -> dict[str, float] | None:
        """The row of ``pid``, running or among the last KEEP_EXITED to exit."""
        with self._lock:
            b = self._buckets.get(pid)
            return b.row() if b is not None else self._exited.get(pid)

    def stats(self) -> dict[int, dict[str, float]]:
        """Per process: kernel CPU seconds spent for it, syscall waits imposed and their
        total, file requests put aside."""
        with self._lock:
            return {pid: b.row() for pid, b in self._buckets.items()}

    def proc_text(self) -> str:
        """``/proc/fairshare``: the policy, then one line per process the kernel worked for."""
        lines = [f"rate:\t{self.rate} CPU while others want the kernel",
                 f"burst:\t{self.burst * 1000:g} ms",
                 "pid\tkernel_cpu_s\tpauses\tpaused_s\tdeferred"]
        lines += [f"{pid}\t{row['kernel_cpu_s']}\t{row['pauses']}\t{row['paused_s']}"
                  f"\t{row['deferred']}"
                  for pid, row in sorted(self.stats().items())]
        return "\n".join(lines) + "\n"

    def _others_active(self, pid: int, now: float) -> int:
        """How many other processes asked for the kernel within RECENT_S."""
        stale = [p for p, t in self._last.items() if now - t > RECENT_S]
        for p in stale:
            del self._last[p]
        return sum(1 for p in self._last if p != pid)


class Meter:
    """Charges the CPU time of one process's serving thread to that process's share.

    The thread works for that process only, so everything the thread's CPU clock counts
    is the process's: decoding, handlers, encoding, and the GIL-free spin before a futex
    sleep (a sleep counts nothing). The meter is continuous: it never stops between
    requests, so no instruction goes uncharged.

    The thread's CPU clock is a system call (``clock_gettime(CLOCK_THREAD_CPUTIME_ID)``,
    ~0.5 us here, not in the vDSO) and the bucket takes a lock: reading and charging at
    every request cost ~2 us, more than the rest of a null syscall's kernel side. So
    ``tick()``, called after each request, reads the monotonic clock (vDSO, ~50 ns) and
    settles -- reads the CPU clock, charges everything since the last settlement, returns
    the debt -- once ``SETTLE_S`` of wall time has passed since the last (at once after
    any request or wait longer than that). A process is charged exactly what it used;
    only when its debt is found moves, by at most ``SETTLE_S`` plus one request.
    """

    __slots__ = ("_cpu", "_share", "_wall", "pid")

    def __init__(self, share: FairShare, pid: int) -> None:
        """Create it on the thread it measures."""
        self._share = share
        self.pid = pid
        self._cpu = time.thread_time()
        self._wall = time.perf_counter()

    def tick(self) -> float:
        """After a request: the debt to wait out now (0: none, or not settled yet)."""
        now = time.perf_counter()
        if now - self._wall < SETTLE_S:
            return 0.0
        cpu = time.thread_time()
        spent = cpu - self._cpu
        self._cpu = cpu
        self._wall = now
        return self._share.charge(self.pid, spent)

    def pay(self, debt: float) -> None:
        """Wait out a debt (the interpreter lock is free meanwhile)."""
        if debt > 0:
            self._share.paused(self.pid, debt)
            time.sleep(debt)
