"""The transactional outbox: events are stored with the state change that caused them.

Why: a service that commits to its database and then publishes to Kafka loses the event
when it crashes between the two, or when Kafka is down; one that publishes first may
announce a change that then rolls back. Instead, :func:`add_event` adds an ``outbox`` row
to the caller's *open* session, so the event commits or rolls back atomically with the
state change. :class:`OutboxRelay` then publishes committed rows in ``seq`` order and marks
them published. While the bus is down it backs off (bounded exponential) and retries
forever: an outage delays events, it loses none.

Concurrency: on PostgreSQL the relay claims rows with ``SELECT ... FOR UPDATE SKIP
LOCKED`` inside the transaction that later marks them published, so several relays (one
per service replica) never publish the same row twice in the normal case and do not wait
on each other. Order is then kept within one relay's batch; across relays, two events of
the same key could overtake each other, so run one relay per database when strict per-key
order matters (consumers must be idempotent either way). SQLite has one writer anyway and
ignores ``FOR UPDATE``; run a single relay there.

Delivery is at-least-once: if the process dies after the bus confirmed a batch and before
the ``published_at`` update commits, the batch is published again. Consumers deduplicate
on the event id (:mod:`services.events.idempotency`).

A record that keeps failing for another reason than an outage (for example larger than
the broker accepts) is retried with backoff too, with ``attempts`` and ``last_error``
recorded on its row for operators; it holds back the records behind it, on purpose, so
order is never silently broken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.events.bus import Backoff, BusUnavailable, OutboxRecord, Publisher, wait_or_stop
from services.storage.models import OutboxEvent, new_id, utcnow

__all__ = ["OutboxRelay", "add_event", "event_row", "insert_events"]

logger = logging.getLogger(__name__)

_MAX_ERROR_LENGTH = 2000


def event_row(
    *,
    topic: str,
    key: str,
    event_type: str,
    payload: bytes,
    event_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The column values of one outbox row (``seq`` is assigned by the database)."""
    if not topic:
        raise ValueError("topic must not be empty")
    return {
        "id": event_id or new_id(),
        "topic": topic,
        "key": key,
        "event_type": event_type,
        "payload": payload,
        "headers": dict(headers or {}),
        "created_at": utcnow(),
        "attempts": 0,
    }


def add_event(
    session: AsyncSession,
    *,
    topic: str,
    key: str,
    event_type: str,
    payload: bytes,
    event_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """Add an event to the outbox within ``session``'s current transaction; return its id.

    Call it in the same unit of work as the state change the event announces; nothing is
    written until that transaction commits, and a rollback discards the event with it.
    ``key`` selects the Kafka partition (events with the same key stay in order): use the
    tenant id, or the tenant and aggregate id. ``event_id`` defaults to a new UUID; pass
    one to make a retried operation produce the same event.
    """
    row = event_row(
        topic=topic,
        key=key,
        event_type=event_type,
        payload=payload,
        event_id=event_id,
        headers=headers,
    )
    session.add(OutboxEvent(**row))
    return str(row["id"])


async def insert_events(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write many outbox rows (from :func:`event_row`) in one executemany statement.

    For high-volume producers (impressions). ORM objects would be flushed one
    ``INSERT … RETURNING seq`` at a time on SQLite, each a round trip through the event
    loop while the transaction holds the database's single write lock; under load that
    starved every other writer past its busy timeout ("database is locked").
    """
    if rows:
        # On the session's connection (same transaction), as a Core statement: through
        # Session.execute the ORM's bulk-insert path re-processes every row in Python.
        connection = await session.connection()
        await connection.execute(insert(cast(Table, OutboxEvent.__table__)), list(rows))


class OutboxRelay:
    """Publishes committed outbox rows to a :class:`~services.events.bus.Publisher`.

    ``relay_once`` publishes one batch and returns how many rows it published (raising
    :class:`BusUnavailable` or a database error when it could not); ``run`` loops until
    ``stop_event`` is set, polling every ``poll_interval`` seconds when idle and straight
    away while there is a backlog. ``wake()`` cuts the idle wait short (call it after
    committing an event for lower latency in-process).
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        publisher: Publisher,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.5,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self._session_factory = session_factory
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Make a waiting ``run`` loop look for new rows now."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Publish the oldest batch of unpublished rows; return how many were published."""
        failure: Exception | None = None
        async with self._session_factory() as session, session.begin():
            rows = (
                await session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.published_at.is_(None))
                    .order_by(OutboxEvent.seq)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            records = [
                OutboxRecord(
                    id=row.id,
                    topic=row.topic,
                    key=row.key,
                    event_type=row.event_type,
                    payload=row.payload,
                    headers={str(k): str(v) for k, v in row.headers.items()},
                )
                for row in rows
            ]
            delivered: frozenset[str]
            try:
                await self._publisher.publish(records)
                delivered = frozenset(record.id for record in records)
            except BusUnavailable as exc:
                failure, delivered = exc, exc.delivered
            except Exception as exc:  # recorded on the rows, then re-raised below
                failure, delivered = exc, frozenset()
            published = [row.seq for row in rows if row.id in delivered]
            failed = [row.seq for row in rows if row.id not in delivered]
            await _mark(session, published, failed, failure)
        if failure is not None:
            raise failure
        return len(rows)

    async def run(self, stop_event: asyncio.Event) -> None:
        """Relay until ``stop_event`` is set; never gives up while the bus is down."""
        backoff = Backoff(self._backoff_initial, self._backoff_max)
        while not stop_event.is_set():
            try:
                count = await self.relay_once()
            except BusUnavailable as exc:
                delay = backoff.next_delay()
                logger.warning(
                    "event bus unavailable (%s); retry %d in %.1f s", exc, backoff.failures, delay
                )
                await wait_or_stop(stop_event, delay)
                continue
            except Exception:
                delay = backoff.next_delay()
                logger.exception("outbox relay failed; retry %d in %.1f s", backoff.failures, delay)
                await wait_or_stop(stop_event, delay)
                continue
            if backoff.failures:
                logger.info("outbox relay recovered after %d failed attempts", backoff.failures)
                backoff.reset()
            if count:
                logger.debug("relayed %d events", count)
            if count < self._batch_size:
                await wait_or_stop(stop_event, self._poll_interval, self._wake)


async def _mark(
    session: AsyncSession,
    published: Sequence[int],
    failed: Sequence[int],
    failure: Exception | None,
) -> None:
    if published:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.seq.in_(published))
            .values(published_at=utcnow(), attempts=OutboxEvent.attempts + 1, last_error=None)
            .execution_options(synchronize_session=False)
        )
    if failed:
        message = f"{type(failure).__name__}: {failure}"[:_MAX_ERROR_LENGTH]
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.seq.in_(failed))
            .values(attempts=OutboxEvent.attempts + 1, last_error=message)
            .execution_options(synchronize_session=False)
        )
