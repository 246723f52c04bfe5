"""Files encrypted at rest with XChaCha20-Poly1305 (PyNaCl/libsodium), in chunks.

The building block for encrypted ``storage://`` areas (integration is later work,
docs/security.md). Format, version 1:

* header (32 bytes): ``EXOSF1`` · 0x00 0x00 · a random 24-byte file nonce prefix;
* then chunks of at most ``CHUNK`` plaintext bytes, each sealed separately: ciphertext
  plus a 16-byte tag. Chunk ``i``'s nonce is the file's 16-byte random prefix followed by
  ``i`` (8 bytes, big endian); its associated data is the header, ``i`` and a final-chunk
  flag, so chunks cannot be reordered, swapped between files, dropped from the end or
  appended without the tag check failing. An empty file is one empty final chunk.

Random 16-byte prefixes per file keep (key, nonce) pairs unique without any state: the
XChaCha 192-bit nonce is wide enough for random ones. Chunks are sealed and opened on a
few threads (libsodium runs without the GIL), results written in order: one core alone
seals slower than the page cache copies.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

MAGIC = b"EXOSF1\x00\x00"
HEADER = len(MAGIC) + 24
CHUNK = 1 << 20  # 1 MiB: large enough that the per-chunk cost vanishes
TAG = 16
KEY_BYTES = 32


class TamperedError(ValueError):
    """The file was modified, truncated, extended, or is sealed under another key."""


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _chunks(f: BinaryIO, size: int) -> Iterator[tuple[int, bytes, bool]]:
    """(index, chunk, is_final) over a file, reading one chunk ahead to know the last."""
    index, chunk = 0, f.read(size)
    while True:
        following = f.read(size) if len(chunk) == size else b""
        yield index, chunk, not following
        if not following:
            return
        chunk, index = following, index + 1


def _pipelined(jobs: Iterator[tuple[int, bytes, bool]], work: Callable[[int, bytes, bool], bytes],
               out: BinaryIO) -> None:
    """Run ``work`` on each chunk on a few threads (libsodium runs without the GIL) and
    write the results in order, with a bounded number of chunks in flight."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    workers = _workers()
    if workers == 1:
        for index, chunk, final in jobs:
            out.write(work(index, chunk, final))
        return
    with ThreadPoolExecutor(workers) as pool:
        window: deque[Future[bytes]] = deque()
        for index, chunk, final in jobs:
            window.append(pool.submit(work, index, chunk, final))
            if len(window) > 2 * workers:
                out.write(window.popleft().result())
        while window:
            out.write(window.popleft().result())


def encrypt_file(key: bytes, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Encrypt ``src`` into ``dst`` (written to a temporary name, then renamed); returns
    the plaintext size."""
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt as seal

    if len(key) != KEY_BYTES:
        raise ValueError("the key is 32 bytes")
    prefix = os.urandom(24)
    header = MAGIC + prefix
    tmp = Path(f"{dst}.tmp")
    total = 0

    def work(index: int, chunk: bytes, final: bool) -> bytes:
        nonce = prefix[:16] + struct.pack(">Q", index)
        sealed: bytes = seal(chunk, _aad(header, index, final), nonce, key)
        return sealed

    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            fout.write(header)
            total = os.fstat(fin.fileno()).st_size
            _pipelined(_chunks(fin, CHUNK), work, fout)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return total


def decrypt_file(key: bytes, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Decrypt ``src`` into ``dst``; ``TamperedError`` on any modification (``dst`` is
    then not created). Returns the plaintext size."""
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt as open_
    from nacl.exceptions import CryptoError

    tmp = Path(f"{dst}.tmp")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            header = fin.read(HEADER)
            if len(header) != HEADER or header[:len(MAGIC)] != MAGIC:
                raise TamperedError(f"{src}: not a version-1 Exo sealed file")
            prefix = header[len(MAGIC):]

            def work(index: int, block: bytes, final: bool) -> bytes:
                nonce = prefix[:16] + struct.pack(">Q", index)
                try:
                    plain: bytes = open_(block, _aad(header, index, final), nonce, key)
                except CryptoError:
                    raise TamperedError(f"{src}: chunk {index} fails authentication "
                                        "(modified, truncated, or another key)") from None
                return plain

            _pipelined(_chunks(fin, CHUNK + TAG), work, fout)
            fout.flush()
            os.fsync(fout.fileno())
            total = fout.tell()
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return total
