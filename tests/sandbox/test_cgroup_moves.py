"""The kernel makes cgroup moves cheap host-wide (``favordynmods``), keeping the mount's
other options, and leaves the host alone when the operator says so."""

from __future__ import annotations

import os

import pytest

from exo.sandbox._cgroups import FAVOR_ENV, favor_dynamic_moves


def _cgroup_mount_options() -> list[str]:
    """The super options of the hierarchy the function picks (cgroup2 first)."""
    first_v1: list[str] | None = None
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup2":
                return fields[sep + 3].split(",")
            if fields[sep + 1] == "cgroup" and first_v1 is None:
                first_v1 = fields[sep + 3].split(",")
    assert first_v1 is not None, "no cgroup hierarchy mounted"
    return first_v1


def test_operator_can_leave_the_mount_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAVOR_ENV, "0")
    before = _cgroup_mount_options()
    assert f"{FAVOR_ENV}=0" in favor_dynamic_moves()
    assert _cgroup_mount_options() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="remounting a cgroup hierarchy needs root")
def test_moves_are_made_fast_and_other_options_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAVOR_ENV, raising=False)
    before = [o for o in _cgroup_mount_options() if o != "favordynmods"]
    line = favor_dynamic_moves()
    after = _cgroup_mount_options()
    assert "favordynmods" in after, line
    assert [o for o in after if o != "favordynmods"] == before
    assert "fast" in favor_dynamic_moves()  # idempotent: the second call only looks
