"""Ring.recv_msg_or_answer: constant answers without the GIL, everything else as recv_msg.

The kernel answers the null syscall with it (exo.kernel.syscalls.server._null_answer):
exactly one request shape is answered, with exactly the answer's bytes around the
request's own id; anything else — another shape, a non-canonical id, a zero-copy or
handle-carrying message, a full reply ring, a closed peer — is recv_msg's.
"""

from __future__ import annotations

import threading
import time

import pytest

from exo.ipc import Channel, PeerClosedError

Q = (b'{"id":', b',"op":"getpid","args":{}}')
A = (b'{"id":', b',"ok":true,"result":{"pid":7}}')


def question(token: bytes) -> bytes:
    return Q[0] + token + Q[1]


def pair() -> tuple[Channel, Channel]:
    kernel, app = Channel.pair(8)
    return kernel, app


def test_a_question_is_answered_with_its_own_id() -> None:
    kernel, app = pair()
    try:
        for token in (b"1", b"7", b"42", b"123456789012345678"):
            app.tx.send(question(token))
            assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0) == 1
            assert app.rx.recv() == A[0] + token + A[1]
        assert kernel.rx.stats()["recv_msgs"] == 4
    finally:
        kernel.close()
        app.close()


@pytest.mark.parametrize("raw", [
    question(b"01"),                      # a leading zero: not how an encoder writes it
    question(b"-1"),
    question(b"1.0"),
    question(b""),
    question(b"1234567890123456789"),     # 19 digits: past what the token may hold
    question(b"1") + b" ",               # anything around it
    b" " + question(b"1"),
    b'{"id":1,"op":"getpid","args":{"x":1}}',
    b'{"id":1,"op":"getpidx","args":{}}',
])
def test_anything_else_is_returned_as_recv_msg_returns_it(raw: bytes) -> None:
    kernel, app = pair()
    try:
        app.tx.send(raw)
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0) == (raw, ())
        assert app.rx.stats()["recv_msgs"] == 0  # nothing was answered
    finally:
        kernel.close()
        app.close()


def test_a_question_with_handles_is_not_answered() -> None:
    kernel, app = pair()
    try:
        app.tx.send(question(b"3"), handles=[9])
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0) == (question(b"3"), (9,))
    finally:
        kernel.close()
        app.close()


def test_answers_stop_at_the_first_other_message_and_at_the_budget() -> None:
    kernel, app = pair()
    try:
        for token in (b"1", b"2", b"3"):
            app.tx.send(question(token))
        app.tx.send(b"other")
        # a budget far away: the three are answered, then the other message is returned
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 1e6) == (b"other", ())
        assert [app.rx.recv() for _ in range(3)] == [A[0] + t + A[1] for t in (b"1", b"2", b"3")]
        for token in (b"4", b"5"):
            app.tx.send(question(token))
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0) == 1  # budget spent
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0) == 1
    finally:
        kernel.close()
        app.close()


def test_a_full_reply_ring_leaves_the_question_to_the_caller() -> None:
    kernel, app = pair()
    try:
        for i in range(8):  # the app never reads: the kernel's ring fills
            kernel.tx.send(b"x%d" % i)
        app.tx.send(question(b"5"))
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0) == (question(b"5"), ())
    finally:
        kernel.close()
        app.close()


def test_the_wait_holds_no_gil_and_ends_when_the_peer_closes() -> None:
    kernel, app = pair()
    ticks = 0
    stop = threading.Event()

    def count() -> None:  # runs only if the waiting thread let go of the interpreter
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    try:
        def close_later() -> None:
            time.sleep(0.2)
            app.close()

        closer = threading.Thread(target=close_later)
        closer.start()
        with pytest.raises(PeerClosedError):
            kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0)
        closer.join()
        assert ticks > 10
    finally:
        stop.set()
        t.join()
        kernel.close()


def test_both_rings_are_busy_meanwhile() -> None:
    kernel, app = pair()
    started = threading.Event()
    result: list[object] = []

    def serve() -> None:
        started.set()
        try:
            result.append(kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0))
        except Exception as exc:
            result.append(exc)

    t = threading.Thread(target=serve)
    t.start()
    started.wait()
    time.sleep(0.1)
    try:
        with pytest.raises(RuntimeError):
            kernel.tx.send(b"from another thread")
        with pytest.raises(RuntimeError):
            kernel.tx.close()  # not unmapped under the waiting thread
        app.tx.send(question(b"9"))
        assert app.rx.recv(timeout=5) == A[0] + b"9" + A[1]
        t.join(timeout=5)
        assert result == [1]  # budget 0: back to its caller after one answer
        kernel.tx.send(b"free again")
        assert app.rx.recv(timeout=5) == b"free again"
    finally:
        t.join(timeout=5)
        kernel.close()
        app.close()


@pytest.mark.parametrize("bad", [
    (Q[0], Q[1], A[0], b"x" * 60, 0.0),  # an answer past one inline slot
    (b"", Q[1], A[0], A[1], 0.0),
    (Q[0], Q[1], A[0], A[1], -1.0),
])
def test_bad_arguments_are_refused(bad: tuple[bytes, bytes, bytes, bytes, float]) -> None:
    kernel, app = pair()
    try:
        with pytest.raises(ValueError):
            kernel.rx.recv_msg_or_answer(kernel.tx, *bad)
        with pytest.raises(TypeError):
            app.tx.recv_msg_or_answer(app.rx, *Q, *A, 0.0)  # a producer cannot receive
    finally:
        kernel.close()
        app.close()


def test_a_timeout_ends_an_empty_wait_as_recv_msg_does() -> None:
    kernel, app = pair()
    try:
        with pytest.raises(TimeoutError):
            kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0, 0)
        with pytest.raises(TimeoutError):
            kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 1e6, 0.05)
        app.tx.send(question(b"2"))  # answered, then the deadline: the count comes back
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 1e6, 0.05) == 1
        assert app.rx.recv() == A[0] + b"2" + A[1]
    finally:
        kernel.close()
        app.close()


def test_a_question_after_the_budget_is_left_for_the_next_call() -> None:
    """The budget is checked before serving: once it is spent, the next question is not
    answered by this call (its caller accounts for what was answered first), and the call
    returns when the budget ends even if nothing more comes."""
    kernel, app = pair()
    returned = threading.Event()

    def second_question() -> None:  # only once the call returned (or much too late)
        returned.wait(timeout=5)
        app.tx.send(question(b"2"))

    t = threading.Thread(target=second_question)
    t.start()
    try:
        app.tx.send(question(b"1"))
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 1000.0, 30) == 1
        returned.set()
        t.join(timeout=10)
        assert app.rx.recv(timeout=5) == A[0] + b"1" + A[1]
        assert app.rx.stats()["recv_msgs"] == 1  # the second is not answered yet ...
        assert kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 0.0, 5) == 1  # ... but next
        assert app.rx.recv(timeout=5) == A[0] + b"2" + A[1]
    finally:
        returned.set()
        t.join(timeout=10)
        kernel.close()
        app.close()


def test_a_flood_of_questions_cannot_hold_the_loop_past_its_budget() -> None:
    """An app calling getpid flat out: the loop still returns to its caller (the serving
    thread's fair-share accounting) after its budget, every time, having answered some."""
    kernel, app = Channel.pair(256)
    stop = threading.Event()

    def flood() -> None:
        n = 0
        try:
            while not stop.is_set():
                n += 1
                app.tx.send(question(b"%d" % n))
                app.rx.recv()
        except Exception:  # closed under us at the end
            pass

    t = threading.Thread(target=flood)
    t.start()
    try:
        counts = [kernel.rx.recv_msg_or_answer(kernel.tx, *Q, *A, 2000.0, 30)
                  for _ in range(20)]
        assert all(isinstance(c, int) and c >= 1 for c in counts), counts
    finally:
        stop.set()
        kernel.close()
        t.join(timeout=10)
        app.close()
