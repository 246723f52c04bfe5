"""Property tests: ring indices are free-running u32 counters; FIFO order, fullness and
emptiness must hold across the 2**32 wrap, whatever the capacity and the op sequence."""

from __future__ import annotations

from array import array
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from exo.ipc import BATCH_MAX, FusionRing

ops = st.lists(
    st.tuples(
        st.sampled_from(["send", "batch", "packed", "recv", "recv_batch", "recv_into"]),
        st.integers(1, BATCH_MAX),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    cap_log=st.integers(0, 4),
    start=st.one_of(st.integers(0, 2**32 - 1), st.integers(2**32 - 40, 2**32 - 1)),
    script=ops,
)
def test_fifo_across_index_wrap(cap_log: int, start: int, script: list[tuple[str, int]]) -> None:
    cap = 1 << cap_log
    p, c = FusionRing.pair(cap, _start=start)
    model: deque[bytes] = deque()
    counter = 0
    try:
        for op, n in script:
            if op in ("send", "batch", "packed"):
                k = 1 if op == "send" else min(n, cap)
                msgs = [counter.to_bytes(8, "little") + bytes(counter % 48) for counter in
                        range(counter, counter + k)]
                fits = len(model) + k <= cap
                try:
                    if op == "send":
                        p.send(msgs[0], timeout=0)
                    elif op == "batch":
                        p.send_batch(msgs, timeout=0)
                    else:
                        p.send_batch_packed(b"".join(msgs), [len(m) for m in msgs], timeout=0)
                    assert fits, "the ring accepted more than its capacity"
                    model.extend(msgs)
                    counter += k
                except TimeoutError:
                    assert not fits, "the ring refused a message it had room for"
            elif op == "recv":
                if model:
                    assert c.recv(timeout=0) == model.popleft()
                else:
                    try:
                        c.recv(timeout=0)
                        raise AssertionError("received from an empty ring")
                    except TimeoutError:
                        pass
            elif model:
                expect = [model.popleft() for _ in range(min(n, len(model)))]
                if op == "recv_batch":
                    assert c.recv_batch(max=n, timeout=0) == expect
                else:
                    buf, lens = bytearray(56 * BATCH_MAX), array("Q", bytes(8 * BATCH_MAX))
                    assert c.recv_batch_into(buf, lens, max=n, timeout=0) == len(expect)
                    assert list(lens[: len(expect)]) == [len(m) for m in expect]
                    assert buf[: sum(lens[: len(expect)])] == b"".join(expect)
            s = c.stats()
            assert s["tail"] == (start + counter) % 2**32
            assert s["occupancy"] == len(model)
            assert s["head"] == (s["tail"] - len(model)) % 2**32
    finally:
        p.close()
        c.close()
