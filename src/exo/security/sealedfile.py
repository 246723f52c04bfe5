"""Files encrypted at rest with XChaCha20-Poly1305, in chunks; whole files or streams.

The building block of encrypted ``storage://`` areas (``exo.security.areas``). Format,
version 1:

* header (32 bytes): ``EXOSF1`` · 0x00 0x00 · a random 16-byte nonce prefix · an 8-byte
  key id (big endian; the area's key generation, random for a lone file). The header is
  authenticated with every chunk, so the key id cannot be changed without the check failing;
* then chunks of at most ``CHUNK`` plaintext bytes, each sealed separately: ciphertext
  plus a 16-byte tag. Chunk ``i``'s 24-byte nonce is the file's prefix followed by ``i``
  (8 bytes, big endian); its associated data is the header, ``i`` and a final-chunk flag,
  so chunks cannot be reordered, swapped between files, dropped from the end or appended
  without the tag check failing. An empty file is one empty final chunk.

Random 16-byte prefixes per file keep (key, nonce) pairs unique without any state.

Speed (why the cipher is assembled here). libsodium through PyNaCl seals ~0.6-0.9 GB/s on
this machine; OpenSSL's ChaCha20-Poly1305 (``cryptography``) ~4 GB/s, and it has
``encrypt_into``/``decrypt_into`` (no allocation per chunk). XChaCha20-Poly1305 *is*
ChaCha20-Poly1305 under the subkey HChaCha20(key, nonce[0:16]) with the 12-byte nonce
0x00000000 · nonce[16:24] (draft-irtf-cfrg-xchacha §2.3). Every chunk of a file shares
its 16-byte prefix, so the subkey is derived once per file, with libsodium's own
``crypto_core_hchacha20`` (exported by PyNaCl's bundled libsodium, called through
ctypes), and the chunks go through OpenSSL. The output is byte for byte libsodium's
(the self-test and the unit tests check it against ``nacl.bindings``); when the HChaCha20
symbol cannot be found, PyNaCl's one-shot binding does the whole job, slower.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

TYPE_CHECKING = False  # no typing import at run time: the boot table loads areaserve
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    #: ``read_into(view) -> n`` fills ``view`` as far as it can (0 at the end).
    ReadInto = Callable[[memoryview], int]
    #: ``write(view)`` writes all of ``view``.
    Write = Callable[[memoryview], None]

MAGIC = b"EXOSF1\x00\x00"
PREFIX = 16
KEY_ID = 8
HEADER = len(MAGIC) + PREFIX + KEY_ID
CHUNK = 1 << 20  # 1 MiB: large enough that the per-chunk cost vanishes
TAG = 16
KEY_BYTES = 32


class TamperedError(ValueError):
    """The file was modified, truncated, extended, or is sealed under another key."""


def new_header(key_id: int | None = None) -> bytes:
    """A fresh header: random nonce prefix, and ``key_id`` (random when None)."""
    kid = os.urandom(KEY_ID) if key_id is None else struct.pack(">Q", key_id)
    return MAGIC + os.urandom(PREFIX) + kid


def parse_header(header: bytes) -> int:
    """The key id of a header; ``TamperedError`` when it is not a version-1 header."""
    if len(header) != HEADER or header[:len(MAGIC)] != MAGIC:
        raise TamperedError("not a version-1 Exo sealed file")
    (kid,) = struct.unpack(">Q", header[-KEY_ID:])
    return int(kid)


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


_hchacha: Any = None  # the ctypes function, False once looked for in vain


def _hchacha20(key: bytes, prefix: bytes) -> bytes | None:
    """libsodium's HChaCha20(key, prefix) → 32-byte subkey; None if it cannot be called."""
    global _hchacha
    if _hchacha is None:
        try:
            import ctypes

            import nacl._sodium

            lib = ctypes.CDLL(nacl._sodium.__file__)
            fn = lib.crypto_core_hchacha20
            fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
            fn.restype = ctypes.c_int
            _hchacha = fn
        except (ImportError, OSError, AttributeError):  # pragma: no cover - other builds
            _hchacha = False
    if _hchacha is False:  # pragma: no cover
        return None
    import ctypes

    out = ctypes.create_string_buffer(32)
    if _hchacha(out, prefix, key, None) != 0:  # pragma: no cover - fixed sizes
        return None
    return out.raw


class ChunkCipher:
    """XChaCha20-Poly1305 for the chunks of one file (one header, hence one prefix).

    ``seal_into``/``open_into`` write into the caller's buffer and return the length
    written (``open_into``: -1 when the tag does not verify)."""

    def __init__(self, key: bytes, header: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("the key is 32 bytes")
        self.key = key
        self.header = header
        self._prefix = header[len(MAGIC):len(MAGIC) + PREFIX]
        subkey = _hchacha20(key, self._prefix)
        self._fast: Any = None
        if subkey is not None:
            from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

            self._fast = ChaCha20Poly1305(subkey)

    def seal_into(self, index: int, final: bool, data: memoryview | bytes,
                  out: memoryview | bytearray) -> int:
        aad = _aad(self.header, index, final)
        n = len(data) + TAG
        if self._fast is not None:
            nonce = b"\0\0\0\0" + struct.pack(">Q", index)
            self._fast.encrypt_into(nonce, data, aad, memoryview(out)[:n])
            return n
        from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

        sealed = crypto_aead_xchacha20poly1305_ietf_encrypt(  # pragma: no cover
            bytes(data), aad, self._prefix + struct.pack(">Q", index), self.key)
        memoryview(out)[:n] = sealed  # pragma: no cover
        return n  # pragma: no cover

    def open_into(self, index: int, final: bool, data: memoryview | bytes,
                  out: memoryview | bytearray) -> int:
        if len(data) < TAG:
            return -1
        aad = _aad(self.header, index, final)
        n = len(data) - TAG
        if self._fast is not None:
            from cryptography.exceptions import InvalidTag

            nonce = b"\0\0\0\0" + struct.pack(">Q", index)
            try:
                self._fast.decrypt_into(nonce, data, aad, memoryview(out)[:n])
            except InvalidTag:
                return -1
            return n
        from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt  # pragma: no cover
        from nacl.exceptions import CryptoError  # pragma: no cover

        try:  # pragma: no cover
            plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
                bytes(data), aad, self._prefix + struct.pack(">Q", index), self.key)
        except CryptoError:  # pragma: no cover
            return -1
        memoryview(out)[:n] = plain  # pragma: no cover
        return n  # pragma: no cover


def chunk_count(sealed_size: int) -> int:
    """How many chunks a sealed file of ``sealed_size`` bytes (header included) holds."""
    return max(1, -(-(sealed_size - HEADER) // (CHUNK + TAG)))


def plain_size(sealed_size: int) -> int:
    """The plaintext size a well-formed sealed file of ``sealed_size`` bytes decrypts to."""
    return max(0, sealed_size - HEADER - chunk_count(sealed_size) * TAG)


# ------------------------------------------------------------------------- streams

def seal_stream(key: bytes, header: bytes, read_into: ReadInto, write: Write,
                *, overlap: bool = True) -> int:
    """Seal everything ``read_into`` yields (to its end) after writing ``header``; returns
    the plaintext size. The last chunk is only known at the end of the input, so one chunk
    is held back until the next byte (or the end) arrives. With ``overlap`` (the default)
    a stream of more than one chunk is written by a helper thread while the next chunk is
    read and sealed (see ``_Writer``)."""
    cipher = ChunkCipher(key, header)
    bufs = [bytearray(CHUNK), bytearray(CHUNK)]
    writer = _Writer(write, CHUNK + TAG, overlap)
    try:
        writer.write_now(memoryview(header))
        cur = 0
        n = fill(read_into, memoryview(bufs[cur]))
        index = total = 0
        while True:
            nxt = 1 - cur
            m = fill(read_into, memoryview(bufs[nxt])) if n == CHUNK else 0
            final = m == 0
            out = writer.buffer()
            k = cipher.seal_into(index, final, memoryview(bufs[cur])[:n], out)
            writer.submit(out, k, final)
            total += n
            if final:
                break
            index += 1
            cur, n = nxt, m
    finally:
        writer.close()
    writer.check()
    return total


def open_stream(key: bytes, read_into: ReadInto, write: Write, sealed_size: int,
                header: bytes | None = None, *, overlap: bool = True) -> int:
    """Open a sealed stream of ``sealed_size`` bytes (header included: read here unless
    given) into ``write``; ``TamperedError`` at the first chunk that fails. Note that the
    chunks before it were written already: callers that must not expose unverified data
    write into a private buffer and publish only on success."""
    if header is None:
        head = bytearray(HEADER)
        if fill(read_into, memoryview(head)) != HEADER:
            raise TamperedError("shorter than a sealed file's header")
        header = bytes(head)
    parse_header(header)
    cipher = ChunkCipher(key, header)
    chunks = chunk_count(sealed_size)
    inbuf = bytearray(CHUNK + TAG)
    view = memoryview(inbuf)
    writer = _Writer(write, CHUNK, overlap)
    total = 0
    try:
        for index in range(chunks):
            n = fill(read_into, view)
            final = index == chunks - 1
            out = writer.buffer()
            m = cipher.open_into(index, final, view[:n], out)
            if m < 0:
                raise TamperedError(f"chunk {index} fails authentication (modified, "
                                    "truncated, or another key)")
            writer.submit(out, m, final)
            total += m
    finally:
        writer.close()
    writer.check()
    if fill(read_into, view[:1]):
        raise TamperedError("longer than its chunks say (data appended)")
    return total


class _Writer:
    """Writes a stream's chunks, on a helper thread once there is more than one.

    The cipher (OpenSSL) and ``os.write`` each take about as long per chunk; ``write``
    releases the GIL during the system call, so a thread writing chunk *i* while the
    caller seals chunk *i + 1* hides most of one behind the other. Three buffers rotate
    (one being filled, one queued, one being written); order is kept (one writer, FIFO).
    A one-chunk stream (most small files) is written inline: no thread is started.
    The first error of ``write`` is raised to the caller at its next ``submit`` (or at
    ``check``); ``close`` always waits for the thread, so nothing writes after it."""

    DEPTH = 3

    def __init__(self, write: Write, size: int, overlap: bool) -> None:
        self._write = write
        self._size = size
        self._overlap = overlap
        self._inline = bytearray(size)
        self._thread: Any = None
        self._jobs: Any = None
        self._free: Any = None
        self._error: BaseException | None = None

    def write_now(self, view: memoryview) -> None:
        self._write(view)

    def buffer(self) -> bytearray:
        """A buffer to fill next (it may wait for the helper to finish one)."""
        if self._thread is None:
            return self._inline
        buf: bytearray = self._free.get()
        return buf

    def submit(self, buf: bytearray, n: int, last: bool) -> None:
        if self._thread is None:
            if last or not self._overlap:
                self._write(memoryview(buf)[:n])
                return
            self._start()
        self.check()
        self._jobs.put((buf, n))

    def _start(self) -> None:
        import queue
        import threading

        self._jobs, self._free = queue.SimpleQueue(), queue.SimpleQueue()
        for _ in range(self.DEPTH - 1):
            self._free.put(bytearray(self._size))
        self._thread = threading.Thread(target=self._run, name="exo-sealed-write",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            buf, n = job
            if self._error is None:
                try:
                    self._write(memoryview(buf)[:n])
                except BaseException as exc:  # handed to the caller's thread
                    self._error = exc
            self._free.put(buf)

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None


def fill(read_into: ReadInto, view: memoryview) -> int:
    """Fill ``view`` unless the input ends first; the number of bytes read."""
    got = 0
    while got < len(view):
        n = read_into(view[got:])
        if not n:
            break
        got += n
    return got


def fd_reader(fd: int) -> ReadInto:
    return lambda view: os.readv(fd, [view])


def fd_writer(fd: int, *, write_behind: bool = False) -> Write:
    """``write`` for ``fd``. ``write_behind``: for a file that will be fsynced, start the
    disk writeback of every ``WRITE_BEHIND`` bytes as they are written
    (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not wait for it), so the final
    fsync has little left to do and the writer is not throttled by a pile of dirty pages;
    the fsync still decides durability (measured: fsync of 256 MiB ~90-100 ms -> 2-11 ms)."""
    if not write_behind or _sync_range() is None:
        def write(view: memoryview) -> None:
            while view:
                view = view[os.write(fd, view):]
        return write
    done = started = 0

    def write_back(view: memoryview) -> None:
        nonlocal done, started
        while view:
            n = os.write(fd, view)
            view = view[n:]
            done += n
        if done - started >= WRITE_BEHIND:
            _sync_range()(fd, started, done - started, _SYNC_FILE_RANGE_WRITE)
            started = done
    return write_back


WRITE_BEHIND = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2
_sfr: Any = None  # libc's sync_file_range, False when it cannot be had


def _sync_range() -> Any:
    global _sfr
    if _sfr is None:
        try:
            import ctypes

            fn = ctypes.CDLL(None, use_errno=True).sync_file_range
            fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _sfr = fn
        except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
            _sfr = False
    return _sfr or None


# ------------------------------------------------------------------------- whole files


def encrypt_file(key: bytes, src: str | os.PathLike[str], dst: str | os.PathLike[str],
                 *, key_id: int | None = None) -> int:
    """Encrypt ``src`` into ``dst`` (written to a temporary name, fsynced, then renamed);
    returns the plaintext size."""
    tmp = Path(f"{dst}.tmp")
    try:
        fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                size = seal_stream(key, new_header(key_id), fd_reader(fin),
                                   fd_writer(fout, write_behind=True))
                os.fsync(fout)
            finally:
                os.close(fout)
        finally:
            os.close(fin)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size


def decrypt_file(key: bytes, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Decrypt ``src`` into ``dst``; ``TamperedError`` on any modification (``dst`` is
    then not created). Returns the plaintext size."""
    tmp = Path(f"{dst}.tmp")
    try:
        fin = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fout = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                try:
                    total = open_stream(key, fd_reader(fin),
                                        fd_writer(fout, write_behind=True),
                                        os.fstat(fin).st_size)
                except TamperedError as exc:
                    raise TamperedError(f"{src}: {exc}") from None
                os.fsync(fout)
            finally:
                os.close(fout)
        finally:
            os.close(fin)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return total
