"""Impressions leave a replica in batches: one RecommendationsServed event per tenant
and flush, within the size limits, each impression timed when it was served."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from embrec.events.v1 import events_pb2
from services.event_messages import open_envelope
from services.retrieval.impressions import (
    MAX_EVENT_BYTES,
    MAX_PER_EVENT,
    ImpressionBuffer,
    batch_events,
)
from services.retrieval.metrics import RetrievalMetrics
from services.storage.models import OutboxEvent
from tests.storage.fixtures import Database, database, db_url, pg_scratch_url, sqlite_url

__all__ = ["database", "db_url", "pg_scratch_url", "sqlite_url"]


def _impression(n: int, items: int = 3) -> events_pb2.RecommendationServed:
    return events_pb2.RecommendationServed(
        recommendation_id=f"rec-{n}",
        user_id=f"user-{n}",
        items=[events_pb2.ServedItem(item_id=f"item-{n}-{k}", rank=k + 1) for k in range(items)],
    )


def test_impressions_are_grouped_by_tenant_in_order_and_within_the_count_limit() -> None:
    pending = [("a" if n % 3 else "b", _impression(n)) for n in range(1_500)]
    events = batch_events(pending)
    assert [len(e.impressions) for t, e in events if t == "a"] == [MAX_PER_EVENT, 500]
    assert [len(e.impressions) for t, e in events if t == "b"] == [500]
    for tenant in ("a", "b"):
        sent = [i.recommendation_id for t, e in events if t == tenant for i in e.impressions]
        assert sent == [i.recommendation_id for t, i in pending if t == tenant]


def test_large_impressions_split_events_by_size() -> None:
    # 500 items an impression (the largest response) is ~11 KB.
    pending = [("a", _impression(n, items=500)) for n in range(60)]
    events = batch_events(pending)
    assert len(events) > 1
    assert sum(len(e.impressions) for _, e in events) == 60
    for _, event in events:
        assert sum(i.ByteSize() for i in event.impressions) <= MAX_EVENT_BYTES
    # An impression larger than the limit on its own still goes, alone.
    huge = _impression(0, items=20_000)
    assert huge.ByteSize() > MAX_EVENT_BYTES
    events = batch_events([("a", _impression(1)), ("a", huge), ("a", _impression(2))])
    assert [len(e.impressions) for _, e in events] == [1, 1, 1]


async def test_a_flush_writes_one_outbox_row_per_batch(database: Database) -> None:
    buffer = ImpressionBuffer(database.sessions, RetrievalMetrics())
    before = datetime.now(UTC) - timedelta(seconds=1)
    for n in range(1_200):
        buffer.add("tenant-a" if n < 1_000 else "tenant-b", _impression(n))
    assert await buffer.flush() == 1_200
    assert buffer.pending == 0
    async with database.sessions() as session:
        rows = (await session.scalars(select(OutboxEvent).order_by(OutboxEvent.seq))).all()
    assert [(r.key, r.topic) for r in rows] == [("tenant-a", "embrec.recommendations")] * 2 + [
        ("tenant-b", "embrec.recommendations")
    ]
    seen = []
    for row in rows:
        envelope = open_envelope(row.payload)
        batch = events_pb2.RecommendationsServed()
        assert envelope.payload.Unpack(batch)
        assert envelope.tenant_id == row.key
        for impression in batch.impressions:
            served = impression.served_time.ToDatetime(tzinfo=UTC)
            assert before < served <= datetime.now(UTC)
            seen.append(impression.recommendation_id)
    assert seen == [f"rec-{n}" for n in range(1_200)]
