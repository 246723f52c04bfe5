"""Fair shares of kernel time: the bucket arithmetic, and the FUSE servers' put-aside queue."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from exo.kernel.fairshare import BURST_S, MAX_PAUSE_S, FairShare
from exo.kernel.revocable import _proto as P
from exo.kernel.revocable._base import FuseServer


def test_a_process_alone_is_never_in_debt() -> None:
    share = FairShare(rate=0.25, burst=0.010)
    share.seen(7)
    assert share.charge(7, 1.0) == 0.0  # a whole second of kernel time: nobody to be fair to


def test_over_its_share_while_another_process_wants_the_kernel() -> None:
    share = FairShare(rate=0.25, burst=0.010)
    share.seen(7)
    share.seen(8)
    assert share.charge(7, 0.005) == 0.0  # within the burst
    debt = share.charge(7, 0.010)  # 5 ms over: 20 ms at a quarter of a CPU
    assert 0.015 < debt <= 0.020
    assert share.charge(8, 0.001) == 0.0  # the other process is not charged for it
    assert share.charge(7, 10.0) == MAX_PAUSE_S  # one wait is bounded


def test_the_bucket_refills_with_time() -> None:
    share = FairShare(rate=0.5, burst=0.010)
    share.seen(1)
    share.seen(2)
    assert share.charge(1, 0.012) > 0
    time.sleep(0.02)  # refills 10 ms at half a CPU... capped at the burst
    share.seen(2)
    assert share.debt(1) == 0.0


def test_proc_fairshare_lists_every_process_the_kernel_worked_for() -> None:
    share = FairShare()
    share.charge(5, 0.25)
    text = share.proc_text()
    assert text.splitlines()[2] == "pid\tkernel_cpu_s\tpauses\tpaused_s\tdeferred"
    assert "5\t0.25\t0\t0.0\t0" in text


def test_an_exited_process_keeps_its_figures_for_a_while() -> None:
    share = FairShare(rate=0.25, burst=0.001)
    share.seen(1)
    share.seen(2)
    assert share.charge(1, 0.01) > 0
    share.deferred(1)
    share.paused(1, 0.02)
    share.forget(1)
    assert 1 not in share.stats()
    assert share.final(1) == {"kernel_cpu_s": 0.01, "pauses": 1, "paused_s": 0.02,
                              "deferred": 1}
    for pid in range(100, 100 + 64):  # only the last KEEP_EXITED are kept
        share.charge(pid, 0.0)
        share.forget(pid)
    assert share.final(1) is None
    assert share.final(163) is not None


def test_a_process_that_went_quiet_no_longer_counts_as_wanting_the_kernel() -> None:
    share = FairShare(rate=0.25, burst=BURST_S)
    share.seen(2)
    time.sleep(0.06)  # longer than RECENT_S
    share.seen(1)
    assert share.charge(1, 1.0) == 0.0
    assert share.stats()[1]["kernel_cpu_s"] == 1.0


class _Recorder(FuseServer):
    """A server that is never mounted: requests go straight to _admit/_serve_deferred."""

    def __init__(self, owners: dict[int, int]) -> None:
        super().__init__(Path("/nonexistent"))
        self.owners = owners
        self.served: list[int] = []

    def _owner(self, opcode: int, nodeid: int, body: memoryview) -> int | None:
        return self.owners.get(nodeid)

    def _dispatch(self, req: memoryview, out: memoryview) -> None:
        self.served.append(P.IN_HEADER.unpack_from(req)[3])


def _request(nodeid: int, opcode: int = P.GETATTR) -> memoryview:
    header = P.IN_HEADER.pack(P.IN_HEADER.size, opcode, 1, nodeid, 0, 0, 0, 0, 0)
    return memoryview(header + struct.pack("<Q", 0))


def test_a_fuse_server_puts_a_process_in_debt_aside_and_serves_others_first() -> None:
    share = FairShare(rate=0.25, burst=0.001)
    server = _Recorder({10: 1, 20: 2})
    server.fair_share = share
    out = memoryview(bytearray(64))
    share.seen(2)
    share.charge(1, 0.004)  # process 1 owes ~12 ms
    server._admit(_request(10), out)  # put aside
    server._admit(_request(20), out)  # served at once
    assert server.served == [20]
    assert share.final(1)["deferred"] == 1  # type: ignore[index]  # counted, for /proc
    wait = server._serve_deferred(out)
    assert 0 < wait <= MAX_PAUSE_S  # seconds (epoll's unit), not milliseconds
    deadline = time.monotonic() + 1.0
    while server.served == [20] and time.monotonic() < deadline:
        share.seen(2)
        time.sleep(max(0.001, server._serve_deferred(out)))
    assert server.served == [20, 10]
    assert server._serve_deferred(out) == -1.0  # nothing left
    # requests without an owner, and FORGETs, are never put aside
    share.charge(1, 0.004)
    server._admit(_request(99), out)
    server._admit(_request(10, P.FORGET), out)
    assert server.served == [20, 10, 99, 10]


def test_what_a_server_puts_aside_for_one_process_is_bounded() -> None:
    """Review finding: 200 threads writing 1 MiB each were all copied aside."""
    from exo.kernel.revocable._base import MAX_DEFERRED_BYTES

    share = FairShare(rate=0.25, burst=0.001)
    server = _Recorder({10: 1})
    server.fair_share = share
    out = memoryview(bytearray(64))
    share.seen(2)
    share.charge(1, 1.0)  # deep in debt
    big = memoryview(bytes(_request(10)) + bytes(1 << 20))  # a 1 MiB WRITE's size
    for _ in range(16):
        server._admit(big, out)
    assert server._deferred_bytes[1] <= MAX_DEFERRED_BYTES
    assert len(server._deferred[1]) == MAX_DEFERRED_BYTES // len(big)
    assert len(server.served) == 16 - len(server._deferred[1])  # the rest served at once
