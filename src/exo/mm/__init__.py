"""exo.mm — sender-owned shared segments (3-level allocator) that zero-copy IPC uses."""

from exo.mm._pool import PoolCorruption
from exo.mm.meminfo import derive_stats, format_meminfo
from exo.mm.pool import DEFAULT_POOL_SIZE, PoolView, SharedPool, new_segment

__all__ = [
    "DEFAULT_POOL_SIZE",
    "PoolCorruption",
    "PoolView",
    "SharedPool",
    "derive_stats",
    "format_meminfo",
    "new_segment",
]
