"""The ring's adaptive spin (``configure(spin_us=floor, spin_max_us=cap)``): the rule the
consumer's wait applies in C is exactly ``exo.abi.AdaptiveSpin``'s, it stays within its
bounds, and only waits that happened move it."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exo.abi import AdaptiveSpin
from exo.ipc import FusionRing, _fring


class _PyRing:
    """A ring-like object without the C rule: AdaptiveSpin drives it from Python."""

    def configure(self, *, spin_us: float) -> None:
        pass


@st.composite
def _case(draw: st.DrawFn) -> tuple[int, int, int, int]:
    floor = draw(st.integers(0, 10**7))
    cap = draw(st.integers(floor, 10**8))
    budget = draw(st.integers(floor, cap))
    waited = draw(st.one_of(st.integers(0, 2 * cap + 10), st.integers(0, 2**62)))
    return budget, floor, cap, waited


@given(_case())
def test_the_c_rule_is_adaptive_spins_rule(case: tuple[int, int, int, int]) -> None:
    budget, floor, cap, waited = case
    spin = AdaptiveSpin(_PyRing(), floor_us=floor / 1000, cap_us=cap / 1000)
    assert not spin.native
    spin.floor_ns, spin.cap_ns, spin.budget_ns = floor, cap, budget  # exact, no float
    spin.observe(waited)
    got = _fring.adapt_spin(budget, floor, cap, waited)
    assert got == spin.budget_ns
    assert floor <= got <= cap


def test_configure_checks_its_bounds() -> None:
    _, c = FusionRing.pair(capacity=4)
    with pytest.raises(ValueError):
        c.configure(spin_us=10, spin_max_us=5)  # the cap below the floor
    with pytest.raises(ValueError):
        c.configure(spin_us=-1)
    c.configure(spin_us=5, spin_max_us=50)
    st_ = c.stats()
    assert (st_["spin_us"], st_["spin_min_us"], st_["spin_max_us"]) == (5, 5, 50)
    assert AdaptiveSpin(c).native


def _reply_later(p: FusionRing, delay: float) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        p.send(b"x")

    t = threading.Thread(target=run)
    t.start()
    return t


def test_a_wait_within_the_cap_raises_the_budget_and_data_already_there_keeps_it() -> None:
    p, c = FusionRing.pair(capacity=4)
    c.configure(spin_us=5, spin_max_us=10_000_000)  # a 10 s cap: any wait here is within
    t = _reply_later(p, 0.03)
    assert c.recv() == b"x"
    t.join()
    raised = c.stats()["spin_us"]
    # Twice the wait: the sender's 30 ms sleep starts before recv() does, so the wait the
    # ring saw is a little under 30 ms (59,994 us was seen); 25 ms leaves room for that.
    assert raised >= 2 * 25_000
    p.send(b"y")
    assert c.recv() == b"y"  # no wait: says nothing about the peer
    assert c.stats()["spin_us"] == raised


def test_a_wait_past_the_cap_halves_the_budget_down_to_the_floor() -> None:
    p, c = FusionRing.pair(capacity=4)
    c.configure(spin_us=1, spin_max_us=4)
    spins = []
    for _ in range(3):
        t = _reply_later(p, 0.002)  # 2 ms: far past the 4 us cap
        assert c.recv() == b"x"
        t.join()
        spins.append(c.stats()["spin_us"])
    assert spins == [1, 1, 1]


def test_without_a_cap_the_spin_stays_as_configured() -> None:
    p, c = FusionRing.pair(capacity=4)
    c.configure(spin_us=7)
    t = _reply_later(p, 0.01)
    assert c.recv() == b"x"
    t.join()
    st_ = c.stats()
    assert (st_["spin_us"], st_["spin_max_us"]) == (7, 0)
