"""Retention of the event tables (services/events/retention.py): what is past its time
goes, oldest first and in batches; what is not (or not yet published) stays."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from services.events.outbox import OutboxRelay, add_event
from services.events.retention import forget_processed, purge_published, truncate_event_log
from services.storage.models import EventLogEntry, OutboxEvent, ProcessedEvent, utcnow
from tests.events.fakes import FakePublisher
from tests.storage.fixtures import Database


async def _count(database: Database, table: type) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(table)) or 0)


async def _outbox_events(database: Database, n: int) -> None:
    async with database.sessions() as session, session.begin():
        for i in range(n):
            add_event(
                session,
                topic="t",
                key=str(i),
                event_type="embrec.events.v1.Test",
                payload=b"x",
                headers={},
            )


async def test_published_outbox_rows_go_after_their_retention(database: Database) -> None:
    await _outbox_events(database, 7)
    await OutboxRelay(database.sessions, FakePublisher(), batch_size=5).relay_once()
    async with database.sessions() as session, session.begin():
        # Published two hours ago: the oldest five rows; the other two were never sent.
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.published_at.is_not(None))
            .values(published_at=utcnow() - timedelta(hours=2))
        )
    assert await purge_published(database.sessions, timedelta(hours=3)) == 0
    # Batches of two: three statements for five rows.
    assert await purge_published(database.sessions, timedelta(hours=1), batch=2) == 5
    assert await _count(database, OutboxEvent) == 2  # unpublished rows stay, whatever age
    assert await purge_published(database.sessions, timedelta(0)) == 0


async def test_event_log_entries_go_after_their_retention(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        for n, age in enumerate((timedelta(days=9), timedelta(days=8), timedelta(hours=1))):
            session.add(
                EventLogEntry(
                    topic="t",
                    key="k",
                    event_id=f"e{n}",
                    event_type="embrec.events.v1.Test",
                    payload=b"x",
                    headers={},
                    time=utcnow() - age,
                )
            )
    assert await truncate_event_log(database.sessions, timedelta(days=7), batch=1) == 2
    async with database.sessions() as session:
        left = (await session.scalars(select(EventLogEntry.event_id))).all()
    assert left == ["e2"]


async def test_applied_event_ids_are_forgotten_after_their_retention(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        for consumer, event_id, age in (
            ("store", "old-1", timedelta(days=10)),
            ("served", "old-1", timedelta(days=9)),
            ("store", "new-1", timedelta(hours=1)),
        ):
            session.add(
                ProcessedEvent(consumer=consumer, event_id=event_id, processed_at=utcnow() - age)
            )
    assert await forget_processed(database.sessions, timedelta(days=8)) == 2
    async with database.sessions() as session:
        query = select(ProcessedEvent.consumer, ProcessedEvent.event_id)
        left = (await session.execute(query)).all()
    assert [tuple(r) for r in left] == [("store", "new-1")]
