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
XChaCha 192-bit nonce is wide enough for random ones.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

MAGIC = b"EXOSF1\x00\x00"
HEADER = len(MAGIC) + 24
CHUNK = 1 << 20  # 1 MiB: large enough that the per-chunk cost vanishes
TAG = 16
KEY_BYTES = 32


class TamperedError(ValueError):
    """The file was modified, truncated, extended, or is sealed under another key."""


def _aad(header: bytes, index: int, final: bool) -> bytes:
    return header + struct.pack(">QB", index, 1 if final else 0)


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
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        fout.write(header)
        index = 0
        chunk = fin.read(CHUNK)
        while True:
            following = fin.read(CHUNK) if len(chunk) == CHUNK else b""
            final = not following
            nonce = prefix[:16] + struct.pack(">Q", index)
            fout.write(seal(chunk, _aad(header, index, final), nonce, key))
            total += len(chunk)
            if final:
                break
            chunk, index = following, index + 1
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)
    return total


def decrypt_file(key: bytes, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> int:
    """Decrypt ``src`` into ``dst``; ``TamperedError`` on any modification (``dst`` is
    then not created). Returns the plaintext size."""
    from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_decrypt as open_
    from nacl.exceptions import CryptoError

    tmp = Path(f"{dst}.tmp")
    total = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            header = fin.read(HEADER)
            if len(header) != HEADER or header[:len(MAGIC)] != MAGIC:
                raise TamperedError(f"{src}: not a version-1 Exo sealed file")
            prefix = header[len(MAGIC):]
            index = 0
            block = fin.read(CHUNK + TAG)
            while True:
                following = fin.read(CHUNK + TAG) if len(block) == CHUNK + TAG else b""
                final = not following
                nonce = prefix[:16] + struct.pack(">Q", index)
                try:
                    plain = open_(block, _aad(header, index, final), nonce, key)
                except CryptoError:
                    raise TamperedError(f"{src}: chunk {index} fails authentication "
                                        "(modified, truncated, or another key)") from None
                fout.write(plain)
                total += len(plain)
                if final:
                    break
                block, index = following, index + 1
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return total
