"""Retrieval's event consumers on the real Kafka-protocol broker (Tansu), two replicas.

Each retrieval replica consumes ``embrec.models``, ``embrec.interactions`` and
``embrec.catalog`` with consumer groups of its own, from the end of the log as of its
start. Two runtimes share one database and one broker, as two retriever replicas do:
every deploy, tracked event and catalog change must reach both of them — also the ones
published while their consumer groups were still joining (a replica serves requests,
and so reads the current state, before its groups have partitions).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

import pytest

from embrec.ingestion.v1 import ingestion_service_pb2 as ing
from embrec.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from embrec.ingestion.v1 import resources_pb2 as ing_pb
from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from services.events.bus import EventRecord, OutboxRecord
from services.events.kafka import KafkaConsumer, KafkaPublisher, ensure_topics
from tests.retrieval_service.conftest import Shop, make_shop
from tests.retrieval_service.test_catalog_changes import import_items
from tests.services.conftest import StackFactory

pytestmark = pytest.mark.integration

#: Bound on how long an event may take to reach every replica's answers. Consumers that
#: are already in their groups need well under a second; the first events wait for the
#: group joins (about half the session timeout each).
DELIVERY_TIMEOUT = 20.0


async def within(
    check: Callable[[], Awaitable[bool]], what: str, since: float | None = None
) -> float:
    """Seconds from ``since`` (default: now) until ``check`` holds; fails after
    DELIVERY_TIMEOUT."""
    start = time.monotonic() if since is None else since
    while not await check():
        assert time.monotonic() - start < DELIVERY_TIMEOUT, f"{what} never happened"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_a_latest_group_gets_what_was_published_while_it_joined(
    kafka_bootstrap: str,
) -> None:
    """ "latest" is the end of the log when run() began, not when the group got partitions."""
    topic = f"embrec.test-latest-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [topic], num_partitions=3)
    publisher = KafkaPublisher(kafka_bootstrap, delivery_timeout=5.0)

    async def publish(names: Sequence[str]) -> None:
        await publisher.publish(
            [OutboxRecord(id=n, topic=topic, key=n, event_type="t", payload=b"x") for n in names]
        )

    received: list[str] = []

    async def handler(record: EventRecord) -> None:
        received.append(record.event_id)

    consumer = KafkaConsumer(
        kafka_bootstrap,
        f"replica-{uuid.uuid4().hex[:8]}",
        [topic],
        auto_offset_reset="latest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
        poll_timeout=0.2,
        start_skew=0.0,  # one clock here; production allows for skew between hosts
    )
    stop = asyncio.Event()
    try:
        await publish([f"old-{n}" for n in range(6)])
        await asyncio.sleep(0.05)  # a later millisecond than the old records' timestamps
        task = asyncio.create_task(consumer.run(handler, stop))
        await asyncio.sleep(0.01)  # run() has begun (its start time is fixed) before what follows
        await publish([f"joining-{n}" for n in range(6)])  # the group joins ~1 s later
        new = [f"new-{n}" for n in range(6)]
        await publish(new)

        async def all_new() -> bool:
            return set(new) <= set(received)

        await within(all_new, "delivery of the records published after run()")
        await asyncio.sleep(0.3)  # room for a stray old record to show up
        assert sorted(received) == sorted([f"joining-{n}" for n in range(6)] + new)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 15)
        await publisher.close()


async def replicas(stack_factory: StackFactory, bootstrap: str) -> tuple[Shop, Shop]:
    """The same tenant as seen through two retrieval replicas (one database, one broker)."""
    kafka: dict[str, object] = {
        "event_bus": "kafka",
        "kafka_bootstrap": bootstrap,
        # Ingestion's consumers honour it; retrieval's (the shared bus_consumer) do not
        # yet and join with the 10 s default, about 5 s after start.
        "kafka_session_timeout_ms": 2000,
        # Only CatalogChanged may refresh a catalog here, not the periodic re-read.
        "retrieval_catalog_refresh_seconds": 3600.0,
    }
    first = await stack_factory(**kafka)
    second = await stack_factory(
        database_url=first.runtime.settings.effective_database_url, **kafka
    )
    shop = await make_shop(first)
    return shop, Shop(second, shop.tenant_id, shop.slug, shop.item_ids, shop.prefix)


async def track(shop: Shop, user_id: str, item_ids: Sequence[str]) -> None:
    """Real-time events through the ingestion service (outbox → Kafka)."""
    reply = await ing_grpc.IngestionServiceStub(shop.stack.channel).TrackEvents(
        ing.TrackEventsRequest(
            events=[
                ing_pb.Interaction(
                    user_id=user_id, item_id=item, interaction_type=ing_pb.INTERACTION_TYPE_CLICK
                )
                for item in item_ids
            ]
        ),
        metadata=shop.metadata(["events:write"]),
    )
    assert reply.accepted_count == len(item_ids) and not reply.errors


def serves(shop: Shop, version: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        response = await shop.recommend("u1", count=3)
        return response.model_version == version and not response.fallback

    return check


def folded_in(shop: Shop, user_id: str, category: str) -> Callable[[], Awaitable[bool]]:
    """The unseen user gets a personal answer of the category they clicked (not popular)."""

    async def check() -> bool:
        response = await shop.recommend(user_id, count=3)
        return not response.fallback and {i.category for i in response.items} == {category}

    return check


def priced_out(shop: Shop, user_id: str, item_id: str) -> Callable[[], Awaitable[bool]]:
    """A model answer under 1000 leaves out ``item_id`` (the user's best item)."""

    async def check() -> bool:
        response = await shop.recommend(
            user_id, count=3, filters=pb.RecommendationFilters(max_price=1000)
        )
        assert not response.fallback
        return item_id not in [i.item_id for i in response.items]

    return check


async def test_every_replica_follows_deploys_events_and_catalog_changes(
    stack_factory: StackFactory, kafka_bootstrap: str
) -> None:
    shop, other = await replicas(stack_factory, kafka_bootstrap)
    both = (shop, other)
    await shop.train(1)
    await shop.train(2, flip=True)
    await shop.deploy([("v1", 100)], announce=False)
    cams = [i for i in shop.item_ids if shop.category_of(i) == "cameras"]
    audio = [i for i in shop.item_ids if shop.category_of(i) == "audio"]
    for s in both:
        await s.wait_for_version("u1", "v1")  # the first request reads the deployment
        for user in ("walk-in-1", "walk-in-2"):  # unseen at training, no history yet
            response = await s.recommend(user, count=3)
            assert response.fallback_reason == pb.FALLBACK_REASON_UNKNOWN_USER

    # Right after start: the replicas' consumer groups are likely still joining. Several
    # events of the tenant, one after another on its partition, and all must arrive.
    await track(shop, "walk-in-1", cams[:2])
    await track(other, "walk-in-2", audio[:2])
    # v2 flips the users: u0 now likes laptops, whose best item is item 1.
    best = shop.item_ids[1]
    await import_items(shop, [(best, "laptops", 5000.0)])
    await shop.deploy([("v2", 100)])
    for s in both:
        await within(serves(s, "v2"), "v2 on a replica")
        await within(folded_in(s, "walk-in-1", "cameras"), "fold-in of walk-in-1")
        await within(folded_in(s, "walk-in-2", "audio"), "fold-in of walk-in-2")
        await within(priced_out(s, "u0", best), "the new price")

    # With the groups joined, every kind of event reaches both replicas within seconds.
    latencies: dict[str, float] = {}
    published = time.monotonic()
    await shop.deploy([("v1", 100)])
    for n, s in enumerate(both):
        latencies[f"deploy@{n}"] = await within(serves(s, "v1"), "the redeploy", published)
    published = time.monotonic()
    await track(other, "walk-in-3", audio[2:4])
    for n, s in enumerate(both):
        check = folded_in(s, "walk-in-3", "audio")
        latencies[f"fold-in@{n}"] = await within(check, "fold-in of walk-in-3", published)
    published = time.monotonic()
    await import_items(shop, [(shop.item_ids[5], "laptops", 6000.0)])
    for n, s in enumerate(both):
        # v1: u1 likes laptops again; items 1 and 5 are its two best, both priced out now.
        check = priced_out(s, "u1", shop.item_ids[5])
        latencies[f"catalog@{n}"] = await within(check, "the second price change", published)
    print("kafka consumer latencies (s):", {k: round(v, 2) for k, v in latencies.items()})
