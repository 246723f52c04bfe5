"""Files sealed with XChaCha20-Poly1305: ciphertext only on disk, any change detected."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from exo.security import sealedfile as sf

KEY = bytes(range(32))


@pytest.mark.parametrize("size", [0, 1, sf.CHUNK - 1, sf.CHUNK, sf.CHUNK + 1, 3 * sf.CHUNK])
def test_round_trip(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "p").write_bytes(data)
    assert sf.encrypt_file(KEY, tmp_path / "p", tmp_path / "c") == size
    sealed = (tmp_path / "c").read_bytes()
    chunks = max(1, -(-size // sf.CHUNK))
    assert len(sealed) == sf.HEADER + size + chunks * sf.TAG
    if size >= 16:
        assert data[:16] not in sealed  # a host-side reader sees only ciphertext
    assert sf.decrypt_file(KEY, tmp_path / "c", tmp_path / "q") == size
    assert (tmp_path / "q").read_bytes() == data


def _sealed(tmp_path: Path, size: int = 2 * sf.CHUNK + 10) -> bytes:
    (tmp_path / "p").write_bytes(os.urandom(size))
    sf.encrypt_file(KEY, tmp_path / "p", tmp_path / "c")
    return (tmp_path / "c").read_bytes()


@pytest.mark.parametrize("tamper", ["flip", "truncate_chunk", "drop_tail", "append",
                                    "swap_chunks", "header", "key"])
def test_tampering_is_detected(tmp_path: Path, tamper: str) -> None:
    sealed = bytearray(_sealed(tmp_path))
    block = sf.CHUNK + sf.TAG
    key = KEY
    if tamper == "flip":
        sealed[sf.HEADER + 5000] ^= 0x40
    elif tamper == "truncate_chunk":
        del sealed[-3:]
    elif tamper == "drop_tail":  # whole last chunk removed: chunk 1 is not marked final
        del sealed[sf.HEADER + 2 * block:]
    elif tamper == "append":
        sealed += sealed[sf.HEADER:sf.HEADER + block]
    elif tamper == "swap_chunks":
        a = sealed[sf.HEADER:sf.HEADER + block]
        b = sealed[sf.HEADER + block:sf.HEADER + 2 * block]
        sealed[sf.HEADER:sf.HEADER + 2 * block] = b + a
    elif tamper == "header":
        sealed[sf.HEADER - 1] ^= 1
    else:
        key = bytes(32)
    (tmp_path / "c").write_bytes(bytes(sealed))
    with pytest.raises(sf.TamperedError):
        sf.decrypt_file(key, tmp_path / "c", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()


def _reader(data: bytes) -> Callable[[memoryview], int]:
    """A ``read_into`` over ``data``: fills the view it is given, 0 at the end."""
    pos = 0

    def read_into(view: memoryview) -> int:
        nonlocal pos
        n = min(len(view), len(data) - pos)
        view[:n] = data[pos:pos + n]
        pos += n
        return n

    return read_into


def _seal_bytes(data: bytes, header: bytes, overlap: bool) -> bytes:
    out = bytearray()
    assert sf.seal_stream(KEY, header, _reader(data), out.extend,
                          overlap=overlap) == len(data)
    return bytes(out)


@pytest.mark.parametrize("size", [0, sf.CHUNK, 5 * sf.CHUNK + 7])
def test_overlapped_writes_give_the_same_bytes(size: int) -> None:
    """The helper thread that writes chunk i while chunk i+1 is sealed changes nothing
    in the output, in either direction."""
    data, header = os.urandom(size), sf.new_header(3)
    sealed = _seal_bytes(data, header, overlap=True)
    assert sealed == _seal_bytes(data, header, overlap=False)
    out = bytearray()
    assert sf.open_stream(KEY, _reader(sealed), out.extend, len(sealed)) == size
    assert bytes(out) == data


def test_a_failing_write_reaches_the_caller(tmp_path: Path) -> None:
    """A write error on the helper thread (here: a full pipe's reader gone) is raised by
    the sealing call itself, and no thread is left behind."""
    import threading

    (tmp_path / "p").write_bytes(os.urandom(4 * sf.CHUNK))
    calls = 0

    def write(view: memoryview) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(28, "No space left on device")

    before = threading.active_count()
    fd = os.open(tmp_path / "p", os.O_RDONLY)
    try:
        with pytest.raises(OSError, match="No space left"):
            sf.seal_stream(KEY, sf.new_header(), sf.fd_reader(fd), write)
    finally:
        os.close(fd)
    assert threading.active_count() == before
    assert calls == 3  # nothing written after the failure
