"""TPM 2.0: swtpm's lifecycle, measured boot (PCR extend + event log), quotes, sealing.

Two ways to talk to the TPM, on purpose:

* the boot measurement (reset, extend, read one PCR) speaks the TPM 2.0 command protocol
  itself over the swtpm TCP port or ``/dev/tpmrm0``: three fixed commands, a few
  hundred bytes, no library. tpm2-pytss costs ~100 ms to import, five times the budget
  measuring may add to a boot;
* quotes and sealing (commands a person runs) use tpm2-pytss (ESAPI), imported inside
  the functions.

The measured PCR is ``PCR`` (23, "application support"): the Exo kernel is a process,
so each kernel boot is a new measured session and resets it (PCR 23 is resettable from
locality 0). That is what lets a secret sealed at one boot unseal at the next boot of the
same code; the price is that anyone who can send commands to the TPM can reset it and
replay good measurements (docs/security.md, "what is left").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

#: The PCR the kernel and its subsystems are measured into.
PCR = 23
#: The PCR the kernel anchors the audit chain's head in (``auditchain.Anchors``).
AUDIT_PCR = 16
ZERO = bytes(32)
HOST = "127.0.0.1"
DEVICE = "/dev/tpmrm0"
#: Set to "off" to boot without measuring (the benchmark's unmeasured boot).
ENV_SWITCH = "EXO_TPM"
QUOTE_VERSION = 1


class TpmError(Exception):
    """A TPM operation failed; the message is one line meant for the user."""


class VerifyError(TpmError):
    """A quote does not verify; the message says why, in one line."""


class UnsealError(TpmError):
    """A sealed secret cannot be unsealed (the PCR policy no longer holds)."""


# ----------------------------------------------------------------------------- paths


class Paths:
    """Where the TPM's pieces live under the Exo tree."""

    __slots__ = ("ak_pub", "digests", "event_log", "info", "root", "run", "sealed", "state",
                 "swtpm_log")

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.run = self.root / "var" / "run"
        self.state = self.root / "var" / "lib" / "tpm"
        self.info = self.run / "swtpm.json"  # pid and ports of the running swtpm
        self.swtpm_log = self.root / "var" / "log" / "swtpm.log"
        self.event_log = self.root / "var" / "log" / "measurements.jsonl"
        self.ak_pub = self.state / "ak.pub.pem"  # the attestation key's public half
        self.sealed = self.root / "var" / "lib" / "sealed"
        self.digests = self.state / "digests.json"  # DigestCache


# ------------------------------------------------------------------------- locating


class Location:
    """How to reach a TPM: ``kind`` is "hardware" or "swtpm"."""

    __slots__ = ("kind", "path", "port")

    def __init__(self, kind: str, *, port: int = 0, path: str = "") -> None:
        self.kind = kind
        self.port = port
        self.path = path

    @property
    def tcti(self) -> str:
        """The tpm2-tss TCTI string for this TPM."""
        if self.kind == "hardware":
            return f"device:{self.path}"
        return f"swtpm:host={HOST},port={self.port}"

    def describe(self) -> str:
        return f"hardware TPM {self.path}" if self.kind == "hardware" \
            else f"swtpm on {HOST}:{self.port}"


def locate(root: str | os.PathLike[str]) -> Location | None:
    """The TPM to use: a hardware one when ``/dev/tpmrm0`` exists, else the swtpm that
    ``exo tpm start`` left running for this tree, else None."""
    if os.environ.get(ENV_SWITCH, "").lower() == "off":
        return None
    if os.path.exists(DEVICE):
        return Location("hardware", path=DEVICE)
    info = swtpm_info(root)
    if info is None:
        return None
    return Location("swtpm", port=int(info["port"]))


# --------------------------------------------------------------------- swtpm process


def swtpm_info(root: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The running swtpm of this tree (pid, ports), or None when none is alive."""
    paths = Paths(root)
    try:
        info: dict[str, Any] = json.loads(paths.info.read_text())
    except (OSError, ValueError):
        return None
    pid = int(info.get("pid", 0))
    if pid <= 0 or not _is_our_swtpm(pid, paths):
        return None
    return info


def _is_our_swtpm(pid: int, paths: Paths) -> bool:
    """Whether ``pid`` is a swtpm serving this tree's state (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and cmdline[0].endswith(b"swtpm") and \
        any(str(paths.state).encode() in arg for arg in cmdline)


def _free_port_pair() -> int:
    """A port P with P and P+1 free on loopback: the swtpm TCTI expects the control port
    right after the command port."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port: int = s.getsockname()[1]
        if port >= 65535:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s2:
                s2.bind((HOST, port + 1))
        except OSError:
            continue
        return port
    raise TpmError("no two consecutive free loopback ports for swtpm")


def start_swtpm(root: str | os.PathLike[str], timeout: float = 5.0, *,
                ek_cert: bool = False) -> dict[str, Any]:
    """Start swtpm for this tree (state under var/lib/tpm, loopback TCP only) unless one
    already runs; returns its info. The TPM is powered on and started (Startup CLEAR).
    ``ek_cert``: a TPM state made now is first manufactured with EK certificates signed by
    the tree's local CA (``ekcert.manufacture``; an existing state is kept as it is)."""
    import shutil
    import subprocess

    running = swtpm_info(root)
    if running is not None:
        return running
    if shutil.which("swtpm") is None:
        raise TpmError("swtpm is not installed (Debian package swtpm)")
    paths = Paths(root)
    for d in (paths.run, paths.state, paths.swtpm_log.parent):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.state, 0o700)
    if ek_cert and not (paths.state / "tpm2-00.permall").exists():
        from exo.security import ekcert

        ekcert.manufacture(root, paths.state)
    pidfile = paths.run / "swtpm.pid"
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    last = ""
    for _attempt in range(5):  # a port taken between probing and binding: try others
        port = _free_port_pair()
        ctrl = port + 1
        cmd = ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={paths.state}",
               "--server", f"type=tcp,port={port},bindaddr={HOST}",
               "--ctrl", f"type=tcp,port={ctrl},bindaddr={HOST}",
               "--flags", "not-need-init,startup-clear",
               "--pid", f"file={pidfile}", "--log", f"file={paths.swtpm_log},level=1",
               "--daemon"]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
            continue
        pid = _wait_pidfile(pidfile, timeout)
        info = {"pid": pid, "port": port, "ctrl": ctrl, "state": str(paths.state),
                "started": time.time()}
        _wait_port(port, timeout)
        tmp = paths.info.with_suffix(".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, paths.info)
        return info
    raise TpmError(f"swtpm did not start: {last}")


def _wait_pidfile(pidfile: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(pidfile.read_text().strip())
        time.sleep(0.005)
    raise TpmError("swtpm started but wrote no pid file")


def _wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TpmError(f"swtpm does not answer on {HOST}:{port}") from None
            time.sleep(0.005)


def stop_swtpm(root: str | os.PathLike[str], timeout: float = 5.0) -> bool:
    """Stop this tree's swtpm (SIGTERM, then SIGKILL); False when none was running.
    Its state (the TPM's seeds, hence its keys) stays under var/lib/tpm."""
    paths = Paths(root)
    info = swtpm_info(root)
    with contextlib.suppress(FileNotFoundError):
        paths.info.unlink()
    if info is None:
        return False
    pid = int(info["pid"])
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _is_our_swtpm(pid, paths):
                return True
            _reap(pid)
            time.sleep(0.01)
    return True


def _reap(pid: int) -> None:
    """Collect ``pid`` if it happens to be our child (it is not when daemonised)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


# ---------------------------------------------------------- the raw command protocol

_ST_NO_SESSIONS, _ST_SESSIONS = 0x8001, 0x8002
_CC_PCR_RESET, _CC_PCR_EXTEND, _CC_PCR_READ = 0x13D, 0x182, 0x17E
_RS_PW = 0x40000009
_ALG_SHA256 = 0x000B
_CC_POLICY_PCR, _CC_POLICY_OR = 0x17F, 0x171
MAX_BRANCHES = 8  # TPM2_PolicyOR takes 2 to 8 digests
# an empty password authorisation: handle, nonce size 0, attributes 0, hmac size 0
_PW_AUTH = struct.pack(">IHBH", _RS_PW, 0, 0, 0)


class RawTpm:
    """Just enough of the TPM 2.0 command protocol for measuring: PCR reset, extend, read.

    One connection per use: swtpm serves one client at a time."""

    def __init__(self, location: Location, timeout: float = 5.0) -> None:
        self._sock: socket.socket | None = None
        self._fd = -1
        if location.kind == "hardware":
            self._fd = os.open(location.path, os.O_RDWR)
        else:
            self._sock = socket.create_connection((HOST, location.port), timeout=timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RawTpm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transact(self, tag: int, cc: int, body: bytes) -> bytes:
        cmd = struct.pack(">HII", tag, 10 + len(body), cc) + body
        if self._sock is not None:
            self._sock.sendall(cmd)
            resp = self._recv_exact(10)
            _tag, size, rc = struct.unpack(">HII", resp)
            resp += self._recv_exact(size - 10)
        else:
            os.write(self._fd, cmd)
            resp = os.read(self._fd, 4096)
            _tag, size, rc = struct.unpack(">HII", resp[:10])
        if rc != 0:
            raise TpmError(f"TPM command 0x{cc:x} failed: response code 0x{rc:x}")
        return resp[10:]

    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        buf = b""
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise TpmError("the TPM closed the connection")
            buf += chunk
        return buf

    def pcr_reset(self, pcr: int) -> None:
        self._transact(_ST_SESSIONS, _CC_PCR_RESET,
                       struct.pack(">II", pcr, len(_PW_AUTH)) + _PW_AUTH)

    def pcr_extend(self, pcr: int, digest: bytes) -> None:
        if len(digest) != 32:
            raise ValueError("a SHA-256 digest is 32 bytes")
        body = struct.pack(">II", pcr, len(_PW_AUTH)) + _PW_AUTH + \
            struct.pack(">IH", 1, _ALG_SHA256) + digest
        self._transact(_ST_SESSIONS, _CC_PCR_EXTEND, body)

    def pcr_read(self, pcr: int) -> bytes:
        select = bytearray(3)
        select[pcr // 8] |= 1 << (pcr % 8)
        resp = self._transact(_ST_NO_SESSIONS, _CC_PCR_READ,
                              struct.pack(">IHB", 1, _ALG_SHA256, 3) + bytes(select))
        # update counter, the selection echoed (count, alg, size, bitmap), then digests
        off = 4
        (count,) = struct.unpack_from(">I", resp, off)
        off += 4
        for _ in range(count):
            _alg, size = struct.unpack_from(">HB", resp, off)
            off += 3 + size
        (ndigests,) = struct.unpack_from(">I", resp, off)
        off += 4
        if ndigests != 1:
            raise TpmError(f"PCR {pcr} (SHA-256) is not allocated on this TPM")
        (size,) = struct.unpack_from(">H", resp, off)
        return bytes(resp[off + 2:off + 2 + size])


# ------------------------------------------------------------------ the event log


def extend(pcr_value: bytes, digest: bytes) -> bytes:
    """What TPM2_PCR_Extend computes (SHA-256 bank)."""
    return hashlib.sha256(pcr_value + digest).digest()


def replay(events: Iterable[dict[str, Any]], pcr: int = PCR) -> bytes:
    """The PCR value an event log leads to, from a reset PCR (all zeros)."""
    value = ZERO
    for ev in events:
        if ev.get("pcr") == pcr:
            value = extend(value, bytes.fromhex(str(ev["digest"])))
    return value


def read_event_log(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of the current boot's measurement, oldest first ([] when none)."""
    try:
        text = Paths(root).event_log.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _file_digest(path: str | os.PathLike[str], cache: DigestCache | None = None) -> bytes:
    if cache is not None:
        return cache.digest(path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).digest()


class DigestCache:
    """File digests kept between boots, each valid while its file is unchanged (the way
    IMA measures a file once until it changes).

    A file's entry holds its (device, inode, size, mtime_ns, ctime_ns) when it was hashed;
    any difference re-hashes it. ``ctime`` is in the key because ``utime`` can put a
    file's ``mtime`` back after a change but nothing short of changing the clock can set
    ``ctime``; a file replaced by another (a new inode) is re-hashed too. The cache only
    saves hashing: every component is still extended and logged at every boot. It lives
    in ``var/lib/tpm/digests.json`` (the 0700 TPM state directory, the kernel's own): whoever
    can rewrite it can already reset PCR 23 (see security.md, What is left)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.hits = self.misses = 0
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        try:
            data = json.loads(self.path.read_text())
            if isinstance(data, dict) and data.get("version") == 1:
                self._entries = {k: v for k, v in data.get("files", {}).items()
                                 if isinstance(v, list) and len(v) == 6}
        except (OSError, ValueError):
            pass  # no cache yet, or unreadable: hash everything

    def digest(self, path: str | os.PathLike[str]) -> bytes:
        name = os.fspath(path)
        entry = self._entries.get(name)
        if entry is not None and entry[:5] == _stat_key(os.stat(name)):
            self.hits += 1
            return bytes.fromhex(entry[5])
        with open(name, "rb") as f:  # the key of what is read, not of what was stat'ed
            key = _stat_key(os.fstat(f.fileno()))
            digest = hashlib.sha256(f.read()).digest()
            if _stat_key(os.fstat(f.fileno())) != key:
                return digest  # changed while read: right for this boot, not cached
        self.misses += 1
        self._entries[name] = [*key, digest.hex()]
        self._dirty = True
        return digest

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": 1, "files": self._entries},
                                  separators=(",", ":")))
        os.replace(tmp, self.path)
        self._dirty = False


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def tree_digest(directory: str | os.PathLike[str], cache: DigestCache | None = None) -> bytes:
    """One digest for a source tree: every ``.py`` file's relative path and content hash,
    in sorted order (the same tree gives the same digest wherever it is installed)."""
    base = os.fspath(directory)
    h = hashlib.sha256()
    for top, dirs, files in os.walk(base):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        rel = os.path.relpath(top, base)
        for name in sorted(files):
            if name.endswith(".py"):
                h.update((name if rel == "." else f"{rel}/{name}").encode() + b"\0")
                h.update(_file_digest(os.path.join(top, name), cache))
    return h.digest()


def module_digest(module_file: str, cache: DigestCache | None = None) -> bytes:
    """A component's digest: its source file's SHA-256."""
    return _file_digest(module_file, cache)


def measure(root: str | os.PathLike[str], components: Iterable[tuple[str, str, bytes]],
            location: Location | None, *, boot_id: str = "",
            also_reset: Iterable[int] = ()) -> tuple[int, bytes]:
    """Record ``(kind, name, digest)`` components in a fresh event log and, when a TPM is
    given, reset ``PCR`` and extend each digest into it. Returns (count, PCR value).
    ``also_reset``: other PCRs to reset on the same connection (the audit anchors'),
    which saves a connection to the TPM per boot.

    The log is written either way (DESIGN.md: kept in an event log whether or not a TPM is
    present); each line says whether it reached a TPM."""
    paths = Paths(root)
    paths.event_log.parent.mkdir(parents=True, exist_ok=True)
    tpm = RawTpm(location) if location is not None else None
    lines: list[str] = []
    value = ZERO
    try:
        if tpm is not None:
            for other in also_reset:
                tpm.pcr_reset(other)
            tpm.pcr_reset(PCR)
        for seq, (kind, name, digest) in enumerate(components):
            if tpm is not None:
                tpm.pcr_extend(PCR, digest)
            value = extend(value, digest)
            lines.append(json.dumps({
                "seq": seq, "pcr": PCR, "kind": kind, "name": name, "digest": digest.hex(),
                "boot_id": boot_id, "tpm": location.kind if location else None,
            }, separators=(",", ":")))
        if tpm is not None:
            actual = tpm.pcr_read(PCR)
            if actual != value:
                raise TpmError(f"PCR {PCR} reads {actual.hex()[:16]}… after measuring, "
                               f"the event log replays to {value.hex()[:16]}…")
    finally:
        if tpm is not None:
            tpm.close()
        tmp = paths.event_log.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, paths.event_log)
    return len(lines), value


_append_lock = threading.Lock()


def measure_more(root: str | os.PathLike[str], kind: str, name: str, digest: bytes, *,
                 boot_id: str = "") -> tuple[int, str | None]:
    """Append one component loaded after boot (a module) to this boot's event log and,
    when a TPM is reachable, extend it into ``PCR`` too, so the log still replays to the
    PCR. Returns (its sequence number, the TPM kind or None when there is none)."""
    paths = Paths(root)
    location = locate(root)
    with _append_lock:
        seq = len(read_event_log(root))
        if location is not None:
            tpm = RawTpm(location)
            try:
                tpm.pcr_extend(PCR, digest)
            finally:
                tpm.close()
        paths.event_log.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"seq": seq, "pcr": PCR, "kind": kind, "name": name,
                           "digest": digest.hex(), "boot_id": boot_id,
                           "tpm": location.kind if location else None},
                          separators=(",", ":"))
        with open(paths.event_log, "a") as f:
            f.write(line + "\n")
    return seq, location.kind if location else None


def read_pcr(location: Location, pcr: int = PCR) -> bytes:
    with RawTpm(location) as tpm:
        return tpm.pcr_read(pcr)


# --------------------------------------------------------------- tpm2-pytss (ESAPI)


@contextlib.contextmanager
def esapi(location: Location) -> Iterator[Any]:
    """An ESAPI context on ``location``, finalised after use; the TSS's own stderr
    logging is silenced (errors come back as exceptions, reported in one line)."""
    os.environ.setdefault("TSS2_LOG", "all+NONE")
    from tpm2_pytss import ESAPI

    ctx = ESAPI(location.tcti)
    try:
        yield ctx
    finally:
        ctx.close()


def _ak_template() -> Any:
    """A restricted ECDSA P-256 signing key: the attestation key. A primary key under the
    endorsement hierarchy is re-derived identically from the TPM's seed every time, so it
    need not be stored."""
    from tpm2_pytss import TPM2B_PUBLIC, TPMA_OBJECT

    attrs = (TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.SIGN_ENCRYPT | TPMA_OBJECT.FIXEDTPM
             | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
             | TPMA_OBJECT.USERWITHAUTH)
    return TPM2B_PUBLIC.parse("ecc256:ecdsa-sha256:null", objectAttributes=attrs)


def _srk_template() -> Any:
    from tpm2_pytss import TPM2B_PUBLIC, TPMA_OBJECT

    attrs = (TPMA_OBJECT.RESTRICTED | TPMA_OBJECT.DECRYPT | TPMA_OBJECT.FIXEDTPM
             | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.SENSITIVEDATAORIGIN
             | TPMA_OBJECT.USERWITHAUTH | TPMA_OBJECT.NODA)
    return TPM2B_PUBLIC.parse("ecc256:aes128cfb", objectAttributes=attrs)


def attestation_key_pem(location: Location) -> str:
    """The attestation key's public half (PEM); saved beside the TPM state so a local
    verifier can trust it (a remote one gets it through its policy file)."""
    from tpm2_pytss import ESYS_TR

    with esapi(location) as ctx:
        handle, public, *_ = ctx.create_primary(None, _ak_template(), ESYS_TR.ENDORSEMENT)
        ctx.flush_context(handle)
    pem: bytes = public.to_pem()
    return pem.decode()


def quote(root: str | os.PathLike[str], nonce: bytes) -> dict[str, Any]:
    """A signed quote of ``AUDIT_PCR`` and ``PCR`` over ``nonce``, with the measured-boot
    event log, the audit anchors and the attestation key's public half: what a verifier
    needs (``verify_quote``)."""
    from tpm2_pytss import ESYS_TR, TPML_PCR_SELECTION, TSS2_Exception

    from exo.security.auditchain import read_anchors

    location = locate(root)
    if location is None:
        raise TpmError("no TPM: /dev/tpmrm0 absent and swtpm not running (exo tpm start)")
    if not 1 <= len(nonce) <= 32:
        raise TpmError("the nonce must be 1 to 32 bytes")
    try:
        with esapi(location) as ctx:
            handle, public, *_ = ctx.create_primary(None, _ak_template(), ESYS_TR.ENDORSEMENT)
            try:
                attest, sig = ctx.quote(
                    handle, TPML_PCR_SELECTION.parse(f"sha256:{AUDIT_PCR},{PCR}"), nonce)
            finally:
                ctx.flush_context(handle)
    except TSS2_Exception as exc:
        raise TpmError(f"quote failed: {exc}") from None
    ak_pem = public.to_pem().decode()
    from exo.security import ekcert

    try:
        ek_der = ekcert.read(location)
    except TSS2_Exception:
        ek_der = None
    paths = Paths(root)
    paths.state.mkdir(parents=True, exist_ok=True)
    if not paths.ak_pub.exists():
        paths.ak_pub.write_text(ak_pem)
    return {
        "version": QUOTE_VERSION, "pcr": PCR, "pcrs": [AUDIT_PCR, PCR], "hash": "sha256",
        "tpm": location.kind,
        "nonce": nonce.hex(), "attest": bytes(attest).hex(),
        "signature": {"alg": "ecdsa-p256-sha256",
                      "r": bytes(sig.signature.ecdsa.signatureR).hex(),
                      "s": bytes(sig.signature.ecdsa.signatureS).hex()},
        "ak_public": ak_pem, "ak_tpm_public": bytes(public.marshal()).hex(),
        "ek_certificate": ekcert.to_pem(ek_der) if ek_der else None,
        "event_log": read_event_log(root),
        "audit_anchors": read_anchors(root),
    }


def verify_quote(doc: dict[str, Any], nonce: bytes, *, trusted_ak_pem: str,
                 policy: dict[str, Any] | None = None) -> bytes:
    """Check a quote as a remote verifier would; returns the attested PCR value.

    In order: the signature by the trusted attestation key over the attestation
    structure; that it is a quote; the nonce (a stale or replayed quote fails); that it
    covers exactly PCRs ``AUDIT_PCR`` and ``PCR``; that the event log and the audit anchors
    replay to the quoted PCR digest (a forged log fails); with a policy, that every
    measured component is one the policy expects. Raises ``VerifyError``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from tpm2_pytss import TPM2_ALG, TPM2_ST, TPMS_ATTEST

    try:
        if int(doc.get("version", 0)) != QUOTE_VERSION:
            raise VerifyError(f"unknown quote format version {doc.get('version')!r}")
        attest_bytes = bytes.fromhex(doc["attest"])
        r = int.from_bytes(bytes.fromhex(doc["signature"]["r"]), "big")
        s = int.from_bytes(bytes.fromhex(doc["signature"]["s"]), "big")
        events = list(doc["event_log"])
        anchors = list(doc.get("audit_anchors", []))
        pcr = int(doc["pcr"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VerifyError(f"malformed quote file ({type(exc).__name__}: {exc})") from None
    key = serialization.load_pem_public_key(trusted_ak_pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerifyError("the trusted attestation key is not an EC key")
    if doc.get("ak_public", "").strip() != trusted_ak_pem.strip():
        raise VerifyError("the quote was made by an attestation key this verifier "
                          "does not trust")
    try:
        key.verify(encode_dss_signature(r, s), attest_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerifyError("bad signature: the quote was not signed by the trusted "
                          "attestation key") from None
    try:
        attest, _ = TPMS_ATTEST.unmarshal(attest_bytes)
    except Exception as exc:  # a library parse error of any kind: reject, in one line
        raise VerifyError(f"malformed attestation structure: {exc}") from None
    if attest.type != TPM2_ST.ATTEST_QUOTE:
        raise VerifyError("the signed structure is not a quote")
    if bytes(attest.extraData) != nonce:
        raise VerifyError("nonce mismatch: the quote is stale or was made for "
                          "another challenge")
    selections = attest.attested.quote.pcrSelect
    wanted = bytearray(3)
    for index in (AUDIT_PCR, PCR):
        wanted[index // 8] |= 1 << (index % 8)
    if len(selections) != 1 or pcr != PCR or int(selections[0].hash) != TPM2_ALG.SHA256 or \
            bytes(selections[0].pcrSelect)[:selections[0].sizeofSelect] != bytes(wanted):
        raise VerifyError(f"the quote does not cover exactly PCRs {AUDIT_PCR} and {PCR} "
                          "(SHA-256)")
    value = replay(events, pcr)
    audit_value = replay(anchors, AUDIT_PCR)
    if hashlib.sha256(audit_value + value).digest() != bytes(attest.attested.quote.pcrDigest):
        raise VerifyError(f"the event log and audit anchors do not replay to the quoted PCRs "
                          f"{AUDIT_PCR} and {pcr} (forged or incomplete log)")
    if policy is not None:
        if policy.get("ek_ca"):
            from exo.security import ekcert

            if not doc.get("ek_certificate"):
                raise VerifyError("the policy requires an EK certificate and the quote has "
                                  "none (a TPM without one)")
            ekcert.check_chain(str(doc["ek_certificate"]), str(policy["ek_ca"]))
        check_policy(events, policy)
    return value


def check_policy(events: list[dict[str, Any]], policy: dict[str, Any]) -> None:
    """A policy maps component names to their expected digests (``{"components":
    {name: hex}}``); each event must match, and each listed component must be present."""
    expected: dict[str, str] = dict(policy.get("components", {}))
    seen: set[str] = set()
    for ev in events:
        name, digest = str(ev.get("name")), str(ev.get("digest"))
        seen.add(name)
        if name not in expected:
            raise VerifyError(f"component {name!r} is not in the policy")
        if expected[name] != digest:
            raise VerifyError(f"component {name!r} has digest {digest[:16]}…, the policy "
                              f"expects {expected[name][:16]}…")
    missing = sorted(set(expected) - seen)
    if missing:
        raise VerifyError(f"components expected by the policy were not measured: "
                          f"{', '.join(missing)}")


def policy_from_log(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A policy accepting exactly the components measured now (a golden image)."""
    return {"version": 1, "pcr": PCR,
            "components": {str(ev["name"]): str(ev["digest"]) for ev in events}}


# ----------------------------------------------------------------------- sealing


def _pcr_policy_session(ctx: Any, trial: bool) -> Any:
    from tpm2_pytss import ESYS_TR, TPM2_ALG, TPM2_SE, TPML_PCR_SELECTION, TPMT_SYM_DEF

    session = ctx.start_auth_session(ESYS_TR.NONE, ESYS_TR.NONE,
                                      TPM2_SE.TRIAL if trial else TPM2_SE.POLICY,
                                      TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL), TPM2_ALG.SHA256)
    ctx.policy_pcr(session, None, TPML_PCR_SELECTION.parse(f"sha256:{PCR}"))
    return session


def _pcr_selection() -> bytes:
    """TPML_PCR_SELECTION for ``PCR`` in the SHA-256 bank, marshalled."""
    select = bytearray(3)
    select[PCR // 8] |= 1 << (PCR % 8)
    return struct.pack(">IHB", 1, _ALG_SHA256, 3) + bytes(select)


def pcr_policy_digest(value: bytes) -> bytes:
    """The policy digest of ``TPM2_PolicyPCR(sha256:PCR)`` satisfied while ``PCR`` holds
    ``value`` (TPM 2.0 part 3, 23.7: H(0…0 ‖ TPM_CC_PolicyPCR ‖ selection ‖ H(value)))."""
    return hashlib.sha256(ZERO + struct.pack(">I", _CC_POLICY_PCR) + _pcr_selection()
                          + hashlib.sha256(value).digest()).digest()


def or_policy_digest(branches: list[bytes]) -> bytes:
    """The policy digest of ``TPM2_PolicyOR(branches)`` (part 3, 23.6)."""
    return hashlib.sha256(ZERO + struct.pack(">I", _CC_POLICY_OR) + b"".join(branches)
                          ).digest()


def seal(root: str | os.PathLike[str], name: str, secret: bytes, *,
         pcr_values: list[bytes] | None = None) -> Path:
    """Seal ``secret`` (≤ 128 bytes) to the current value of ``PCR``: the TPM releases it
    only while the same components are measured. Returns the sealed blob's file.

    ``pcr_values``: seal to these values of ``PCR`` instead (any one of them unseals:
    ``TPM2_PolicyOR`` of one ``TPM2_PolicyPCR`` branch each), e.g. the running kernel's
    and the one an update will boot (``reseal``). The blob is replaced atomically."""
    from tpm2_pytss import (
        ESYS_TR,
        TPM2_ALG,
        TPM2B_PUBLIC,
        TPM2B_SENSITIVE_CREATE,
        TPM2B_SENSITIVE_DATA,
        TPMA_OBJECT,
        TPMS_SENSITIVE_CREATE,
        TPMT_PUBLIC,
    )

    _check_name(name)
    if not 1 <= len(secret) <= 128:
        raise TpmError("a sealed secret is 1 to 128 bytes")
    values = list(dict.fromkeys(pcr_values or []))  # distinct, in order
    if len(values) > MAX_BRANCHES or any(len(v) != 32 for v in values):
        raise TpmError(f"seal to 1 to {MAX_BRANCHES} SHA-256 PCR values")
    location = _require(root)
    with esapi(location) as ctx:
        if values:
            branches = [pcr_policy_digest(v) for v in values]
            digest: Any = branches[0] if len(branches) == 1 else or_policy_digest(branches)
        else:
            trial = _pcr_policy_session(ctx, trial=True)
            try:
                digest = ctx.policy_get_digest(trial)
            finally:
                ctx.flush_context(trial)
        public = TPM2B_PUBLIC(TPMT_PUBLIC(
            type=TPM2_ALG.KEYEDHASH, nameAlg=TPM2_ALG.SHA256, authPolicy=digest,
            objectAttributes=TPMA_OBJECT.FIXEDTPM | TPMA_OBJECT.FIXEDPARENT | TPMA_OBJECT.NODA))
        public.publicArea.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG.NULL
        sensitive = TPM2B_SENSITIVE_CREATE(TPMS_SENSITIVE_CREATE(
            data=TPM2B_SENSITIVE_DATA(secret)))
        srk, *_ = ctx.create_primary(None, _srk_template(), ESYS_TR.OWNER)
        try:
            private, out_public, *_ = ctx.create(srk, sensitive, public)
        finally:
            ctx.flush_context(srk)
    paths = Paths(root)
    paths.sealed.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.sealed, 0o700)
    out = paths.sealed / f"{name}.json"
    doc: dict[str, Any] = {"version": 1, "pcr": PCR, "public": out_public.marshal().hex(),
                           "private": private.marshal().hex()}
    if values:
        doc.update(version=2, pcr_values=[v.hex() for v in values])
    # atomic and durable: a crash while re-sealing must leave the old blob or the new one
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(doc).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, out)
    dfd = os.open(paths.sealed, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return out


def sealed_values(root: str | os.PathLike[str], name: str) -> list[bytes] | None:
    """The PCR values ``name`` is sealed to (None: a version-1 blob, sealed to the value
    the PCR had then, which the blob does not record)."""
    _check_name(name)
    try:
        blob = json.loads((Paths(root).sealed / f"{name}.json").read_text())
    except FileNotFoundError:
        raise TpmError(f"nothing sealed as {name!r}") from None
    if blob.get("version") == 2:
        return [bytes.fromhex(v) for v in blob["pcr_values"]]
    return None


def unseal(root: str | os.PathLike[str], name: str) -> bytes:
    """The secret sealed as ``name``; ``UnsealError`` when the PCR no longer matches."""
    from tpm2_pytss import (
        ESYS_TR,
        TPM2_RC,
        TPM2B_DIGEST,
        TPM2B_PRIVATE,
        TPM2B_PUBLIC,
        TPML_DIGEST,
        TSS2_Exception,
    )

    _check_name(name)
    path = Paths(root).sealed / f"{name}.json"
    try:
        blob = json.loads(path.read_text())
    except FileNotFoundError:
        raise TpmError(f"nothing sealed as {name!r}") from None
    values = [bytes.fromhex(v) for v in blob.get("pcr_values", [])]
    location = _require(root)
    refused = UnsealError(
        f"unseal refused: PCR {PCR} no longer has the value {name!r} was sealed to (a "
        f"measured component changed; after an update, `exo tpm reseal {name}` before "
        "rebooting)")
    with esapi(location) as ctx:
        srk, *_ = ctx.create_primary(None, _srk_template(), ESYS_TR.OWNER)
        try:
            handle = ctx.load(srk, TPM2B_PRIVATE.unmarshal(bytes.fromhex(blob["private"]))[0],
                              TPM2B_PUBLIC.unmarshal(bytes.fromhex(blob["public"]))[0])
        finally:
            ctx.flush_context(srk)
        try:
            session = _pcr_policy_session(ctx, trial=False)
            try:
                if len(values) > 1:
                    ctx.policy_or(session, TPML_DIGEST(
                        [TPM2B_DIGEST(pcr_policy_digest(v)) for v in values]))
                return bytes(ctx.unseal(handle, session))
            except TSS2_Exception as exc:
                if exc.error in (TPM2_RC.POLICY_FAIL, TPM2_RC.VALUE):
                    raise refused from None
                raise TpmError(f"unseal failed: {exc}") from None
            finally:
                ctx.flush_context(session)
        finally:
            ctx.flush_context(handle)


def predict(root: str | os.PathLike[str]) -> tuple[bytes, list[dict[str, Any]]]:
    """The value ``PCR`` will have at the next boot of the code now on disk, and its event
    log: this boot's log with the kernel's, each subsystem's and the security package's
    digests recomputed from their files now (what an update changed), the other events
    (modules measured later) as they are. Like systemd-pcrlock's prediction, it assumes
    the same subsystems start in the same order."""
    import importlib.util

    from exo.kernel.boottable import BOOT_TABLE

    events = read_event_log(root)
    if not events:
        raise TpmError("no event log: boot once (measured) before predicting")

    def origin(module: str) -> str:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin:
            raise TpmError(f"cannot find {module} to hash it")
        return spec.origin

    kernel_dir = os.path.dirname(origin("exo.kernel"))
    security_dir = os.path.dirname(os.path.abspath(__file__))
    modules = {row.name: row.target.partition(":")[0] for row in BOOT_TABLE
               if isinstance(row.target, str)}
    predicted = []
    for ev in events:
        ev = dict(ev)
        if ev.get("pcr") == PCR:
            if ev.get("kind") == "kernel":
                ev["digest"] = tree_digest(kernel_dir).hex()
            elif ev.get("kind") == "subsystem" and ev.get("name") == "Security":
                ev["digest"] = tree_digest(security_dir).hex()
            elif ev.get("kind") == "subsystem" and ev.get("name") in modules:
                ev["digest"] = module_digest(origin(modules[str(ev["name"])])).hex()
        predicted.append(ev)
    return replay(predicted), predicted


def reseal(root: str | os.PathLike[str], name: str, *, keep_current: bool = True
           ) -> tuple[bytes, bytes]:
    """Before rebooting into updated code: unseal ``name`` now (``PCR`` still holds the
    running kernel's value) and seal it again to the value ``predict`` gives for the code
    on disk, and to the current value too unless ``keep_current`` is off (the running
    kernel keeps unsealing until the reboot; the next ``reseal`` after it drops the old
    value). Returns (current, predicted)."""
    location = _require(root)
    current = read_pcr(location)
    if current != replay(read_event_log(root)):
        raise TpmError(f"PCR {PCR} does not match the event log: reseal right after a "
                       "measured boot")
    predicted, _events = predict(root)
    secret = unseal(root, name)
    values = [current, predicted] if keep_current else [predicted]
    seal(root, name, secret, pcr_values=values)
    return current, predicted


def _require(root: str | os.PathLike[str]) -> Location:
    location = locate(root)
    if location is None:
        raise TpmError("no TPM: /dev/tpmrm0 absent and swtpm not running (exo tpm start)")
    return location


def _check_name(name: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise TpmError(f"bad sealed-secret name {name!r} (letters, digits, - and _)")
