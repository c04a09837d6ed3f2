"""Retention of the event tables: what each may forget, and the loop that forgets it.

None of them is an archive, and each grows by a row per event (every Recommend emits
one): the outbox is a queue (a published row is kept ``outbox_retention_seconds`` for
inspection, an unpublished one until it is sent), the embedded event log keeps events
for ``event_log_retention_seconds`` as a Kafka topic does, and ``processed_events``
remembers applied event ids for ``processed_events_retention_seconds``, which must stay
above the bus's retention (an event still on the bus may be redelivered, and is then
recognised).

Deletes go oldest first in batches of :data:`BATCH` rows, each its own short
transaction, so a first run over a large backlog never holds SQLite's single write lock
(or PostgreSQL row locks) for long; each batch finds its rows by an index on the time
column (migration 0010). Every process runs the loop; deleting is idempotent, so two
processes at once only share the work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from services.config import Settings
from services.events.bus import wait_or_stop
from services.storage.models import EventLogEntry, OutboxEvent, ProcessedEvent, utcnow

__all__ = ["BATCH", "forget_processed", "purge_published", "run_retention", "truncate_event_log"]

logger = logging.getLogger(__name__)

#: Rows per delete statement (and transaction).
BATCH = 5000


async def _delete_in_batches(
    sessions: async_sessionmaker[AsyncSession], statement: Any, batch: int
) -> int:
    """Run ``statement`` (a DELETE of at most ``batch`` rows) until it deletes fewer."""
    deleted = 0
    while True:
        async with sessions() as session, session.begin():
            result = await session.execute(statement)
        count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < batch:
            return deleted
        await asyncio.sleep(0)  # let other work on this loop (and writers) in between


async def _delete_oldest(
    sessions: async_sessionmaker[AsyncSession],
    key: Sequence[InstrumentedAttribute[Any]],
    time: InstrumentedAttribute[Any],
    older_than: timedelta,
    batch: int,
    *conditions: Any,
) -> int:
    """Delete the rows of ``key``'s table whose ``time`` is more than ``older_than`` ago
    (and that meet ``conditions``), oldest first, ``batch`` rows a statement."""
    oldest = (
        select(*key).where(*conditions, time < utcnow() - older_than).order_by(time).limit(batch)
    )
    target = key[0] if len(key) == 1 else tuple_(*key)
    statement = (
        delete(time.class_).where(target.in_(oldest)).execution_options(synchronize_session=False)
    )
    return await _delete_in_batches(sessions, statement, batch)


async def purge_published(
    sessions: async_sessionmaker[AsyncSession], older_than: timedelta, *, batch: int = BATCH
) -> int:
    """Delete outbox rows published more than ``older_than`` ago; return how many."""
    table = OutboxEvent
    published = table.published_at.is_not(None)
    return await _delete_oldest(
        sessions, [table.seq], table.published_at, older_than, batch, published
    )


async def truncate_event_log(
    sessions: async_sessionmaker[AsyncSession], older_than: timedelta, *, batch: int = BATCH
) -> int:
    """Delete embedded event-log entries older than ``older_than`` (as a Kafka topic's
    time-based retention does): a consumer that far behind skips them."""
    table = EventLogEntry
    return await _delete_oldest(sessions, [table.offset], table.time, older_than, batch)


async def forget_processed(
    sessions: async_sessionmaker[AsyncSession], older_than: timedelta, *, batch: int = BATCH
) -> int:
    """Forget event ids applied more than ``older_than`` ago."""
    table = ProcessedEvent
    key = [table.consumer, table.event_id]
    return await _delete_oldest(sessions, key, table.processed_at, older_than, batch)


async def retain_once(
    sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> dict[str, int]:
    """One pass over the three tables; how many rows each lost."""
    return {
        "outbox": await purge_published(
            sessions, timedelta(seconds=settings.outbox_retention_seconds)
        ),
        "event_log": await truncate_event_log(
            sessions, timedelta(seconds=settings.event_log_retention_seconds)
        ),
        "processed_events": await forget_processed(
            sessions, timedelta(seconds=settings.processed_events_retention_seconds)
        ),
    }


async def run_retention(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, stop: asyncio.Event
) -> None:
    """Apply retention every ``retention_interval_seconds`` until ``stop``; a failed pass
    (database down) is logged and tried again at the next interval."""
    while not stop.is_set():
        try:
            deleted = await retain_once(sessions, settings)
        except Exception as exc:
            logger.warning(
                "event-table retention failed (%s); next try in %.0f s",
                exc,
                settings.retention_interval_seconds,
            )
        else:
            if any(deleted.values()):
                logger.info("event-table retention deleted %s", deleted)
        await wait_or_stop(stop, settings.retention_interval_seconds)
