"""Eco++ placement's decisions: the topology read from a sysfs tree, each role's CPUs, and
the hysteresis that keeps migrations few."""

from __future__ import annotations

from pathlib import Path

from exo.sched.placement import SETTLE, Decision, plan
from exo.sched.topology import Topology, parse_cpulist, read


def _sysfs(tmp_path: Path, **per_cpu: dict[str, str]) -> Path:
    for cpu, files in per_cpu.items():
        for name, value in files.items():
            path = tmp_path / cpu / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value + "\n")
    return tmp_path


def test_identical_cores_reserve_the_last_quarter_for_interactive_work(tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path, cpu0={"cpu_capacity": "1024"}, cpu1={"cpu_capacity": "1024"})
    topo = read(sysfs, tmp_path / "none", allowed={0, 1})
    assert not topo.heterogeneous and "identical (equal cpu_capacity)" in topo.describe()
    assert plan(topo) == {"interactive": [1], "normal": [0, 1], "batch": [0]}
    eight = Topology(list(range(8)), {c: 1024 for c in range(8)}, "test")
    assert plan(eight)["interactive"] == [6, 7] and plan(eight)["batch"] == list(range(6))


def test_heterogeneous_cores_send_light_work_to_the_efficiency_cores(tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path, **{f"cpu{c}": {"cpu_capacity": "446" if c < 4 else "1024"}
                                for c in range(6)})
    topo = read(sysfs, tmp_path / "none", allowed=set(range(6)))
    assert topo.heterogeneous and topo.source == "cpu_capacity"
    assert plan(topo) == {"interactive": [0, 1, 2, 3], "normal": list(range(6)),
                          "batch": [4, 5]}


def test_differing_max_frequency_or_intel_atom_cores_count_as_heterogeneous(
        tmp_path: Path) -> None:
    sysfs = _sysfs(tmp_path, cpu0={"cpufreq/cpuinfo_max_freq": "2000000"},
                   cpu1={"cpufreq/cpuinfo_max_freq": "3600000"})
    topo = read(sysfs, tmp_path / "none", allowed={0, 1})
    assert (topo.source, topo.efficiency, topo.performance) == ("cpuinfo_max_freq", [0], [1])
    atom = tmp_path / "atom"
    atom.write_text("2-3\n")
    topo = read(tmp_path / "empty", atom, allowed={0, 1, 2, 3})
    assert topo.efficiency == [2, 3] and plan(topo)["batch"] == [0, 1]


def test_one_cpu_or_no_sysfs_gives_every_role_every_cpu(tmp_path: Path) -> None:
    topo = read(tmp_path, tmp_path / "none", allowed={3})
    assert "no cpu_capacity, no cpufreq" in topo.describe()
    assert plan(topo) == {"interactive": [3], "normal": [3], "batch": [3]}


def test_cpulists_are_parsed_and_bounded() -> None:
    assert parse_cpulist("0-3,8") == {0, 1, 2, 3, 8}
    assert parse_cpulist("junk,5,9-7,-1,0-999999") == {5}


def test_a_placed_process_moves_only_after_its_new_class_holds() -> None:
    d = Decision()
    assert d.observe("cold") and d.role == "batch"  # first measurement: placed at once
    # one odd sample (a pause in a batch job) does not move it
    assert not d.observe("hot")
    assert not d.observe("cold")
    assert d.role == "batch"
    changes = [d.observe("hot") for _ in range(SETTLE)]
    assert changes == [False] * (SETTLE - 1) + [True] and d.role == "interactive"
    # alternating classes never settle: no migration at all
    assert not any(d.observe(k) for k in ("cold", "normal", "cold", "normal"))
    assert d.role == "interactive"
