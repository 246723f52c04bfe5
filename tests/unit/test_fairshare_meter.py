"""The syscall thread's meter: continuous, so every CPU second of the thread is charged
exactly once; the CPU clock (a system call) is read once per ``SETTLE_S`` of wall time,
and at once after anything longer."""

from __future__ import annotations

import pytest

from exo.kernel import fairshare
from exo.kernel.fairshare import SETTLE_S, FairShare, Meter


class _Clocks:
    def __init__(self) -> None:
        self.cpu = 10.0
        self.wall = 100.0
        self.cpu_reads = 0

    def thread_time(self) -> float:
        self.cpu_reads += 1
        return self.cpu

    def perf_counter(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.wall

    def sleep(self, s: float) -> None:
        self.wall += s

    def work(self, cpu: float, wall: float | None = None) -> None:
        self.cpu += cpu
        self.wall += cpu if wall is None else wall


class _Share(FairShare):
    def __init__(self, debt: float = 0.0) -> None:
        super().__init__()
        self.charged: list[float] = []
        self.owed = debt

    def charge(self, pid: int, spent: float) -> float:
        self.charged.append(spent)
        return self.owed


@pytest.fixture
def clocks(monkeypatch: pytest.MonkeyPatch) -> _Clocks:
    c = _Clocks()
    monkeypatch.setattr(fairshare, "time", c)
    return c


def test_every_cpu_second_is_charged_once_and_the_clock_read_rarely(clocks: _Clocks) -> None:
    share = _Share()
    meter = Meter(share, 7)
    requests = 1000
    for _ in range(requests):  # a loop of null syscalls: 5 us of CPU each
        clocks.work(5e-6)
        assert meter.tick() == 0.0
    clocks.work(0, wall=SETTLE_S)  # then the app goes idle: the next request settles
    clocks.work(3e-6)
    meter.tick()
    assert sum(share.charged) == pytest.approx(requests * 5e-6 + 3e-6)
    assert clocks.cpu_reads <= 2 + requests * 5e-6 / SETTLE_S


def test_a_long_request_is_settled_at_once_and_its_debt_paid(clocks: _Clocks) -> None:
    share = _Share(debt=0.004)
    meter = Meter(share, 7)
    clocks.work(0.003)  # one costly request (a flooding process's)
    assert meter.tick() == 0.004
    assert share.charged == [pytest.approx(0.003)]
    before = clocks.wall
    meter.pay(0.004)
    assert clocks.wall - before == pytest.approx(0.004)


def test_the_spin_and_the_wait_are_charged_as_cpu_not_wall_time(clocks: _Clocks) -> None:
    share = _Share()
    meter = Meter(share, 7)
    clocks.work(40e-6, wall=1.0)  # a 40 us spin, then a second asleep on the futex
    meter.tick()
    assert share.charged == [pytest.approx(40e-6)]


def test_pay_nothing_costs_nothing(clocks: _Clocks) -> None:
    meter = Meter(_Share(), 7)
    before = clocks.wall
    meter.pay(0.0)
    assert clocks.wall == before
