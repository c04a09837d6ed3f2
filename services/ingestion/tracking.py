"""Real-time events: TrackEvents writes them to the outbox; consumers store them.

Why through the bus rather than straight into ``interactions``: the call must succeed
while Kafka is down and stay cheap under a site's traffic. TrackEvents validates the
batch and writes *one* outbox row (an InteractionsRecorded event, source TRACK) in a
short transaction; the relay publishes it when the broker is reachable; the
``ingestion-store`` consumer group inserts the interactions, exactly once per event id
(``processed_events`` in the same transaction). Retrieval consumes the same topic for
"recently seen" items and fold-in inputs, so it needs no second copy.

Client retries: an ``event_id`` is remembered (``processed_events``, consumer
``track:<tenant>``) when accepted, so the same event sent again is acknowledged but
stored once.

The second consumer stores impressions (RecommendationsServed batches, and lone
RecommendationServed events, the format before batches) in ``served_recommendations``
for analytics, a batch in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from embrec.events.v1 import events_pb2
from embrec.ingestion.v1 import resources_pb2 as pb
from services.config import Settings
from services.errors import FieldViolation, InvalidArgument
from services.event_messages import TOPICS, emit, open_envelope
from services.events.bus import EventRecord
from services.events.idempotency import claim_event, idempotent_handler
from services.ingestion.parsing import (
    EARLIEST_TIMESTAMP,
    FUTURE_TOLERANCE,
    MAX_ID_LENGTH,
    MAX_RECOMMENDATION_ID_LENGTH,
)
from services.ingestion.rollups import record_interactions, record_served, statement_sizes
from services.storage.db import dialect_insert
from services.storage.models import Interaction, ServedRecommendation

__all__ = ["EventError", "TrackResult", "consumers", "track_events"]

logger = logging.getLogger(__name__)

MAX_EVENTS = 1000
STORE_GROUP = "ingestion-store"
SERVED_GROUP = "ingestion-served"
#: Served recommendations in one multi-row INSERT (9 parameters a row).
_SERVED_ROWS_PER_STATEMENT = 256

_TYPE_NAMES = {
    pb.INTERACTION_TYPE_VIEW: "view",
    pb.INTERACTION_TYPE_CLICK: "click",
    pb.INTERACTION_TYPE_ADD_TO_CART: "add_to_cart",
    pb.INTERACTION_TYPE_PURCHASE: "purchase",
    pb.INTERACTION_TYPE_RATING: "rating",
}
_SURFACES = {
    events_pb2.RECOMMENDATION_SURFACE_RECOMMEND: "recommend",
    events_pb2.RECOMMENDATION_SURFACE_SIMILAR_ITEMS: "similar_items",
    events_pb2.RECOMMENDATION_SURFACE_POPULAR_ITEMS: "popular_items",
}


@dataclass(frozen=True)
class EventError:
    index: int
    field: str
    reason: str
    message: str


@dataclass(frozen=True)
class TrackResult:
    accepted: int
    errors: list[EventError]


def _check(index: int, event: pb.Interaction, latest: datetime) -> EventError | None:
    for name in ("user_id", "item_id"):
        value = getattr(event, name)
        if not value:
            return EventError(index, name, "MISSING_VALUE", f"{name} is required.")
        if len(value) > MAX_ID_LENGTH:
            return EventError(
                index, name, "TOO_LONG", f"{name} exceeds {MAX_ID_LENGTH} characters."
            )
    if event.interaction_type not in _TYPE_NAMES:
        return EventError(
            index,
            "interaction_type",
            "UNKNOWN_INTERACTION_TYPE",
            "interaction_type must be VIEW, CLICK, ADD_TO_CART, PURCHASE or RATING.",
        )
    if event.HasField("timestamp"):
        when = event.timestamp.ToDatetime(tzinfo=UTC)
        if when > latest:
            return EventError(
                index, "timestamp", "FUTURE_TIMESTAMP", "timestamp is more than 5 minutes ahead."
            )
        if when < EARLIEST_TIMESTAMP:
            return EventError(index, "timestamp", "INVALID_TIMESTAMP", "timestamp is before 1990.")
    if event.interaction_type == pb.INTERACTION_TYPE_RATING and not event.HasField("value"):
        return EventError(index, "value", "MISSING_VALUE", "A RATING needs its value.")
    if len(event.recommendation_id) > MAX_RECOMMENDATION_ID_LENGTH:
        return EventError(
            index, "recommendation_id", "TOO_LONG", "recommendation_id exceeds 64 characters."
        )
    if len(event.event_id) > 64:
        return EventError(index, "event_id", "TOO_LONG", "event_id exceeds 64 characters.")
    return None


async def track_events(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    events: Sequence[pb.Interaction],
) -> TrackResult:
    """Validate, deduplicate by event_id and put the good events in the outbox."""
    if not events or len(events) > MAX_EVENTS:
        raise InvalidArgument(
            f"Send 1 to {MAX_EVENTS} events per call; got {len(events)}.",
            violations=[FieldViolation("events", f"1 to {MAX_EVENTS} events")],
        )
    now = datetime.now(UTC)
    latest = now + FUTURE_TOLERANCE
    errors: list[EventError] = []
    good: list[pb.Interaction] = []
    for index, event in enumerate(events):
        error = _check(index, event, latest)
        if error is not None:
            errors.append(error)
            continue
        accepted = pb.Interaction()
        accepted.CopyFrom(event)
        if not accepted.HasField("timestamp"):
            accepted.timestamp.FromDatetime(now)
        good.append(accepted)
    if good:
        async with sessions() as session, session.begin():
            fresh = []
            seen: set[str] = set()
            for event in good:
                if event.event_id:
                    if event.event_id in seen or not await claim_event(
                        session, f"track:{tenant_id}", event.event_id
                    ):
                        continue  # a retry: acknowledged, stored once
                    seen.add(event.event_id)
                fresh.append(event)
            if fresh:
                emit(
                    session,
                    events_pb2.InteractionsRecorded(
                        interactions=fresh, source=events_pb2.INTERACTION_SOURCE_TRACK
                    ),
                    tenant_id=tenant_id,
                    occurred=now,
                )
    return TrackResult(accepted=len(good), errors=errors)


# --------------------------------------------------------------------------- consumers


async def store_tracked(session: AsyncSession, record: EventRecord) -> None:
    """Insert TRACK interactions (uploads are stored by the import itself)."""
    envelope = open_envelope(record.payload)
    payload = events_pb2.InteractionsRecorded()
    if not envelope.payload.Unpack(payload):
        return
    if payload.source != events_pb2.INTERACTION_SOURCE_TRACK or not payload.interactions:
        return
    rows = [
        {
            "tenant_id": envelope.tenant_id,
            "user_id": i.user_id,
            "item_id": i.item_id,
            "type": _TYPE_NAMES.get(i.interaction_type, "view"),
            "ts": i.timestamp.ToDatetime(tzinfo=UTC),
            "value": i.value if i.HasField("value") else None,
            "recommendation_id": i.recommendation_id or None,
            "upload_id": None,
        }
        for i in payload.interactions
    ]
    await session.execute(insert(Interaction), rows)
    await record_interactions(
        session,
        envelope.tenant_id,
        [
            (r["user_id"], r["item_id"], r["type"], r["ts"], r["value"], r["recommendation_id"])
            for r in rows
        ],
    )


def _impressions(envelope: events_pb2.EventEnvelope) -> list[events_pb2.RecommendationServed]:
    """The impressions an event carries: a batch, or one (the format before batches)."""
    batch = events_pb2.RecommendationsServed()
    if envelope.payload.Unpack(batch):
        return list(batch.impressions)
    single = events_pb2.RecommendationServed()
    if envelope.payload.Unpack(single):
        return [single]
    return []


async def store_served(session: AsyncSession, record: EventRecord) -> None:
    """Store an event's impressions; an id stored before (a repeated event, or a
    recommendation id seen twice) adds nothing, to the rows or to the rollups."""
    envelope = open_envelope(record.payload)
    occurred = envelope.occurred_time.ToDatetime(tzinfo=UTC)
    rows: dict[str, dict[str, Any]] = {}
    for payload in _impressions(envelope):
        recommendation_id = payload.recommendation_id[:64]
        if not recommendation_id or recommendation_id in rows:
            continue
        rows[recommendation_id] = {
            "tenant_id": envelope.tenant_id,
            "recommendation_id": recommendation_id,
            "user_id": payload.user_id or None,
            "served_at": (
                payload.served_time.ToDatetime(tzinfo=UTC)
                if payload.HasField("served_time")
                else occurred
            ),
            "item_ids": [item.item_id for item in payload.items],
            "item_count": len(payload.items),
            "surface": _SURFACES.get(payload.surface, "recommend"),
            "model_version": payload.model_version or None,
            "fallback": payload.fallback,
        }
    values = list(rows.values())
    inserted: set[str] = set()
    for start, size in statement_sizes(len(values), _SERVED_ROWS_PER_STATEMENT):
        statement = (
            dialect_insert(session, ServedRecommendation)
            .values(values[start : start + size])
            .on_conflict_do_nothing(index_elements=["tenant_id", "recommendation_id"])
            .returning(ServedRecommendation.recommendation_id)
        )
        inserted.update((await session.scalars(statement)).all())
    await record_served(
        session,
        envelope.tenant_id,
        [(rows[i]["served_at"], rows[i]["item_ids"]) for i in rows if i in inserted],
    )


Background = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def consumers(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> list[Background]:
    """Background tasks consuming the bus into storage, for the runtime to run."""

    def make(group: str, topic: str, effect: Any) -> Background:
        handler = idempotent_handler(sessions, group, effect)

        async def run(stop: asyncio.Event) -> None:
            if settings.event_bus == "kafka":
                from services.events.kafka import KafkaConsumer

                timeout = settings.kafka_session_timeout_ms
                consumer: Any = KafkaConsumer(
                    settings.kafka_bootstrap,
                    group,
                    [topic],
                    session_timeout_ms=timeout,
                    # librdkafka wants heartbeats well inside the session timeout.
                    heartbeat_interval_ms=max(timeout // 4, 100),
                )
            else:
                from services.events.sqllog import SqlLogConsumer

                consumer = SqlLogConsumer(sessions, group, [topic])
            await consumer.run(handler, stop)

        return run

    return [
        make(STORE_GROUP, TOPICS["InteractionsRecorded"], store_tracked),
        make(SERVED_GROUP, TOPICS["RecommendationServed"], store_served),
    ]
