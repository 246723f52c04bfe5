"""TUF repositories: publish, trust on first use, download; rollback, freeze, tampered
metadata and tampered packages refused; served on loopback HTTP."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exo.pkg import format as fmt
from exo.pkg import sign
from exo.pkg.repo import RepoClient, RepoError, Repository, serve

from .test_store import make_pkg


@pytest.fixture(scope="module")
def pkgs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pkgs")
    signer = sign.load_signer(d)
    return {v: make_pkg(d, v, signer) for v in ("0.1.0", "0.2.0")}


def test_publish_add_download(tmp_path: Path, pkgs: dict[str, Path]) -> None:
    repo = Repository.init(tmp_path / "repo")
    repo.publish(pkgs["0.1.0"])
    with pytest.raises(RepoError, match="already published"):
        repo.publish(pkgs["0.1.0"])
    root = tmp_path / "root"
    client = RepoClient.add(root, "local", str(tmp_path / "repo"))
    cands = client.candidates()
    assert [(c.name, c.version) for c in cands] == [("hello", "0.1.0")]
    path = client.download(cands[0].extra["path"])
    pkg = fmt.read_package(path, trusted=client.publishers.__contains__)
    assert pkg.manifest.version == "0.1.0"
    repo.publish(pkgs["0.2.0"])
    client.refresh()
    assert {c.version for c in client.candidates()} == {"0.1.0", "0.2.0"}
    # consistent snapshots: every version kept under its own name
    names = {p.name for p in repo.meta.iterdir()}
    assert {"1.targets.json", "2.targets.json", "3.targets.json", "3.snapshot.json"} <= names


def test_rollback_attack(tmp_path: Path, pkgs: dict[str, Path]) -> None:
    repo = Repository.init(tmp_path / "repo")
    repo.publish(pkgs["0.1.0"])
    old = tmp_path / "old-metadata"
    shutil.copytree(repo.meta, old)
    repo.publish(pkgs["0.2.0"])
    client = RepoClient.add(tmp_path / "root", "local", str(tmp_path / "repo"))
    shutil.rmtree(repo.meta)
    shutil.copytree(old, repo.meta)
    with pytest.raises(RepoError, match="rolled back"):
        client.refresh()


def test_freeze_attack(tmp_path: Path, pkgs: dict[str, Path]) -> None:
    repo = Repository.init(tmp_path / "repo")
    repo.publish(pkgs["0.1.0"])
    client = RepoClient.add(tmp_path / "root", "local", str(tmp_path / "repo"))
    repo.resign_timestamp(expires_in=timedelta(seconds=-60))
    with pytest.raises(RepoError, match="expired"):
        client.refresh()


def test_tampered_metadata_and_target(tmp_path: Path, pkgs: dict[str, Path]) -> None:
    repo = Repository.init(tmp_path / "repo")
    repo.publish(pkgs["0.1.0"])
    client = RepoClient.add(tmp_path / "root", "local", str(tmp_path / "repo"))
    [target] = repo.targets.glob("*.hello-0.1.0.exopkg")  # consistent snapshot: HASH.NAME
    target.write_bytes(target.read_bytes()[:-1] + b"X")
    with pytest.raises(RepoError, match="does not match"):
        client.download("hello-0.1.0.exopkg")
    ts = repo.meta / "timestamp.json"
    raw = json.loads(ts.read_text())
    raw["signed"]["version"] += 10
    ts.write_text(json.dumps(raw))
    with pytest.raises(RepoError):
        client.refresh()


def test_unknown_publisher(tmp_path: Path, pkgs: dict[str, Path]) -> None:
    repo = Repository.init(tmp_path / "repo")
    repo.publish(pkgs["0.1.0"])
    client = RepoClient.add(tmp_path / "root", "local", str(tmp_path / "repo"))
    stranger = make_pkg(tmp_path, "0.3.0", sign.load_signer(tmp_path / "k2"))
    with pytest.raises(fmt.FormatError, match="does not trust"):
        fmt.read_package(stranger, trusted=client.publishers.__contains__)


def test_http_serve(tmp_path: Path, pkgs: dict[str, Path]) -> None:
    import http.server
    import urllib.error
    import urllib.request

    repo = Repository.init(tmp_path / "repo")
    repo.publish(pkgs["0.1.0"])
    urls: list[str] = []
    servers: list[http.server.ThreadingHTTPServer] = []
    orig = http.server.ThreadingHTTPServer.serve_forever

    def capture(self: http.server.ThreadingHTTPServer, poll_interval: float = 0.5) -> None:
        servers.append(self)
        orig(self, poll_interval)

    ready = threading.Event()
    http.server.ThreadingHTTPServer.serve_forever = capture  # type: ignore[method-assign]
    try:
        t = threading.Thread(target=serve, args=(repo.path,),
                             kwargs={"ready": lambda u: (urls.append(u), ready.set())},
                             daemon=True)
        t.start()
        assert ready.wait(10)
        client = RepoClient.add(tmp_path / "root", "web", urls[0])
        assert [c.version for c in client.candidates()] == ["0.1.0"]
        assert client.download("hello-0.1.0.exopkg").exists()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{urls[0]}/.keys/root-ed25519.pem")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{urls[0]}/metadata/../.keys/root-mldsa.pem")
    finally:
        http.server.ThreadingHTTPServer.serve_forever = orig  # type: ignore[method-assign]
        for s in servers:
            s.shutdown()
    with pytest.raises(RepoError, match="loopback"):
        serve(repo.path, host="0.0.0.0")


def test_failed_add_leaves_nothing(tmp_path: Path, pkgs: dict[str, Path]) -> None:
    repo = Repository.init(tmp_path / "repo")
    repo.publish(pkgs["0.1.0"])
    repo.resign_timestamp(expires_in=timedelta(seconds=-60))
    with pytest.raises(RepoError, match="expired"):
        RepoClient.add(tmp_path / "root", "local", str(repo.path))
    assert RepoClient.all(tmp_path / "root") == []
    repo.resign_timestamp()
    assert RepoClient.add(tmp_path / "root", "local", str(repo.path)).candidates()
    with pytest.raises(RepoError, match="no repository there"):
        RepoClient.add(tmp_path / "root", "nothing", str(tmp_path / "nothing"))


def test_serve_renews_a_stale_timestamp(tmp_path: Path) -> None:
    repo = Repository.init(tmp_path / "repo")
    repo.resign_timestamp(expires_in=timedelta(hours=1))
    before = repo._load("timestamp").signed.version

    class Stop(Exception):
        pass

    def stop(url: str) -> None:
        raise Stop(url)

    with pytest.raises(Stop):
        serve(repo.path, ready=stop)
    ts = repo._load("timestamp").signed
    assert ts.version == before + 1
    assert ts.expires - datetime.now(UTC) > timedelta(days=6)
