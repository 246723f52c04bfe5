"""``exo.ipc._bench.checksum``: the benchmark verifies every transport's payloads with
it, so it must read every byte and notice a lost, duplicated, moved or changed one."""

from __future__ import annotations

import random

import pytest

from exo.ipc._bench import checksum

DATA = random.Random(7).randbytes(70_001)  # 64-byte blocks and a ragged tail


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 4096, 70_001])
def test_every_byte_counts(n: int) -> None:
    data = DATA[:n]
    base = checksum(data)
    assert checksum(bytearray(data)) == checksum(memoryview(data)) == base
    for i in {0, n // 3, n - 1} if n else set():
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        assert checksum(flipped) != base, i
    assert checksum(data + b"\0") != base  # a zero byte appended still counts
    if n:
        assert checksum(data[:-1]) != base


def test_moves_and_swaps_change_it() -> None:
    data = bytearray(DATA[:4096])
    base = checksum(data)
    for a, b in [(0, 8), (0, 64), (8, 4088), (100, 3000)]:
        moved = bytearray(data)
        moved[a : a + 8], moved[b : b + 8] = data[b : b + 8], data[a : a + 8]
        assert checksum(moved) != base, (a, b)
    blocks = [data[i : i + 64] for i in range(0, 4096, 64)]
    blocks[3], blocks[40] = blocks[40], blocks[3]
    assert checksum(b"".join(blocks)) != base


def test_chaining_is_order_sensitive() -> None:
    a, b = DATA[:1000], DATA[1000:2000]
    assert checksum(b, checksum(a)) != checksum(a, checksum(b))
    assert checksum(a, 1) != checksum(a, 2)


def test_bad_input() -> None:
    with pytest.raises(TypeError):
        checksum("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        checksum(b"x", "seed")  # type: ignore[arg-type]
