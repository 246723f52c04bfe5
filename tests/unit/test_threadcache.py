"""The kernel's thread cache: a job never waits behind another, idle threads are reused
and end after their linger time."""

from __future__ import annotations

import threading
import time

import pytest

from exo._threadcache import ThreadCache


def _wait_idle(cache: ThreadCache, n: int) -> None:
    deadline = time.monotonic() + 10
    while cache.idle() != n:
        assert time.monotonic() < deadline, f"{cache.idle()} idle threads, not {n}"
        time.sleep(0.005)


def test_an_idle_thread_takes_the_next_job_and_ends_after_its_linger() -> None:
    cache = ThreadCache(linger=0.3)
    ran: list[tuple[str, int]] = []
    done = threading.Event()
    cache.start(lambda: ran.append((threading.current_thread().name,
                                    threading.get_ident())), "job-one")
    _wait_idle(cache, 1)
    cache.start(lambda: (ran.append((threading.current_thread().name,
                                     threading.get_ident())), done.set()), "job-two")
    assert done.wait(10)
    assert [name for name, _ in ran] == ["job-one", "job-two"]
    assert ran[0][1] == ran[1][1]  # the same thread, named after each job in turn
    _wait_idle(cache, 1)
    deadline = time.monotonic() + 10
    while any(t.name == "exo-idle" and t.ident == ran[0][1] for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the idle thread did not end"
        time.sleep(0.02)
    assert cache.idle() == 0


def test_a_blocked_job_never_holds_up_the_next() -> None:
    cache = ThreadCache(linger=0.2)
    release, second = threading.Event(), threading.Event()
    cache.start(lambda: release.wait(30), "blocked")
    cache.start(second.set, "second")
    try:
        assert second.wait(10)  # on a thread of its own, while the first still waits
    finally:
        release.set()


def test_a_failing_job_is_reported_and_its_thread_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ThreadCache(linger=0.5)
    seen: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    ident: list[int] = []
    done = threading.Event()

    def boom() -> None:
        ident.append(threading.get_ident())
        raise RuntimeError("boom")

    cache.start(boom, "boom")
    _wait_idle(cache, 1)
    cache.start(lambda: (ident.append(threading.get_ident()), done.set()), "after")
    assert done.wait(10)
    assert [str(e) for e in seen] == ["boom"]
    assert ident[0] == ident[1]
