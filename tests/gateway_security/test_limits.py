"""Limits a caller meets at the gateway: the JSON body size, and the global rate limit
when its Redis is down (fail open: the API stays up)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest

from tests.gateway_security.conftest import SecuredStack, start_secured, stop_secured
from tests.support.servers import RedisServer

TEN_MIB = 10 * 1024 * 1024
FAIL_OPEN_METRIC = "embrec_ratelimit_fail_open_total"


async def test_json_body_over_10_mib_is_413_with_a_json_body(secured: SecuredStack) -> None:
    tenant = await secured.tenant(plan="enterprise")
    headers = {"authorization": f"Bearer {secured.token(tenant.id)}"}

    def body(size: int) -> bytes:
        prefix, suffix = b'{"events": [{"user_id": "', b'"}]}'
        return prefix + b"u" * (size - len(prefix) - len(suffix)) + suffix

    async with httpx.AsyncClient(base_url=secured.base_url, timeout=30) as client:
        big = await client.post(
            "/api/v1/events:track",
            content=body(TEN_MIB + 1024),
            headers={**headers, "content-type": "application/json"},
        )
        assert big.status_code == 413
        assert big.headers["content-type"].startswith("application/json")
        assert big.json()["code"] == 413
        # A large body under the limit reaches the service, which judges its content.
        fine = await client.post(
            "/api/v1/events:track",
            content=body(TEN_MIB // 4),
            headers={**headers, "content-type": "application/json"},
        )
        assert fine.status_code not in (413, 500, 503), fine.text[:200]


async def test_redis_down_global_rate_limit_fails_open(
    tmp_path: Path,
    postgres_url: str,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack = await start_secured(tmp_path, postgres_url, redis_server.url)
    try:
        tenant = await stack.tenant(plan="enterprise")
        headers = {"authorization": f"Bearer {stack.token(tenant.id)}"}
        registry = stack.runtime.metrics.registry
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            assert (await client.get("/api/v1/dataStats", headers=headers)).status_code == 200
            assert not registry.get_sample_value(FAIL_OPEN_METRIC)

            await asyncio.to_thread(redis_server.stop)
            with caplog.at_level(logging.WARNING, logger="gateway.ratelimit"):
                replies = [await client.get("/api/v1/dataStats", headers=headers) for _ in range(5)]
            assert [r.status_code for r in replies] == [200] * 5
            assert (registry.get_sample_value(FAIL_OPEN_METRIC) or 0) >= 5
            assert any("failing open" in r.getMessage() for r in caplog.records)

            # Redis back: the counters fill again (the limiter reconnects by itself).
            await asyncio.to_thread(redis_server.start)
            from redis.asyncio import Redis

            redis = Redis.from_url(redis_server.url)
            try:
                for _ in range(50):
                    reply = await client.get("/api/v1/dataStats", headers=headers)
                    assert reply.status_code == 200
                    if await redis.keys(f"rl:embrec:{tenant.id}:*"):
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise AssertionError("the global rate limit never used Redis again")
            finally:
                await redis.aclose()
    finally:
        await stop_secured(stack)
