"""Encrypted ``storage://`` areas: the registry, the keys, creation and key rotation.

An *area* is a directory of the Exo tree whose files are kept encrypted at rest
(``sealedfile`` format; XChaCha20-Poly1305): the host disk only ever holds ciphertext.
Apps read and write plaintext through the ordinary ``open`` syscall; the kernel serves
those files (``areaserve``). This module is what both the kernel and ``exo area`` need.

* **Registry** ``var/lib/areas/areas.json`` (kernel-owned, outside every area, so an app
  that can write an area cannot unregister it): each area's Exo path, random ``id``,
  ``label`` (the app it belongs to), key ``generation`` and, while a rotation is under
  way, ``next``. Written to a temporary name, fsynced, renamed.
* **Keys.** One 32-byte storage master key, sealed to the measured-boot PCR with the TPM
  (``tpm.seal``: a changed kernel cannot unseal it), or, only when asked for with
  ``--file-key`` (no TPM), kept in ``var/lib/areas/master.key`` (0600). Each area's key
  for generation ``g`` is HKDF-SHA256(master, salt = area id, info = "exo-area-v1" ·
  label · g): per app, per area, per generation; nothing but the master is stored.
  A file's header names the generation it is sealed under (authenticated).
* **Rotation** to generation g+1 survives ``kill -9`` at every step: the registry first
  records ``next`` (readers then accept g and g+1), each file is re-sealed chunk by chunk
  into a temporary file, fsynced and renamed over the old one (atomic: a file is wholly
  g or wholly g+1), then the registry records g+1. Run again, it resumes. Writers hold a
  shared ``flock`` on the area's lock file from open to commit, rotation an exclusive one,
  so no file is committed under a generation a rotation has already passed.

Tests kill the rotation at each step by setting ``EXO_AREA_CRASH_AT`` to a step's name.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import stat
import struct
import time
from pathlib import Path

from exo.security import sealedfile as sf

TYPE_CHECKING = False  # no typing import at run time: the boot table loads areaserve
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

REGISTRY_VERSION = 1
MASTER_NAME = "storage-master"
TMP_PREFIX = ".exo-area-tmp."
CRASH_ENV = "EXO_AREA_CRASH_AT"
STEPS = ("marked", "file-written", "file-renamed", "files-done")
#: Largest file an area serves (the kernel decrypts a file whole before an app reads it).
MAX_FILE_ENV = "EXO_AREA_MAX_FILE_MB"
DEFAULT_MAX_FILE_MB = 256


class AreaError(Exception):
    """An area operation failed; the message is one line meant for the user."""


def crash_point(step: str) -> None:
    """Die here, as ``kill -9`` would, when a test asks for it."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def max_file_bytes() -> int:
    try:
        mb = int(os.environ.get(MAX_FILE_ENV, DEFAULT_MAX_FILE_MB))
    except ValueError:
        mb = DEFAULT_MAX_FILE_MB
    return max(1, mb) << 20


# ----------------------------------------------------------------------- registry


def state_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "var" / "lib" / "areas"


def registry_path(root: str | os.PathLike[str]) -> Path:
    return state_dir(root) / "areas.json"


def exo_path(name: str) -> str:
    """``storage://home/a/secret`` or ``/home/a/secret`` → ``home/a/secret`` (the form
    capabilities use), refusing anything that is not a plain path in the tree."""
    from exo.kernel.caps import ResourceName

    text = name if "://" in name else "storage://" + name.lstrip("/")
    try:
        res = ResourceName.parse(text)
    except ValueError as exc:
        raise AreaError(f"bad area name {name!r}: {exc}") from None
    if res.scheme != "storage" or not res.path or res.is_wildcard:
        raise AreaError(f"an area is a storage:// directory, not {name!r}")
    return res.path


def load(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The registry (empty when none); ``AreaError`` when it exists but is unreadable."""
    try:
        data = json.loads(registry_path(root).read_text())
    except FileNotFoundError:
        return {"version": REGISTRY_VERSION, "master": None, "areas": {}}
    except (OSError, ValueError) as exc:
        raise AreaError(f"the encrypted-area registry is unreadable ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != REGISTRY_VERSION or \
            not isinstance(data.get("areas"), dict):
        raise AreaError("the encrypted-area registry is not a version-1 registry")
    return data


def save(root: str | os.PathLike[str], data: dict[str, Any]) -> None:
    path = registry_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        sf.fd_writer(fd)(memoryview(json.dumps(data, indent=2, sort_keys=True).encode()))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def find(areas: dict[str, Any], path: str) -> tuple[str, dict[str, Any]] | None:
    """The area ``path`` (an Exo path, no leading slash) lies in, if any."""
    for area, entry in areas.items():
        if path == area or path.startswith(area + "/"):
            return area, entry
    return None


@contextlib.contextmanager
def registry_lock(root: str | os.PathLike[str]) -> Iterator[None]:
    """Serialises changes to the registry (the CLI and the kernel may both change it)."""
    d = state_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / "registry.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def lock_area(root: str | os.PathLike[str], area_id: str, *, exclusive: bool,
              timeout: float = 0.0) -> int:
    """A descriptor holding the area's lock (shared for a writer, exclusive for a
    rotation); ``BlockingIOError`` (EBUSY) if it cannot be had within ``timeout``."""
    d = state_dir(root)
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / f"{area_id}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, op)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise BlockingIOError(errno.EBUSY, "the area is busy (a key rotation, or "
                                      "files being written): try again") from None
            time.sleep(0.02)


# ----------------------------------------------------------------------------- keys


def master_key(root: str | os.PathLike[str], *, create: bool = False,
               file_key: bool = False) -> tuple[bytes, str]:
    """The storage master key and where it lives ("tpm" or "file").

    TPM: unsealed (``tpm.UnsealError`` when a measured component changed); created and
    sealed to the current PCR when ``create`` and none exists yet, refused while the PCR
    is unmeasured (sealing to a zero PCR would lock the key to an unbooted TPM). Without a
    TPM: only the explicit file key."""
    from exo.security import tpm

    reg = load(root)
    kind = reg.get("master")
    location = tpm.locate(root)
    key_file = state_dir(root) / "master.key"
    if kind == "file" or (kind is None and file_key):
        if key_file.exists():
            key = key_file.read_bytes()
            if len(key) != 32:
                raise AreaError(f"{key_file} is not a 32-byte key")
            return key, "file"
        if not create:
            raise AreaError("the storage master key file is missing (var/lib/areas/master.key)")
        key = os.urandom(32)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            sf.fd_writer(fd)(memoryview(key))
            os.fsync(fd)
        finally:
            os.close(fd)
        return key, "file"
    if location is None:
        raise AreaError("no TPM to unseal the storage master key: /dev/tpmrm0 absent and "
                        "swtpm not running (exo tpm start)" if kind == "tpm" else
                        "no TPM: /dev/tpmrm0 absent and swtpm not running (exo tpm start); "
                        "--file-key keeps the master key in a file instead")
    sealed = tpm.Paths(root).sealed / f"{MASTER_NAME}.json"
    if sealed.exists():
        return tpm.unseal(root, MASTER_NAME), "tpm"
    if not create:
        raise AreaError("no storage master key is sealed in this TPM (create an area first)")
    if tpm.read_pcr(location) == tpm.ZERO:
        raise AreaError(f"PCR {tpm.PCR} is not measured yet (boot Exo once with this TPM): "
                        "the master key is sealed to the measured kernel")
    key = os.urandom(32)
    tpm.seal(root, MASTER_NAME, key)
    return key, "tpm"


def area_key(master: bytes, entry: dict[str, Any], generation: int) -> bytes:
    """The key of one area at one generation (HKDF-SHA256 from the master key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    info = b"exo-area-v1\0" + str(entry["label"]).encode() + b"\0" + \
        struct.pack(">Q", generation)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes.fromhex(entry["id"]),
                info=info).derive(master)


def accepted_generations(entry: dict[str, Any]) -> tuple[int, ...]:
    gen = int(entry["generation"])
    nxt = entry.get("next")
    return (gen,) if nxt is None else (gen, int(nxt))


def key_for(master: bytes, entry: dict[str, Any], header: bytes) -> bytes:
    """The key a file with ``header`` must be opened with; ``TamperedError`` when the
    header names a generation the area does not have."""
    kid = sf.parse_header(header)
    if kid not in accepted_generations(entry):
        raise sf.TamperedError(f"sealed under key generation {kid}, the area is at "
                               f"{entry['generation']}")
    return area_key(master, entry, kid)


# --------------------------------------------------------------------- operations


def create(root: str | os.PathLike[str], name: str, *, label: str | None = None,
           file_key: bool = False) -> dict[str, Any]:
    """Register a new, empty encrypted area (its directory is made if missing)."""
    path = exo_path(name)
    label = label or path.rsplit("/", 1)[-1]
    if not label.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise AreaError(f"bad label {label!r} (letters, digits, '-', '_', '.')")
    with registry_lock(root):
        reg = load(root)
        for other in reg["areas"]:
            if path == other or path.startswith(other + "/") or other.startswith(path + "/"):
                raise AreaError(f"storage://{path} overlaps the encrypted area "
                                f"storage://{other}")
        directory = _dir_of(root, path)
        directory.mkdir(parents=True, exist_ok=True)
        if directory.is_symlink() or not directory.is_dir():
            raise AreaError(f"storage://{path} is not a directory")
        if any(directory.iterdir()):
            raise AreaError(f"storage://{path} is not empty: an area starts empty (files "
                            "already there would stay in clear)")
        _key, kind = master_key(root, create=True, file_key=file_key)
        entry = {"id": os.urandom(16).hex(), "label": label, "generation": 1, "next": None,
                 "created": round(time.time(), 3)}
        reg["master"] = kind
        reg["areas"][path] = entry
        save(root, reg)
    return {"path": path, **entry, "master": kind}


def _dir_of(root: str | os.PathLike[str], path: str) -> Path:
    return Path(root).joinpath(*path.split("/"))


def _open_area_dir(root: str | os.PathLike[str], path: str) -> int:
    """The area directory, resolved beneath the tree with no symlink anywhere."""
    from exo.kernel import beneath

    tree = beneath.open_root(root)
    try:
        return beneath.open_file(tree, path, os.O_RDONLY | os.O_DIRECTORY, 0, beneath.STRICT)
    finally:
        os.close(tree)


def files(dir_fd: int) -> Iterator[tuple[int, str, str]]:
    """(directory fd, name, relative path) of every regular file under ``dir_fd``
    (links are not followed; temporary files are skipped)."""
    for top, _dirs, names, fd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
        for name in sorted(names):
            if name.startswith(TMP_PREFIX):
                continue
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                yield fd, name, os.path.normpath(os.path.join(top, name))


def remove_temporaries(dir_fd: int) -> int:
    """Remove what crashed writers and rotations left (only under the exclusive lock)."""
    n = 0
    for _top, _dirs, names, fd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
        for name in names:
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=fd)
                    n += 1
    return n


def reseal(old_key: bytes, new_key: bytes, new_generation: int, fin: int, fout: int) -> None:
    """Re-seal an open sealed file chunk by chunk under ``new_key`` (same chunking, so
    chunk ``i`` stays chunk ``i``); ``TamperedError`` at the first bad chunk."""
    size = os.fstat(fin).st_size
    head = bytearray(sf.HEADER)
    if sf.fill(sf.fd_reader(fin), memoryview(head)) != sf.HEADER:
        raise sf.TamperedError("shorter than a sealed file's header")
    sf.parse_header(bytes(head))
    opener = sf.ChunkCipher(old_key, bytes(head))
    header = sf.new_header(new_generation)
    sealer = sf.ChunkCipher(new_key, header)
    write = sf.fd_writer(fout, write_behind=True)
    write(memoryview(header))
    chunks = sf.chunk_count(size)
    inbuf, plain, out = (bytearray(sf.CHUNK + sf.TAG), bytearray(sf.CHUNK),
                         bytearray(sf.CHUNK + sf.TAG))
    read = sf.fd_reader(fin)
    for index in range(chunks):
        n = sf.fill(read, memoryview(inbuf))
        final = index == chunks - 1
        m = opener.open_into(index, final, memoryview(inbuf)[:n], plain)
        if m < 0:
            raise sf.TamperedError(f"chunk {index} fails authentication")
        k = sealer.seal_into(index, final, memoryview(plain)[:m], out)
        write(memoryview(out)[:k])


def rotate(root: str | os.PathLike[str], name: str, *, timeout: float = 10.0
           ) -> dict[str, Any]:
    """Move an area to a new key generation without losing a byte (see the module's
    docstring); resumes an interrupted rotation. Returns what was done."""
    path = exo_path(name)
    master, _ = master_key(root)
    reg = load(root)
    if path not in reg["areas"]:
        raise AreaError(f"storage://{path} is not an encrypted area")
    entry = reg["areas"][path]
    try:
        lock = lock_area(root, entry["id"], exclusive=True, timeout=timeout)
    except BlockingIOError as exc:
        raise AreaError(f"storage://{path}: {exc.strerror}") from None
    try:
        with registry_lock(root):
            reg = load(root)
            entry = reg["areas"][path]
            resumed = entry.get("next") is not None
            if not resumed:
                entry["next"] = int(entry["generation"]) + 1
                save(root, reg)
        crash_point("marked")
        old, new = int(entry["generation"]), int(entry["next"])
        old_key, new_key = area_key(master, entry, old), area_key(master, entry, new)
        dir_fd = _open_area_dir(root, path)
        done = skipped = 0
        try:
            removed = remove_temporaries(dir_fd)
            for fd, fname, rel in files(dir_fd):  # fd: valid only during its step
                if _reseal_one(fd, fname, rel, path, old, new, old_key, new_key):
                    done += 1
                else:
                    skipped += 1
            _fsync_tree(dir_fd)
        finally:
            os.close(dir_fd)
        crash_point("files-done")
        with registry_lock(root):
            reg = load(root)
            entry = reg["areas"][path]
            entry["generation"], entry["next"] = new, None
            save(root, reg)
    finally:
        os.close(lock)
    return {"path": path, "generation": new, "resealed": done, "already": skipped,
            "resumed": resumed, "temporaries_removed": removed}


def _reseal_one(dir_fd: int, name: str, rel: str, area: str, old: int, new: int,
                old_key: bytes, new_key: bytes) -> bool:
    """Re-seal one file from ``old`` to ``new``; False when it already is at ``new``."""
    fin = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        head = os.pread(fin, sf.HEADER, 0)
        try:
            kid = sf.parse_header(head)
        except sf.TamperedError:
            raise AreaError(f"storage://{area}/{rel}: not a sealed file (tampered): "
                            "rotation stopped, nothing lost; run it again once it is "
                            "restored or removed") from None
        if kid == new:
            return False
        if kid != old:
            raise AreaError(f"storage://{area}/{rel}: sealed under generation {kid}, not "
                            f"{old} or {new} (tampered): rotation stopped, nothing lost")
        tmp = TMP_PREFIX + os.urandom(6).hex()
        fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                       dir_fd=dir_fd)
        try:
            try:
                reseal(old_key, new_key, new, fin, fout)
            except sf.TamperedError as exc:
                raise AreaError(f"storage://{area}/{rel}: {exc} (tampered): rotation "
                                "stopped, nothing lost") from None
            os.fsync(fout)
        except BaseException:
            os.close(fout)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        os.close(fout)
        crash_point("file-written")
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
        crash_point("file-renamed")
        return True
    finally:
        os.close(fin)


def read_file(root: str | os.PathLike[str], name: str) -> bytes:
    """The plaintext of one file of an area, read offline (host side, with the master
    key): ``TamperedError`` when it fails authentication."""
    path = exo_path(name)
    reg = load(root)
    hit = find(reg["areas"], path)
    if hit is None:
        raise AreaError(f"storage://{path} is not in an encrypted area")
    master, _ = master_key(root)
    return read_sealed(master, hit[1], _dir_of(root, path))


def read_sealed(master: bytes, entry: dict[str, Any], path: Path) -> bytes:
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size > max_file_bytes() + (max_file_bytes() >> 10):
            raise sf.TamperedError(f"larger than an area file may be ({MAX_FILE_ENV})")
        data = f.read()
    key = key_for(master, entry, data[:sf.HEADER])
    out = bytearray()
    pos = sf.HEADER
    view = memoryview(data)

    def read_into(buf: memoryview) -> int:
        nonlocal pos
        n = min(len(buf), len(data) - pos)
        buf[:n] = view[pos:pos + n]
        pos += n
        return n

    sf.open_stream(key, read_into, lambda v: out.extend(v), len(data), data[:sf.HEADER])
    return bytes(out)


def verify(root: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """Authenticate every file of an area: which are intact, which are not."""
    path = exo_path(name)
    reg = load(root)
    if path not in reg["areas"]:
        raise AreaError(f"storage://{path} is not an encrypted area")
    entry = reg["areas"][path]
    master, _ = master_key(root)
    ok: list[str] = []
    bad: dict[str, str] = {}
    dir_fd = _open_area_dir(root, path)
    try:
        for _fd, _name, rel in files(dir_fd):
            try:
                read_sealed(master, entry, _dir_of(root, path) / rel)
                ok.append(rel)
            except sf.TamperedError as exc:
                bad[rel] = str(exc)
    finally:
        os.close(dir_fd)
    return {"path": path, "generation": entry["generation"], "rotating": entry.get("next"),
            "intact": ok, "tampered": bad}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(dir_fd: int) -> None:
    for _top, _dirs, _names, fd in os.fwalk(".", dir_fd=dir_fd, follow_symlinks=False):
        os.fsync(fd)


def write_file(root: str | os.PathLike[str], name: str, data: bytes) -> None:
    """Seal ``data`` as one file of an area, from the host side (an administrator's
    import; apps write through the kernel): temporary file, fsync, rename."""
    path = exo_path(name)
    reg = load(root)
    hit = find(reg["areas"], path)
    if hit is None or hit[0] == path:
        raise AreaError(f"storage://{path} is not a file in an encrypted area")
    area, entry = hit
    master, _ = master_key(root)
    lock = lock_area(root, entry["id"], exclusive=False, timeout=10.0)
    try:
        entry = load(root)["areas"][area]
        generation = int(entry["generation"])
        key = area_key(master, entry, generation)
        parent, _, fname = path.rpartition("/")
        dir_fd = _open_area_dir(root, parent)
        try:
            tmp = TMP_PREFIX + os.urandom(6).hex()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600,
                         dir_fd=dir_fd)
            try:
                pos = 0
                view = memoryview(data)

                def read_into(buf: memoryview) -> int:
                    nonlocal pos
                    n = min(len(buf), len(data) - pos)
                    buf[:n] = view[pos:pos + n]
                    pos += n
                    return n

                sf.seal_stream(key, sf.new_header(generation), read_into,
                               sf.fd_writer(fd, write_behind=True))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, fname, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        os.close(lock)


def status(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every area: path, label, generation, rotation under way, file count."""
    reg = load(root)
    rows = []
    for path, entry in sorted(reg["areas"].items()):
        try:
            dir_fd = _open_area_dir(root, path)
        except OSError:
            count = None
        else:
            try:
                count = sum(1 for _ in files(dir_fd))
            finally:
                os.close(dir_fd)
        rows.append({"path": path, "label": entry["label"], "generation": entry["generation"],
                     "rotating_to": entry.get("next"), "files": count,
                     "master": reg.get("master")})
    return rows
