"""Fair shares of the kernel's time: one process's requests cannot starve the others.

The kernel serves every process on its own thread, but those threads share one
interpreter lock: while the thread of a process that floods the kernel with costly
requests (huge names, malformed JSON, refused opens) holds it, every other process's
syscall waits. The Linux scheduler cannot help, since to it the kernel is one process.

So each process gets a token bucket of kernel CPU time (seconds of its serving thread's
``thread_time``): it refills at ``rate`` (a fraction of one CPU) up to ``burst``. A
process that has used more than its share pauses, with the lock released, before its
next request is served -- but only while another process is using the kernel too
(asked within ``RECENT_S``): alone, a process may have all of it (work-conserving, like
CFS). Costs two ``clock_gettime`` per request.
"""

from __future__ import annotations

import threading
import time

#: A process over its share may run up to this long in one go before it pauses.
BURST_S = 0.010
#: Its share of one CPU's worth of kernel time while others want the kernel.
RATE = 0.25
#: Another process counts as "wanting the kernel" this long after its last request.
RECENT_S = 0.050
#: A pause never lasts longer than this (the bucket refills meanwhile anyway).
MAX_PAUSE_S = 0.1


class FairShare:
    """The kernel-wide view: who asked for the kernel lately."""

    __slots__ = ("_last", "_lock", "burst", "rate")

    def __init__(self, rate: float = RATE, burst: float = BURST_S) -> None:
        self.rate = rate
        self.burst = burst
        self._lock = threading.Lock()
        self._last: dict[int, float] = {}  # pid -> monotonic time of its last request

    def account(self, pid: int) -> Account:
        return Account(self, pid)

    def seen(self, pid: int, now: float) -> None:
        self._last[pid] = now  # one dict store: atomic under the interpreter lock

    def others_active(self, pid: int, now: float) -> bool:
        with self._lock:
            stale = [p for p, t in self._last.items() if now - t > RECENT_S]
            for p in stale:
                del self._last[p]
            return any(p != pid for p in self._last)

    def forget(self, pid: int) -> None:
        with self._lock:
            self._last.pop(pid, None)


class Account:
    """One process's bucket; used only by that process's serving thread."""

    __slots__ = ("_cpu0", "_refilled", "_share", "paused_s", "pauses", "pid", "tokens")

    def __init__(self, share: FairShare, pid: int) -> None:
        self._share = share
        self.pid = pid
        self.tokens = share.burst
        self._refilled = time.monotonic()
        self._cpu0 = 0.0
        self.pauses = 0
        self.paused_s = 0.0

    def begin(self) -> None:
        """Start the clock before waiting for a request (a wait costs no CPU time; the
        request's decoding, which happens as it is received, does)."""
        self._cpu0 = time.thread_time()

    def arrived(self) -> None:
        """A request arrived: the process wants the kernel."""
        self._share.seen(self.pid, time.monotonic())

    def end(self) -> None:
        """The request was answered: charge it, and pause if over the share."""
        spent = time.thread_time() - self._cpu0
        now = time.monotonic()
        share = self._share
        self.tokens = min(share.burst, self.tokens + (now - self._refilled) * share.rate)
        self._refilled = now
        self.tokens -= spent
        if self.tokens < 0 and share.others_active(self.pid, now):
            pause = min(MAX_PAUSE_S, -self.tokens / share.rate)
            self.pauses += 1
            self.paused_s += pause
            time.sleep(pause)  # the interpreter lock is free meanwhile
