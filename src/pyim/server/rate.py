"""Per-sender rate limits: a token bucket per key, O(1) per message."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """``rate`` events per second per key, in bursts of up to ``burst`` (default: one
    second's worth). Keys are many and chosen by senders (a From URI), so idle ones
    are forgotten once there are more than ``max_keys``."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._pruned = 0.0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: str) -> bool:
        """Take one token of ``key``'s bucket; False when it is empty."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            self._prune(now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _prune(self, now: float) -> None:
        """Forget the keys whose buckets have refilled (they start full again), at most
        once a second and only when there are too many."""
        if len(self._buckets) <= self.max_keys or now - self._pruned < 1.0:
            return
        self._pruned = now
        full = self.burst / self.rate  # idle this long: full again
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= full]:
            del self._buckets[key]
