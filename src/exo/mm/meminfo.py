"""Pool statistics: derived rates and the /proc/meminfo view of the pool.

Kept apart from the allocator so the shell (which owns /proc) depends only on a dict.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no typing import at run time: boot path (exo/_value.py)
if TYPE_CHECKING:
    from typing import Any

#: Requests up to this size are served by the caches; fragmentation is measured
#: against it (free memory that cannot hold one such block is "unusable").
LARGEST_CACHED_BLOCK = 64 << 10


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def fragmentation_pct(free_by_order: list[int], granule: int, block: int) -> float:
    """Unusable free space index (Linux extfrag) for blocks of `block` bytes, in percent.

    The share of level-3 free memory lying in free buddy blocks too small to hold
    `block` bytes: 0 when every free byte could serve such a request, 100 when none can.
    """
    free = sum(n * (granule << k) for k, n in enumerate(free_by_order))
    small = sum(n * (granule << k) for k, n in enumerate(free_by_order) if granule << k < block)
    return 100.0 * _ratio(small, free)


def derive_stats(raw: dict[str, Any]) -> dict[str, Any]:
    """Add rates, bytes in use and fragmentation to the allocator's raw counters."""
    s = dict(raw)
    allocs = s["l1_hits"] + s["l2_hits"] + s["l3_hits"]
    s["allocs"] = allocs
    s["frees"] = s["frees_local"] + s["frees_returned"]
    for level in ("l1", "l2", "l3"):
        s[f"{level}_hit_rate"] = _ratio(s[f"{level}_hits"], allocs)
    s["bytes_in_use"] = s["alloc_bytes"] - s["freed_bytes"]
    s["bytes_cached"] = s["size"] - s["l3_free_bytes"] - s["bytes_in_use"]
    s["bytes_free"] = s["l3_free_bytes"]
    s["internal_waste_pct"] = 100.0 * _ratio(
        s["alloc_bytes"] - s["requested_bytes"], s["alloc_bytes"]
    )
    s["fragmentation_pct"] = fragmentation_pct(
        s["l3_free_blocks_by_order"], s["granule"], LARGEST_CACHED_BLOCK
    )
    return s


def format_meminfo(s: dict[str, Any]) -> str:
    """Render derived stats like Linux's /proc/meminfo (sizes in kB, one key per line)."""
    kib = [
        ("PoolTotal", s["size"]),
        ("PoolFree", s["bytes_free"]),
        ("PoolInUse", s["bytes_in_use"]),
        ("PoolCached", s["bytes_cached"]),
        ("PoolLargestFree", s["l3_largest_free"]),
    ]
    lines = [f"{name + ':':<20}{value // 1024:>12} kB" for name, value in kib]
    plain = [
        ("PoolAllocs", s["allocs"]),
        ("PoolFrees", s["frees"]),
        ("PoolReturnedFrees", s["frees_returned"]),
        ("PoolL1Hits", s["l1_hits"]),
        ("PoolL2Hits", s["l2_hits"]),
        ("PoolL3Hits", s["l3_hits"]),
    ]
    lines += [f"{name + ':':<20}{value:>12}" for name, value in plain]
    pct = [
        ("PoolL1HitRate", 100.0 * s["l1_hit_rate"]),
        ("PoolL2HitRate", 100.0 * s["l2_hit_rate"]),
        ("PoolL3HitRate", 100.0 * s["l3_hit_rate"]),
        ("PoolFragmentation", s["fragmentation_pct"]),
        ("PoolInternalWaste", s["internal_waste_pct"]),
    ]
    lines += [f"{name + ':':<20}{value:>12.1f} %" for name, value in pct]
    buddy = " ".join(str(n) for n in s["l3_free_blocks_by_order"])
    lines.append(f"{'PoolBuddyFree:':<20}{buddy}")
    return "\n".join(lines) + "\n"
