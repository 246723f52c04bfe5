"""``exo.pkg.installed``: the shell's read-only view of the current generation refuses
records the store would never write rather than build paths from them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exo.pkg.installed import CURRENT_GENERATION, installed_app, installed_apps


def _record(root: Path, packages: object) -> None:
    path = root / CURRENT_GENERATION
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"id": 1, "packages": packages}))


def test_a_package_with_an_entry(tmp_path: Path) -> None:
    _record(tmp_path, {"hello": {"name": "hello", "version": "1.0", "entry": "bin/hello"},
                       "lib": {"name": "lib", "version": "2", "entry": ""}})
    app = installed_app(tmp_path, "hello")
    assert app is not None
    assert (app.program, app.manifest, app.own_capability) == (
        "/exo/apps/hello/1.0/bin/hello", "/exo/apps/hello/1.0/.exo/exopkg.toml",
        "storage://exo/apps/hello/1.0=READ,EXECUTE")
    assert installed_app(tmp_path, "lib") is None  # a library: nothing to run
    assert [a.name for a in installed_apps(tmp_path)] == ["hello"]


@pytest.mark.parametrize("name, version, entry", [
    ("hello", "../..", "bin/hello"), ("hello", "1/2", "bin/hello"),
    ("hello", "1.0", "../../etc/passwd"), ("hello", "1.0", "/bin/sh"),
    ("hello", 1, "bin/hello"), ("..", "1.0", "bin/hello"),
])
def test_records_the_store_never_writes_are_refused(tmp_path: Path, name: str,
                                                    version: object, entry: str) -> None:
    _record(tmp_path, {name: {"version": version, "entry": entry}})
    assert installed_app(tmp_path, name) is None


def test_no_generation_or_a_broken_one(tmp_path: Path) -> None:
    assert installed_app(tmp_path, "hello") is None
    (tmp_path / CURRENT_GENERATION).parent.mkdir(parents=True)
    (tmp_path / CURRENT_GENERATION).write_text("{not json")
    assert installed_app(tmp_path, "hello") is None
    _record(tmp_path, ["not", "a", "table"])
    assert installed_app(tmp_path, "hello") is None and installed_apps(tmp_path) == []
