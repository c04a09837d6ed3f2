"""API usage metering: what each process counts, and what GetUsage shows whom."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from embrec.platform.v1 import platform_service_pb2 as pb
from embrec.platform.v1 import platform_service_pb2_grpc as pb_grpc
from services.platform.usage import percentile_bound
from services.platform.usage_store import flush_once, read_usage
from services.runtime.usage import UsageRecorder
from services.storage.db import create_engine, session_factory
from tests.retrieval_service.conftest import Shop, code_of, make_shop
from tests.services.conftest import RunningStack, StackFactory
from tests.support.servers import RedisServer

RECOMMEND = ("embrec.retrieval.v1.RetrievalService", "Recommend")


# ------------------------------------------------------------------ counting in memory


def test_the_recorder_counts_codes_latency_and_skips_probes() -> None:
    recorder = UsageRecorder()
    now = datetime(2026, 11, 25, 10, 30, tzinfo=UTC).timestamp()
    common: dict[str, Any] = {"tenant_id": "t1", "service": "S", "method": "M", "started_at": now}
    recorder.record(code=grpc.StatusCode.OK, elapsed_seconds=0.0005, cache_hit=True, **common)
    recorder.record(code=grpc.StatusCode.INVALID_ARGUMENT, elapsed_seconds=0.004, **common)
    recorder.record(code=grpc.StatusCode.UNAVAILABLE, elapsed_seconds=3.0, **common)
    recorder.record(
        tenant_id="",
        service="grpc.health.v1.Health",
        method="Check",
        code=grpc.StatusCode.OK,
        elapsed_seconds=0.001,
        started_at=now,
    )
    (key, tally), *others = recorder.drain().items()
    assert not others  # the health check is not an API call
    assert (key.tenant_id, key.hour) == ("t1", int(now // 3600))
    assert (tally.calls, tally.client_errors, tally.server_errors, tally.cache_hits) == (3, 1, 1, 1)
    assert tally.buckets == [1, 1, 0, 0, 0, 0, 1]  # ≤1 ms, ≤5 ms, above 2.5 s
    assert len(recorder) == 0


def test_counts_given_back_after_a_failed_flush_merge_with_newer_ones() -> None:
    recorder = UsageRecorder()
    common: dict[str, Any] = {"tenant_id": "t1", "service": "S", "method": "M", "started_at": 0.0}
    recorder.record(code=grpc.StatusCode.OK, elapsed_seconds=0.01, **common)
    failed = recorder.drain()
    recorder.record(code=grpc.StatusCode.OK, elapsed_seconds=0.01, **common)
    recorder.restore(failed)
    assert [t.calls for t in recorder.drain().values()] == [2]


def test_percentiles_read_the_bucket_bounds() -> None:
    # 100 calls: 90 at or under 5 ms, 99 at or under 100 ms, 1 above 2.5 s.
    at_or_under = [10, 90, 95, 99, 99, 99]
    assert percentile_bound(at_or_under, 100, 0.5) == (5.0, False)
    assert percentile_bound(at_or_under, 100, 0.95) == (25.0, False)
    assert percentile_bound(at_or_under, 100, 0.99) == (100.0, False)
    assert percentile_bound(at_or_under, 100, 1.0) == (2500.0, True)
    assert percentile_bound([0] * 6, 0, 0.99) == (0.0, False)


async def test_a_failed_flush_keeps_the_counts(tmp_path: Path) -> None:
    # A database that cannot be opened (its directory does not exist): the flush fails.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    try:
        recorder = UsageRecorder()
        recorder.record(
            tenant_id="t1",
            service="S",
            method="M",
            code=grpc.StatusCode.OK,
            elapsed_seconds=0.01,
            started_at=0.0,
        )
        assert not await flush_once(recorder, session_factory(engine))
        assert len(recorder) == 1
    finally:
        await engine.dispose()


# ------------------------------------------------------------------ GetUsage, end to end


def _stub(stack: RunningStack) -> pb_grpc.PlatformServiceStub:
    return pb_grpc.PlatformServiceStub(stack.channel)


async def _usage(stack: RunningStack, metadata: Any, **fields: Any) -> pb.Usage:
    usage: pb.Usage = await _stub(stack).GetUsage(
        pb.GetUsageRequest(**fields), metadata=metadata, timeout=10
    )
    return usage


def _method(usage: pb.Usage, service: str, method: str) -> pb.UsageCounts:
    for found in usage.methods:
        if (found.service, found.method) == (service, method):
            return found.counts
    return pb.UsageCounts()


async def _settled(stack: RunningStack, shop: Shop) -> pb.UsageCounts:
    """Recommend counts once every flushed figure is in (two equal reads in a row)."""
    previous = None
    for _ in range(100):
        await asyncio.sleep(0.3)
        counts = _method(await _usage(stack, shop.metadata()), *RECOMMEND)
        if previous is not None and counts == previous:
            return counts
        previous = counts
    raise AssertionError("usage never settled")


async def _wait_for(stack: RunningStack, shop: Shop, calls: int) -> pb.Usage:
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        usage = await _usage(stack, shop.metadata())
        if _method(usage, *RECOMMEND).api_calls >= calls:
            return usage
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"Recommend calls never reached {calls}: {usage}")
        await asyncio.sleep(0.1)


async def test_a_tenant_sees_its_own_calls_errors_and_cache_hits(
    stack_factory: StackFactory, redis_server: RedisServer
) -> None:
    stack = await stack_factory(redis_url=redis_server.url, usage_flush_seconds=0.1)
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    other = await make_shop(stack)
    before = await _settled(stack, shop)

    await shop.recommend("u2", count=5)  # a miss, then the same request from the cache
    await shop.recommend("u2", count=5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shop.recommend("u2", count=501)
    assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    await other.recommend("u1", count=5)

    usage = await _wait_for(stack, shop, before.api_calls + 3)
    after = _method(usage, *RECOMMEND)
    assert after.api_calls - before.api_calls == 3
    assert after.recommendations - before.recommendations == 2
    assert after.cache_hits - before.cache_hits == 1
    assert after.client_errors - before.client_errors == 1
    assert after.server_errors == 0
    assert usage.tenant_id == shop.tenant_id
    assert usage.granularity == pb.USAGE_GRANULARITY_HOUR
    assert len(usage.series) == 24  # the last 24 hours, empty ones included
    assert sum(b.counts.api_calls for b in usage.series) == usage.totals.api_calls
    assert usage.totals.cache_hit_rate == pytest.approx(
        usage.totals.cache_hits / usage.totals.recommendations
    )
    recommend = next(m for m in usage.methods if (m.service, m.method) == RECOMMEND)
    assert 0 < recommend.p50_latency_ms <= recommend.p99_latency_ms

    # The other tenant's calls are its own: one Recommend, nothing of the first shop's.
    theirs = await _wait_for(stack, other, 1)
    assert _method(theirs, *RECOMMEND).api_calls == 1

    # A tenant cannot read another's usage; a platform admin can read either, or all.
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await _usage(stack, shop.metadata(), tenant_id=other.slug)
    assert code_of(denied.value) == grpc.StatusCode.PERMISSION_DENIED
    as_admin = await _usage(stack, stack.admin_metadata(), tenant_id=other.slug)
    assert _method(as_admin, *RECOMMEND).api_calls == 1
    platform = await _usage(stack, stack.admin_metadata())
    assert platform.tenant_id == ""
    assert _method(platform, *RECOMMEND).api_calls >= after.api_calls + 1


async def test_bad_ranges_are_refused_with_the_field(stack: RunningStack) -> None:
    now = datetime.now(UTC)
    inverted = pb.GetUsageRequest()
    inverted.time_range.start_time.FromDatetime(now)
    inverted.time_range.end_time.FromDatetime(now - timedelta(days=1))
    hourly_too_long = pb.GetUsageRequest(granularity=pb.USAGE_GRANULARITY_HOUR)
    hourly_too_long.time_range.start_time.FromDatetime(now - timedelta(days=40))
    for request in (inverted, hourly_too_long):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _stub(stack).GetUsage(request, metadata=stack.admin_metadata(), timeout=10)
        assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
    daily = pb.GetUsageRequest()
    daily.time_range.start_time.FromDatetime(now - timedelta(days=30))
    usage = await _stub(stack).GetUsage(daily, metadata=stack.admin_metadata(), timeout=10)
    assert usage.granularity == pb.USAGE_GRANULARITY_DAY
    assert len(usage.series) in (30, 31)  # whole UTC days touched by the range


async def test_usage_over_rest_through_envoy(stack_factory: StackFactory, envoy_for: Any) -> None:
    stack = await stack_factory(usage_flush_seconds=0.1)
    shop = await make_shop(stack)
    _, port = await envoy_for(stack.runtime.port)
    headers = dict(shop.metadata())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        recommended = await client.post(
            "/api/v1/recommendations", json={"user_id": "u1", "count": 5}, headers=headers
        )
        assert recommended.status_code == 200, recommended.text
        for _ in range(100):
            answer = await client.get("/api/v1/usage", headers=headers)
            assert answer.status_code == 200, answer.text
            if int(answer.json().get("totals", {}).get("recommendations", 0)) >= 1:
                break
            await asyncio.sleep(0.1)
        body = answer.json()
        assert int(body["totals"]["recommendations"]) == 1
        assert body["tenant_id"] == shop.tenant_id
        anonymous = await client.get("/api/v1/usage")
        assert anonymous.status_code == 401


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_processes_flushing_the_same_hour_add_up(
    backend: str, stack_factory: StackFactory, request: pytest.FixtureRequest
) -> None:
    # Two processes (replicas) count calls of the same tenant, hour and method.
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    stack = await stack_factory(url)
    tenant = f"flush-{uuid.uuid4().hex[:8]}"
    started_at = datetime.now(UTC).timestamp()
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        sessions = session_factory(engine)
        recorders = [UsageRecorder(), UsageRecorder()]
        for recorder, calls in zip(recorders, (2, 3), strict=True):
            for _ in range(calls):
                recorder.record(
                    tenant_id=tenant,
                    service=RECOMMEND[0],
                    method=RECOMMEND[1],
                    code=grpc.StatusCode.OK,
                    elapsed_seconds=0.003,
                    started_at=started_at,
                )
        assert all(await asyncio.gather(*(flush_once(r, sessions) for r in recorders)))
        hour = int(started_at // 3600)
        hours, methods = await read_usage(
            sessions, tenant_id=tenant, start_hour=hour, end_hour=hour + 1
        )
    finally:
        await engine.dispose()
    assert hours[hour].calls == 5 and hours[hour].recommendations == 5
    (method,) = methods
    assert method.at_or_under == [0, 5, 5, 5, 5, 5]
