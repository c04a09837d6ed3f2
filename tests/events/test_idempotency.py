"""Idempotent consumers apply each event once, even when it is delivered twice."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.events.bus import EventRecord
from services.events.idempotency import claim_event, idempotent_handler
from services.storage.models import AuditEvent, ProcessedEvent
from tests.storage.fixtures import Database


def _record(event_id: str) -> EventRecord:
    return EventRecord(
        topic="audit",
        key="t1",
        event_id=event_id,
        event_type="embrec.events.v1.AuditEvent",
        payload=b"login",
        headers={},
        partition=0,
        offset=0,
    )


async def _record_audit(session: AsyncSession, record: EventRecord) -> None:
    session.add(
        AuditEvent(
            actor="u1",
            action=record.payload.decode(),
            outcome="ok",
            prev_hash="0",
            hash=record.event_id,
        )
    )


async def _audit_count(database: Database) -> int:
    async with database.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_duplicate_delivery_is_processed_once(database: Database) -> None:
    handle = idempotent_handler(database.sessions, "audit-writer", _record_audit)
    await handle(_record("e1"))
    await handle(_record("e1"))  # redelivered
    await handle(_record("e2"))
    assert await _audit_count(database) == 2


async def test_consumers_deduplicate_independently(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        assert await claim_event(session, "analytics", "e1")
        assert await claim_event(session, "audit-writer", "e1")
        assert not await claim_event(session, "analytics", "e1")


async def test_failed_effect_releases_the_claim(database: Database) -> None:
    calls = 0

    async def flaky(session: AsyncSession, record: EventRecord) -> None:
        nonlocal calls
        calls += 1
        await _record_audit(session, record)
        if calls == 1:
            raise RuntimeError("transient")

    handle = idempotent_handler(database.sessions, "audit-writer", flaky)
    with pytest.raises(RuntimeError):
        await handle(_record("e1"))
    assert await _audit_count(database) == 0
    async with database.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(ProcessedEvent)) == 0
    await handle(_record("e1"))  # the retry applies it
    assert await _audit_count(database) == 1
