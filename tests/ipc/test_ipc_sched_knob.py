"""``exo._sched.set_latency_slice`` (moved out of the ring module): a request to the host
scheduler for the calling thread; it answers whether the kernel took it, and refuses
slices outside [0, 100000] microseconds."""

from __future__ import annotations

import pytest

from exo._sched import set_latency_slice


def test_returns_whether_the_kernel_took_it() -> None:
    assert set_latency_slice(100) in (True, False)
    assert set_latency_slice(0) in (True, False)  # back to the default


@pytest.mark.parametrize("bad", [-1, 100_001])
def test_refuses_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError):
        set_latency_slice(bad)


def test_refuses_non_numbers() -> None:
    with pytest.raises(TypeError):
        set_latency_slice("fast")  # type: ignore[arg-type]
