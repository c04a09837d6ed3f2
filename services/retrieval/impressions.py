"""Impression events (``RecommendationServed``), written to the outbox in batches.

Every response emits one, so analytics can join served items with attributed
interactions. Writing one outbox row per request in the request's path would put a
database transaction in every Recommend (the budget is 1,000 req/s on two cores), so
responses append to an in-memory buffer and a background task writes the buffer to
the outbox every ``interval`` seconds in one transaction. The outbox relay then
publishes them as usual.

Trade-off, stated: impressions buffered in memory when the process dies (at most
``interval`` seconds' worth) are lost; they are analytics, not state. While the
database is down the buffer grows up to ``max_pending`` and then drops the oldest
(counted in ``embrec_retrieval_impressions_dropped_total``), never blocking serving.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from embrec.events.v1 import events_pb2
from services.event_messages import envelope_row
from services.events.bus import Backoff, wait_or_stop
from services.events.outbox import insert_events
from services.retrieval.metrics import RetrievalMetrics

__all__ = ["ImpressionBuffer"]

logger = logging.getLogger(__name__)


class ImpressionBuffer:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        metrics: RetrievalMetrics,
        *,
        interval: float = 0.25,
        max_pending: int = 100_000,
        batch: int = 2_000,
    ) -> None:
        self._sessions = sessions
        self._metrics = metrics
        self._interval = interval
        self._batch = batch
        self._pending: deque[tuple[str, events_pb2.RecommendationServed, datetime]] = deque(
            maxlen=max_pending
        )
        self._wake = asyncio.Event()

    def add(self, tenant_id: str, event: events_pb2.RecommendationServed) -> None:
        if len(self._pending) == self._pending.maxlen:
            self._metrics.impressions_dropped.inc()
        self._pending.append((tenant_id, event, datetime.now(UTC)))
        if len(self._pending) >= self._batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> int:
        """Write what is buffered now; returns how many events were written."""
        written = 0
        while self._pending:
            chunk = [self._pending[i] for i in range(min(self._batch, len(self._pending)))]
            rows = [
                envelope_row(event, tenant_id=tenant_id, occurred=when)
                for tenant_id, event, when in chunk
            ]
            async with self._sessions() as session, session.begin():
                await insert_events(session, rows)
            for _ in chunk:
                self._pending.popleft()
            written += len(chunk)
        return written

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(initial=0.5, maximum=10.0)
        while not stop.is_set():
            await wait_or_stop(stop, self._interval, self._wake)
            try:
                await self.flush()
                backoff.reset()
            except Exception as exc:  # database down: keep buffering, retry later
                delay = backoff.next_delay()
                logger.warning(
                    "could not write %d impression events (%s); retrying in %.1f s",
                    len(self._pending),
                    exc,
                    delay,
                )
                await wait_or_stop(stop, delay)
        try:
            await self.flush()
        except Exception as exc:
            logger.warning("lost %d impression events at stop: %s", len(self._pending), exc)
