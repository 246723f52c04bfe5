"""The pool across processes: remote free, reclaim of the dead, lock-holder death, fork."""

from __future__ import annotations

import os
import signal

import pytest

from exo.mm import SharedPool

from .conftest import finish, run_child

SIZES = [64, 100, 700, 4096, 5000, 65536, 200, 64, 3000, 40_000]


def _fill(pool: SharedPool, off: int, n: int, tag: int) -> None:
    pool.buffer[off : off + n] = bytes([tag % 251]) * n


def test_blocks_freed_by_another_process(pool: SharedPool) -> None:
    offs = [pool.alloc(n) for n in SIZES]
    for i, (off, n) in enumerate(zip(offs, SIZES, strict=True)):
        _fill(pool, off, n, i)
    child = run_child(
        """
        p = SharedPool.attach(FD)
        for i, line in enumerate(sys.stdin):
            off, n = map(int, line.split())
            assert p.buffer[off:off + n] == bytes([i % 251]) * n, "payload differs"
            p.free(off)
        p.close()
        """,
        pool.fd,
    )
    assert child.stdin is not None
    child.stdin.write("".join(f"{o} {n}\n" for o, n in zip(offs, SIZES, strict=True)))
    rc, _ = finish(child)
    assert rc == 0
    pool.check()
    s = pool.stats()
    assert s["bytes_in_use"] == 0
    assert s["frees_remote"] == len(SIZES)
    assert s["processes"] == 1
    # the blocks went back to this process's level-2 lists and are reused from there
    again = [pool.alloc(n) for n in SIZES]
    assert pool.stats()["l2_hits"] > 0
    for off in again:
        pool.free(off)
    pool.trim()
    assert pool.stats()["l3_free_bytes"] == pool.size


def test_streaming_producer_in_another_process(pool: SharedPool) -> None:
    child = run_child(
        """
        p = SharedPool.attach(FD)
        for i in range(2000):
            n = (64, 1000, 4096, 65536)[i % 4]
            off = p.alloc(n)
            p.buffer[off] = i % 256
            print(off, i % 256, flush=True)
            if i % 8 == 7:
                sys.stdin.readline()  # window of 8 messages in flight, like a ring
        p.close()
        """,
        pool.fd,
    )
    assert child.stdout is not None and child.stdin is not None
    for i in range(2000):
        off, tag = map(int, child.stdout.readline().split())
        assert pool.buffer[off] == tag
        pool.free(off)
        if i % 8 == 7:
            child.stdin.write("go\n")
            child.stdin.flush()
    rc, _ = finish(child)
    assert rc == 0
    pool.check()
    s = pool.stats()
    assert s["bytes_in_use"] == 0 and s["frees_remote"] == 2000
    assert s["l1_hits"] > s["l3_hits"]  # the producer's cache was refilled by our frees


def test_reclaim_of_a_dead_process(pool: SharedPool) -> None:
    child = run_child(
        """
        p = SharedPool.attach(FD)
        offs = [p.alloc(n) for n in (64, 64, 4096, 65536, 300_000)]
        print(*offs, flush=True)
        sys.stdin.read()
        os._exit(0)  # dies without closing: the kernel must reclaim
        """,
        pool.fd,
    )
    assert child.stdout is not None and child.stdin is not None
    sent = [int(x) for x in child.stdout.readline().split()]
    assert pool.stats()["processes"] == 2
    with pytest.raises(ValueError, match="still running"):
        pool.reclaim(child.pid)
    with pytest.raises(ValueError, match="caller"):
        pool.reclaim(os.getpid())
    child.stdin.close()
    rc, _ = finish(child)
    assert rc == 0
    assert pool.stats()["bytes_in_use"] > 0
    freed = pool.reclaim(child.pid)
    assert freed >= len(sent)  # its blocks in use plus those in its caches
    pool.check()
    s = pool.stats()
    assert s["bytes_in_use"] == 0 and s["processes"] == 1
    assert s["l3_free_bytes"] == pool.size
    with pytest.raises(ValueError, match="not an allocated block"):
        pool.free(sent[0])  # a stale descriptor is refused, not honoured
    assert pool.reclaim(child.pid) == 0


def test_reclaim_dead_sweeps_every_dead_process(pool: SharedPool) -> None:
    code = """
        p = SharedPool.attach(FD)
        p.alloc(128)
        os._exit(0)
        """
    children = [run_child(code, pool.fd) for _ in range(3)]
    for c in children:
        assert finish(c)[0] == 0
    assert pool.stats()["processes"] == 4
    assert pool.reclaim_dead() >= 3
    assert pool.stats()["processes"] == 1
    assert pool.stats()["bytes_in_use"] == 0
    pool.check()


def test_adopted_block_survives_its_allocator(pool: SharedPool) -> None:
    child = run_child(
        """
        p = SharedPool.attach(FD)
        off = p.alloc(1000)
        p.buffer[off:off + 5] = b"hello"
        print(off, flush=True)
        sys.stdin.read()
        os._exit(0)
        """,
        pool.fd,
    )
    assert child.stdout is not None and child.stdin is not None
    off = int(child.stdout.readline())
    assert pool.owner_of(off) == child.pid
    pool.adopt(off)
    assert pool.owner_of(off) == os.getpid()
    child.stdin.close()
    assert finish(child)[0] == 0
    pool.reclaim(child.pid)
    assert bytes(pool.buffer[off : off + 5]) == b"hello"
    pool.free(off)
    pool.check()


def test_closing_keeps_blocks_in_flight(pool: SharedPool) -> None:
    child = run_child(
        """
        p = SharedPool.attach(FD)
        off = p.alloc(64)
        p.buffer[off] = 42
        p.close()
        print(off)
        """,
        pool.fd,
    )
    rc, out = finish(child)
    assert rc == 0
    off = int(out)
    assert pool.buffer[off] == 42  # a normal exit orphans blocks in flight, never frees them
    assert pool.stats()["orphaned_blocks"] == 1
    pool.free(off)
    pool.check()
    assert pool.stats()["bytes_in_use"] == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("half_done", [False, True])
def test_death_while_holding_the_lock_does_not_deadlock(pool: SharedPool, half_done: bool) -> None:
    keep = pool.alloc(4096)
    child = run_child(
        f"""
        p = SharedPool.attach(FD)
        p._debug_die_holding_lock({half_done})
        """,
        pool.fd,
    )
    rc, _ = finish(child)
    assert rc == 17
    off = pool.alloc(64)  # would hang forever with a plain lock
    s = pool.stats()
    assert s["lock_recoveries"] == 1
    pool.check()
    pool.reclaim(child.pid)
    pool.free(off)
    pool.free(keep)
    pool.trim()
    assert pool.stats()["l3_free_bytes"] == pool.size  # the half-done block is not leaked


def test_killed_process_is_reclaimed(pool: SharedPool) -> None:
    child = run_child(
        """
        p = SharedPool.attach(FD)
        for _ in range(100):
            p.alloc(4096)
        print("ready", flush=True)
        sys.stdin.read()
        """,
        pool.fd,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    os.kill(child.pid, signal.SIGKILL)
    finish(child)
    assert pool.reclaim(child.pid) >= 100
    pool.check()
    assert pool.stats()["bytes_in_use"] == 0


def test_forked_child_never_shares_the_parents_cache(pool: SharedPool) -> None:
    cached = pool.alloc(64)
    pool.free(cached)  # now in this thread's level-1 cache
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            got = pool.alloc(64)
            os.write(w, f"{got}\n".encode())
            pool.free(got)
            pool.close()
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        got = int(f.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got != cached
    assert pool.alloc(64) == cached
    pool.check()
    assert pool.stats()["processes"] == 1


def _pool_fds() -> list[str]:
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "exo-pool" in target:
            fds.append(target)
    return fds


def _pool_maps() -> int:
    with open("/proc/self/maps") as f:
        return sum("exo-pool" in line for line in f)


def test_nothing_left_behind() -> None:
    shm_before = set(os.listdir("/dev/shm"))
    fds_before, maps_before = len(_pool_fds()), _pool_maps()
    p = SharedPool.create(1 << 20)
    child = run_child(
        """
        p = SharedPool.attach(FD)
        p.free(p.alloc(64))
        p.close()
        os.close(FD)
        me = []
        for x in os.listdir("/proc/self/fd"):
            try:
                me.append(os.readlink(f"/proc/self/fd/{x}"))
            except OSError:
                pass  # the fd listdir itself used
        maps = open("/proc/self/maps").read()
        print(sum("exo-pool" in t for t in me), maps.count("exo-pool"))
        """,
        p.fd,
    )
    rc, out = finish(child)
    assert rc == 0 and out.split() == ["0", "0"]
    view = p.buffer
    p.close()
    assert _pool_maps() > maps_before  # a live memoryview keeps the mapping
    view.release()
    assert len(_pool_fds()) == fds_before and _pool_maps() == maps_before
    assert set(os.listdir("/dev/shm")) == shm_before
