"""The issue's command block, end to end, through the real ``exo`` command: new → build →
repo init → publish → repo serve (loopback HTTP) → repo add → install → run → list →
upgrade → rollback → generations → remove; plus one-line errors."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pkg.exocli import EXO, exo, serving


@pytest.fixture
def served(tmp_path: Path, env: dict[str, str]) -> Iterator[str]:
    exo("repo", "init", "./repo", cwd=tmp_path, env=env)
    with serving(tmp_path, env) as url:
        yield url


def test_command_block(tmp_path: Path, env: dict[str, str], served: str) -> None:
    root = Path(env["EXO_ROOT"])
    exo("new", "hello", "--template", "cli", cwd=tmp_path, env=env)
    project = tmp_path / "hello"
    assert 'version = "0.1.0"' in (project / "exopkg.toml").read_text()
    exo("build", "--release", cwd=project, env=env)
    assert (project / "dist" / "hello-0.1.0.exopkg").is_file()
    exo("publish", "--repo", "../repo", "dist/hello-0.1.0.exopkg", cwd=project, env=env)
    exo("repo", "add", "local", served, cwd=tmp_path, env=env)

    for answer in ("n\n", ""):  # "no", and no answer at all (no terminal): nothing done
        r = subprocess.run([*EXO, "install", "hello"], cwd=tmp_path, env=env, input=answer,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and r.stderr == "exo: cancelled; nothing was changed\n"
        assert "storage://home/hello=READ,WRITE" in r.stdout  # permissions shown first
    assert exo("list", cwd=tmp_path, env=env).stdout == ""
    r = exo("install", "-y", "hello", cwd=tmp_path, env=env)
    assert "storage://home/hello=READ,WRITE" in r.stdout  # permissions shown
    run = subprocess.run([str(root / "exo" / "bin" / "hello"), "Exo"], capture_output=True,
                         text=True, timeout=30)
    assert run.stdout == "Hello, Exo, from hello!\n"
    assert exo("list", cwd=tmp_path, env=env).stdout.split() == ["hello", "0.1.0", "active"]
    assert "all files match" in exo("verify", "hello", cwd=tmp_path, env=env).stdout

    # 0.2.0: a new version published; upgrade, rollback, generations
    toml = project / "exopkg.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    prog = project / "bin" / "hello"
    prog.write_text(prog.read_text().replace("Hello,", "Hi,"))
    exo("build", "--release", cwd=project, env=env)
    exo("publish", "--repo", "../repo", cwd=project, env=env)
    assert "hello" in exo("search", "hel", cwd=tmp_path, env=env).stdout
    assert "0.2.0" in exo("info", "hello", cwd=tmp_path, env=env).stdout
    exo("upgrade", "-y", cwd=tmp_path, env=env)
    hello = str(root / "exo" / "bin" / "hello")
    assert subprocess.run([hello], capture_output=True, text=True).stdout.startswith("Hi,")
    listing = exo("list", cwd=tmp_path, env=env).stdout.splitlines()
    assert [line.split() for line in listing] == [["hello", "0.1.0", "inactive"],
                                                  ["hello", "0.2.0", "active"]]
    assert "up to date" in exo("upgrade", "-y", cwd=tmp_path, env=env).stdout
    exo("rollback", "-y", cwd=tmp_path, env=env)
    assert subprocess.run([hello], capture_output=True, text=True).stdout.startswith("Hello,")
    gens = exo("generations", cwd=tmp_path, env=env).stdout.splitlines()
    assert gens[0].startswith("*") and "   1" in gens[0] and "hello 0.1.0" in gens[0]
    assert "parent   1" in gens[1] and "hello 0.2.0" in gens[1]
    exo("remove", "-y", "hello", cwd=tmp_path, env=env)
    assert not os.path.lexists(root / "exo" / "bin" / "hello")
    gens = exo("generations", cwd=tmp_path, env=env).stdout.splitlines()
    assert gens[-1].startswith("*") and "parent   1" in gens[-1]
    # a pinned version side by side with the newest in the repository
    exo("install", "-y", "hello==0.1.0", cwd=tmp_path, env=env)
    assert exo("list", cwd=tmp_path, env=env).stdout.split()[:3] == ["hello", "0.1.0", "active"]


def test_errors_are_one_line(tmp_path: Path, env: dict[str, str], served: str) -> None:
    r = exo("install", "-y", "hello", cwd=tmp_path, env=env, ok=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no repository" in r.stderr
    exo("repo", "add", "local", served, cwd=tmp_path, env=env)
    r = exo("install", "-y", "nope", cwd=tmp_path, env=env, ok=False)
    assert r.returncode == 1 and r.stderr == "exo: no package named 'nope' in any repository\n"
    r = exo("rollback", "-y", cwd=tmp_path, env=env, ok=False)
    assert r.returncode == 1 and "nothing to roll back" in r.stderr
    r = exo("rollback", cwd=tmp_path, env=env, ok=False)  # no -y, no tty: refused
    assert r.returncode == 1
    r = exo("build", cwd=tmp_path, env=env, ok=False)
    assert r.returncode == 1 and "no exopkg.toml" in r.stderr


@pytest.mark.parametrize("step", ["downloaded", "extracting", "extracted",
                                  "generation-written", "switched"])
def test_kill9_through_the_cli(tmp_path: Path, env: dict[str, str], step: str) -> None:
    """``kill -9`` inside ``exo install`` and ``exo upgrade``: the previous generation
    still runs, and the next command recovers and completes."""
    root = Path(env["EXO_ROOT"])
    exo("repo", "init", "./repo", cwd=tmp_path, env=env)
    exo("new", "hello", cwd=tmp_path, env=env)
    project = tmp_path / "hello"
    exo("build", cwd=project, env=env)
    exo("publish", "--repo", "../repo", cwd=project, env=env)
    exo("repo", "add", "local", "./repo", cwd=tmp_path, env=env)
    hello = root / "exo" / "bin" / "hello"

    crash = dict(env, EXO_PKG_CRASH_AT=step)
    r = exo("install", "-y", "hello", cwd=tmp_path, env=crash, ok=False)
    assert r.returncode == -9
    assert os.path.lexists(hello) == (step == "switched")
    exo("install", "-y", "hello", cwd=tmp_path, env=env)
    assert exo("list", cwd=tmp_path, env=env).stdout.split() == ["hello", "0.1.0", "active"]

    toml = project / "exopkg.toml"
    toml.write_text(toml.read_text().replace('version = "0.1.0"', 'version = "0.2.0"'))
    exo("build", cwd=project, env=env)
    exo("publish", "--repo", "../repo", cwd=project, env=env)
    r = exo("upgrade", "-y", cwd=tmp_path, env=crash, ok=False)
    assert r.returncode == -9
    want = "0.2.0" if step == "switched" else "0.1.0"
    assert f"launcher: hello {want}\n" in hello.read_text()
    assert subprocess.run([str(hello)], capture_output=True, text=True).returncode == 0
    exo("upgrade", "-y", cwd=tmp_path, env=env)
    assert "launcher: hello 0.2.0\n" in hello.read_text()
    leftovers = [p for p in root.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_installed_app_runs_sandboxed_by_its_manifest(tmp_path: Path,
                                                       env: dict[str, str]) -> None:
    """``/exo/bin/NAME`` starts the app through ``exo run`` with the manifest's
    capabilities: it writes where the manifest grants, and nowhere else."""
    root = Path(env["EXO_ROOT"])
    exo("repo", "init", "./repo", cwd=tmp_path, env=env)
    exo("new", "probe", cwd=tmp_path, env=env)
    project = tmp_path / "probe"
    (project / "bin" / "probe").write_text(
        "#!/usr/bin/env python3\nimport sys\ntry:\n"
        "    open(sys.argv[1], 'w').write('x')\n    print('wrote')\n"
        "except OSError:\n    print('denied')\n")
    exo("build", cwd=project, env=env)
    exo("publish", "--repo", "../repo", cwd=project, env=env)
    exo("repo", "add", "local", "./repo", cwd=tmp_path, env=env)
    exo("install", "-y", "probe", cwd=tmp_path, env=env)
    probe = str(root / "exo" / "bin" / "probe")
    granted = root / "home" / "probe" / "note.txt"  # storage://home/probe=READ,WRITE
    outside = root / "etc" / "escape.txt"  # in the tree, not granted

    def run(path: str) -> str:  # an Exo path: inside the app the Exo tree is /
        r = subprocess.run([probe, path], capture_output=True, text=True, timeout=60,
                           env=env)
        assert r.returncode == 0, r.stderr
        return r.stdout.strip()

    assert run("/home/probe/note.txt") == "wrote" and granted.read_text() == "x"
    assert run("/etc/escape.txt") == "denied" and not outside.exists()
    run(str(tmp_path / "escape.txt"))  # the sandbox's /tmp is its own: never the host's
    assert not (tmp_path / "escape.txt").exists()
    assert run("/exo/apps/probe/0.1.0/bin/probe") == "denied"
