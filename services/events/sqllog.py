"""The embedded event bus: an append-only log in SQL, for `embrec up` with no servers.

The embedded mode runs every service in one process on SQLite, where a Kafka broker is
one external server too many. This backend keeps Kafka's model — topics, an ordered log,
consumer groups with committed offsets, at-least-once delivery — in two tables:

* ``event_log``: one row per event, ``offset`` strictly increasing across all topics;
  ``event_id`` is unique, so a batch the relay publishes twice is stored once;
* ``consumer_offsets``: per (group, topic), the last offset the group has processed.

Services code against :class:`~services.events.bus.Publisher` and
:class:`~services.events.bus.Consumer` and do not know which backend they run on; the
outbox relay feeds this log exactly as it feeds Kafka.

Ordering: a consumer reads ``offset > committed`` and therefore must never see offset
*n+1* commit before *n*. SQLite has a single writer, so offsets commit in order. On
PostgreSQL, sequence values are handed out at insert time, not commit time, so the
publisher takes a transaction-scoped advisory lock: appends are serialised and commit in
offset order.

Limits (fine for one host): consumers poll, every ``poll_interval`` while events come
and backing off to ``idle_poll_max`` while none do (an idle ``embrec up`` runs about ten
consumers, and their polls were its main idle CPU); a group is meant to be run
by one consumer at a time (there is no partition assignment); retention is by age with
:func:`services.events.retention.truncate_event_log`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.events.bus import (
    Backoff,
    BusUnavailable,
    EventRecord,
    Handler,
    OutboxRecord,
    wait_or_stop,
)
from services.storage.db import dialect_insert, is_postgresql
from services.storage.models import ConsumerOffset, EventLogEntry, utcnow

__all__ = ["SqlLogConsumer", "SqlLogPublisher"]

logger = logging.getLogger(__name__)

# An arbitrary 64-bit constant naming the "append to event_log" advisory lock.
_APPEND_LOCK_KEY = 0x656D_6272_6563_0002


class SqlLogPublisher:
    """Appends outbox records to ``event_log`` in one transaction per batch."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def publish(self, records: Sequence[OutboxRecord]) -> None:
        if not records:
            return
        now = utcnow()
        rows = [
            {
                "topic": r.topic,
                "key": r.key,
                "event_id": r.id,
                "event_type": r.event_type,
                "payload": r.payload,
                "headers": dict(r.headers),
                "time": now,
            }
            for r in records
        ]
        try:
            async with self._session_factory() as session, session.begin():
                if is_postgresql(session):
                    await session.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK_KEY}
                    )
                statement = dialect_insert(session, EventLogEntry).on_conflict_do_nothing(
                    index_elements=["event_id"]
                )
                await session.execute(statement, rows)
        except (DBAPIError, OSError, TimeoutError) as exc:
            raise BusUnavailable(f"event log unavailable: {exc}") from exc

    async def close(self) -> None:
        """Nothing to release: the session factory belongs to the caller."""


class SqlLogConsumer:
    """Reads ``topics`` from ``event_log`` as consumer group ``group_id``.

    Starts after the group's committed offsets; a group seen for the first time starts at
    the beginning of the log (``from_beginning=True``) or at its current end. Offsets are
    committed after each batch, and before backing off when a handler fails, so a
    restart replays at most one batch.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        group_id: str,
        topics: Sequence[str],
        *,
        batch_size: int = 100,
        poll_interval: float = 0.2,
        idle_poll_max: float = 1.0,
        from_beginning: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
    ) -> None:
        if not topics:
            raise ValueError("topics must not be empty")
        self._session_factory = session_factory
        self._group_id = group_id
        self._topics = list(dict.fromkeys(topics))
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._idle_poll_max = max(idle_poll_max, poll_interval)
        self._from_beginning = from_beginning
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max

    async def run(self, handler: Handler, stop_event: asyncio.Event) -> None:
        backoff = Backoff(self._backoff_initial, self._backoff_max)
        positions: dict[str, int] | None = None
        idle_wait = self._poll_interval
        while not stop_event.is_set():
            try:
                if positions is None:
                    positions = await self._load_positions()
                batch = await self._fetch(positions)
            except (DBAPIError, OSError, TimeoutError) as exc:
                delay = backoff.next_delay()
                logger.warning(
                    "%s: event log unavailable (%s); retry in %.1f s", self._group_id, exc, delay
                )
                await wait_or_stop(stop_event, delay)
                continue
            if not batch:
                await wait_or_stop(stop_event, idle_wait)
                idle_wait = min(idle_wait * 2, self._idle_poll_max)
                continue
            idle_wait = self._poll_interval
            advanced: dict[str, int] = {}
            failed = False
            for record in batch:
                if stop_event.is_set():
                    break
                try:
                    await handler(record)
                except Exception:
                    failed = True
                    logger.exception(
                        "%s: handler failed on event %s (%s offset %d)",
                        self._group_id,
                        record.event_id,
                        record.topic,
                        record.offset,
                    )
                    break
                positions[record.topic] = record.offset
                advanced[record.topic] = record.offset
            if advanced:
                await self._commit(advanced)
            if failed:
                delay = backoff.next_delay()
                await wait_or_stop(stop_event, delay)
            else:
                backoff.reset()

    async def _load_positions(self) -> dict[str, int]:
        async with self._session_factory() as session:
            result = await session.execute(
                select(ConsumerOffset.topic, ConsumerOffset.offset).where(
                    ConsumerOffset.group_id == self._group_id,
                    ConsumerOffset.topic.in_(self._topics),
                )
            )
            committed = {topic: offset for topic, offset in result}
            positions: dict[str, int] = {}
            for topic in self._topics:
                if topic in committed:
                    positions[topic] = committed[topic]
                elif self._from_beginning:
                    positions[topic] = 0
                else:
                    end = await session.scalar(
                        select(func.max(EventLogEntry.offset)).where(EventLogEntry.topic == topic)
                    )
                    positions[topic] = end or 0
        return positions

    async def _fetch(self, positions: dict[str, int]) -> list[EventRecord]:
        condition = or_(
            *(
                and_(EventLogEntry.topic == topic, EventLogEntry.offset > offset)
                for topic, offset in positions.items()
            )
        )
        async with self._session_factory() as session:
            rows = (
                await session.scalars(
                    select(EventLogEntry)
                    .where(condition)
                    .order_by(EventLogEntry.offset)
                    .limit(self._batch_size)
                )
            ).all()
        return [
            EventRecord(
                topic=row.topic,
                key=row.key,
                event_id=row.event_id,
                event_type=row.event_type,
                payload=row.payload,
                headers={str(k): str(v) for k, v in row.headers.items()},
                partition=0,
                offset=row.offset,
                timestamp=row.time,
            )
            for row in rows
        ]

    async def _commit(self, advanced: dict[str, int]) -> None:
        try:
            async with self._session_factory() as session, session.begin():
                insert = dialect_insert(session, ConsumerOffset)
                statement = insert.on_conflict_do_update(
                    index_elements=["group_id", "topic"],
                    set_={
                        "offset": insert.excluded["offset"],
                        "updated_at": insert.excluded["updated_at"],
                    },
                )
                now = utcnow()
                await session.execute(
                    statement,
                    [
                        {"group_id": self._group_id, "topic": t, "offset": o, "updated_at": now}
                        for t, o in advanced.items()
                    ],
                )
        except (DBAPIError, OSError, TimeoutError) as exc:
            # Not fatal: processing continues from memory; a restart replays from the
            # last committed offset (at-least-once).
            logger.warning("%s: could not commit offsets %s (%s)", self._group_id, advanced, exc)
