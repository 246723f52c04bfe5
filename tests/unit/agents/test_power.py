"""Power profiles change the Exo cgroup tree's CPU quota and weight, and put them back."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from exo.agents.power import PROFILES, PowerControl, PowerError


@pytest.fixture
def power() -> Iterator[PowerControl]:
    control = PowerControl(f"test-power-{os.urandom(4).hex()}")
    try:
        control.top()
    except PowerError as exc:
        pytest.skip(f"no writable cgroup cpu controller here: {exc}")
    try:
        yield control
    finally:
        control.restore()
        os.rmdir(control.top()[1])


def test_power_saver_caps_and_lowers_the_tree_then_balanced_restores(
        power: PowerControl) -> None:
    found = power.read()
    report = power.apply("power-saver")
    now = power.read()
    assert now != found and report.changes
    if "period" in now:  # cgroup v1
        assert now["quota"] == "50000" and now["weight"] == "256"
    else:
        assert now["quota"].split()[0] == "50000" and now["weight"] == "25"
    assert {c.path for c in report.changes} <= {str(p) for p in power.files().values()}
    assert "cpufreq" in report.governor
    power.apply("balanced")
    assert power.read() == found


def test_performance_raises_the_weight_without_a_cap(power: PowerControl) -> None:
    power.apply("performance")
    now = power.read()
    assert now["quota"].split()[0] in ("-1", "max")
    assert int(now["weight"]) > 1024 or (int(now["weight"]) > 100 and "period" not in now)


def test_restore_puts_back_what_was_found(power: PowerControl) -> None:
    found = power.read()
    power.apply("power-saver")
    power.restore()
    assert power.read() == found


def test_an_unknown_profile_is_refused_in_one_line(power: PowerControl) -> None:
    with pytest.raises(PowerError, match="unknown profile 'turbo'"):
        power.apply("turbo")
    assert set(PROFILES) == {"performance", "balanced", "power-saver"}


def test_the_governor_line_says_when_cpufreq_is_absent(power: PowerControl) -> None:
    report = power.apply("balanced")
    if not list(os.scandir("/sys/devices/system/cpu/cpu0")) or not os.path.exists(
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"):
        assert "not exposed by this host" in report.governor
