"""Segments across processes: the owner's allocator is private, peers map the arena read-only.

Each test plays the hostile peer where it can: it holds every fd the peer would hold and
does the worst it can with it.
"""

from __future__ import annotations

import os
import random

import pytest

from exo.mm import PoolView, SharedPool, new_segment

from .conftest import finish, run_child

SIZES = [64, 100, 700, 4096, 5000, 65536, 200, 64, 3000, 40_000]


def _fill(pool: SharedPool, off: int, n: int, tag: int) -> None:
    pool.buffer[off : off + n] = bytes([tag % 251]) * n


def test_the_memfd_holds_only_the_arena(pool: SharedPool) -> None:
    assert os.fstat(pool.fd).st_size == pool.size  # no header, no metadata in it


def test_peer_reads_in_place_through_a_read_only_view(pool: SharedPool) -> None:
    offs = [pool.alloc(n) for n in SIZES]
    for i, (off, n) in enumerate(zip(offs, SIZES, strict=True)):
        _fill(pool, off, n, i)
    child = run_child(
        """
        from exo.mm import PoolView
        v = PoolView.attach(FD)
        assert v.buffer.readonly
        for i, line in enumerate(sys.stdin):
            off, n = map(int, line.split())
            assert v.buffer[off:off + n] == bytes([i % 251]) * n, "payload differs"
            print(off, flush=True)   # handed back: the owner frees it
        v.close()
        """,
        pool.peer_fd(),
    )
    assert child.stdin is not None
    child.stdin.write("".join(f"{o} {n}\n" for o, n in zip(offs, SIZES, strict=True)))
    child.stdin.close()
    rc, out = finish(child)
    assert rc == 0
    for line in out.split():
        pool.free_returned(int(line))
    pool.check()
    s = pool.stats()
    assert s["bytes_in_use"] == 0 and s["frees_returned"] == len(SIZES)
    again = [pool.alloc(n) for n in SIZES]  # the returned blocks are reused from level 2
    assert pool.stats()["l2_hits"] > 0
    for off in again:
        pool.free(off)
    pool.trim()
    assert pool.stats()["l3_free_bytes"] == pool.size


def test_a_sealed_segment_cannot_be_mapped_writable_by_a_peer(pool: SharedPool) -> None:
    """F_SEAL_FUTURE_WRITE: neither mmap(PROT_WRITE) nor mprotect can make it writable."""
    child = run_child(
        """
        import ctypes, mmap
        try:
            mmap.mmap(FD, 1 << 16, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            print("mmap-writable")
        except PermissionError:
            print("mmap-refused")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]
        addr = libc.mmap(None, 1 << 16, 1, 1, FD, 0)     # PROT_READ, MAP_SHARED
        assert addr not in (None, ctypes.c_void_p(-1).value)
        rc = libc.mprotect(ctypes.c_void_p(addr), ctypes.c_size_t(1 << 16), 3)
        print("mprotect-refused" if rc != 0 else "mprotect-writable")
        try:
            SharedPool.own(FD)
            print("own-allowed")
        except PermissionError:
            print("own-refused")
        """,
        pool.peer_fd(),
    )
    rc, out = finish(child)
    assert rc == 0
    assert out.split() == ["mmap-refused", "mprotect-refused", "own-refused"]


def test_scribbling_over_a_segment_never_touches_the_allocator() -> None:
    """A segment the peer owns is writable by it: the worst it can do is change bytes.

    Here the peer (a child holding a writable mapping) writes random bytes over every byte
    of the memfd while we allocate and free: our allocator's state is private, so every
    operation stays correct and `check()` passes.
    """
    fd = new_segment(1 << 20)
    try:
        pool = SharedPool.own(fd)
        child = run_child(
            """
            import mmap, random
            m = mmap.mmap(FD, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            rnd = random.Random(7)
            for _ in range(200):
                m[:] = rnd.randbytes(1 << 20)
            m.close()
            print("done")
            """,
            fd,
        )
        rnd = random.Random(3)
        live: list[int] = []
        while child.poll() is None:
            if len(live) > 16 or (live and rnd.random() < 0.5):
                pool.free(live.pop(rnd.randrange(len(live))))
            else:
                live.append(pool.alloc(rnd.choice(SIZES)))
        rc, out = finish(child)
        assert rc == 0 and out.strip() == "done"
        for off in live:
            pool.free(off)
        pool.check()
        pool.trim()
        assert pool.stats()["l3_free_bytes"] == pool.size
        pool.close()
    finally:
        os.close(fd)


def test_returning_a_bogus_block_is_refused_and_changes_nothing(pool: SharedPool) -> None:
    keep = pool.alloc(4096)
    before = pool.check()
    for bad in (-64, pool.size, 2**32 * 64, keep + 64, 65, keep + 4096):
        with pytest.raises(ValueError):
            pool.free_returned(bad)
    pool.free_returned(keep)
    with pytest.raises(ValueError, match=r"double free|not an allocated"):
        pool.free_returned(keep)
    after = pool.check()
    assert after["used_blocks"] == before["used_blocks"] - 1


def test_forked_child_cannot_allocate_from_the_parents_segment(pool: SharedPool) -> None:
    cached = pool.alloc(64)
    pool.buffer[cached] = 99
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            try:
                pool.alloc(64)
                msg = "allocated"
            except RuntimeError as exc:
                msg = "refused" if "forked child" in str(exc) else f"other: {exc}"
            msg += f" {pool.buffer[cached]}"  # the mapping itself is still readable
            os.write(w, msg.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        got = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got == "refused 99"
    pool.free(cached)
    pool.check()


def test_view_refuses_what_is_not_a_segment() -> None:
    fd = os.memfd_create("odd")
    try:
        os.ftruncate(fd, 12345)
        with pytest.raises(ValueError, match="not a pool segment"):
            PoolView.attach(fd)
    finally:
        os.close(fd)


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
    v = PoolView.attach(p.peer_fd())
    v.close()
    view = p.buffer
    p.close()
    assert _pool_maps() > maps_before  # a live memoryview keeps the mapping
    view.release()
    assert len(_pool_fds()) == fds_before and _pool_maps() == maps_before
    assert set(os.listdir("/dev/shm")) == shm_before
