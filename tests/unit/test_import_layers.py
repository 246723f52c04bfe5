"""Arrows go down: no module imports a layer above its own (DESIGN.md §2 and §7).

An AST walk over src/, as trio's test_exports guards its boundaries: every import,
including those inside functions (lazy imports are still dependencies), except those
under ``if TYPE_CHECKING:`` (annotations only, never executed). The layers, bottom up:

    exo._value, exo._printable, exo._sched   helpers with no Exo dependency
    exo.abi                                   what the kernel and apps share (stdlib only)
    exo.ipc, exo.mm                           rings and segments
    exo_std                                   the apps' API (abi, ipc, mm and below)
    exo.sandbox                               Linux confinement
    exo.kernel                                the kernel
    exo.security                              TPM, HSM, post-quantum, audit chain
    exo.pkg                                   the package manager
    exo.shell                                 the shell, above the kernel
    exo.cli                                   the command line, at the top

``KNOWN`` lists the upward imports that existed when this test was written; issue 8
("arrows go down") removes them. A new one fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

LAYERS: list[tuple[str, ...]] = [
    ("exo._value", "exo._printable", "exo._sched"),
    ("exo.abi",),
    ("exo.ipc", "exo.mm"),
    ("exo_std",),
    ("exo.sandbox",),
    ("exo.kernel",),
    ("exo.security",),
    ("exo.pkg",),
    ("exo.shell",),
    ("exo.cli",),
]

KNOWN: set[tuple[str, str]] = set()  # none left: keep it that way


def _layer(module: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool, *,
             annotations: bool = False) -> set[str]:
    """What ``module`` imports; with ``annotations``, also under ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not annotations:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _upward_imports() -> set[tuple[str, str]]:
    upward: set[tuple[str, str]] = set()
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        own = _layer(module)
        if own is None:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for target in _imports(tree, module, path.name == "__init__.py"):
            rank = _layer(target)
            if rank is not None and rank > own:
                # report the target at the depth KNOWN uses: the module, not its names
                upward.add((module, target))
    return upward


def _covered(pair: tuple[str, str]) -> bool:
    module, target = pair
    return any((module == m or module.startswith(m + ".")) and
               (target == t or target.startswith(t + ".")) for m, t in KNOWN)


def test_no_module_imports_a_layer_above_its_own() -> None:
    new = sorted(pair for pair in _upward_imports() if not _covered(pair))
    assert not new, "upward imports (arrows must point down):\n" + "\n".join(
        f"  {m} imports {t}" for m, t in new)


def test_the_known_exceptions_are_still_real() -> None:
    """When issue 8 removes one, it comes out of KNOWN too (the list only shrinks)."""
    upward = _upward_imports()
    stale = sorted(k for k in KNOWN if not any(
        (m == k[0] or m.startswith(k[0] + ".")) and (t == k[1] or t.startswith(k[1] + "."))
        for m, t in upward))
    assert not stale, f"no longer imported upward, remove from KNOWN: {stale}"


# -------------------------------------------------------------- no circles in the kernel
# A module of the kernel and a subpackage of it (``exo.kernel.caps``, ``exo.kernel.revocable``,
# ``exo.kernel.subsystems``...) are one node each: a package may be circular inside itself.
KNOWN_CYCLES = [
    # the manifest schema (msgspec, loaded only when a manifest file is read) takes its
    # defaults from the manifest module, which imports the schema lazily
    {"exo.kernel.manifest", "exo.kernel.manifest_schema"},
]


def _kernel_node(module: str) -> str | None:
    parts = module.split(".")
    return ".".join(parts[:3]) if parts[:2] == ["exo", "kernel"] else None


def _kernel_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted((SRC / "exo" / "kernel").rglob("*.py")):
        module = _module_name(path)
        node = _kernel_node(module)
        assert node is not None
        tree = ast.parse(path.read_text(), str(path))
        targets = _imports(tree, module, path.name == "__init__.py", annotations=True)
        graph.setdefault(node, set()).update(
            t for t in map(_kernel_node, targets) if t is not None and t != node)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_kernels_modules_import_no_circle() -> None:
    """Issue 8: kernel, process, syscalls, services, control, procfs and files imported
    each other in a circle held apart by imports inside functions and under
    TYPE_CHECKING. Dependencies now flow through constructors; keep it so."""
    new = [sorted(c) for c in _cycles(_kernel_graph()) if c not in KNOWN_CYCLES]
    assert not new, f"import circles among the kernel's modules: {new}"
