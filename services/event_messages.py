"""Typed events on the bus: topics, and wrapping `embrec.events.v1` payloads in envelopes.

The event bus (``services.events``) moves opaque bytes; this module is where those
bytes become ``EventEnvelope`` messages. Every service publishes through
``emit`` inside the transaction that changes its state (the outbox), so an event
exists exactly when its state change does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncSession

from embrec.events.v1 import events_pb2
from embrec.ingestion.v1 import resources_pb2
from services.events.outbox import event_row
from services.runtime.context import current_request_id
from services.storage.models import OutboxEvent, new_id

__all__ = ["TOPICS", "emit", "envelope_row", "interactions_of", "open_envelope"]

#: One topic per kind of fact; keyed by tenant so a tenant's events stay in order.
TOPICS = {
    "AuditRecorded": "embrec.audit",
    "InteractionsRecorded": "embrec.interactions",
    "CatalogChanged": "embrec.catalog",
    "ModelDeployed": "embrec.models",
    "TrainingJobStateChanged": "embrec.training",
    "RecommendationsServed": "embrec.recommendations",
    # One impression: the format before batches, still read from the same topic.
    "RecommendationServed": "embrec.recommendations",
}

PRODUCER = "embrec"


def emit(
    session: AsyncSession,
    payload: Message,
    *,
    tenant_id: str,
    event_id: str | None = None,
    occurred: datetime | None = None,
) -> str:
    """Add ``payload`` (an embrec.events.v1 message) to the outbox; returns the event id."""
    row = envelope_row(payload, tenant_id=tenant_id, event_id=event_id, occurred=occurred)
    session.add(OutboxEvent(**row))
    return str(row["id"])


def envelope_row(
    payload: Message,
    *,
    tenant_id: str,
    event_id: str | None = None,
    occurred: datetime | None = None,
) -> dict[str, Any]:
    """The outbox row announcing ``payload`` in an EventEnvelope (see :func:`emit`).

    For batches, write many with :func:`services.events.outbox.insert_events`.
    """
    event_type = payload.DESCRIPTOR.name
    topic = TOPICS.get(event_type)
    if topic is None:
        raise ValueError(f"{event_type} is not an embrec.events.v1 payload with a topic")
    event_id = event_id or new_id()
    stamp = Timestamp()
    stamp.FromDatetime(occurred or datetime.now(UTC))
    packed = any_pb2.Any()
    packed.Pack(payload)
    envelope = events_pb2.EventEnvelope(
        event_id=event_id,
        event_type=payload.DESCRIPTOR.full_name,
        tenant_id=tenant_id,
        occurred_time=stamp,
        request_id=current_request_id() or "",
        producer=PRODUCER,
        payload=packed,
    )
    return event_row(
        topic=topic,
        key=tenant_id or "platform",
        event_type=payload.DESCRIPTOR.full_name,
        payload=envelope.SerializeToString(),
        event_id=event_id,
    )


def open_envelope(data: bytes) -> events_pb2.EventEnvelope:
    envelope = events_pb2.EventEnvelope()
    envelope.ParseFromString(data)
    return envelope


def interactions_of(payload: events_pb2.InteractionsRecorded) -> list[resources_pb2.Interaction]:
    """The interactions of an event, whichever form it carries them in.

    TrackEvents sends ``interactions``; bulk imports send ``columns`` (cheaper to
    build for a million rows), which this expands into the same messages.
    """
    if not payload.HasField("columns"):
        return list(payload.interactions)
    columns = payload.columns
    values = dict(zip(columns.value_positions, columns.values, strict=True))
    recommendations = columns.recommendation_ids
    event_ids = columns.event_ids
    out: list[resources_pb2.Interaction] = []
    for n, (user_id, item_id, kind, micros) in enumerate(
        zip(
            columns.user_ids,
            columns.item_ids,
            columns.interaction_types,
            columns.timestamp_micros,
            strict=True,
        )
    ):
        message = resources_pb2.Interaction(
            user_id=user_id,
            item_id=item_id,
            interaction_type=kind,
            recommendation_id=recommendations[n] if recommendations else "",
            event_id=event_ids[n] if event_ids else "",
        )
        seconds, rest = divmod(micros, 1_000_000)
        message.timestamp.seconds = seconds
        message.timestamp.nanos = rest * 1000
        if n in values:
            message.value = values[n]
        out.append(message)
    return out
