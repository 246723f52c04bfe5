"""Sealed streams: XChaCha20-Poly1305 assembled from HChaCha20 + OpenSSL gives libsodium's
bytes, and a stream sealed through a pipe opens back to the same plaintext."""

from __future__ import annotations

import os
import struct
import threading

import pytest
from nacl.bindings import crypto_aead_xchacha20poly1305_ietf_encrypt

from exo.security import sealedfile as sf

KEY = bytes(range(32))


@pytest.mark.parametrize("size", [0, 1, 4096, sf.CHUNK])
def test_chunks_are_libsodiums_xchacha20poly1305(size: int) -> None:
    header = sf.new_header(3)
    data = os.urandom(size)
    out = bytearray(size + sf.TAG)
    assert sf.ChunkCipher(KEY, header).seal_into(5, True, data, out) == size + sf.TAG
    nonce = header[len(sf.MAGIC):len(sf.MAGIC) + sf.PREFIX] + struct.pack(">Q", 5)
    aad = header + struct.pack(">QB", 5, 1)
    assert bytes(out) == crypto_aead_xchacha20poly1305_ietf_encrypt(data, aad, nonce, KEY)


@pytest.mark.parametrize("size", [0, 10, sf.CHUNK, 2 * sf.CHUNK + 3])
def test_a_stream_through_a_pipe_round_trips(size: int) -> None:
    data = os.urandom(size)
    r, w = os.pipe()
    sealed = bytearray()

    def feed() -> None:
        sf.fd_writer(w)(memoryview(data))
        os.close(w)

    t = threading.Thread(target=feed)
    t.start()
    try:
        n = sf.seal_stream(KEY, sf.new_header(1), sf.fd_reader(r), sealed.extend)
    finally:
        t.join()
        os.close(r)
    assert n == size and len(sealed) == sf.HEADER + size + sf.chunk_count(len(sealed)) * sf.TAG
    assert sf.plain_size(len(sealed)) == size
    out = bytearray()
    pos = 0

    def read_into(view: memoryview) -> int:
        nonlocal pos
        k = min(len(view), len(sealed) - pos)
        view[:k] = sealed[pos:pos + k]
        pos += k
        return k

    assert sf.open_stream(KEY, read_into, out.extend, len(sealed)) == size
    assert bytes(out) == data


def test_a_header_that_is_not_ours_is_refused() -> None:
    with pytest.raises(sf.TamperedError):
        sf.parse_header(b"X" * sf.HEADER)
    with pytest.raises(sf.TamperedError):
        sf.parse_header(sf.new_header()[:-1])
