"""Installed apps and generations, switched atomically, safe against ``kill -9``.

Layout under ``EXO_ROOT``::

    exo/apps/NAME/VERSION/            an unpacked app (never changed once renamed in)
    exo/bin -> ../var/lib/pkg/current/bin
    var/lib/pkg/current -> generations/N
    var/lib/pkg/generations/N/        generation.json (packages, parent, action, time)
                              bin/NAME   a launcher: ``exo run`` of the app's entry with
                                         exactly its manifest's capabilities

A generation is a complete, immutable set of installed packages that records its parent,
so generations form a tree (Nix's form a line and lose branches on rollback). Every
change builds the next generation beside the current one and switches to it with one
``rename(2)`` of the ``current`` symlink (OSTree's deployment swap): a crash before the
rename leaves the previous generation in place, after it the new one. Half-written
things carry a ``.tmp`` name, and ``recover()`` (run by every command, under the lock)
removes them and the apps no generation refers to.

Tests kill the process at each step by setting ``EXO_PKG_CRASH_AT`` to a step's name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exo.pkg import PkgError
from exo.pkg import format as fmt

CRASH_ENV = "EXO_PKG_CRASH_AT"
STEPS = ("downloaded", "extracting", "extracted", "generation-written", "switched")


def crash_point(step: str) -> None:
    """Die here, as ``kill -9`` would, when a test asks for it."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


class StoreError(PkgError):
    """The store cannot do what was asked (nothing was changed)."""


@dataclass
class Installed:
    name: str
    version: str
    entry: str = ""
    explicit: bool = True
    requires: dict[str, str] = field(default_factory=dict)


@dataclass
class Generation:
    id: int
    parent: int | None
    action: str
    created: float
    packages: dict[str, Installed] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "parent": self.parent, "action": self.action,
                           "created": self.created,
                           "packages": {n: vars(p) for n, p in self.packages.items()}},
                          indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Generation:
        raw: dict[str, Any] = json.loads(text)
        pkgs = {n: Installed(**p) for n, p in raw["packages"].items()}
        return cls(raw["id"], raw["parent"], raw["action"], raw["created"], pkgs)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


class Store:
    """The installed state under one ``EXO_ROOT``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.apps = root / "exo" / "apps"
        self.state = root / "var" / "lib" / "pkg"
        self.gens = self.state / "generations"
        self.current_link = self.state / "current"
        self.cache = self.state / "cache"

    # ------------------------------------------------------------------ basics

    @contextlib.contextmanager
    def locked(self) -> Iterator[Store]:
        """One package command at a time per tree; recovers what a crash left first."""
        self.state.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError("another package command is running on this tree") from None
            self.recover()
            self._ensure_layout()
            yield self
        finally:
            os.close(fd)

    def _ensure_layout(self) -> None:
        for d in (self.apps, self.gens, self.cache):
            d.mkdir(parents=True, exist_ok=True)
        bin_link = self.root / "exo" / "bin"
        target = os.path.relpath(self.current_link / "bin", bin_link.parent)
        if bin_link.is_symlink() and os.readlink(bin_link) == target:
            return
        if bin_link.is_dir() and not bin_link.is_symlink():
            if any(bin_link.iterdir()):
                raise StoreError(f"{bin_link} is a non-empty directory; move it aside")
            bin_link.rmdir()
        tmp = bin_link.with_name("bin.tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target)
        os.replace(tmp, bin_link)

    def recover(self) -> list[str]:
        """Undo what an interrupted command left: ``.tmp`` generations and apps, and apps
        that no generation refers to. Returns what was removed."""
        removed: list[str] = []
        if self.gens.is_dir():
            for p in self.gens.iterdir():
                if ".tmp" in p.name:
                    _rmtree(p)
                    removed.append(str(p.relative_to(self.root)))
        (self.state / "current.tmp").unlink(missing_ok=True)
        if self.apps.is_dir():
            used = {(n, i.version) for g in self.generations() for n, i in g.packages.items()}
            for app in self.apps.iterdir():
                if not app.is_dir():
                    continue
                for ver in app.iterdir():
                    if ".tmp" in ver.name or (app.name, ver.name) not in used:
                        _rmtree(ver)
                        removed.append(str(ver.relative_to(self.root)))
                if not any(app.iterdir()):
                    app.rmdir()
        return removed

    # ------------------------------------------------------------ generations

    def current(self) -> Generation | None:
        try:
            return Generation.from_json((self.current_link / "generation.json").read_text())
        except FileNotFoundError:
            return None

    def generation(self, gid: int) -> Generation:
        try:
            return Generation.from_json((self.gens / str(gid) / "generation.json").read_text())
        except FileNotFoundError:
            raise StoreError(f"no generation {gid}") from None

    def generations(self) -> list[Generation]:
        if not self.gens.is_dir():
            return []
        ids = sorted(int(p.name) for p in self.gens.iterdir() if p.name.isdigit())
        return [self.generation(i) for i in ids]

    def app_dir(self, name: str, version: str) -> Path:
        return self.apps / name / version

    # ---------------------------------------------------------------- changes

    def unpack(self, pkg: fmt.Package) -> Path:
        """Put ``pkg``'s files in ``exo/apps/NAME/VERSION`` (kept if already there)."""
        self._ensure_layout()
        h = pkg.header
        final = self.app_dir(h.name, h.version)
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{h.version}.tmp-{os.getpid()}")
        try:
            fmt.extract(pkg, tmp)
            crash_point("extracting")
            os.replace(tmp, final)
            _fsync_dir(final.parent)
        except BaseException:
            _rmtree(tmp)
            raise
        crash_point("extracted")
        return final

    def commit(self, packages: dict[str, Installed], action: str) -> Generation:
        """Build the next generation beside the current one, then switch to it."""
        self._ensure_layout()
        cur = self.current()
        existing = [g.id for g in self.generations()]
        gen = Generation(max(existing, default=0) + 1, cur.id if cur else None, action,
                         time.time(), dict(sorted(packages.items())))
        tmp = self.gens / f"{gen.id}.tmp-{os.getpid()}"
        try:
            (tmp / "bin").mkdir(parents=True)
            for name, inst in gen.packages.items():
                app = self.app_dir(name, inst.version)
                if not app.is_dir():
                    raise StoreError(f"{name} {inst.version} is not unpacked")
                if inst.entry:
                    launcher = tmp / "bin" / name
                    launcher.write_text(self.launcher(name, inst.version, inst.entry))
                    launcher.chmod(0o755)
                    self._prepare_storage(app)
            (tmp / "generation.json").write_text(gen.to_json())
            _fsync_dir(tmp / "bin")
            _fsync_dir(tmp)
            os.replace(tmp, self.gens / str(gen.id))
            _fsync_dir(self.gens)
        except BaseException:
            _rmtree(tmp)
            raise
        crash_point("generation-written")
        self.switch(gen.id)
        crash_point("switched")
        return gen

    def launcher(self, name: str, version: str, entry: str) -> str:
        """``/exo/bin/NAME``: runs the entry through ``exo run`` with exactly the
        manifest's capabilities, plus reading its own prefix."""
        app = self.app_dir(name, version)
        own = f"storage://exo/apps/{name}/{version}=READ,EXECUTE"
        argv = [sys.executable, "-m", "exo", "run", "--root", str(self.root), "--manifest",
                str(app / fmt.META_DIR / fmt.MANIFEST_NAME), "--cap", own, "--",
                # inside, the Exo tree is / (exo.sandbox.namespace): the entry's Exo path
                "/" + (app / entry).relative_to(self.root).as_posix()]
        return (f"#!/bin/sh\n# exo package launcher: {name} {version}\n"
                f"exec {' '.join(shlex.quote(a) for a in argv)} \"$@\"\n")

    def _prepare_storage(self, app: Path) -> None:
        """Create the ``storage://`` directories the manifest names (shown to the user
        before installing) that do not exist yet: ``exo run`` needs them to exist."""
        from exo.kernel.caps import ResourceName
        from exo.kernel.manifest import load_manifest

        for grant in load_manifest(app / fmt.META_DIR / fmt.MANIFEST_NAME).grants:
            name: ResourceName = grant.name
            if name.scheme != "storage" or name.is_wildcard or not name.path:
                continue
            if name.path.split("/")[0] in ("exo", "var", "proc", "sys", "dev"):
                continue
            path = name.fs_path(self.root)
            if not path.exists() and not path.is_symlink():
                path.mkdir(parents=True, exist_ok=True)

    def switch(self, gid: int) -> None:
        """Make generation ``gid`` current: one rename, atomic."""
        if not (self.gens / str(gid) / "generation.json").is_file():
            raise StoreError(f"no generation {gid}")
        tmp = self.state / "current.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(f"generations/{gid}")
        os.replace(tmp, self.current_link)
        _fsync_dir(self.state)

    def rollback(self, to: int | None = None) -> Generation:
        """Back to the current generation's parent (or to ``to``)."""
        cur = self.current()
        if to is None:
            if cur is None or cur.parent is None:
                raise StoreError("nothing to roll back to: the current generation has no "
                                 "parent")
            to = cur.parent
        target = self.generation(to)
        self.switch(target.id)
        return target
