"""Idempotent consumers: apply each event at most once per consumer, despite redelivery.

The bus delivers at least once (a relay or consumer crash replays events), so a consumer
whose effect is not naturally idempotent records the event ids it has applied in
``processed_events`` — in the same transaction as the effect. Either both commit (the
event is done, a redelivery is skipped) or neither does (the redelivery applies it).

The claim is an ``INSERT ... ON CONFLICT DO NOTHING`` on the (consumer, event_id) key. On
PostgreSQL a concurrent duplicate in another open transaction makes the insert wait for
that transaction and then do nothing if it committed, so two replicas handling the same
event at once still apply it once.

Effects that live outside this database (a cache, a file) cannot share the transaction;
make those idempotent by construction instead.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.events.bus import EventRecord, Handler
from services.storage.db import dialect_insert
from services.storage.models import ProcessedEvent, utcnow

__all__ = ["Effect", "claim_event", "idempotent_handler"]

logger = logging.getLogger(__name__)

#: A consumer's effect: applied inside the session's open transaction.
Effect = Callable[[AsyncSession, EventRecord], Awaitable[None]]


async def claim_event(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Record ``event_id`` as processed by ``consumer`` in the session's transaction.

    Returns False when it was already recorded: the caller must then skip its effect.
    """
    statement = (
        dialect_insert(session, ProcessedEvent)
        .values(consumer=consumer, event_id=event_id, processed_at=utcnow())
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


def idempotent_handler(
    session_factory: async_sessionmaker[AsyncSession], consumer: str, effect: Effect
) -> Handler:
    """Wrap ``effect`` into a bus handler that applies each event once for ``consumer``.

    Each event gets its own transaction: claim the id, run ``effect`` with the session,
    commit. A duplicate is logged at debug level and skipped; an exception rolls back
    both the claim and the effect and propagates, so the consumer retries the event.
    """

    async def handle(record: EventRecord) -> None:
        async with session_factory() as session, session.begin():
            if not await claim_event(session, consumer, record.event_id):
                logger.debug("%s: skipping duplicate event %s", consumer, record.event_id)
                return
            await effect(session, record)

    return handle
