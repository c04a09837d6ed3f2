"""The global rate limit as the HTTP authz endpoint applies it: counted in process,
shared through a real Redis, so several gateway replicas hold one budget per tenant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from redis.asyncio import Redis

from gateway.ratelimit import BatchedWindowLimiter, RedisRateLimiter
from tests.support.servers import RedisServer, free_port

NOW = 1_000_000.25  # a fixed clock: every call lands in the same one-second window


@pytest.fixture
async def shared_redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    redis = Redis.from_url(redis_server.url)
    yield redis
    await redis.aclose()


async def test_two_replicas_share_one_budget(shared_redis: Redis) -> None:
    first = BatchedWindowLimiter(RedisRateLimiter(shared_redis), clock=lambda: NOW)
    second = BatchedWindowLimiter(RedisRateLimiter(shared_redis), clock=lambda: NOW)

    assert [first.admit("t1", 20) for _ in range(15)] == [0.0] * 15
    await first.sync()
    # The second replica has not heard of those 15 until its own sync.
    assert second.admit("t1", 20) == 0.0
    await second.sync()
    admitted = [second.admit("t1", 20) == 0.0 for _ in range(10)]
    assert admitted == [True] * 4 + [False] * 6  # 15 + 1 + 4 = the limit of 20
    assert 0 < second.admit("t1", 20) <= 0.75  # refused until the window resets
    assert second.admit("t2", 20) == 0.0  # another tenant, another budget
    await second.sync()
    assert int(await shared_redis.get(f"rl:embrec:t1:{int(NOW)}")) == 20


async def test_a_new_window_starts_a_new_budget(shared_redis: Redis) -> None:
    clock = [NOW]
    limiter = BatchedWindowLimiter(RedisRateLimiter(shared_redis), clock=lambda: clock[0])
    assert [limiter.admit("t1", 3) for _ in range(4)][-1] > 0
    await limiter.sync()
    clock[0] = NOW + 1.0
    assert limiter.admit("t1", 3) == 0.0


async def test_redis_down_lets_requests_through_and_counts_them() -> None:
    dead = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    rates = RedisRateLimiter(dead)
    limiter = BatchedWindowLimiter(rates, clock=lambda: NOW)
    assert [limiter.admit("t1", 5) for _ in range(5)] == [0.0] * 5
    await limiter.sync()
    assert rates.fail_open._value.get() == 5  # type: ignore[attr-defined]
    # Counts that could not be shared are dropped: the next sync period starts afresh.
    assert limiter.admit("t1", 5) == 0.0
    await dead.aclose()


async def test_the_sync_loop_outlives_an_unexpected_failure(shared_redis: Redis) -> None:
    rates = RedisRateLimiter(shared_redis)
    limiter = BatchedWindowLimiter(rates, sync_seconds=0.01, clock=lambda: NOW)
    real_add = rates.add_counts
    calls = 0

    async def flaky(counts: Sequence[tuple[str, int]]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("a reply that is not a number")
        return await real_add(counts)

    rates.add_counts = flaky  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(limiter.run(stop))
    limiter.admit("t1", 10)
    await asyncio.sleep(0.05)
    limiter.admit("t1", 10)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 2)
    assert calls >= 2  # the loop went on after the failure
    assert int(await shared_redis.get(f"rl:embrec:t1:{int(NOW)}")) == 1  # the second count
