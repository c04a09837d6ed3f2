"""The audit consumer on Kafka (Tansu): record_audit → outbox → relay → Kafka → the chain.

Each event is stored once, even when Kafka delivers it again (here: the relay publishes
every row a second time, as it would after crashing between publishing and marking).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from services.audit.consumer import AUDIT_TOPIC, CONSUMER_NAME, audit_handler
from services.audit.record import record_audit
from services.audit.store import AuditStore
from services.config import load_settings
from services.events.bus import EventRecord
from services.events.kafka import KafkaConsumer, KafkaPublisher, ensure_topics
from services.events.outbox import OutboxRelay
from services.storage import migrate
from services.storage.db import create_engine, session_factory
from services.storage.models import AuditEvent, OutboxEvent
from tests.support.servers import KafkaBroker

pytestmark = pytest.mark.integration

#: FACTS: a group joins in about half the session timeout; librdkafka's default is 45 s.
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500, "poll_timeout": 0.2}


async def _eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_audit_events_through_kafka_are_stored_once(
    tmp_path: Path, kafka_broker: KafkaBroker
) -> None:
    url = load_settings(data_dir=tmp_path).effective_database_url
    await migrate.upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    store = AuditStore(sessions)
    await ensure_topics(kafka_broker.bootstrap, [AUDIT_TOPIC])

    deliveries: Counter[str] = Counter()
    store_event = audit_handler(sessions, store)

    async def handler(record: EventRecord) -> None:
        deliveries[record.event_id] += 1
        await store_event(record)

    publisher = KafkaPublisher(kafka_broker.bootstrap, delivery_timeout=3.0)
    relay = OutboxRelay(sessions, publisher, poll_interval=0.05)
    consumer = KafkaConsumer(kafka_broker.bootstrap, CONSUMER_NAME, [AUDIT_TOPIC], **FAST_GROUP)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(handler, stop))]
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    try:
        async with sessions() as session, session.begin():
            for n in range(10):
                record_audit(session, tenant_id=tenant, actor="user:a", action=f"thing.{n}")

        async def stored() -> int:
            async with sessions() as session:
                count = await session.scalar(
                    select(func.count())
                    .select_from(AuditEvent)
                    .where(AuditEvent.tenant_id == tenant)
                )
            return int(count or 0)

        deadline = time.monotonic() + 20
        while await stored() < 10:
            assert time.monotonic() < deadline, "the events never reached the audit store"
            await asyncio.sleep(0.1)

        # Kafka is at-least-once: publish every event again.
        async with sessions() as session, session.begin():
            await session.execute(update(OutboxEvent).values(published_at=None))
        await _eventually(
            lambda: len(deliveries) == 10 and all(n >= 2 for n in deliveries.values()),
            20,
            "the second delivery of every event",
        )
        assert await stored() == 10
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
        await publisher.close()

    report = await store.verify()
    assert report.valid and report.checked == 10
    async with sessions() as session:
        actions = (await session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq))).all()
    assert actions == [f"thing.{n}" for n in range(10)]  # in the order they were recorded
    await engine.dispose()
