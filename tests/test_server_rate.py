"""The server's per-sender rate limiter (token buckets)."""

from __future__ import annotations

import pytest

from pyim.server.rate import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(10, clock=clock)
    assert [limiter.allow("a") for _ in range(12)] == [True] * 10 + [False] * 2
    assert limiter.allow("b")  # others are not held back
    clock.now += 0.25  # 2.5 tokens back
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    clock.now += 60  # never more than the burst
    assert sum(limiter.allow("a") for _ in range(20)) == 10


def test_fractional_rates_and_bad_rates() -> None:
    clock = Clock()
    limiter = RateLimiter(0.5, clock=clock)  # one every two seconds
    assert limiter.allow("a") and not limiter.allow("a")
    clock.now += 1.0
    assert not limiter.allow("a")
    clock.now += 1.0
    assert limiter.allow("a")
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_idle_senders_are_forgotten_not_the_busy_ones() -> None:
    clock = Clock()
    limiter = RateLimiter(5, max_keys=100, clock=clock)
    for i in range(100):
        limiter.allow(f"idle{i}")
    clock.now += 2.0  # the idle buckets are full again
    for _ in range(5):
        assert limiter.allow("busy")
    assert not limiter.allow("busy")
    limiter.allow("newcomer")  # over max_keys: the refilled ones go
    assert len(limiter) == 2
    assert not limiter.allow("busy")  # its empty bucket was kept
    # a flood of distinct keys stays bounded: pruned at most once a second
    for second in range(5):
        clock.now += 1.5
        for i in range(150):
            limiter.allow(f"k{second}-{i}")
        assert len(limiter) <= 300
