"""The encryption of one agent connection: a hybrid KEM handshake, then sealed frames.

Why a protocol of its own rather than TLS: the two ends share a Fusion Ring channel, not a
socket, and the seeds ask for per-channel *ephemeral post-quantum* keys. So each
connection starts with a fresh X25519 + ML-KEM-768 key pair (``exo.security.pq``): the
client sends its public key, the agent encapsulates a secret to it, and both derive one
XChaCha20-Poly1305 key per direction (PyNaCl). Keys rotate the same way, inside the
sealed channel, after ``max_messages`` messages or ``max_age`` seconds: a fresh key pair,
a fresh secret chained with the old one, a new epoch.

A frame is ``kind (1) · epoch (4) · counter (8) · ciphertext``; the header is the AEAD's
associated data and the nonce is derived from (direction, epoch, counter), so a nonce is
never used twice under one key. The receiver accepts only the exact next counter of the
current epoch: a replayed, reordered, dropped or altered frame is refused, and the
session is dead from then on (a peer that tampers once is not trusted again).

The agent end is not authenticated by a signature: the kernel's router is what connects an
app to the agent it named (the app holds ``agent://NAME``), and the router cannot read
what it relays.
"""

from __future__ import annotations

import hashlib
import struct
import time

from nacl.bindings import (
    crypto_aead_xchacha20poly1305_ietf_decrypt,
    crypto_aead_xchacha20poly1305_ietf_encrypt,
)
from nacl.exceptions import CryptoError

from exo.security import pq

HELLO, ACCEPT, SEALED = 0x48, 0x41, 0x53  # "H", "A", "S"
# inside a sealed frame: the first byte of the plaintext
DATA, REKEY, REKEY_ACK = 0, 1, 2

HEADER = struct.Struct(">BIQ")
MAX_MESSAGES = 1024  # rotate after this many frames in one direction...
MAX_AGE_S = 60.0  # ...or this many seconds, whichever comes first
HARD_FACTOR = 4  # a peer that never rotates is refused past 4 × max_messages frames
MAX_FRAME = 1 << 20  # 1 MiB: the largest message an agent connection carries
_TAG = 16


class ChannelSecurityError(Exception):
    """A frame failed authentication, came out of order or twice, or broke the protocol:
    the connection is closed."""


def _kdf(secret: bytes, label: bytes, transcript: bytes) -> bytes:
    return hashlib.blake2b(label + transcript, key=secret, digest_size=32).digest()


def _nonce(direction: int, epoch: int, counter: int) -> bytes:
    return struct.pack(">BIQ", direction, epoch, counter) + bytes(11)


class SecureSession:
    """One end of an encrypted connection: ``role`` is ``"client"`` (the app) or
    ``"server"`` (the agent).

    Client: ``hello()`` → send; ``finish(reply)``. Server: ``accept(hello)`` → send.
    Then ``seal(data)`` / ``open(frame)``. The client calls ``rekey()`` when
    ``needs_rotation()`` and sends what it returns; the server answers it from ``open``
    (``open`` returns ``None`` and ``pending`` holds the reply to send).
    """

    def __init__(self, role: str, *, max_messages: int = MAX_MESSAGES,
                 max_age: float = MAX_AGE_S) -> None:
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', not {role!r}")
        self.role = role
        self.max_messages = max_messages
        self.max_age = max_age
        self.hard_limit = HARD_FACTOR * max_messages
        self.epoch = 0
        self.rotations = 0
        self.pending: bytes | None = None
        self._secret = b""
        self._tx_key = self._rx_key = b""
        self._tx = self._rx = 0
        self._since = time.monotonic()
        self._kem: pq.HybridKemPrivate | None = None
        self._dead = False

    # ---------------------------------------------------------------- handshake
    def hello(self) -> bytes:
        """Client: the first frame, carrying a fresh ephemeral public key."""
        self._kem = pq.HybridKemPrivate.generate()
        return bytes([HELLO]) + self._kem.public_key().to_bytes()

    def accept(self, frame: bytes) -> bytes:
        """Server: answer a client's ``hello`` with a ciphertext; keys are set."""
        if len(frame) < 2 or frame[0] != HELLO:
            raise self._fail("expected a HELLO frame")
        try:
            secret, ct = pq.HybridKemPublic.from_bytes(bytes(frame[1:])).encapsulate()
        except (ValueError, TypeError) as exc:
            raise self._fail(f"bad HELLO key: {exc}") from None
        self._install(secret, frame[1:] + ct, epoch=0)
        return bytes([ACCEPT]) + ct

    def finish(self, frame: bytes) -> None:
        """Client: complete the handshake with the server's ``accept`` frame."""
        if self._kem is None or len(frame) < 2 or frame[0] != ACCEPT:
            raise self._fail("expected an ACCEPT frame")
        public = self._kem.public_key().to_bytes()
        try:
            secret = self._kem.decapsulate(bytes(frame[1:]))
        except (ValueError, TypeError) as exc:
            raise self._fail(f"bad ACCEPT ciphertext: {exc}") from None
        self._kem = None
        self._install(secret, public + bytes(frame[1:]), epoch=0)

    @property
    def ready(self) -> bool:
        return bool(self._tx_key) and not self._dead

    # ---------------------------------------------------------------- data
    def seal(self, data: bytes) -> bytes:
        """A sealed DATA frame carrying ``data``."""
        return self._seal(DATA, data)

    def open(self, frame: bytes) -> bytes | None:
        """The data a sealed frame carries; ``None`` for a rotation frame (a server then
        has ``pending`` to send back). Raises ``ChannelSecurityError`` otherwise."""
        kind, body = self._open(frame)
        if kind == DATA:
            return body
        if kind == REKEY and self.role == "server":
            try:
                secret, ct = pq.HybridKemPublic.from_bytes(body).encapsulate()
            except (ValueError, TypeError) as exc:
                raise self._fail(f"bad REKEY key: {exc}") from None
            self.pending = self._seal(REKEY_ACK, ct)
            self._install(_kdf(self._secret, b"exo-agent-chain", secret), body + ct,
                          epoch=self.epoch + 1)
            return None
        if kind == REKEY_ACK and self.role == "client" and self._kem is not None:
            try:
                secret = self._kem.decapsulate(body)
            except (ValueError, TypeError) as exc:
                raise self._fail(f"bad REKEY_ACK ciphertext: {exc}") from None
            public = self._kem.public_key().to_bytes()
            self._kem = None
            self._install(_kdf(self._secret, b"exo-agent-chain", secret), public + body,
                          epoch=self.epoch + 1)
            return None
        raise self._fail(f"unexpected frame type {kind}")

    def needs_rotation(self) -> bool:
        return (max(self._tx, self._rx) >= self.max_messages
                or time.monotonic() - self._since >= self.max_age)

    def rekey(self) -> bytes:
        """Client: a sealed REKEY frame with a fresh public key; the keys change when the
        server's REKEY_ACK is opened."""
        if self.role != "client":
            raise ValueError("only the client starts a rotation")
        self._kem = pq.HybridKemPrivate.generate()
        return self._seal(REKEY, self._kem.public_key().to_bytes())

    # ---------------------------------------------------------------- internals
    def _install(self, secret: bytes, transcript: bytes, *, epoch: int) -> None:
        digest = hashlib.sha3_256(bytes(transcript)).digest()
        c2s = _kdf(secret, b"exo-agent-c2s", digest)
        s2c = _kdf(secret, b"exo-agent-s2c", digest)
        self._tx_key, self._rx_key = (c2s, s2c) if self.role == "client" else (s2c, c2s)
        self._secret = secret
        self.epoch = epoch
        self.rotations += epoch > 0
        self._tx = self._rx = 0
        self._since = time.monotonic()

    def _seal(self, kind: int, body: bytes) -> bytes:
        if not self.ready:
            raise ChannelSecurityError("the connection is not established or was closed")
        if self._tx >= self.hard_limit:
            raise ChannelSecurityError("key used too long: rotate first")
        header = HEADER.pack(SEALED, self.epoch, self._tx)
        direction = 0 if self.role == "client" else 1
        ct = crypto_aead_xchacha20poly1305_ietf_encrypt(
            bytes([kind]) + bytes(body), header, _nonce(direction, self.epoch, self._tx),
            self._tx_key)
        self._tx += 1
        return header + ct

    def _open(self, frame: bytes) -> tuple[int, bytes]:
        if not self.ready:
            raise ChannelSecurityError("the connection is not established or was closed")
        if not HEADER.size + _TAG < len(frame) <= HEADER.size + _TAG + 1 + MAX_FRAME:
            raise self._fail("frame size out of bounds")
        tag, epoch, counter = HEADER.unpack_from(frame)
        if tag != SEALED:
            raise self._fail("not a sealed frame")
        if epoch != self.epoch or counter != self._rx:
            raise self._fail(f"frame {epoch}/{counter} refused (expected "
                             f"{self.epoch}/{self._rx}): replayed, reordered or dropped")
        if counter >= self.hard_limit:
            raise self._fail("the peer never rotated its key")
        direction = 1 if self.role == "client" else 0
        try:
            plain = crypto_aead_xchacha20poly1305_ietf_decrypt(
                bytes(frame[HEADER.size:]), bytes(frame[:HEADER.size]),
                _nonce(direction, epoch, counter), self._rx_key)
        except CryptoError:
            raise self._fail("frame failed authentication (tampered)") from None
        self._rx += 1
        if not plain:
            raise self._fail("empty sealed frame")
        return plain[0], plain[1:]

    def _fail(self, why: str) -> ChannelSecurityError:
        self._dead = True
        self._tx_key = self._rx_key = b""
        return ChannelSecurityError(why)
