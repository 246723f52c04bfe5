"""The encryption of an agent connection: handshake, sealed frames, rotation, refusals."""

from __future__ import annotations

import pytest

from exo.agents.core.secure import HEADER, ChannelSecurityError, SecureSession


def _pair(**kw: float) -> tuple[SecureSession, SecureSession]:
    client, server = SecureSession("client", **kw), SecureSession("server")  # type: ignore[arg-type]
    client.finish(server.accept(client.hello()))
    return client, server


def test_both_ends_derive_the_same_keys_and_frames_round_trip() -> None:
    client, server = _pair()
    assert server.open(client.seal(b"sys.cpu_usage")) == b"sys.cpu_usage"
    assert client.open(server.seal(b"12%")) == b"12%"


def test_a_frame_does_not_carry_its_plaintext() -> None:
    client, _ = _pair()
    secret = b"the quick brown fox jumps over the lazy dog"
    assert secret not in client.seal(secret)


def test_a_tampered_frame_is_refused_and_the_session_dies() -> None:
    client, server = _pair()
    frame = bytearray(client.seal(b"hello"))
    frame[-1] ^= 1
    with pytest.raises(ChannelSecurityError, match="authentication"):
        server.open(bytes(frame))
    with pytest.raises(ChannelSecurityError):  # not trusted again, even with good frames
        server.open(client.seal(b"next"))


def test_a_tampered_header_is_refused() -> None:
    client, server = _pair()
    frame = bytearray(client.seal(b"hello"))
    frame[1] ^= 1  # the epoch: part of the associated data
    with pytest.raises(ChannelSecurityError):
        server.open(bytes(frame))


def test_a_replayed_frame_is_refused() -> None:
    client, server = _pair()
    frame = client.seal(b"kill 7")
    assert server.open(frame) == b"kill 7"
    with pytest.raises(ChannelSecurityError, match="replayed"):
        server.open(frame)


def test_a_reordered_or_dropped_frame_is_refused() -> None:
    client, server = _pair()
    client.seal(b"first")  # never delivered
    with pytest.raises(ChannelSecurityError, match="expected"):
        server.open(client.seal(b"second"))


def test_a_frame_from_another_connection_is_refused() -> None:
    client_a, _ = _pair()
    _, server_b = _pair()
    with pytest.raises(ChannelSecurityError, match="authentication"):
        server_b.open(client_a.seal(b"hello"))


def test_keys_rotate_after_n_messages_and_old_frames_stop_working() -> None:
    client, server = _pair(max_messages=3)
    old = None
    for i in range(10):
        if client.needs_rotation():
            assert server.open(client.rekey()) is None
            assert server.pending is not None
            assert client.open(server.pending) is None
        frame = client.seal(b"q%d" % i)
        old = old or frame
        assert server.open(frame) == b"q%d" % i
        assert client.open(server.seal(b"a")) == b"a"
    assert client.epoch == server.epoch >= 3 and client.rotations == client.epoch
    with pytest.raises(ChannelSecurityError):  # a frame of epoch 0, replayed in epoch 3
        server.open(old)


def test_keys_rotate_after_t_seconds() -> None:
    client, _ = _pair(max_age=0.0)
    assert client.needs_rotation()


def test_nonces_are_never_reused_under_one_key() -> None:
    client, server = _pair(max_messages=4)
    seen = set()
    for _ in range(20):
        if client.needs_rotation():
            server.open(client.rekey())
            assert server.pending is not None
            client.open(server.pending)
        frame = client.seal(b"x")
        _, epoch, counter = HEADER.unpack_from(frame)
        assert (epoch, counter) not in seen
        seen.add((epoch, counter))
        server.open(frame)


@pytest.mark.parametrize("hello", [b"", b"H", b"Hgarbage", b"X" + bytes(1300)])
def test_a_bad_hello_is_refused_with_a_clear_error(hello: bytes) -> None:
    with pytest.raises(ChannelSecurityError):
        SecureSession("server").accept(hello)


@pytest.mark.parametrize("frame", [b"", b"S", bytes(40), b"S" + bytes(12) + bytes(16)])
def test_malformed_sealed_frames_are_refused(frame: bytes) -> None:
    _, server = _pair()
    with pytest.raises(ChannelSecurityError):
        server.open(frame)


def test_only_the_client_starts_a_rotation() -> None:
    _, server = _pair()
    with pytest.raises(ValueError, match="client"):
        server.rekey()


def test_a_peer_that_never_rotates_is_refused() -> None:
    """The receiver bounds frames under one key by its own policy, whatever the sender's."""
    stubborn, agent = _pair(max_messages=10**6)
    assert agent.hard_limit == 4 * 1024
    agent.hard_limit = 3
    for _ in range(3):
        agent.open(stubborn.seal(b"x"))
    with pytest.raises(ChannelSecurityError, match="never rotated"):
        agent.open(stubborn.seal(b"x"))
