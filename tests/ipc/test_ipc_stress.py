"""Multi-process stress: random sizes (inline and zero-copy), single sends, batches and
loans, through several rings at once. Every message is compared byte for byte and the
streams' CRCs are checked: nothing lost, duplicated, reordered or corrupted.

EXO_STRESS_MESSAGES sets the total message count (default keeps `make test` short;
the full proof is 10**7)."""

from __future__ import annotations

import json
import os
import random
import zlib
from array import array
from itertools import accumulate, pairwise
from typing import Any

from _procs import fork_child, reap

from exo.ipc import BATCH_MAX, Block, FusionRing
from exo.mm import PoolView, SharedPool, new_segment

TOTAL = int(os.environ.get("EXO_STRESS_MESSAGES", "60000"))
RINGS = 3
BLOB = random.Random(1).randbytes(1 << 17)


def _sizes(seed: int, n: int) -> list[int]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        r = rnd.random()
        out.append(rnd.randint(0, 56) if r < 0.6 else rnd.randint(57, 4096) if r < 0.95
                   else rnd.randint(4097, 65536))
    return out


def _payload(i: int, size: int) -> bytes:
    start = (i * 7919) % (len(BLOB) - size) if size < len(BLOB) else 0
    head = i.to_bytes(8, "little")
    return (head + BLOB[start + 8 : start + size])[:size]


def _producer(ring: FusionRing, pool_fd: int, seed: int, n: int, report: int) -> None:
    pool = SharedPool.own(pool_fd)  # each producer owns its ring's segment
    ring.use_pool(pool)
    ring.configure(spin_us=5, yields=1, tick_ms=10)
    rnd = random.Random(seed + 1)
    sizes = _sizes(seed, n)
    crc = 0
    i = 0
    while i < n:
        k = min(n - i, rnd.randint(1, BATCH_MAX) if rnd.random() < 0.4 else 1)
        msgs: list[Any] = []
        for j in range(i, i + k):
            data = _payload(j, sizes[j])
            crc = zlib.crc32(data, crc)
            if sizes[j] > 56 and rnd.random() < 0.3:
                loan = ring.loan(sizes[j])  # the zero-copy loan API
                with memoryview(loan) as mv:
                    mv[:] = data
                msgs.append(loan)
            else:
                msgs.append(data)
        if k == 1:
            ring.send(msgs[0])
        elif rnd.random() < 0.5 and not any(isinstance(m, Block) for m in msgs):
            ring.send_batch_packed(b"".join(msgs), [len(m) for m in msgs])
        else:
            ring.send_batch(msgs)
        del msgs
        i += k
    os.write(report, json.dumps({"sent": n, "crc": crc}).encode())


def _consumer(ring: FusionRing, pool_fd: int, seed: int, n: int, report: int) -> None:
    view = PoolView.attach(pool_fd)  # and its consumer maps it read-only
    ring.use_pool(view)
    ring.configure(spin_us=5, yields=1, tick_ms=10)
    rnd = random.Random(seed + 2)
    sizes = _sizes(seed, n)
    crc = 0
    i = 0
    bad = 0
    buf, lens = bytearray(BATCH_MAX * 65536), array("I", bytes(4 * BATCH_MAX))
    while i < n:
        pick = rnd.random()
        if pick < 0.35:
            got: list[Any] = ring.recv_batch(max=rnd.randint(1, BATCH_MAX))
        elif pick < 0.7:  # packed: every payload copied end to end into buf
            k = ring.recv_batch_into(buf, lens, max=rnd.randint(1, BATCH_MAX))
            ends = list(accumulate(lens[:k], initial=0))
            got = [bytes(buf[a:b]) for a, b in pairwise(ends)]
        else:
            got = [ring.recv()]
        for m in got:
            expect = _payload(i, sizes[i])
            if isinstance(m, Block):
                with m as mv:
                    ok = mv == expect
                    crc = zlib.crc32(mv, crc)
            else:
                ok = m == expect
                crc = zlib.crc32(m, crc)
            bad += not ok
            i += 1
    leftover = 0
    try:
        ring.recv(timeout=0.2)
        leftover = 1
    except (TimeoutError, ConnectionError):
        pass
    result = {"received": i, "crc": crc, "bad": bad, "extra": leftover}
    os.write(report, json.dumps(result).encode())


def test_stress_many_rings_many_processes() -> None:
    per_ring = max(1, TOTAL // RINGS)
    segments = [new_segment(8 << 20) for _ in range(RINGS)]
    rings = [FusionRing.pair(64, name=f"stress{k}") for k in range(RINGS)]
    pids = []
    pipes = []
    for k, (prod, cons) in enumerate(rings):
        r, w = os.pipe()
        pipes.append(r)
        pids.append(fork_child(_producer, prod, segments[k], 100 + k, per_ring, w))
        pids.append(fork_child(_consumer, cons, segments[k], 100 + k, per_ring, w))
        os.close(w)
    for prod, cons in rings:
        prod.detach()
        cons.detach()
    codes = [reap(pid) for pid in pids]
    reports = []
    for r in pipes:
        raw = b""
        while chunk := os.read(r, 4096):
            raw += chunk
        os.close(r)
        reports.append(raw)
    for fd in segments:
        os.close(fd)
    assert codes == [0] * len(pids), codes
    for raw in reports:
        a, b = (json.loads(x) for x in raw.replace(b"}{", b"}\n{").split(b"\n"))
        sent, recv = (a, b) if "sent" in a else (b, a)
        assert recv["received"] == sent["sent"] == per_ring
        assert recv["bad"] == 0
        assert recv["extra"] == 0
        assert recv["crc"] == sent["crc"]
