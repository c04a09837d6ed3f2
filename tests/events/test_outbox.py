"""The outbox: events commit and roll back with their state change; the relay publishes
them in order, exactly once per confirmed delivery, and rides out outages."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import func, select

from services.events.outbox import (
    OutboxRelay,
    add_event,
    event_row,
    insert_events,
)
from services.storage.db import create_engine, session_factory
from services.storage.migrate import upgrade
from services.storage.models import OutboxEvent, Tenant
from tests.events.fakes import FakePublisher
from tests.storage.fixtures import Database
from tests.support.servers import PostgresServer


async def _create_tenant(database: Database, slug: str, *, fail: bool = False) -> str:
    async with database.sessions() as session, session.begin():
        tenant = Tenant(name=slug, slug=slug, email=f"{slug}@example.com")
        session.add(tenant)
        await session.flush()
        event_id = add_event(
            session,
            topic="tenants",
            key=tenant.id,
            event_type="embrec.events.v1.TenantCreated",
            payload=slug.encode(),
            headers={"tenant_id": tenant.id},
        )
        if fail:
            raise RuntimeError("validation failed after the event was added")
    return event_id


async def _unpublished(database: Database) -> int:
    async with database.sessions() as session:
        query = (
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
        return int(await session.scalar(query) or 0)


async def _count(database: Database, model: type[object]) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_event_commits_with_the_state_change(database: Database) -> None:
    event_id = await _create_tenant(database, "acme")
    async with database.sessions() as session:
        row = await session.scalar(select(OutboxEvent).where(OutboxEvent.id == event_id))
        assert row is not None
        assert row.topic == "tenants" and row.payload == b"acme" and row.published_at is None
        assert row.headers["tenant_id"] == row.key
        assert await session.scalar(select(Tenant).where(Tenant.slug == "acme")) is not None


async def test_event_rolls_back_with_the_state_change(database: Database) -> None:
    with pytest.raises(RuntimeError):
        await _create_tenant(database, "acme", fail=True)
    assert await _count(database, Tenant) == 0
    assert await _count(database, OutboxEvent) == 0


async def test_relay_publishes_in_order_and_marks_published(database: Database) -> None:
    ids = [await _create_tenant(database, f"t{n}") for n in range(7)]
    publisher = FakePublisher()
    relay = OutboxRelay(database.sessions, publisher, batch_size=3)
    assert [await relay.relay_once() for _ in range(4)] == [3, 3, 1, 0]
    assert publisher.ids == ids
    async with database.sessions() as session:
        rows = (await session.scalars(select(OutboxEvent))).all()
        assert all(r.published_at is not None and r.attempts == 1 for r in rows)


async def test_a_batch_written_in_one_statement_is_relayed_in_order(database: Database) -> None:
    rows = [
        event_row(topic="recommendations", key="t", event_type="Served", payload=bytes([n]))
        for n in range(250)
    ]
    async with database.sessions() as session, session.begin():
        await insert_events(session, rows)
        await insert_events(session, [])
    publisher = FakePublisher()
    relay = OutboxRelay(database.sessions, publisher, batch_size=100)
    assert [await relay.relay_once() for _ in range(4)] == [100, 100, 50, 0]
    assert publisher.ids == [row["id"] for row in rows]


async def test_relay_keeps_unconfirmed_records_on_outage(database: Database) -> None:
    ids = [await _create_tenant(database, f"t{n}") for n in range(5)]
    publisher = FakePublisher()
    publisher.down, publisher.partial = True, 2
    relay = OutboxRelay(database.sessions, publisher)
    with pytest.raises(Exception, match="broker down"):
        await relay.relay_once()
    async with database.sessions() as session:
        rows = (await session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))).all()
        assert [r.published_at is not None for r in rows] == [True, True, False, False, False]
        assert rows[2].attempts == 1 and "broker down" in (rows[2].last_error or "")
    publisher.down = False
    assert await relay.relay_once() == 3
    assert publisher.ids == ids  # each confirmed record published once, in order


async def test_run_backs_off_while_down_and_catches_up(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.events.outbox")
    publisher = FakePublisher()
    publisher.down = True
    relay = OutboxRelay(
        database.sessions, publisher, poll_interval=0.05, backoff_initial=0.02, backoff_max=0.1
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    ids = [await _create_tenant(database, f"t{n}") for n in range(3)]
    await asyncio.sleep(0.5)
    assert publisher.failures >= 3  # kept retrying, bounded delay
    assert publisher.published == []
    publisher.down = False
    ids += [await _create_tenant(database, "late")]
    relay.wake()
    async with asyncio.timeout(5):
        while len(publisher.published) < 4:
            await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert publisher.ids == ids
    assert "event bus unavailable" in caplog.text and "recovered" in caplog.text


@pytest.mark.integration
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_concurrent_relays_publish_each_row_once(database: Database) -> None:
    """FOR UPDATE SKIP LOCKED: relays on several replicas never publish a row twice."""
    ids = [await _create_tenant(database, f"t{n}") for n in range(40)]
    publisher = FakePublisher()
    publisher.delay = 0.05  # hold the row locks while "publishing"
    relays = [OutboxRelay(database.sessions, publisher, batch_size=5) for _ in range(4)]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.relay_once():
            pass

    await asyncio.gather(*(drain(r) for r in relays))
    assert sorted(publisher.ids) == sorted(ids)
    assert len(publisher.ids) == len(ids)


@pytest.mark.integration
async def test_relay_survives_database_restart(postgres_server: PostgresServer) -> None:
    """A PostgreSQL outage makes the relay fail fast and retry, not hang or die."""
    await upgrade(postgres_server.url)
    engine = create_engine(postgres_server.url, connect_timeout=1.0)
    database = Database(postgres_server.url, engine, session_factory(engine))
    publisher = FakePublisher()
    relay = OutboxRelay(
        database.sessions, publisher, poll_interval=0.05, backoff_initial=0.05, backoff_max=0.5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        ids = [await _create_tenant(database, f"t{n}") for n in range(3)]
        async with asyncio.timeout(5):
            while len(publisher.published) < 3 or await _unpublished(database):
                await asyncio.sleep(0.05)
        # The relay publishes, then marks the rows published: an outage between the two
        # publishes them again after it (at-least-once; consumers dedupe by event id).
        # Waiting for the mark makes this test about the restart, not about that window.
        await asyncio.to_thread(postgres_server.stop)
        await asyncio.sleep(1.0)
        assert not task.done()
        await asyncio.to_thread(postgres_server.start)
        ids += [await _create_tenant(database, f"t{n}") for n in range(3, 6)]
        async with asyncio.timeout(10):
            while len(publisher.published) < 6:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await engine.dispose()
    assert publisher.ids == ids
