"""The ``.exopkg`` archive: a signed header with per-file hashes, the manifest, the payload.

Layout (integers big-endian)::

    b"EXOPKG\\x00\\x01"
    u32 length · header       canonical JSON: name, version, hashes of manifest and payload,
                              and one entry per file (path, kind, mode, size, sha256)
    u32 length · signature    hybrid Ed25519 + ML-DSA-65 over the header bytes
    u32 length · public key   the signer's hybrid key (trust is decided by the caller)
    u32 length · exopkg.toml
    u64 length · payload      one zstd frame: the regular files' bytes, in header order

Everything is checked before a byte is unpacked: the signature over the header, then the
manifest's and the compressed payload's hashes against it. Unpacking (``extract``) refuses
what could escape the prefix or the disk: paths with ``..`` or a leading ``/``, symlinks
that resolve outside, device and other special files, and more output than the header
declares (decompression bombs) or than ``max_unpacked`` allows. Like Redox's pkgar, the
header stays with the installed files, so ``exo verify`` can re-hash them later.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import struct
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from exo.pkg import PkgError
from exo.pkg import sign as _sign

MAGIC = b"EXOPKG\x00\x01"
MANIFEST_NAME = "exopkg.toml"
META_DIR = ".exo"  # inside an installed app: the header and signature, never payload
MAX_HEADER = 16 << 20
MAX_SIGNATURE = 16 << 10
MAX_MANIFEST = 1 << 20
MAX_UNPACKED = 4 << 30
MAX_FILES = 100_000
MAX_WINDOW = 1 << 27  # zstd window: bounds the decompressor's memory
KINDS = ("file", "dir", "symlink")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*([.+~-][A-Za-z0-9.]+)?$")
BINARY_TYPES = ("python", "elf", "wasm")
_CHUNK = 1 << 20


class FormatError(PkgError):
    """A malformed, tampered or unsafe package."""


@dataclass(frozen=True)
class Entry:
    """One path of the payload. ``size``/``sha256`` for files, ``target`` for symlinks."""

    path: str
    kind: str = "file"
    mode: int = 0o644
    size: int = 0
    sha256: str = ""
    target: str = ""


@dataclass
class Header:
    name: str
    version: str
    manifest_sha256: str
    payload_sha256: str
    payload_size: int
    unpacked_size: int
    entries: list[Entry] = field(default_factory=list)
    format: int = 1

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Header:
        try:
            raw = json.loads(data)
            entries = [Entry(**e) for e in raw.pop("entries")]
            header = cls(entries=entries, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise FormatError(f"malformed package header: {exc}") from None
        if header.format != 1:
            raise FormatError(f"package format {header.format} is not supported")
        return header


# ------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class PackageManifest:
    """What ``exopkg.toml`` says: identity, dependencies, sandbox, binary."""

    name: str
    version: str
    description: str
    dependencies: dict[str, str]
    capabilities: list[str]
    limits: dict[str, Any]
    binary_type: str
    entry: str
    raw: dict[str, Any]


def parse_manifest(text: bytes | str, where: str = MANIFEST_NAME) -> PackageManifest:
    """Parse and check ``exopkg.toml``; ``[sandbox]``/``[limits]`` exactly as ``exo run
    --manifest`` reads them, so an installed app runs with what was shown at install."""
    from exo.kernel.manifest import ManifestError, manifest_from_dict

    try:
        data = tomllib.loads(text.decode() if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FormatError(f"{where}: invalid TOML: {exc}") from None
    pkg = data.get("package")
    if not isinstance(pkg, dict):
        raise FormatError(f"{where}: missing [package] table")
    name, version = pkg.get("name"), pkg.get("version")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise FormatError(f"{where}: package.name {name!r} is not a valid name "
                          "(lower-case letters, digits, '.', '-', '_')")
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise FormatError(f"{where}: package.version {version!r} is not a version like 1.2.3")
    deps = data.get("dependencies", {})
    if not isinstance(deps, dict) or not all(
            isinstance(k, str) and NAME_RE.match(k) and isinstance(v, str)
            for k, v in deps.items()):
        raise FormatError(f"{where}: [dependencies] must map names to version constraints")
    binary = data.get("binary", {})
    btype = binary.get("type", "python") if isinstance(binary, dict) else None
    entry = binary.get("entry", "") if isinstance(binary, dict) else None
    if btype not in BINARY_TYPES or not isinstance(entry, str):
        raise FormatError(f"{where}: [binary] needs type = python|elf|wasm and an entry")
    sandbox_part: dict[str, object] = {k: data[k] for k in ("sandbox", "limits") if k in data}
    try:
        manifest_from_dict(sandbox_part, where)
    except ManifestError as exc:
        raise FormatError(str(exc)) from None
    sandbox = data.get("sandbox", {})
    caps = [str(c) for key in ("capabilities", "filesystem", "network", "ipc")
            for c in sandbox.get(key, [])]
    return PackageManifest(name, version, str(pkg.get("description", "")), dict(deps), caps,
                           dict(data.get("limits", {})), btype, entry, data)


# -------------------------------------------------------------------------- writing


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def scan_tree(src: Path, exclude: Callable[[str], bool]) -> list[tuple[Entry, Path | None]]:
    """The entries of a project directory, sorted; refuses special files."""
    out: list[tuple[Entry, Path | None]] = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(src).as_posix()
            if exclude(rel):
                if name in dirnames:
                    dirnames.remove(name)
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out.append((Entry(rel, "symlink", 0o777, target=os.readlink(path)), None))
                if name in dirnames:
                    dirnames.remove(name)
            elif stat.S_ISDIR(st.st_mode):
                out.append((Entry(rel, "dir", 0o755), None))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                out.append((Entry(rel, "file", mode, st.st_size, _sha256_file(path)), path))
            else:
                raise FormatError(f"{rel}: special files (devices, sockets, FIFOs) "
                                  "cannot be packaged")
    return out


def write_package(out: Path, manifest: bytes, items: Iterable[tuple[Entry, Path | bytes | None]],
                  signer: _sign.Signer, level: int = 3) -> Path:
    """Write a signed package. No safety checks here: readers check (and tests need to
    be able to write hostile packages)."""
    import zstandard

    m = parse_manifest(manifest)
    entries: list[Entry] = []
    payload = io.BytesIO()
    cctx = zstandard.ZstdCompressor(level=level, threads=-1 if level >= 10 else 0)
    with cctx.stream_writer(payload, closefd=False) as writer:
        for entry, source in items:
            if entry.kind == "file" and source is not None:
                if isinstance(source, bytes):
                    writer.write(source)
                else:
                    with open(source, "rb") as f:
                        while chunk := f.read(_CHUNK):
                            writer.write(chunk)
            entries.append(entry)
    body = payload.getvalue()
    header = Header(m.name, m.version, hashlib.sha256(manifest).hexdigest(),
                    hashlib.sha256(body).hexdigest(), len(body),
                    sum(e.size for e in entries), entries)
    hbytes = header.to_bytes()
    sig = signer.sign(hbytes)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as f:
        f.write(MAGIC)
        for part in (hbytes, sig, signer.public, manifest):
            f.write(struct.pack(">I", len(part)) + part)
        f.write(struct.pack(">Q", len(body)))
        f.write(body)
    os.replace(tmp, out)
    return out


# -------------------------------------------------------------------------- reading


@dataclass
class Package:
    """An opened package whose signature and hashes have been checked."""

    path: Path
    header: Header
    header_bytes: bytes
    signature: bytes
    public: bytes
    signer: str
    manifest_bytes: bytes
    manifest: PackageManifest
    payload_offset: int


def _read_part(f: BinaryIO, limit: int, what: str, wide: bool = False) -> bytes:
    fmt = ">Q" if wide else ">I"
    raw = f.read(struct.calcsize(fmt))
    if len(raw) != struct.calcsize(fmt):
        raise FormatError(f"truncated package: no {what}")
    (size,) = struct.unpack(fmt, raw)
    if size > limit:
        raise FormatError(f"{what} of {size} bytes exceeds the {limit}-byte bound")
    data = f.read(size)
    if len(data) != size:
        raise FormatError(f"truncated package: short {what}")
    return data


def check_path(path: str) -> None:
    """A payload path must be relative, normal and below the prefix."""
    p = PurePosixPath(path)
    if (not path or "\x00" in path or "\\" in path or p.is_absolute()
            or any(part in ("..", ".", "") for part in path.split("/"))):
        raise FormatError(f"unsafe path {path!r}: outside the package prefix")
    if p.parts[0] == META_DIR:
        raise FormatError(f"reserved path {path!r}")


def _check_entries(header: Header, max_unpacked: int) -> None:
    if len(header.entries) > MAX_FILES:
        raise FormatError(f"{len(header.entries)} files: more than {MAX_FILES}")
    total, seen = 0, set()
    for e in header.entries:
        if e.kind not in KINDS:
            raise FormatError(f"{e.path!r} is a {e.kind}: device and special files are "
                              "not allowed in packages")
        check_path(e.path)
        if e.path in seen:
            raise FormatError(f"{e.path!r} appears twice")
        seen.add(e.path)
        if e.kind == "symlink":
            target = PurePosixPath(e.target)
            if not e.target or target.is_absolute() or "\x00" in e.target:
                raise FormatError(f"symlink {e.path!r} -> {e.target!r} points outside "
                                  "the package prefix")
            resolved = os.path.normpath(str(PurePosixPath(e.path).parent / target))
            if resolved == ".." or resolved.startswith("../"):
                raise FormatError(f"symlink {e.path!r} -> {e.target!r} points outside "
                                  "the package prefix")
        if e.size < 0 or (e.kind != "file" and e.size):
            raise FormatError(f"{e.path!r}: bad size")
        total += e.size
    if total != header.unpacked_size:
        raise FormatError("header sizes do not add up")
    if total > max_unpacked:
        raise FormatError(f"package unpacks to {total} bytes, more than the "
                          f"{max_unpacked}-byte bound")


def read_package(path: Path, trusted: Callable[[str], bool] | None = None,
                 max_unpacked: int = MAX_UNPACKED) -> Package:
    """Open ``path`` and check it: signature (both halves), signer trusted (when
    ``trusted`` is given), manifest and payload hashes, entry safety."""
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise FormatError(f"{path}: {exc.strerror}") from None
    with f:
        if f.read(len(MAGIC)) != MAGIC:
            raise FormatError(f"{path.name}: not an .exopkg package")
        hbytes = _read_part(f, MAX_HEADER, "header")
        sig = _read_part(f, MAX_SIGNATURE, "signature")
        public = _read_part(f, MAX_SIGNATURE, "signer key")
        manifest = _read_part(f, MAX_MANIFEST, "manifest")
        try:
            signer = _sign.verify(public, sig, hbytes)
        except _sign.SignatureError as exc:
            raise FormatError(f"{path.name}: {exc} (header tampered or not signed by "
                              "this key)") from None
        if trusted is not None and not trusted(signer):
            raise FormatError(f"{path.name}: signed by key {signer[:16]}…, which this "
                              "repository does not trust")
        header = Header.from_bytes(hbytes)
        if hashlib.sha256(manifest).hexdigest() != header.manifest_sha256:
            raise FormatError(f"{path.name}: the manifest does not match the signed header "
                              "(tampered manifest)")
        m = parse_manifest(manifest, f"{path.name}:{MANIFEST_NAME}")
        if (m.name, m.version) != (header.name, header.version):
            raise FormatError(f"{path.name}: manifest names {m.name} {m.version}, header "
                              f"{header.name} {header.version}")
        _check_entries(header, max_unpacked)
        raw = f.read(8)
        if len(raw) != 8 or struct.unpack(">Q", raw)[0] != header.payload_size:
            raise FormatError(f"{path.name}: payload length differs from the signed header")
        offset = f.tell()
        h, left = hashlib.sha256(), header.payload_size
        while left and (chunk := f.read(min(_CHUNK, left))):
            h.update(chunk)
            left -= len(chunk)
        if left or f.read(1):
            raise FormatError(f"{path.name}: payload length differs from the signed header")
        if h.hexdigest() != header.payload_sha256:
            raise FormatError(f"{path.name}: the payload does not match the signed header "
                              "(tampered payload)")
    return Package(path, header, hbytes, sig, public, signer, manifest, m, offset)


# ------------------------------------------------------------------------ unpacking


class _Bounded(io.RawIOBase):
    """The payload region of the package file, and nothing past it."""

    def __init__(self, f: IO[bytes], size: int) -> None:
        self._f, self._left = f, size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._left)
        data = self._f.read(n)
        b[: len(data)] = data
        self._left -= len(data)
        return len(data)


def _write_file(dest_fd: int, name: str, mode: int, chunks: Iterator[bytes]) -> str:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=dest_fd)
    h = hashlib.sha256()
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            h.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest()


def extract(pkg: Package, dest: Path) -> None:
    """Unpack into ``dest`` (which must not exist): directories and files first, through
    descriptors and ``O_NOFOLLOW`` so no write follows a link, symlinks last, then each
    link resolved and checked to stay inside. Also writes ``.exo/`` (header, signature,
    signer key, manifest) for ``exo verify``."""
    import zstandard

    dest.mkdir(mode=0o755)
    root_fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        dctx = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        with open(pkg.path, "rb") as f:
            f.seek(pkg.payload_offset)
            reader = dctx.stream_reader(io.BufferedReader(_Bounded(f, pkg.header.payload_size)),
                                        read_across_frames=False)

            def take(size: int) -> Iterator[bytes]:
                left = size
                while left:
                    chunk = reader.read(min(_CHUNK, left))
                    if not chunk:
                        raise FormatError(f"{pkg.path.name}: payload ends early")
                    left -= len(chunk)
                    yield chunk

            for e in pkg.header.entries:
                parent, _, base = e.path.rpartition("/")
                dfd = _open_dir(root_fd, parent)
                try:
                    if e.kind == "dir":
                        os.mkdir(base, 0o755, dir_fd=dfd)
                    elif e.kind == "file":
                        digest = _write_file(dfd, base, (e.mode & 0o755) | 0o600,
                                             take(e.size))
                        if digest != e.sha256:
                            raise FormatError(f"{e.path}: content does not match its "
                                              "signed hash")
                finally:
                    if dfd != root_fd:
                        os.close(dfd)
            if reader.read(1):
                raise FormatError(f"{pkg.path.name}: payload is larger than its header "
                                  "declares (decompression bomb?)")
        for e in pkg.header.entries:
            if e.kind == "symlink":
                parent, _, base = e.path.rpartition("/")
                dfd = _open_dir(root_fd, parent)
                try:
                    os.symlink(e.target, base, dir_fd=dfd)
                finally:
                    if dfd != root_fd:
                        os.close(dfd)
        real_root = os.path.realpath(dest)
        for e in pkg.header.entries:
            if e.kind == "symlink":
                real = os.path.realpath(dest / e.path)
                if real != real_root and not real.startswith(real_root + os.sep):
                    raise FormatError(f"symlink {e.path!r} -> {e.target!r} resolves outside "
                                      "the package prefix")
        meta = dest / META_DIR
        meta.mkdir()
        for name, data in (("header.json", pkg.header_bytes), ("signature", pkg.signature),
                           ("signer.pub", pkg.public), (MANIFEST_NAME, pkg.manifest_bytes)):
            (meta / name).write_bytes(data)
        os.fsync(root_fd)
    except zstandard.ZstdError as exc:
        raise FormatError(f"{pkg.path.name}: corrupt payload: {exc}") from None
    finally:
        os.close(root_fd)


def _open_dir(root_fd: int, rel: str) -> int:
    """Walk ``rel`` from ``root_fd`` one component at a time, never following a link."""
    fd = root_fd
    for part in filter(None, rel.split("/")):
        try:
            nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            if fd != root_fd:
                os.close(fd)
            raise FormatError(f"{rel!r}: parent is not a directory of the package") from None
        if fd != root_fd:
            os.close(fd)
        fd = nfd
    return fd


def verify_installed(app_dir: Path) -> list[str]:
    """Re-hash an installed app against the signed header kept beside it; the problems
    found (empty when intact)."""
    meta = app_dir / META_DIR
    try:
        hbytes = (meta / "header.json").read_bytes()
        _sign.verify((meta / "signer.pub").read_bytes(), (meta / "signature").read_bytes(),
                     hbytes)
    except (OSError, _sign.SignatureError) as exc:
        return [f"header: {exc}"]
    problems = []
    for e in Header.from_bytes(hbytes).entries:
        p = app_dir / e.path
        if e.kind == "file":
            if p.is_symlink() or not p.is_file():
                problems.append(f"{e.path}: missing")
            elif _sha256_file(p) != e.sha256:
                problems.append(f"{e.path}: modified")
        elif e.kind == "symlink" and (not p.is_symlink() or os.readlink(p) != e.target):
            problems.append(f"{e.path}: link changed")
        elif e.kind == "dir" and not p.is_dir():
            problems.append(f"{e.path}: missing directory")
    return problems
