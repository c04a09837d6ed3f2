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
from services.events.outbox import event_row
from services.runtime.context import current_request_id
from services.storage.models import OutboxEvent, new_id

__all__ = ["TOPICS", "emit", "envelope_row", "open_envelope"]

#: One topic per kind of fact; keyed by tenant so a tenant's events stay in order.
TOPICS = {
    "AuditRecorded": "embrec.audit",
    "InteractionsRecorded": "embrec.interactions",
    "CatalogChanged": "embrec.catalog",
    "ModelDeployed": "embrec.models",
    "TrainingJobStateChanged": "embrec.training",
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
