"""``exo gc``: remove what no kept generation needs — old generations, the app versions
only they used, and cached downloads — keeping the current generation and the one
``exo rollback`` would go to (its parent), plus the ``keep`` newest.

Planning and removing are separate (``plan`` then ``apply``), so the command shows what it
would remove and removes nothing unless asked (``-y``). Removal is crash-safe like every
other change to the store: a generation is first renamed to a ``.tmp`` name (one atomic
step: it is gone or whole), then deleted; an app version no remaining generation uses is
renamed the same way; what a ``kill -9`` leaves is removed by ``Store.recover()`` on the
next command. A user's data (``home/…`` areas) is never touched.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from exo.pkg.store import Store, _fsync_dir, _rmtree, crash_point


@dataclass
class GcPlan:
    generations: list[int] = field(default_factory=list)
    apps: list[tuple[str, str]] = field(default_factory=list)
    cached: list[Path] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    bytes: int = 0

    @property
    def empty(self) -> bool:
        return not (self.generations or self.apps or self.cached)

    def describe(self) -> list[str]:
        return ([f"generation {g}" for g in self.generations]
                + [f"{n} {v}" for n, v in self.apps]
                + ([f"{len(self.cached)} cached download"
                    f"{'s' if len(self.cached) != 1 else ''}"] if self.cached else []))


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):  # removed while we count
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def _cached(store: Store) -> list[Path]:
    out = sorted(p for p in store.cache.glob("*") if p.is_file()) \
        if store.cache.is_dir() else []
    repos = store.state / "repos"
    if repos.is_dir():
        for r in sorted(repos.iterdir()):
            if (r / "targets").is_dir():
                out += sorted(p for p in (r / "targets").iterdir() if p.is_file())
    return out


def plan(store: Store, keep: int = 0) -> GcPlan:
    """What ``apply`` would remove (call under ``store.locked()``)."""
    if keep < 0:
        raise ValueError("keep must be 0 or more")
    gens = store.generations()
    ids = {g.id for g in gens}
    kept = {g.id for g in gens[len(gens) - keep:]} if keep else set()
    cur = store.current()
    if cur is not None:
        kept.add(cur.id)
        if cur.parent in ids:
            kept.add(cur.parent)
    result = GcPlan(kept=sorted(kept))
    result.generations = [g.id for g in gens if g.id not in kept]
    used = {(n, i.version) for g in gens if g.id in kept for n, i in g.packages.items()}
    if store.apps.is_dir():
        for app in sorted(store.apps.iterdir()):
            if not app.is_dir() or app.is_symlink():
                continue
            for ver in sorted(app.iterdir()):
                if (app.name, ver.name) not in used:
                    result.apps.append((app.name, ver.name))
                    result.bytes += _size(ver)
    result.cached = _cached(store)
    result.bytes += sum(p.stat().st_size for p in result.cached)
    result.bytes += sum(_size(store.gens / str(g)) for g in result.generations)
    return result


def apply(store: Store, todo: GcPlan) -> None:
    """Remove what ``todo`` lists (under ``store.locked()``, right after ``plan``)."""
    tag = f".tmp-gc-{os.getpid()}"
    for gid in todo.generations:
        os.replace(store.gens / str(gid), store.gens / f"{gid}{tag}")
    if todo.generations:
        _fsync_dir(store.gens)
    crash_point("gc-renamed")
    for name, version in todo.apps:
        app = store.app_dir(name, version)
        doomed = app.with_name(f".{version}{tag}")
        os.replace(app, doomed)
        _rmtree(doomed)
    for gid in todo.generations:
        _rmtree(store.gens / f"{gid}{tag}")
    for path in todo.cached:
        path.unlink(missing_ok=True)
    store.recover()  # empty app directories, leftovers of an earlier interrupted gc
