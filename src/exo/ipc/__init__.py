"""exo.ipc — Fusion Rings: lock-free SPSC rings in shared memory between processes.

``FusionRing`` is one direction (inline ≤ 56-byte slots, zero-copy blocks in the shared
pool, batches of 16, adaptive spin/yield/futex waiting); ``Channel`` is two rings plus
handle transfer. The protocol is specified in docs/fusion-rings.md.
"""

from exo.ipc._fring import Block
from exo.ipc.channel import Channel
from exo.ipc.errors import IpcError, PeerClosedError, PeerDiedError, PeerGoneError, ProtocolError
from exo.ipc.proc import ipc_stats, proc_ipc_text
from exo.ipc.ring import BATCH_MAX, DEFAULT_CAPACITY, INLINE_MAX, MAX_HANDLES, FusionRing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from exo.ipc.pool import PoolLike


def __getattr__(name: str) -> object:
    # PoolLike is a typing.Protocol: importing it loads typing, which the boot avoids.
    if name == "PoolLike":
        from exo.ipc.pool import PoolLike

        return PoolLike
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BATCH_MAX",
    "DEFAULT_CAPACITY",
    "INLINE_MAX",
    "MAX_HANDLES",
    "Block",
    "Channel",
    "FusionRing",
    "IpcError",
    "PeerClosedError",
    "PeerDiedError",
    "PeerGoneError",
    "PoolLike",
    "ProtocolError",
    "ipc_stats",
    "proc_ipc_text",
]
