"""Every process applies the event tables' retention (services/app.py wires it in)."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from services.events.outbox import add_event
from services.storage.db import create_engine, session_factory
from services.storage.models import EventLogEntry, OutboxEvent
from tests.services.conftest import StackFactory


async def test_a_running_stack_forgets_published_events(stack_factory: StackFactory) -> None:
    stack = await stack_factory(
        outbox_retention_seconds=0.05,
        event_log_retention_seconds=0.05,
        retention_interval_seconds=0.1,
    )
    engine = create_engine(stack.runtime.settings.effective_database_url)
    sessions = session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            event_id = add_event(
                session,
                topic="embrec.test",
                key="k",
                event_type="embrec.events.v1.Test",
                payload=b"x",
                headers={},
            )

        async def left() -> tuple[int, int]:
            async with sessions() as session:
                outbox = await session.scalar(
                    select(func.count()).select_from(OutboxEvent).where(OutboxEvent.id == event_id)
                )
                log = await session.scalar(
                    select(func.count())
                    .select_from(EventLogEntry)
                    .where(EventLogEntry.event_id == event_id)
                )
            return int(outbox or 0), int(log or 0)

        # Retention deletes only published outbox rows, so the row's absence means it
        # was relayed into the event log; the log entry then goes past its own retention.
        deadline = asyncio.get_running_loop().time() + 20
        while (counts := await left()) != (0, 0):
            assert asyncio.get_running_loop().time() < deadline, counts
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
