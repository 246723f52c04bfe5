"""``exo publish --repo URL``: packages uploaded to ``exo repo serve`` over loopback
HTTP, verified and signed into the TUF metadata by the server; then installed, upgraded
and rolled back from that URL. Strangers, duplicates and garbage are refused in one line."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from tests.pkg.exocli import exo, serving


def _build(project: Path, env: dict[str, str], version: str, greeting: str,
           key: str = "file:default") -> str:
    toml = project / "exopkg.toml"
    text = toml.read_text()
    toml.write_text(text.replace(text.split('version = "')[1].split('"')[0], version, 1))
    prog = project / "bin" / project.name
    prog.write_text(prog.read_text().replace("Hello,", greeting).replace("Hi,", greeting))
    out = exo("build", "--key", key, cwd=project, env=env).stdout
    return out.split("signed by ")[1].strip(" )\n")


def test_publish_to_a_served_repository(tmp_path: Path, env: dict[str, str]) -> None:
    root = Path(env["EXO_ROOT"])
    exo("repo", "init", "./repo", cwd=tmp_path, env=env)
    exo("new", "hello", cwd=tmp_path, env=env)
    project = tmp_path / "hello"
    me = _build(project, env, "0.1.0", "Hello,")
    with serving(tmp_path, env, "--allow-publisher", me) as url:
        r = exo("publish", "--repo", url, "dist/hello-0.1.0.exopkg", cwd=project, env=env)
        assert r.stdout == f"published hello 0.1.0 to {url}\n"
        exo("repo", "add", "local", url, cwd=tmp_path, env=env)
        exo("install", "-y", "hello", cwd=tmp_path, env=env)
        hello = str(root / "exo" / "bin" / "hello")
        assert subprocess.run([hello], capture_output=True, text=True,
                              timeout=60).stdout.startswith("Hello,")

        version_before = json.loads((tmp_path / "repo/metadata/timestamp.json")
                                    .read_text())["signed"]["version"]
        _build(project, env, "0.2.0", "Hi,")
        exo("publish", "--repo", url, cwd=project, env=env)  # a known publisher now
        ts = json.loads((tmp_path / "repo/metadata/timestamp.json").read_text())
        assert ts["signed"]["version"] == version_before + 1 and len(ts["signatures"]) == 2
        exo("upgrade", "-y", cwd=tmp_path, env=env)
        assert subprocess.run([hello], capture_output=True, text=True,
                              timeout=60).stdout.startswith("Hi,")
        exo("rollback", "-y", cwd=tmp_path, env=env)
        assert subprocess.run([hello], capture_output=True, text=True,
                              timeout=60).stdout.startswith("Hello,")

        # the same version again; a stranger's key; bytes that are no package
        r = exo("publish", "--repo", url, cwd=project, env=env, ok=False)
        assert r.returncode == 1 and r.stderr == \
            f"exo: {url}: hello 0.2.0 is already published (bump the version)\n"
        _build(project, env, "0.3.0", "Hey,", key="file:stranger")
        r = exo("publish", "--repo", url, cwd=project, env=env, ok=False)
        assert r.returncode == 1 and "may not publish here" in r.stderr
        assert r.stderr.count("\n") == 1
        req = urllib.request.Request(url + "/upload", data=b"EXOPKG\0\1" + b"x" * 100,
                                     method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 400 and "error" in json.loads(err.value.read())
        assert not list((tmp_path / "repo" / ".incoming").iterdir())  # nothing kept
        versions = exo("info", "hello", cwd=tmp_path, env=env).stdout
        assert "0.2.0" in versions and "0.3.0" not in versions


def test_a_server_without_the_keys_takes_no_uploads(tmp_path: Path,
                                                    env: dict[str, str]) -> None:
    exo("repo", "init", "./repo", cwd=tmp_path, env=env)
    for p in (tmp_path / "repo" / ".keys").iterdir():
        p.unlink()  # a mirror: metadata and targets only
    exo("new", "hello", cwd=tmp_path, env=env)
    exo("build", cwd=tmp_path / "hello", env=env)
    with serving(tmp_path, env) as url:
        r = exo("publish", "--repo", url, cwd=tmp_path / "hello", env=env, ok=False)
        assert r.returncode == 1 and "takes no uploads" in r.stderr
    r = exo("repo", "serve", "./repo", "--allow-publisher", "nothex", cwd=tmp_path,
            env=env, ok=False)
    assert r.returncode == 1 and "bad publisher fingerprint" in r.stderr
