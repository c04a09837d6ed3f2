"""The embedded bus end to end: outbox → relay → SQL event log → consumer group."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.bus import EventRecord, OutboxRecord
from services.events.idempotency import idempotent_handler
from services.events.outbox import OutboxRelay, add_event
from services.events.sqllog import SqlLogConsumer, SqlLogPublisher
from services.storage.models import EventLogEntry
from tests.storage.fixtures import Database


async def _write_events(database: Database, topic: str, count: int, start: int = 0) -> list[str]:
    ids = []
    for n in range(start, start + count):
        async with database.sessions() as session, session.begin():
            ids.append(
                add_event(
                    session,
                    topic=topic,
                    key=f"k{n % 3}",
                    event_type="embrec.events.v1.Test",
                    payload=str(n).encode(),
                    headers={"n": str(n)},
                )
            )
    return ids


async def _consume_until(
    consumer: SqlLogConsumer, seen: list[EventRecord], count: int, timeout: float = 10
) -> None:
    stop = asyncio.Event()

    async def handler(record: EventRecord) -> None:
        seen.append(record)
        if len(seen) >= count:
            stop.set()

    await asyncio.wait_for(consumer.run(handler, stop), timeout)


async def test_relay_to_log_to_consumer(database: Database) -> None:
    ids = await _write_events(database, "orders", 10)
    await _write_events(database, "other", 2)
    relay = OutboxRelay(database.sessions, SqlLogPublisher(database.sessions), batch_size=4)
    while await relay.relay_once():
        pass

    seen: list[EventRecord] = []
    consumer = SqlLogConsumer(database.sessions, "g1", ["orders"], batch_size=3, poll_interval=0.05)
    await _consume_until(consumer, seen, 10)
    assert [r.event_id for r in seen] == ids
    assert [r.payload for r in seen] == [str(n).encode() for n in range(10)]
    assert seen[0].headers == {"n": "0"} and seen[0].event_type == "embrec.events.v1.Test"
    assert seen[0].timestamp is not None and seen[0].timestamp.tzinfo is not None
    assert [r.offset for r in seen] == sorted(r.offset for r in seen)

    # The group resumes after its committed offset; another group starts from the start.
    more = await _write_events(database, "orders", 3, start=10)
    while await relay.relay_once():
        pass
    resumed: list[EventRecord] = []
    await _consume_until(
        SqlLogConsumer(database.sessions, "g1", ["orders"], poll_interval=0.05), resumed, 3
    )
    assert [r.event_id for r in resumed] == more
    fresh: list[EventRecord] = []
    await _consume_until(
        SqlLogConsumer(database.sessions, "g2", ["orders", "other"], poll_interval=0.05), fresh, 15
    )
    assert len(fresh) == 15


async def test_republished_batch_is_stored_once(database: Database) -> None:
    publisher = SqlLogPublisher(database.sessions)
    record = OutboxRecord(id="e1", topic="t", key="k", event_type="x", payload=b"1")
    await publisher.publish([record])
    await publisher.publish([record])
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(EventLogEntry)) == 1


async def test_failing_handler_is_retried_then_processed_once(database: Database) -> None:
    ids = await _write_events(database, "orders", 5)
    relay = OutboxRelay(database.sessions, SqlLogPublisher(database.sessions))
    await relay.relay_once()
    applied: list[str] = []
    failures = 0

    async def effect(session: AsyncSession, record: EventRecord) -> None:
        nonlocal failures
        if record.payload == b"2" and failures < 2:
            failures += 1
            raise RuntimeError("transient")
        applied.append(record.event_id)

    handler = idempotent_handler(database.sessions, "projector", effect)
    stop = asyncio.Event()

    async def until_done(record: EventRecord) -> None:
        await handler(record)
        await handler(record)  # a duplicate delivery on top: must be a no-op
        if len(applied) == 5:
            stop.set()

    consumer = SqlLogConsumer(
        database.sessions, "projector", ["orders"], poll_interval=0.02, backoff_initial=0.01
    )
    await asyncio.wait_for(consumer.run(until_done, stop), 10)
    assert applied == ids and failures == 2


class _CountingConsumer(SqlLogConsumer):
    polls = 0

    async def _fetch(self, positions: dict[str, int]) -> list[EventRecord]:
        self.polls += 1
        return await super()._fetch(positions)


async def test_an_idle_consumer_polls_less_often_and_catches_up_when_events_come(
    database: Database,
) -> None:
    consumer = _CountingConsumer(
        database.sessions, "idle", ["orders"], poll_interval=0.02, idle_poll_max=0.2
    )
    seen: list[EventRecord] = []
    task = asyncio.create_task(_consume_until(consumer, seen, 3))
    await asyncio.sleep(1.5)
    # Every 0.02 s that would be ~75 polls; backing off to 0.2 s it is ~10.
    assert consumer.polls <= 20
    relay = OutboxRelay(database.sessions, SqlLogPublisher(database.sessions))
    ids = await _write_events(database, "orders", 3)
    while await relay.relay_once():
        pass
    await asyncio.wait_for(task, 2)
    assert [r.event_id for r in seen] == ids
