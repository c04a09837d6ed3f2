"""Limits a caller meets at the gateway: the JSON body size, and the global rate limit
when its Redis is down (fail open: the API stays up)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import httpx
import pytest

from embrec.ingestion.v1 import ingestion_service_pb2, ingestion_service_pb2_grpc
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
                # Counted when authz next tries to share its counts (every 50 ms).
                for _ in range(50):
                    if (registry.get_sample_value(FAIL_OPEN_METRIC) or 0) >= 5:
                        break
                    await asyncio.sleep(0.1)
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


async def test_over_the_global_limit_is_429_for_rest_and_resource_exhausted_for_grpc(
    secured: SecuredStack,
) -> None:
    # The override lowers the global limit only; Envoy's local buckets keep the plan's.
    tenant = await secured.tenant(plan="enterprise", rate_limit={"requests_per_second": 3})
    headers = {"authorization": f"Bearer {secured.token(tenant.id)}"}
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as client:
        replies = [await client.get("/api/v1/dataStats", headers=headers) for _ in range(10)]
    codes = [r.status_code for r in replies]
    assert codes.count(200) >= 3 and 429 in codes, codes
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.headers["x-embrec-error-reason"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit"] == "3"
    assert refused.json()["code"] == 429
    assert "grpc-status" not in refused.headers

    metadata = (("authorization", f"Bearer {secured.token(tenant.id)}"),)
    async with grpc.aio.insecure_channel(secured.grpc_target) as channel:
        stub = ingestion_service_pb2_grpc.IngestionServiceStub(channel)
        statuses = []
        for _ in range(10):
            try:
                await stub.GetDataStats(
                    ingestion_service_pb2.GetDataStatsRequest(), metadata=metadata
                )
                statuses.append(grpc.StatusCode.OK)
            except grpc.aio.AioRpcError as exc:
                statuses.append(exc.code())
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in statuses, statuses
    assert set(statuses) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
