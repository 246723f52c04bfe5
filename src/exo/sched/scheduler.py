"""Exo tasks and the predictive scheduler that runs them.

A task is a greenlet: switching saves only the C stack pointer and the resume point, as
the seed's windowed context switch does, and nothing crosses the host kernel. Switches are
direct: a task that yields or blocks does its own accounting, picks the next task and
switches straight to it; the scheduler's hub (the greenlet that called ``run``) is entered
only when nothing is runnable, and then it sleeps in one ``epoll_wait`` — on its eventfd
(other threads and ring watchers post there), the file descriptors tasks wait on, and the
next timer. Nothing spins.

Blocking on a Fusion Ring: the ring's wake-up is a futex in shared memory, which epoll
cannot watch, so a task first tries ``recv(timeout=0)``; if nothing is there, a watcher
thread waits in the ring's own futex wait (GIL released) and posts the message to the
scheduler's eventfd. greenlet is imported on the first task run, not with this module: the
kernel's boot path creates a scheduler but pays for greenlet only when a task runs.
"""

from __future__ import annotations

import heapq
import os
import threading
from collections import deque
from time import perf_counter_ns

from exo.sched.predict import CLASS_NAMES, COLD, DEFAULT, Accuracy, Config, Predictor
from exo.sched.queues import AGE_NS, HOT_BUDGET, NORMAL_BUDGET, FifoQueue, RunQueues

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

NEW, RUNNABLE, RUNNING, BLOCKED, DONE = range(5)
STATE_NAMES = ("new", "runnable", "running", "blocked", "done")
_TIMEOUT: Any = object()
_WATCH_TICK = 0.05  # a ring watcher notices cancellation within this (seconds)
_WATCH_IDLE = 1.0   # a ring watcher with nothing to wait for exits after this (seconds)
_IO_EVERY = 32      # busy loops poll epoll (non-blocking) every this many picks

_greenlet: Any = None
_getcurrent: Any = None


def _load_greenlet() -> Any:
    """greenlet, imported on first use (~2.5 ms: kept off the kernel's boot path)."""
    global _greenlet, _getcurrent
    if _greenlet is None:
        import greenlet  # type: ignore[import-untyped]

        _greenlet = greenlet
        _getcurrent = greenlet.getcurrent
    return _greenlet


class Cancelled(Exception):
    """Raised in a task at its next switch point after ``cancel``; ``join`` re-raises it."""


class Task:
    """One Exo task: its function, greenlet, class, prediction and statistics."""

    __slots__ = ("args", "cancel_requested", "enq_ns", "error", "fn", "glet", "id",
                 "joiners", "kwargs", "locals", "max_wait_ns", "name", "predictor",
                 "result", "runs", "sched", "state", "wait_ns", "wait_token", "wake_value")

    def __init__(self, sched: Scheduler, tid: int, fn: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any], name: str,
                 klass: int | None) -> None:
        self.sched = sched
        self.id = tid
        self.name = name
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.glet: Any = None  # created when first run: an unstarted task can move threads
        self.state = NEW
        self.predictor = Predictor(sched.config, klass)
        self.enq_ns = 0
        self.result: Any = None
        self.error: BaseException | None = None
        self.joiners: list[tuple[Task, int]] = []
        self.locals: dict[Any, Any] = {}
        self.cancel_requested = False
        self.wait_token = 0
        self.wake_value: Any = None
        self.runs = 0
        self.wait_ns = 0
        self.max_wait_ns = 0

    @property
    def klass(self) -> str:
        """'hot', 'normal' or 'cold': the class its next burst is predicted to have."""
        return CLASS_NAMES[self.predictor.klass]

    @property
    def prediction_ms(self) -> float:
        return self.predictor.prediction_ns / 1e6

    @property
    def done(self) -> bool:
        return self.state == DONE

    @property
    def started(self) -> bool:
        return self.glet is not None

    def stats(self) -> dict[str, Any]:
        p = self.predictor
        acc = p.accuracy.ratio
        return {"id": self.id, "name": self.name, "state": STATE_NAMES[self.state],
                "class": self.klass, "prediction_ms": round(self.prediction_ms, 4),
                "bursts": p.bursts, "cpu_ms": round(p.total_ns / 1e6, 3),
                "history_ms": [round(b / 1e6, 4) for b in p.history],
                "accuracy": None if acc is None else round(acc, 4),
                "runs": self.runs, "max_wait_ms": round(self.max_wait_ns / 1e6, 3),
                "mean_wait_ms": round(self.wait_ns / self.runs / 1e6, 3) if self.runs else 0.0}

    def __repr__(self) -> str:
        acc = self.predictor.accuracy.ratio
        shown = "-" if acc is None else f"{acc:.0%}"
        return (f"<Task {self.id} {self.name!r} {STATE_NAMES[self.state]} {self.klass} "
                f"predicted {self.prediction_ms:.3f} ms, accuracy {shown}, "
                f"{self.predictor.bursts} bursts>")


class Event:
    """A flag tasks of one scheduler wait on without spinning."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[tuple[Task, int]] = []

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        waiters, self._waiters = self._waiters, []
        for task, token in waiters:
            if task.wait_token == token and task.state == BLOCKED:
                task.sched._wake(task, True)

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling task until set; False on timeout."""
        if self._flag:
            return True
        sched = current_scheduler()
        task, token = sched._prepare_block()
        self._waiters.append((task, token))
        return sched._block(task, token, timeout) is not _TIMEOUT


class _RingWatch:
    """The thread that waits on one ring for this scheduler's tasks (see the module's
    docstring). It serves one ``recv`` at a time (``go``), stays parked for the next one
    for ``_WATCH_IDLE`` seconds, then exits; ``lock`` orders that exit with a new request.
    """

    __slots__ = ("alive", "busy", "deadline", "endpoint", "go", "lock", "task", "token")

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.task: Task | None = None
        self.token = 0
        self.deadline: float | None = None
        self.busy = False   # a task is waiting on this watch's answer
        self.alive = False  # its thread is running
        self.go = threading.Event()
        self.lock = threading.Lock()


_current = threading.local()


def current_scheduler() -> Scheduler:
    """The scheduler running in this thread (the one whose task or hub is executing)."""
    sched: Scheduler | None = getattr(_current, "sched", None)
    if sched is None:
        raise RuntimeError("no Exo scheduler is running in this thread")
    return sched


class Scheduler:
    """One scheduler instance: run queues, timers, waits, and the loop that drives them.

    ``policy`` is "predictive" (the three class queues) or "fifo" (plain round robin, the
    baseline the benchmark compares with). Peers given to ``add_peer`` are scheduler
    instances (usually in other threads) this one steals Cold work from when idle.
    """

    def __init__(self, name: str = "sched", *, policy: str = "predictive",
                 config: Config = DEFAULT, hot_budget: int = HOT_BUDGET,
                 normal_budget: int = NORMAL_BUDGET, age_ms: float = AGE_NS / 1e6,
                 trace: bool = False) -> None:
        if policy not in ("predictive", "fifo"):
            raise ValueError(f"policy must be 'predictive' or 'fifo', got {policy!r}")
        self.name = name
        self.policy = policy
        self.config = config
        self.queues: RunQueues | FifoQueue = (
            RunQueues(hot_budget, normal_budget, int(age_ms * 1e6))
            if policy == "predictive" else FifoQueue())
        self._lanes = self.queues.queues  # push = append to the class's deque
        self._retired = Accuracy()  # of the tasks that finished or were stolen
        self.tasks: set[Task] = set()
        self.trace: list[tuple[str, int]] | None = [] if trace else None
        self.peers: list[Scheduler] = []
        self.current: Task | None = None
        self._hub: Any = None
        self._running = False
        self._handoff: Task | None = None  # a new task a task picked: the hub starts it
        self._thread: int | None = None
        self._run_start = 0
        self._next_id = 1
        self._next_token = 1
        self._timers: list[tuple[int, int, Task]] = []
        self._fd_waiters: dict[int, tuple[Task, int]] = {}
        self._watches: dict[int, _RingWatch] = {}
        self._leftovers: dict[int, deque[Any]] = {}
        self._inbox: deque[Callable[[], None]] = deque()
        self._epoll: Any = None
        self._efd = -1
        # Held while the eventfd is written (post, from any thread) and while it is closed:
        # otherwise a post that saw the fd open could write after close() freed its
        # number, into whatever file took it next (a Fusion Ring's memfd header: measured).
        self._efd_lock = threading.Lock()
        self._stopping = False
        self._closed = False
        self._picks_since_io = 0
        # statistics
        self.switches = 0
        self.spawned = 0
        self.finished = 0
        self.failed = 0
        self.stolen = 0
        self.idle_waits = 0
        self.max_wait_ns = [0, 0, 0]

    # ------------------------------------------------------------------ spawning

    def spawn(self, fn: Callable[..., Any], *args: Any, name: str | None = None,
              klass: int | None = None, **kwargs: Any) -> Task:
        """A new runnable task calling ``fn(*args, **kwargs)``. ``klass`` (HOT, NORMAL,
        COLD) is a hint for its first burst; afterwards its own bursts decide."""
        tid = self._next_id
        self._next_id += 1
        label: str = name or getattr(fn, "__name__", None) or "task"
        task = Task(self, tid, fn, args, kwargs, label, klass)
        self.tasks.add(task)
        self.spawned += 1
        task.state = RUNNABLE
        self.queues.push(task, task.predictor.klass, perf_counter_ns())
        return task

    def spawn_threadsafe(self, fn: Callable[..., Any], *args: Any,
                         name: str | None = None, **kwargs: Any) -> None:
        """Spawn from another thread: posted to this scheduler's inbox."""
        def spawn() -> None:
            self.spawn(fn, *args, name=name, **kwargs)

        self.post(spawn)

    def post(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in this scheduler's thread soon (thread-safe; wakes an idle loop)."""
        self._inbox.append(fn)
        with self._efd_lock:
            if self._efd >= 0:
                try:
                    os.eventfd_write(self._efd, 1)
                except OSError:  # cannot happen while the lock keeps it open; be safe
                    return

    # ------------------------------------------------------------------ the loop

    def run(self, until: Task | None = None, *, forever: bool = False,
            timeout: float | None = None) -> None:
        """Run tasks in the calling thread until ``until`` is done, or (``forever``)
        until ``stop``, or else until no task is left; at most ``timeout`` seconds
        (checked between bursts). Not from inside a task."""
        if self._running:
            raise RuntimeError(f"scheduler {self.name!r} is already running")
        prev = getattr(_current, "sched", None)
        if prev is not None and prev.current is not None:
            raise RuntimeError("run() called from inside a task; use join()")
        self._running = True
        self._hub = None  # the calling greenlet, taken when the first task starts
        self._thread = threading.get_ident()
        _current.sched = self
        end = None if timeout is None else perf_counter_ns() + int(timeout * 1e9)
        try:
            while not self._stopping and not (until is not None and until.state == DONE):
                now = perf_counter_ns()
                if end is not None and now >= end:
                    break
                task = self._handoff or self._next_ready(now)
                self._handoff = None
                if task is None:
                    if not self.tasks and not forever and not self._inbox:
                        break
                    if not self._idle_wait(now, forever or until is not None, end):
                        raise RuntimeError(
                            f"deadlock: {len(self.tasks)} tasks blocked with nothing to wake them")
                    continue
                self._switch_to(task, now)
        finally:
            if self._stopping and not self._closed:
                self._stopping = False  # consumed: a stop() before run() counts too
            self._running = False
            self._hub = None
            self.current = None
            _current.sched = prev

    @property
    def running(self) -> bool:
        """True while some thread is inside ``run`` (posted work will be done)."""
        return self._running and not self._closed

    def stop(self) -> None:
        """Make ``run`` return (from any thread)."""
        self._stopping = True
        self.post(lambda: None)

    def close(self) -> None:
        """Release the eventfd and epoll (after ``run`` has returned); ring watchers
        exit."""
        self._stopping = True
        self._closed = True
        for watch in self._watches.values():
            watch.go.set()
        with self._efd_lock:
            if self._epoll is not None:
                self._epoll.close()
                self._epoll = None
            if self._efd >= 0:
                os.close(self._efd)
                self._efd = -1

    def __del__(self) -> None:
        if getattr(self, "_efd", -1) >= 0:  # the epoll object closes itself; not an int fd
            os.close(self._efd)
            self._efd = -1

    def _ensure_epoll(self) -> Any:
        if self._epoll is None:
            import select

            with self._efd_lock:
                self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._epoll = select.epoll()
            self._epoll.register(self._efd, select.EPOLLIN)
        return self._epoll

    def _next_ready(self, now: int) -> Task | None:
        """Move due timers, posted work and (every few picks) ready fds onto the run
        queues, then pick."""
        if self._timers or self._inbox or self._fd_waiters:
            self._gather(now)
        task: Task | None = self.queues.pick(now)
        if task is None or (task.cancel_requested and task.glet is None):
            return self._next_ready_slow(now, task)
        return task

    def _gather(self, now: int) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:  # timers due
            _, token, sleeper = heapq.heappop(timers)
            if sleeper.wait_token == token and sleeper.state == BLOCKED:
                self._wake(sleeper, _TIMEOUT)
        inbox = self._inbox
        while inbox:
            inbox.popleft()()
        if self._fd_waiters:
            self._picks_since_io += 1
            if self._picks_since_io >= _IO_EVERY:
                self._poll_io(0)

    def _next_ready_slow(self, now: int, task: Task | None) -> Task | None:
        """The pick found nothing, or a task cancelled before it ran: finish those,
        then try the queues again, then the peers (stealing)."""
        while True:
            if task is None and self.peers:
                task = self._steal()
            if task is None:
                return None
            if not (task.cancel_requested and task.glet is None):
                return task
            self._finish(task, Cancelled(f"task {task.id} cancelled before it ran"))
            task = self.queues.pick(now)

    def _idle_wait(self, now: int, may_block_forever: bool, end: int | None = None) -> bool:
        """Sleep in epoll until a timer is due, an fd is ready, work is posted or
        ``end``. False if nothing could ever wake us (a deadlock, unless running forever)."""
        timeout = -1.0
        wake_at = self._timers[0][0] if self._timers else end
        if end is not None and wake_at is not None:
            wake_at = min(wake_at, end)
        if wake_at is not None:
            timeout = max(0.0, (wake_at - now) / 1e9)
        elif not self._fd_waiters and not any(w.busy for w in self._watches.values()) \
                and not may_block_forever:
            return False
        self._ensure_epoll()
        if self._stopping or self._inbox:  # posted before the eventfd existed
            return True
        self.idle_waits += 1
        self._poll_io(timeout)
        return True

    def _poll_io(self, timeout: float) -> None:
        self._picks_since_io = 0
        epoll = self._ensure_epoll()
        try:
            events = epoll.poll(timeout)
        except InterruptedError:
            return
        for fd, _ in events:
            if fd == self._efd:
                self._drain_eventfd()
                continue
            waiter = self._fd_waiters.pop(fd, None)
            epoll.unregister(fd)
            if waiter is not None:
                task, token = waiter
                if task.wait_token == token and task.state == BLOCKED:
                    self._wake(task, True)

    def _drain_eventfd(self) -> None:
        try:
            os.eventfd_read(self._efd)
        except BlockingIOError:  # another poll took it
            return

    def _switch_to(self, task: Task, now: int) -> None:
        """Make ``task`` current and switch to it (from the hub or from another task).

        A task that never ran is started from the hub only: a greenlet starts at the
        Python stack depth of the one that starts it, so tasks starting each other in a
        chain would reach the recursion limit."""
        if task.glet is None and self._hub is not None and \
                _greenlet.getcurrent() is not self._hub:
            self._handoff = task
            self.current = None
            self._hub.switch()
            return
        wait = now - task.enq_ns
        task.wait_ns += wait
        task.runs += 1
        if wait > task.max_wait_ns:
            task.max_wait_ns = wait
            klass = task.predictor.klass
            if wait > self.max_wait_ns[klass]:
                self.max_wait_ns[klass] = wait
        self.current = task
        task.state = RUNNING
        self.switches += 1
        self._run_start = now
        glet = task.glet
        if glet is None:
            if self._hub is None:  # the first task of this run: we are in the hub
                self._hub = _load_greenlet().getcurrent()
            glet = task.glet = _greenlet.greenlet(self._main, parent=self._hub)
            glet.switch(task)
        else:
            glet.switch()

    def _main(self, task: Task) -> None:
        """A task's greenlet body; returning goes back to the hub."""
        error: BaseException | None = None
        try:
            task.result = task.fn(*task.args, **task.kwargs)
        except BaseException as exc:  # kept for join(); GreenletExit too
            error = exc
        self._account(task, perf_counter_ns())
        self._finish(task, error)
        self.current = None

    def _finish(self, task: Task, error: BaseException | None) -> None:
        task.state = DONE
        task.error = error
        task.fn = _done
        task.args = ()
        task.kwargs = {}
        self.tasks.discard(task)
        self._retire(task)
        self.finished += 1
        if error is not None and not isinstance(error, Cancelled):
            self.failed += 1
        joiners, task.joiners = task.joiners, []
        for joiner, token in joiners:
            if joiner.wait_token == token and joiner.state == BLOCKED:
                self._wake(joiner, True)

    def _retire(self, task: Task) -> None:
        """Keep a finished (or stolen) task's hits and misses in the scheduler's."""
        acc = task.predictor.accuracy
        self._retired.hits += acc.hits
        self._retired.total += acc.total

    @property
    def accuracy(self) -> Accuracy:
        """Predicted class against the class of the burst that followed, over every
        task this scheduler ran (summed on demand: nothing extra per switch)."""
        total = Accuracy()
        total.hits, total.total = self._retired.hits, self._retired.total
        for task in list(self.tasks):
            acc = task.predictor.accuracy
            total.hits += acc.hits
            total.total += acc.total
        return total

    def _account(self, task: Task, now: int) -> None:
        burst = now - self._run_start
        task.predictor.observe(burst)
        if self.trace is not None:
            self.trace.append((task.name, burst))

    def _wake(self, task: Task, value: Any) -> None:
        task.wait_token = 0
        task.wake_value = value
        task.state = RUNNABLE
        self.queues.push(task, task.predictor.klass, perf_counter_ns())

    # ------------------------------------------------------------------ switching out

    def _current_task(self) -> Task:
        task = self.current
        if task is None or _greenlet is None or task.glet is not _greenlet.getcurrent():
            raise RuntimeError("not called from a task of this scheduler")
        return task

    def _switch_out(self, task: Task) -> None:
        """The current task stops running (already requeued or blocked): account its
        burst, then switch straight to the next task, or to the hub if there is none."""
        now = perf_counter_ns()
        self._account(task, now)
        nxt = self._next_ready(now)
        if nxt is task:
            self.current = task
            task.state = RUNNING
            task.runs += 1
            self._run_start = perf_counter_ns()
        elif nxt is not None:
            self._switch_to(nxt, now)
        else:
            self.current = None
            self._hub.switch()
        if task.cancel_requested:
            task.cancel_requested = False
            raise Cancelled(f"task {task.id} cancelled")

    def yield_(self) -> None:
        """Let the others run; the calling task goes to the back of its class's queue
        (the class this burst gives it). The hot path of every switch: kept flat, with
        ``_next_ready`` and ``_switch_to`` inlined."""
        task = self.current
        if task is None or task.glet is not _getcurrent():
            raise RuntimeError("yield_() called outside a task of this scheduler")
        now = perf_counter_ns()
        burst = now - self._run_start
        klass = task.predictor.observe(burst)
        if self.trace is not None:
            self.trace.append((task.name, burst))
        task.state = RUNNABLE
        task.enq_ns = now
        self._lanes[klass].append(task)
        if self._timers or self._inbox or self._fd_waiters:
            self._gather(now)
        nxt: Task | None = self.queues.pick(now)
        if nxt is task:
            task.state = RUNNING
            task.runs += 1
            self.current = task
            self._run_start = now
        elif nxt is None or nxt.glet is None or nxt.cancel_requested:
            nxt = self._next_ready_slow(now, nxt)  # new, cancelled: the general path
            if nxt is task:
                task.state = RUNNING
                self.current = task
                self._run_start = now
            elif nxt is not None:
                self._switch_to(nxt, now)
        else:
            wait = now - nxt.enq_ns
            nxt.wait_ns += wait
            nxt.runs += 1
            if wait > nxt.max_wait_ns:
                nxt.max_wait_ns = wait
                if wait > self.max_wait_ns[nxt.predictor.klass]:
                    self.max_wait_ns[nxt.predictor.klass] = wait
            self.current = nxt
            nxt.state = RUNNING
            self.switches += 1
            self._run_start = now
            nxt.glet.switch()
        if task.cancel_requested:
            task.cancel_requested = False
            raise Cancelled(f"task {task.id} cancelled")

    def _prepare_block(self) -> tuple[Task, int]:
        task = self._current_task()
        if task.cancel_requested:
            task.cancel_requested = False
            raise Cancelled(f"task {task.id} cancelled")
        token = self._next_token
        self._next_token += 1
        task.wait_token = token
        return task, token

    def _block(self, task: Task, token: int, timeout: float | None) -> Any:
        """Park ``task`` (its waits registered under ``token``) until woken; return the
        wake value (``_TIMEOUT`` if ``timeout`` seconds passed first)."""
        if timeout is not None:
            deadline = perf_counter_ns() + max(0, int(timeout * 1e9))
            heapq.heappush(self._timers, (deadline, token, task))
        task.state = BLOCKED
        task.wake_value = None
        self._switch_out(task)
        value = task.wake_value
        task.wake_value = None
        return value

    def sleep(self, seconds: float) -> None:
        """Block the calling task for ``seconds`` (0: just yield)."""
        if seconds <= 0:
            self.yield_()
            return
        task, token = self._prepare_block()
        self._block(task, token, seconds)

    def join(self, task: Task, timeout: float | None = None) -> Any:
        """Wait for ``task`` from another task; its result, or its exception re-raised."""
        if task.state != DONE:
            me, token = self._prepare_block()
            if me is task:
                raise RuntimeError("a task cannot join itself")
            task.joiners.append((me, token))
            if self._block(me, token, timeout) is _TIMEOUT:
                raise TimeoutError(f"task {task.id} still running")
        return outcome(task)

    def wait_readable(self, fd: int, timeout: float | None = None) -> bool:
        """Block the calling task until ``fd`` is readable; False on timeout."""
        import select

        task, token = self._prepare_block()
        if fd in self._fd_waiters:
            raise RuntimeError(f"fd {fd} already has a waiting task")
        self._fd_waiters[fd] = (task, token)
        self._ensure_epoll().register(fd, select.EPOLLIN)
        value = self._block(task, token, timeout)
        if self._fd_waiters.pop(fd, None) is not None and self._epoll is not None:
            self._epoll.unregister(fd)  # timed out or cancelled: still registered
        return value is not _TIMEOUT

    def recv(self, endpoint: Any, timeout: float | None = None) -> Any:
        """``endpoint.recv()`` for a task: a Fusion Ring end (``exo.ipc``), a ``Channel``
        or an ``exo_std.ipc.Endpoint`` — anything with ``recv(timeout=)``. The task blocks,
        the other tasks run, nothing spins (see the module's docstring)."""
        key = id(endpoint)
        left = self._leftovers.get(key)
        if left:
            msg = left.popleft()
            if not left:
                del self._leftovers[key]
            return msg
        watch = self._watches.get(key)
        if watch is None or not watch.busy:
            try:
                return endpoint.recv(timeout=0)
            except TimeoutError:
                if timeout == 0:
                    raise
        task, token = self._prepare_block()
        if watch is None:
            watch = self._watches[key] = _RingWatch(endpoint)
        # A busy watch belongs to an earlier waiter that was cancelled while its watcher
        # was still in recv: take it over (the watcher serves whoever holds it when the
        # message comes); otherwise ask the watcher for one message.
        taking_over = watch.busy
        watch.task, watch.token, watch.busy = task, token, True
        watch.deadline = None if timeout is None else perf_counter_ns() / 1e9 + timeout
        self._ensure_epoll()
        if not taking_over:
            self._request(key, watch)
        kind, value = self._block(task, token, None)
        if kind == "ok":
            return value
        if kind == "timeout":
            raise TimeoutError("no message")
        raise value

    def _request(self, key: int, watch: _RingWatch) -> None:
        """Wake the endpoint's watcher thread for one message (starting it if needed)."""
        with watch.lock:
            watch.go.set()
            if not watch.alive:
                watch.alive = True
                threading.Thread(target=self._watch_ring, args=(key, watch), daemon=True,
                                 name=f"exo-ring-watch-{self.name}").start()

    def _watch_ring(self, key: int, watch: _RingWatch) -> None:
        """A watcher thread: the ring's own futex wait, GIL released, in ticks; between
        requests it parks on ``go``, and exits when idle or when the scheduler closes."""
        while True:
            if not watch.go.wait(_WATCH_IDLE) or self._closed:
                with watch.lock:
                    if not watch.go.is_set() or self._closed:
                        watch.alive = False
                        self.post(lambda: self._forget_watch(key, watch))
                        return
            watch.go.clear()
            result = self._watch_once(watch)
            self.post(lambda result=result: self._ring_done(key, watch, result))  # type: ignore[misc]

    def _watch_once(self, watch: _RingWatch) -> tuple[str, Any]:
        while True:
            task = watch.task
            if task is None or task.wait_token != watch.token or self._stopping:
                return ("gone", None)  # its task stopped waiting (cancelled, timed out)
            tick = _WATCH_TICK
            if watch.deadline is not None:
                tick = min(tick, max(0.0, watch.deadline - perf_counter_ns() / 1e9))
            try:
                return ("ok", watch.endpoint.recv(timeout=tick))
            except TimeoutError:
                if watch.deadline is not None and perf_counter_ns() / 1e9 >= watch.deadline:
                    return ("timeout", None)
            except BaseException as exc:
                return ("error", exc)

    def _forget_watch(self, key: int, watch: _RingWatch) -> None:
        """Its thread exited idle: drop it (and with it the endpoint it referenced)."""
        if self._watches.get(key) is watch and not watch.alive:
            del self._watches[key]

    def _ring_done(self, key: int, watch: _RingWatch, result: tuple[str, Any]) -> None:
        task = watch.task
        waiting = (task is not None and task.wait_token == watch.token
                   and task.state == BLOCKED)
        if result[0] == "gone" and waiting and task is not None and not task.cancel_requested:
            self._request(key, watch)  # taken over as the watcher gave up: ask again
            return
        watch.busy = False
        watch.task = None
        if waiting and task is not None and result[0] != "gone":
            self._wake(task, result)
        elif result[0] == "ok":  # its task was cancelled: keep the message for the next recv
            self._leftovers.setdefault(key, deque()).append(result[1])

    # ------------------------------------------------------------------ control

    def cancel(self, task: Task) -> None:
        """Ask ``task`` to stop: ``Cancelled`` is raised in it at its next switch point
        (at once if it is blocked); a task that never ran finishes without running."""
        if task.state == DONE:
            return
        task.cancel_requested = True
        if task.state == BLOCKED:
            self._wake(task, _TIMEOUT if task.wake_value is None else task.wake_value)

    def steal(self, victim: Scheduler) -> Task | None:
        """Take one task from ``victim``'s Cold queue (the seed: stealing only from Cold).
        Only a task that never ran moves: a started greenlet belongs to its thread."""
        task: Task | None = victim.queues.steal_cold(lambda t: t.glet is None)
        if task is None:
            return None
        victim.tasks.discard(task)  # it never ran: no predictions to keep there
        task.sched = self
        self.tasks.add(task)
        self.stolen += 1
        return task

    def _steal(self) -> Task | None:
        for peer in self.peers:
            task = self.steal(peer)
            if task is not None:
                return task
        return None

    def add_peer(self, other: Scheduler) -> None:
        if other is not self and other not in self.peers:
            self.peers.append(other)

    # ------------------------------------------------------------------ reporting

    def stats(self) -> dict[str, Any]:
        """Counters, queue lengths, accuracy and waits (``/proc/sched`` shows them)."""
        q = self.queues
        lengths = ([len(d) for d in q.queues] if isinstance(q, RunQueues)
                   else [len(q), 0, 0])  # FIFO: one queue, shown as "hot"
        accuracy = self.accuracy
        acc = accuracy.ratio
        return {
            "name": self.name, "policy": self.policy,
            "alpha": self.config.alpha, "history": self.config.history,
            "hot_ms": self.config.hot_ns / 1e6, "cold_ms": self.config.cold_ns / 1e6,
            "tasks": len(self.tasks), "spawned": self.spawned, "finished": self.finished,
            "failed": self.failed, "switches": self.switches, "idle_waits": self.idle_waits,
            "stolen": self.stolen, "promotions": q.promotions,
            "age_limit_ms": q.age_ns / 1e6, "budget_cycle": q.cycle,
            "runnable": dict(zip(CLASS_NAMES, lengths, strict=True)),
            "picks": dict(zip(CLASS_NAMES, q.picks, strict=True)),
            "max_wait_ms": {n: round(w / 1e6, 3)
                            for n, w in zip(CLASS_NAMES, self.max_wait_ns, strict=True)},
            "predictions": accuracy.total,
            "accuracy": None if acc is None else round(acc, 4),
        }

    def proc_text(self) -> str:
        """The text of ``/proc/sched``: the scheduler's line, then one line per task."""
        s = self.stats()
        acc = "-" if s["accuracy"] is None else f"{s['accuracy']:.1%}"
        lines = [
            f"scheduler {s['name']}: {s['policy']}, EMA alpha {s['alpha']} over "
            f"{s['history']} bursts, hot < {s['hot_ms']:g} ms <= normal < "
            f"{s['cold_ms']:g} ms <= cold",
            f"tasks {s['tasks']}  spawned {s['spawned']}  finished {s['finished']}  "
            f"failed {s['failed']}  switches {s['switches']}  idle waits {s['idle_waits']}",
            "runnable " + "  ".join(f"{k} {v}" for k, v in s["runnable"].items())
            + "  picks " + "  ".join(f"{k} {v}" for k, v in s["picks"].items()),
            f"aging: promote after {s['age_limit_ms']:g} ms (promotions {s['promotions']}); "
            f"budget cycle {s['budget_cycle']} picks; stolen {s['stolen']}",
            "max wait ms " + "  ".join(f"{k} {v}" for k, v in s["max_wait_ms"].items()),
            f"prediction accuracy {acc} over {s['predictions']} bursts",
            f"{'ID':>5} {'NAME':<20} {'STATE':<9} {'CLASS':<7} {'PRED_MS':>9} "
            f"{'BURSTS':>7} {'CPU_MS':>9} {'ACC':>5}",
        ]
        for task in sorted(self.tasks, key=lambda t: t.id):
            t = task.stats()
            a = "-" if t["accuracy"] is None else f"{t['accuracy']:.0%}"
            lines.append(f"{t['id']:>5} {t['name'][:20]:<20} {t['state']:<9} {t['class']:<7} "
                         f"{t['prediction_ms']:>9.3f} {t['bursts']:>7} {t['cpu_ms']:>9.2f} "
                         f"{a:>5}")
        return "\n".join(lines) + "\n"


def _done() -> None:
    """What a finished task's ``fn`` becomes (drops the references it held)."""


def outcome(task: Task) -> Any:
    """A finished task's result, or its exception re-raised."""
    if task.error is not None:
        raise task.error
    return task.result


__all__ = ["COLD", "Cancelled", "Event", "Scheduler", "Task", "current_scheduler", "outcome"]
