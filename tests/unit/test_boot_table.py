"""The boot table (exo.kernel.boottable) and the kernel that runs it.

The table is data: each row names its subsystem by import path, the keys of what it
requires (its constructor's keyword parameters), its phase and its step in the boot log.
These tests keep the rows and the classes in agreement, and check what the driver does
with a row that is not built, fails, or requires one that did not start.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from exo.kernel import kernel as kernel_module
from exo.kernel.bootlog import Phase, SkipStep, Status
from exo.kernel.boottable import BOOT_TABLE
from exo.kernel.config import KernelConfig
from exo.kernel.core import KernelCore
from exo.kernel.kernel import Kernel
from exo.kernel.subsystem import NotBuilt, Row, Subsystem

SRC = Path(__file__).resolve().parents[2] / "src"
ORDER = [Phase.CRITICAL, Phase.NORMAL, Phase.DEFERRED]

# The boot log's step names are an interface: tests, scripts and README rely on them.
STEPS = ["Exo tree", "Memory pool", "Capability space", "IPC (Fusion Rings)", "Scheduler",
         "Processes and sandbox", "Encrypted storage", "Syscall server", "Sandbox filters",
         "Security", "Module manager", "AI agents started", "POSIX-X ready"]


def test_the_steps_keep_their_names_and_order() -> None:
    assert [row.name for row in BOOT_TABLE] == STEPS
    phases = [ORDER.index(row.phase) for row in BOOT_TABLE]
    assert phases == sorted(phases)
    assert len({row.key for row in BOOT_TABLE}) == len(BOOT_TABLE)


def test_every_row_matches_its_class() -> None:
    """A row's ``requires`` are exactly its constructor's keyword parameters, each the
    key of a row started before it (same phase, earlier, or an earlier phase)."""
    before: set[str] = set()
    for row in BOOT_TABLE:
        assert set(row.requires) <= before, f"{row.key} requires a later row"
        if isinstance(row.target, str):
            cls = row.load()
            assert isinstance(cls, type) and issubclass(cls, Subsystem), row
            params = inspect.signature(cls).parameters.values()
            assert [p.kind for p in params][:1] == [inspect.Parameter.POSITIONAL_OR_KEYWORD]
            keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
            assert keywords == set(row.requires), row
        else:
            assert isinstance(row.target, NotBuilt) and not row.requires
        before.add(row.key)


def test_rows_not_built_skip_with_what_the_host_has() -> None:
    skips = {row.name: str(row.target.skip()) for row in BOOT_TABLE
             if isinstance(row.target, NotBuilt)}
    assert skips == {}  # every row of the table is built


def test_subsystems_are_given_collaborators_not_the_kernel() -> None:
    """No subsystem module imports the kernel (the composition root) to run."""
    for path in sorted((SRC / "exo" / "kernel" / "subsystems").glob("*.py")):
        tree = ast.parse(path.read_text())
        runtime = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
        assert all(node.module != "exo.kernel.kernel" for node in runtime), path


# ------------------------------------------------------------------ the driver
EVENTS: list[str] = []


class Broken(Subsystem):
    __slots__ = ()

    def __init__(self, core: KernelCore) -> None:
        pass

    def start(self) -> str:
        EVENTS.append("start broken")
        raise OSError("no such device")

    def stop(self) -> None:
        EVENTS.append("stop broken")  # releases what it took before failing


class Plain(Subsystem):
    __slots__ = ("label",)

    def __init__(self, core: KernelCore, **required: Subsystem) -> None:
        self.label = "+".join(sorted(required))

    def start(self) -> str:
        EVENTS.append(f"start {self.name}")
        return f"started with [{self.label}]"

    def stop(self) -> None:
        EVENTS.append(f"stop {self.name}")


class Unavailable(Plain):
    __slots__ = ()

    def start(self) -> str:
        raise SkipStep("not on this host")


HERE = __name__


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> list[Row]:
    rows = [
        Row("a", "A", Phase.CRITICAL, f"{HERE}:Plain"),
        Row("broken", "Broken", Phase.CRITICAL, f"{HERE}:Broken"),
        Row("later", "Later", Phase.NORMAL, NotBuilt("later not built yet")),
        Row("b", "B", Phase.NORMAL, f"{HERE}:Plain", requires=("a",)),
        Row("c", "C", Phase.NORMAL, f"{HERE}:Plain", requires=("a", "broken")),
        Row("d", "D", Phase.NORMAL, f"{HERE}:Unavailable"),
        Row("e", "E", Phase.DEFERRED, f"{HERE}:Plain", requires=("b",)),
        Row("f", "F", Phase.DEFERRED, "exo.kernel.nonexistent_module:Thing"),
    ]
    monkeypatch.setattr(kernel_module, "BOOT_TABLE", tuple(rows))
    EVENTS.clear()
    return rows


def test_the_kernel_runs_its_table(table: list[Row], tmp_path: Path) -> None:
    kernel = Kernel(KernelConfig(root=tmp_path / "root"), ephemeral=True)
    report = kernel.boot()
    kernel.start_deferred()
    kernel.wait_deferred()
    got = {s.name: (s.phase, s.status, s.detail) for s in report.steps}
    assert [s.name for s in report.steps] == ["A", "Broken", "Later", "B", "C", "D", "E", "F"]
    assert got["A"] == (Phase.CRITICAL, Status.OK, "started with []")
    assert got["Broken"] == (Phase.CRITICAL, Status.FAILED, "OSError: no such device")
    assert got["Later"] == (Phase.NORMAL, Status.SKIP, "later not built yet")
    assert got["B"] == (Phase.NORMAL, Status.OK, "started with [a]")
    assert got["C"] == (Phase.NORMAL, Status.FAILED, "RuntimeError: needs Broken")
    assert got["D"] == (Phase.NORMAL, Status.SKIP, "not on this host")
    assert got["E"] == (Phase.DEFERRED, Status.OK, "started with [b]")
    assert got["F"][1] is Status.FAILED and "ModuleNotFoundError" in got["F"][2]
    assert set(report.phase_ms) == {"CRITICAL", "NORMAL", "DEFERRED"}
    kernel.shutdown()
    kernel.shutdown()  # idempotent
    # a start that failed or skipped is stopped at once (whatever it took is released)
    assert EVENTS == ["start A", "start broken", "stop broken", "start B", "stop D",
                      "start E", "stop E", "stop B", "stop A"]
    assert any("[FAILED] C (RuntimeError: needs Broken)" in line for line in kernel.messages)


def test_the_kernel_holds_no_string_registry_of_parts(tmp_path: Path) -> None:
    kernel = Kernel(KernelConfig(root=tmp_path / "root"), ephemeral=True)
    assert not hasattr(kernel, "components")
    with pytest.raises(LookupError):
        kernel.caps  # noqa: B018  # not booted: a clear error, not a KeyError
    assert kernel.processes_or_none() is None
    assert kernel.api.ps() == []
    kernel.shutdown()
