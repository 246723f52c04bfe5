"""One process's attacks do not deny service to another.

For each attack of tests/system/attacks.py, a well-behaved app runs its syscalls while a
hostile one attacks: every one of its calls must succeed, and the kernel must still serve
a fresh process afterwards. How much slower its calls get is measured by
bench/isolation.py (benchmarks check speed; tests check behaviour).
"""

from __future__ import annotations

import pytest
from tests.system import attacks
from tests.system.helpers import run_app

from exo.kernel.kernel import Kernel


@pytest.mark.parametrize("attack", sorted(attacks.ATTACKS))
def test_a_well_behaved_app_keeps_working_during(kernel: Kernel, attack: str) -> None:
    attacks.prepare(kernel)
    hostile = attacks.start_attack(kernel, attack)
    try:
        result = attacks.good_app(kernel, calls=300, opens=30)
        assert result["failures"] == [], result["failures"][:5]
        assert len(result["getpid_us"]) == 300 and len(result["open_read_us"]) == 30
        assert hostile.status is None, "the attack ended by itself: it tested nothing"
    finally:
        attacks.stop_attack(kernel, hostile)
    status, out, err = run_app(kernel, "from exo_std import process; print(process.getpid())")
    assert status == 0 and int(out) > 1, err
