"""The Redis response cache: hits, invalidation by events and deploys, and Redis outages."""

from __future__ import annotations

import asyncio
import io

from prometheus_client import generate_latest

from embrec.ingestion.v1 import ingestion_service_pb2 as ing
from embrec.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from embrec.ingestion.v1 import resources_pb2 as ing_pb
from tests.retrieval_service.conftest import Shop, make_shop
from tests.services.conftest import RunningStack, StackFactory, log_lines
from tests.support.servers import RedisServer


def cache_counts(stack: RunningStack) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in generate_latest(stack.runtime.metrics.registry).decode().splitlines():
        if line.startswith("embrec_retrieval_cache_requests_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            out[result] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("embrec_retrieval_cache_errors_total "):
            out["errors"] = float(line.rsplit(" ", 1)[1])
    return out


async def deployed_shop(stack: RunningStack) -> Shop:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.train(2, flip=True)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    return shop


async def test_repeated_requests_hit_the_cache(
    stack_factory: StackFactory, redis_server: RedisServer
) -> None:
    stack = await stack_factory(redis_url=redis_server.url)
    shop = await deployed_shop(stack)
    before = cache_counts(stack)
    first = await shop.recommend("u2", count=5)
    second = await shop.recommend("u2", count=5)
    after = cache_counts(stack)
    assert after.get("hit", 0) - before.get("hit", 0) == 1
    assert after.get("miss", 0) - before.get("miss", 0) == 1
    assert [i.item_id for i in second.items] == [i.item_id for i in first.items]
    assert second.recommendation_id != first.recommendation_id  # attribution per impression
    # Another request shape is another entry.
    await shop.recommend("u2", count=6)
    assert cache_counts(stack)["miss"] - after.get("miss", 0) == 1


async def test_a_users_new_events_and_a_deploy_invalidate(
    stack_factory: StackFactory, redis_server: RedisServer
) -> None:
    stack = await stack_factory(redis_url=redis_server.url)
    shop = await deployed_shop(stack)
    top = [i.item_id for i in (await shop.recommend("u3", count=4)).items]
    assert [i.item_id for i in (await shop.recommend("u3", count=4)).items] == top  # cached

    await ing_grpc.IngestionServiceStub(stack.channel).TrackEvents(
        ing.TrackEventsRequest(
            events=[
                ing_pb.Interaction(
                    user_id="u3", item_id=top[0], interaction_type=ing_pb.INTERACTION_TYPE_PURCHASE
                )
            ]
        ),
        metadata=shop.metadata(["events:write"]),
    )
    deadline = asyncio.get_running_loop().time() + 10
    while top[0] in {i.item_id for i in (await shop.recommend("u3", count=4)).items}:
        assert asyncio.get_running_loop().time() < deadline, "cached answer never invalidated"
        await asyncio.sleep(0.1)

    await shop.deploy([("v2", 100)])
    deadline = asyncio.get_running_loop().time() + 15
    while (await shop.recommend("u3", count=4)).model_version != "v2":
        assert asyncio.get_running_loop().time() < deadline, "deploy never reached the cache"
        await asyncio.sleep(0.1)


async def test_redis_down_serves_uncached_with_a_metric_and_a_log_line(
    stack_factory: StackFactory, redis_server: RedisServer, captured_logs: io.StringIO
) -> None:
    stack = await stack_factory(redis_url=redis_server.url)
    shop = await deployed_shop(stack)
    expected = [i.item_id for i in (await shop.recommend("u1", count=5)).items]

    await asyncio.to_thread(redis_server.stop)
    for _ in range(20):
        response = await shop.recommend("u1", count=5)
        assert not response.fallback
        assert [i.item_id for i in response.items] == expected
    counts = cache_counts(stack)
    assert counts.get("errors", 0) >= 1
    assert counts.get("bypass", 0) >= 1
    warnings = [
        line
        for line in log_lines(captured_logs)
        if "response cache unavailable" in str(line.get("message", ""))
    ]
    assert warnings and len(warnings) <= 2  # rate-limited, not one per request

    await asyncio.to_thread(redis_server.start)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        before = cache_counts(stack).get("hit", 0)
        await shop.recommend("u1", count=5)
        await shop.recommend("u1", count=5)
        if cache_counts(stack).get("hit", 0) > before:
            break  # cache resumes by itself
        assert asyncio.get_running_loop().time() < deadline, "cache never resumed"
        await asyncio.sleep(0.3)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_answers_read_from_redis_are_kept_locally_until_invalidated(
    redis_url: str,
) -> None:
    from redis.asyncio import Redis

    from services.retrieval.cache import ResponseCache, cache_key
    from services.retrieval.metrics import RetrievalMetrics

    client = Redis.from_url(redis_url)
    clock = _Clock()
    cache = ResponseCache(client, RetrievalMetrics(), local_seconds=2.0, clock=clock)
    try:
        await cache.put("t-local", "u1", "f", b"answer")
        assert len(cache.local) == 0  # a computed answer is not kept locally
        assert await cache.get("t-local", "u1", "f") == b"answer"  # read from Redis
        await client.delete(cache_key("t-local", "u1"))  # behind the replica's back
        assert await cache.get("t-local", "u1", "f") == b"answer"  # the local copy
        clock.now += 2.0
        assert await cache.get("t-local", "u1", "f") is None  # expired, Redis has none

        await cache.put("t-local", "u1", "f", b"answer")
        assert await cache.get("t-local", "u1", "f") == b"answer"
        await cache.invalidate_users("t-local", ["u1"])  # the user's new events
        assert len(cache.local) == 0 and await cache.get("t-local", "u1", "f") is None
    finally:
        await cache.close()


def test_local_answers_are_bounded_and_skip_reads_that_crossed_an_invalidation() -> None:
    from services.retrieval.cache import _LocalAnswers

    local = _LocalAnswers(seconds=5.0, max_bytes=10, clock=_Clock())
    local.put("t", "u1", "f", b"12345", local.generation)
    local.put("t", "u2", "f", b"12345", local.generation)
    assert local.get("t", "u1", "f") == b"12345"  # u1 is now the most recently used
    local.put("t", "u3", "f", b"1", local.generation)
    assert local.get("t", "u2", "f") is None and local.nbytes <= 10
    stale = local.generation
    local.drop_users("t", ["u9"])
    local.put("t", "u4", "f", b"1", stale)  # read before that invalidation: not kept
    assert local.get("t", "u4", "f") is None
