"""Outbox → relay → Kafka (Tansu) → idempotent consumer, across a broker outage.

Tansu keeps its data in memory here, so a restart loses the topics and everything in
them — harsher than a real Kafka outage: the test waits until the first events are
consumed before it stops the broker, re-creates the topic after the restart, and checks
that the events written during the outage arrive, each applied exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.bus import BusUnavailable, EventRecord, OutboxRecord
from services.events.idempotency import idempotent_handler
from services.events.kafka import KafkaConsumer, KafkaPublisher, ensure_topics
from services.events.outbox import OutboxRelay, add_event
from services.storage.models import OutboxEvent
from tests.storage.fixtures import Database
from tests.support.servers import KafkaBroker

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

TOPIC = "orders"
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500, "poll_timeout": 0.2}


async def _write(database: Database, count: int, start: int) -> list[str]:
    ids = []
    async with database.sessions() as session, session.begin():
        for n in range(start, start + count):
            ids.append(
                add_event(
                    session,
                    topic=TOPIC,
                    key=f"tenant-{n % 4}",
                    event_type="embrec.events.v1.OrderPlaced",
                    payload=f"order {n}".encode(),
                    headers={"tenant_id": f"tenant-{n % 4}"},
                )
            )
    return ids


async def _eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _ensure_topic_when_up(bootstrap: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await ensure_topics(bootstrap, [TOPIC], num_partitions=3, request_timeout=3)
            return
        except BusUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_events_survive_broker_restart_exactly_once(
    database: Database, kafka_broker: KafkaBroker
) -> None:
    bootstrap = kafka_broker.bootstrap
    await ensure_topics(bootstrap, [TOPIC], num_partitions=3)
    await ensure_topics(bootstrap, [TOPIC], num_partitions=3)  # idempotent

    applied: list[str] = []
    deliveries: Counter[str] = Counter()

    async def effect(session: AsyncSession, record: EventRecord) -> None:
        assert record.event_type == "embrec.events.v1.OrderPlaced"
        assert record.headers == {"tenant_id": record.key}
        applied.append(record.event_id)

    project = idempotent_handler(database.sessions, "order-projector", effect)

    async def handler(record: EventRecord) -> None:
        deliveries[record.event_id] += 1
        await project(record)

    publisher = KafkaPublisher(bootstrap, delivery_timeout=1.5)
    relay = OutboxRelay(
        database.sessions, publisher, poll_interval=0.05, backoff_initial=0.1, backoff_max=1.0
    )
    consumer = KafkaConsumer(bootstrap, "order-projector", [TOPIC], **FAST_GROUP)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(handler, stop))]
    try:
        before = await _write(database, 20, start=0)
        await _eventually(lambda: len(applied) >= 20, 15, "the first events")

        await asyncio.to_thread(kafka_broker.stop)
        during = await _write(database, 15, start=20)
        await asyncio.sleep(2.5)  # the relay fails, backs off, keeps the rows
        async with database.sessions() as session:
            pending = (
                await session.scalars(select(OutboxEvent).where(OutboxEvent.published_at.is_(None)))
            ).all()
        assert {row.id for row in pending} == set(during)
        assert all(row.attempts >= 1 and row.last_error for row in pending)
        assert not any(task.done() for task in tasks)

        await asyncio.to_thread(kafka_broker.start)
        await _ensure_topic_when_up(bootstrap)
        await _eventually(lambda: len(applied) >= 35, 20, "the events written during the outage")
        await asyncio.sleep(0.5)  # room for any straggling duplicate to show up
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
        await publisher.close()

    assert sorted(applied) == sorted(before + during)
    assert len(applied) == len(set(applied)) == 35  # exactly once, whatever was redelivered
    async with database.sessions() as session:
        unpublished = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
    assert unpublished == 0


async def test_publish_while_broker_down_raises_bus_unavailable(
    database: Database, kafka_broker: KafkaBroker
) -> None:
    await ensure_topics(kafka_broker.bootstrap, [TOPIC])
    publisher = KafkaPublisher(kafka_broker.bootstrap, delivery_timeout=3.0)
    record = OutboxRecord(id="e1", topic=TOPIC, key="k", event_type="t", payload=b"x")
    try:
        await publisher.publish([record])
        await asyncio.to_thread(kafka_broker.stop)
        started = time.monotonic()
        with pytest.raises(BusUnavailable) as caught:
            await publisher.publish([record])
        assert caught.value.delivered == frozenset()
        assert time.monotonic() - started < 15  # bounded by the delivery timeout
    finally:
        await publisher.close()
