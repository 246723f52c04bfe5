"""Token buckets, one per key: how the audit log keeps a hostile process from flooding it.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per second; each event
takes one token or is *suppressed*. The suppressed count is kept per key so that the log can
say, in one summary record, how many events it dropped (nothing is dropped silently).

The clock is injectable so that tests check behaviour, not timings. Not thread-safe on its
own: the audit log's lock guards it. On the boot path: no typing, no dataclasses.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class _Bucket:
    __slots__ = ("last", "suppressed", "tokens")

    def __init__(self, tokens: float, last: float) -> None:
        self.tokens = tokens
        self.last = last
        self.suppressed = 0


class TokenBuckets:
    """``allow(key)`` -> ``(allowed, suppressed_before)``; see the module docstring."""

    __slots__ = ("_buckets", "_clock", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: int, *, max_keys: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[int, _Bucket] = {}

    def allow(self, key: int) -> tuple[bool, int]:
        """Take a token for ``key``. When allowed, also return (and reset) how many events
        of that key were suppressed since its last allowed one, for a summary record."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                # Bound the table itself: full buckets carry no state worth keeping.
                self._evict_full(now)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst),
                                bucket.tokens + (now - bucket.last) * self.rate)
            bucket.last = now
        if bucket.tokens < 1.0:
            bucket.suppressed += 1
            return False, 0
        bucket.tokens -= 1.0
        suppressed, bucket.suppressed = bucket.suppressed, 0
        return True, suppressed

    def forget(self, key: int) -> int:
        """Drop ``key``'s bucket (its process exited); return what it had suppressed."""
        bucket = self._buckets.pop(key, None)
        return 0 if bucket is None else bucket.suppressed

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict_full(self, now: float) -> None:
        for key, b in list(self._buckets.items()):
            if b.suppressed == 0 and b.tokens + (now - b.last) * self.rate >= self.burst:
                del self._buckets[key]
        if len(self._buckets) >= self.max_keys:  # all busy: drop the oldest (dicts keep order)
            del self._buckets[next(iter(self._buckets))]
