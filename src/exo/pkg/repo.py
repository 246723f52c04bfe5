"""Package repositories: a directory (or that directory served over loopback HTTP) whose
metadata is TUF's, through the ``tuf`` library.

Each TUF role (root, targets, snapshot, timestamp) is signed by two keys, Ed25519 and
ML-DSA-65, with threshold 2: the metadata verifies only when both algorithms do, the same
hybrid rule as the packages' own signatures. Root keys sign only root; the online keys
sign the other three. The ``tuf`` client (``ngclient``) gives what TUF is for: a
repository rolled back to older metadata is refused (versions never go down), a frozen
one is refused once its timestamp expires, and metadata cannot be mixed and matched.

Layout of a repository directory (TUF consistent snapshots: files are never rewritten
under a name a client may be reading; only ``timestamp.json`` changes in place, last)::

    metadata/1.root.json N.targets.json N.snapshot.json timestamp.json
             (and root.json, targets.json, snapshot.json: the latest, for the publisher)
    targets/SHA256.NAME-VERSION.exopkg
    .keys/                 private keys (0600), never served: keep root's offline

Each target carries ``custom`` fields (name, version, requires, description, the
permissions it asks for and the signer's fingerprint), so a client solves from the
metadata alone. ``targets.json`` also lists the publishers whose package signatures the
repository vouches for (``x-exo-publishers``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from exo.pkg import PkgError
from exo.pkg import format as fmt
from exo.pkg.solve import Candidate

PUBLISHERS = "x-exo-publishers"
EXPIRY = {"root": timedelta(days=365), "targets": timedelta(days=90),
          "snapshot": timedelta(days=30), "timestamp": timedelta(days=7)}
ROLES = ("root", "targets", "snapshot", "timestamp")


class RepoError(PkgError):
    """A repository that cannot be read, or whose metadata does not verify."""


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _signers(keydir: Path, which: str) -> list[Any]:
    """The signers of ``which`` ("root" or "online"): key files or an HSM key
    (``exo.pkg.repo_keys``)."""
    from exo.pkg import repo_keys

    return repo_keys.signers(keydir, which)


def _key_types() -> None:
    """Register the ``exo-hybrid`` TUF key type before any metadata is parsed."""
    from exo.pkg import repo_keys  # noqa: F401 (registration is the import)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Repository:
    """The publisher's side: a repository directory and its keys."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        self.meta = self.path / "metadata"
        self.targets = self.path / "targets"
        self.keys = self.path / ".keys"

    @classmethod
    def init(cls, path: Path, root_key: str | None = None, online_key: str | None = None,
             exo_root: Path | None = None) -> Repository:
        """An empty signed repository: fresh keys, root v1, empty targets. ``root_key``
        / ``online_key`` ``hsm:NAME``: that role group is signed by a hybrid key in the
        HSM of ``exo_root``'s token instead of key files."""
        from tuf.api.metadata import (
            Metadata,
            Role,
            Root,
            Snapshot,
            Targets,
            Timestamp,
        )

        from exo.pkg import repo_keys

        hsm = {"root": repo_keys.parse_spec(root_key),
               "online": repo_keys.parse_spec(online_key)}
        if any(hsm.values()) and exo_root is None:
            raise RepoError("an HSM key needs the Exo tree whose token holds it")
        repo = cls(path)
        if repo.meta.exists():
            raise RepoError(f"{path} already holds a repository")
        repo.keys.mkdir(parents=True, mode=0o700)
        repo.targets.mkdir(parents=True, exist_ok=True)
        try:
            repo_keys.write_config(repo.keys, exo_root or path, hsm)
            for which in repo_keys.GROUPS:
                if not hsm[which]:
                    repo_keys.generate_files(repo.keys, which)
            signers = {g: _signers(repo.keys, g) for g in repo_keys.GROUPS}
        except BaseException:
            shutil.rmtree(repo.keys, ignore_errors=True)  # `repo init` can be retried
            raise
        repo.meta.mkdir()
        now = _now()
        root = Root(expires=now + EXPIRY["root"], consistent_snapshot=True)
        for role in ROLES:
            keys = [s.public_key for s in signers["root" if role == "root" else "online"]]
            # every key must sign: both algorithms (two files, or one hybrid HSM key)
            root.roles[role] = Role([k.keyid for k in keys], threshold=len(keys))
            for k in keys:
                root.keys[k.keyid] = k
        md_root = Metadata(root)
        for s in signers["root"]:
            md_root.sign(s, append=True)
        data = md_root.to_bytes()
        _write_atomic(repo.meta / "1.root.json", data)
        _write_atomic(repo.meta / "root.json", data)
        targets = Targets(expires=now + EXPIRY["targets"],
                          unrecognized_fields={PUBLISHERS: []})
        repo._commit(Metadata(targets), Metadata(Snapshot(expires=now)),
                     Metadata(Timestamp(expires=now)), first=True)
        return repo

    def _load(self, role: str) -> Any:
        from tuf.api.metadata import Metadata

        _key_types()
        try:
            return Metadata.from_file(str(self.meta / f"{role}.json"))
        except FileNotFoundError:
            raise RepoError(f"{self.path} is not a repository (exo repo init)") from None

    def _consistent(self) -> bool:
        """TUF consistent snapshots: every version of every file under its own name, so
        a client reading during a publish never mixes old and new."""
        return bool(self._load("root").signed.consistent_snapshot)

    def _commit(self, targets: Any, snapshot: Any, timestamp: Any, first: bool = False,
                timestamp_expiry: timedelta = EXPIRY["timestamp"]) -> None:
        """Bump and sign targets, snapshot, timestamp; write timestamp last (the commit
        point a client sees)."""
        from tuf.api.metadata import MetaFile

        online = _signers(self.keys, "online")
        now = _now()

        def seal(md: Any, expiry: timedelta) -> bytes:
            if not first:
                md.signed.version += 1
            md.signed.expires = now + expiry
            md.signatures.clear()
            for s in online:
                md.sign(s, append=True)
            data: bytes = md.to_bytes()
            return data

        tdata = seal(targets, EXPIRY["targets"])
        _write_atomic(self.meta / f"{targets.signed.version}.targets.json", tdata)
        _write_atomic(self.meta / "targets.json", tdata)
        snapshot.signed.meta["targets.json"] = MetaFile(targets.signed.version)
        sdata = seal(snapshot, EXPIRY["snapshot"])
        _write_atomic(self.meta / f"{snapshot.signed.version}.snapshot.json", sdata)
        _write_atomic(self.meta / "snapshot.json", sdata)
        timestamp.signed.snapshot_meta = MetaFile(snapshot.signed.version)
        _write_atomic(self.meta / "timestamp.json", seal(timestamp, timestamp_expiry))

    def has(self, name: str, version: str) -> bool:
        """Is ``name`` ``version`` already published here?"""
        return f"{name}-{version}.exopkg" in self._load("targets").signed.targets

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One publisher at a time (``exo publish`` into the directory, uploads to
        ``exo repo serve``): each signs a version on top of the last."""
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def can_sign(self) -> bool:
        """Are the online keys (files or an HSM key) configured here?"""
        return (self.keys / "signers.json").exists() or \
            (self.keys / "online-ed25519.pem").exists()

    def publish(self, pkg_path: Path, allowed: Callable[[str], bool] | None = None,
                ) -> fmt.Package:
        """Verify ``pkg_path``, copy it in, and sign new metadata that lists it.
        ``allowed``: which signers may publish (uploads); None: anyone (the local
        publisher, who holds the keys anyway)."""
        with self.locked():
            return self._publish(pkg_path, allowed)

    def _publish(self, pkg_path: Path, allowed: Callable[[str], bool] | None) -> fmt.Package:
        from tuf.api.metadata import TargetFile

        targets = self._load("targets")
        pkg = fmt.read_package(pkg_path)
        if allowed is not None and not allowed(pkg.signer):
            raise RepoError(f"{pkg.manifest.name} {pkg.manifest.version} is signed by key "
                            f"{pkg.signer[:16]}, which may not publish here (exo repo serve "
                            "--allow-publisher FINGERPRINT)")
        m = pkg.manifest
        name = f"{m.name}-{m.version}.exopkg"
        if name in targets.signed.targets:
            raise RepoError(f"{m.name} {m.version} is already published (bump the version)")
        data = pkg_path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        dest = self.targets / (f"{digest}.{name}" if self._consistent() else name)
        tmp = dest.with_name(f".{name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        custom = {"name": m.name, "version": m.version, "description": m.description,
                  "requires": m.dependencies, "capabilities": m.capabilities,
                  "binary": m.binary_type, "entry": m.entry, "signer": pkg.signer}
        targets.signed.targets[name] = TargetFile(
            len(data), {"sha256": digest}, name,
            unrecognized_fields={"custom": custom})
        publishers = targets.signed.unrecognized_fields.setdefault(PUBLISHERS, [])
        if pkg.signer not in publishers:
            publishers.append(pkg.signer)
        self._commit(targets, self._load("snapshot"), self._load("timestamp"))
        return pkg

    def resign_timestamp(self, expires_in: timedelta = EXPIRY["timestamp"]) -> None:
        """A fresh timestamp (run periodically: clients refuse an expired one)."""
        with self.locked():
            self._resign_timestamp(expires_in)

    def _resign_timestamp(self, expires_in: timedelta) -> None:
        from tuf.api.metadata import MetaFile

        ts = self._load("timestamp")
        ts.signed.version += 1
        ts.signed.expires = _now() + expires_in
        ts.signed.snapshot_meta = MetaFile(self._load("snapshot").signed.version)
        ts.signatures.clear()
        for s in _signers(self.keys, "online"):
            ts.sign(s, append=True)
        _write_atomic(self.meta / "timestamp.json", ts.to_bytes())


# ------------------------------------------------------------------------ client


def _fetcher_base() -> Any:
    from tuf.ngclient import FetcherInterface

    return FetcherInterface


class _Fetcher(_fetcher_base()):  # type: ignore[misc]
    """``file://`` and ``http://`` for ngclient, with a progress hook for downloads."""

    def __init__(self) -> None:
        self.progress: Callable[[int, int], None] | None = None

    def _fetch(self, url: str) -> Iterator[bytes]:
        from tuf.api.exceptions import DownloadHTTPError

        parsed = urllib.parse.urlparse(url)
        if parsed.scheme == "file":
            path = Path(urllib.parse.unquote(parsed.path))
            try:
                f = open(path, "rb")  # noqa: SIM115 (closed by the generator below)
            except FileNotFoundError:
                raise DownloadHTTPError(f"{url}: not found", 404) from None
            total = path.stat().st_size
            return self._chunks(f, total)
        try:
            resp = urllib.request.urlopen(url, timeout=30)
        except urllib.error.HTTPError as exc:
            raise DownloadHTTPError(f"{url}: {exc.reason}", exc.code) from None
        return self._chunks(resp, int(resp.headers.get("Content-Length") or 0))

    def _chunks(self, f: Any, total: int) -> Iterator[bytes]:
        done = 0
        with f:
            while chunk := f.read(1 << 20):
                done += len(chunk)
                if self.progress is not None:
                    self.progress(done, total)
                yield chunk


def _url(location: str) -> str:
    if location.startswith(("http://", "https://", "file://")):
        return location.rstrip("/")
    return Path(location).absolute().as_uri()


class RepoClient:
    """The installer's side of one configured repository (``exo repo add``)."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.dir = root / "var" / "lib" / "pkg" / "repos" / name
        self.fetcher = _Fetcher()
        try:
            self.url: str = json.loads((self.dir / "repo.json").read_text())["url"]
        except FileNotFoundError:
            raise RepoError(f"no repository named {name!r} (exo repo add)") from None
        self._targets: Any = None

    @staticmethod
    def add(root: Path, name: str, location: str) -> RepoClient:
        """Trust on first use: fetch the repository's root, check it is signed by its
        own keys (both algorithms), and pin it."""
        from tuf.api.exceptions import DownloadError
        from tuf.api.metadata import Metadata, Root

        _key_types()
        if not fmt.NAME_RE.match(name):
            raise RepoError(f"bad repository name {name!r}")
        url = _url(location)
        d = root / "var" / "lib" / "pkg" / "repos" / name
        if d.exists():
            raise RepoError(f"a repository named {name!r} is already configured")
        try:
            data = _Fetcher().download_bytes(f"{url}/metadata/1.root.json", 1 << 20)
            md: Metadata[Root] = Metadata.from_bytes(data)
            md.signed.verify_delegate("root", md.signed_bytes, md.signatures)
        except DownloadError as exc:
            raise RepoError(f"{location}: no repository there ({exc})") from None
        except Exception as exc:
            raise RepoError(f"{location}: root metadata does not verify: {exc}") from None
        (d / "metadata").mkdir(parents=True)
        (d / "metadata" / "root.json").write_bytes(data)
        (d / "repo.json").write_text(json.dumps({"url": url}))
        try:
            client = RepoClient(root, name)
            client.refresh()
        except BaseException:
            shutil.rmtree(d, ignore_errors=True)  # not half-added: `repo add` can be retried
            raise
        return client

    @staticmethod
    def all(root: Path) -> list[RepoClient]:
        d = root / "var" / "lib" / "pkg" / "repos"
        if not d.is_dir():
            return []
        return [RepoClient(root, p.name) for p in sorted(d.iterdir())
                if (p / "repo.json").exists()]

    def _updater(self) -> Any:
        from tuf.ngclient import Updater

        _key_types()
        (self.dir / "targets").mkdir(exist_ok=True)
        return Updater(str(self.dir / "metadata"), f"{self.url}/metadata/",
                       str(self.dir / "targets"), f"{self.url}/targets/",
                       fetcher=self.fetcher, bootstrap=None)

    def refresh(self) -> None:
        """Fetch and verify fresh metadata (refuses rollback, freeze, bad signatures)."""
        from tuf.api import exceptions as tex
        from tuf.api.metadata import Metadata

        try:
            self._updater().refresh()
        except tex.ExpiredMetadataError as exc:
            raise RepoError(f"repository {self.name}: metadata expired ({exc}): a frozen "
                            "or unmaintained repository") from None
        except (tex.BadVersionNumberError, tex.EqualVersionNumberError) as exc:
            raise RepoError(f"repository {self.name}: metadata rolled back to an older "
                            f"version ({exc})") from None
        except tex.RepositoryError as exc:
            raise RepoError(f"repository {self.name}: metadata does not verify "
                            f"({type(exc).__name__}: {exc})") from None
        except tex.DownloadError as exc:
            raise RepoError(f"repository {self.name}: cannot reach {self.url} ({exc})") \
                from None
        self._targets = Metadata.from_file(str(self.dir / "metadata" / "targets.json"))

    @property
    def publishers(self) -> list[str]:
        if self._targets is None:
            self.refresh()
        return list(self._targets.signed.unrecognized_fields.get(PUBLISHERS, []))

    def candidates(self) -> list[Candidate]:
        if self._targets is None:
            self.refresh()
        out = []
        for path, target in self._targets.signed.targets.items():
            c = target.unrecognized_fields.get("custom", {})
            out.append(Candidate(c["name"], c["version"],
                                 tuple(sorted(c.get("requires", {}).items())),
                                 self.name, {"path": path, **c}))
        return out

    def download(self, path: str, progress: Callable[[int, int], None] | None = None) -> Path:
        """Download ``path`` (length and hash checked against signed metadata)."""
        from tuf.api import exceptions as tex

        updater = self._updater()
        try:
            updater.refresh()
            info = updater.get_targetinfo(path)
            if info is None:
                raise RepoError(f"{path} is not in repository {self.name}")
            cached = updater.find_cached_target(info)
            if cached:
                return Path(cached)
            self.fetcher.progress = progress
            return Path(updater.download_target(info))
        except tex.LengthOrHashMismatchError as exc:
            raise RepoError(f"{path}: download does not match the signed metadata "
                            f"({exc})") from None
        except (tex.RepositoryError, tex.DownloadError) as exc:
            raise RepoError(f"{path}: {exc}") from None
        finally:
            self.fetcher.progress = None


def serve(directory: Path, host: str = "127.0.0.1", port: int = 0,
          ready: Callable[[str], None] | None = None,
          allow_publishers: tuple[str, ...] = (), max_upload: int = 1 << 30) -> None:
    """Serve a repository's ``metadata/`` and ``targets/`` (never ``.keys``) on loopback
    until interrupted; with its online keys here, also take uploads (``exo publish
    --repo URL``, ``exo.pkg.upload``) from publishers it trusts."""
    import http.server
    import ipaddress

    from exo.pkg import upload

    if not ipaddress.ip_address(host).is_loopback:
        raise RepoError(f"{host} is not a loopback address: exo repo serve stays local")
    if not (directory / "metadata" / "root.json").exists():
        raise RepoError(f"{directory} is not a repository (exo repo init)")
    base = directory.absolute()
    repo = Repository(base)
    if repo.can_sign():
        expires = repo._load("timestamp").signed.expires
        if expires - _now() < timedelta(days=1):
            repo.resign_timestamp()  # a served repository stays fresh for clients
    receiver = upload.Receiver(repo, allow_publishers, max_upload) if repo.can_sign() \
        else None

    class Handler(http.server.SimpleHTTPRequestHandler):
        timeout = 60  # a client that stops sending is dropped, not waited for

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(base), **kwargs)

        def send_head(self) -> Any:
            path = urllib.parse.urlparse(self.path).path
            parts = [p for p in path.split("/") if p]
            if (len(parts) != 2 or parts[0] not in ("metadata", "targets")
                    or parts[1].startswith(".")):
                self.send_error(404)
                return None
            return super().send_head()

        def do_POST(self) -> None:
            if urllib.parse.urlparse(self.path).path != upload.PATH:
                self.send_error(404)
                return
            if receiver is None:
                upload.answer(self, 403, {"error": "this server does not hold the "
                                          "repository's keys: it takes no uploads"})
                return
            receiver.handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    url = f"http://{host}:{server.server_address[1]}"
    try:
        if ready:
            ready(url)
        server.serve_forever()
    finally:
        server.server_close()
