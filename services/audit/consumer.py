"""Bus plumbing for the audit trail: the consumer that stores ``AuditRecorded`` events.

Producers call ``record_audit`` (services/audit/record.py) in the transaction of their
change; the outbox relay puts the event on the ``embrec.audit`` topic (Kafka, or the
SQL event log in the embedded mode); this consumer appends it to the chain. The claim
of the event id (``processed_events``) and the append commit together, so a redelivery
never stores an event twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from embrec.audit.v1 import resources_pb2 as audit_pb
from embrec.events.v1 import events_pb2
from services.audit.store import AuditStore, Entry
from services.config import Settings
from services.event_messages import TOPICS, open_envelope
from services.events.bus import Consumer, EventRecord, Handler
from services.events.idempotency import idempotent_handler

__all__ = ["AUDIT_TOPIC", "CONSUMER_NAME", "audit_handler", "bus_consumer", "entry_from_proto"]

AUDIT_TOPIC = TOPICS["AuditRecorded"]
CONSUMER_NAME = "audit-store"

OUTCOME_NAMES = {
    audit_pb.AUDIT_OUTCOME_SUCCESS: "success",
    audit_pb.AUDIT_OUTCOME_FAILURE: "failure",
    audit_pb.AUDIT_OUTCOME_DENIED: "denied",
}


def entry_from_proto(event: audit_pb.AuditEvent) -> Entry:
    return Entry(
        id=event.id,
        tenant_id=event.tenant_id,
        actor=event.actor,
        impersonator=event.impersonator,
        action=event.action,
        target=event.target,
        request_id=event.request_id,
        source_ip=event.source_ip,
        user_agent=event.user_agent[:256],
        outcome=OUTCOME_NAMES.get(event.outcome, ""),
        status_code=event.status_code,
        metadata=dict(event.metadata),
        time=event.time.ToDatetime(tzinfo=UTC),
    )


def decode_audit_event(record: EventRecord) -> audit_pb.AuditEvent | None:
    envelope = open_envelope(record.payload)
    payload = events_pb2.AuditRecorded()
    if not envelope.payload.Unpack(payload):
        return None
    return payload.event


def audit_handler(sessions: async_sessionmaker[AsyncSession], store: AuditStore) -> Handler:
    async def effect(session: AsyncSession, record: EventRecord) -> None:
        event = decode_audit_event(record)
        if event is not None:
            await store.append(session, [entry_from_proto(event)])

    return idempotent_handler(sessions, CONSUMER_NAME, effect)


def bus_consumer(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    group_id: str,
    topics: Sequence[str],
    *,
    from_beginning: bool = True,
) -> Consumer:
    """A consumer on whichever bus this process is configured for."""
    if settings.event_bus == "kafka":
        from services.events.kafka import KafkaConsumer

        return KafkaConsumer(
            settings.kafka_bootstrap,
            group_id,
            topics,
            auto_offset_reset="earliest" if from_beginning else "latest",
            # The configured timeout, not librdkafka's default: a group joins after
            # about half of it, and events published meanwhile wait for the join.
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=max(settings.kafka_session_timeout_ms // 4, 100),
        )
    from services.events.sqllog import SqlLogConsumer

    return SqlLogConsumer(
        sessions, group_id, topics, from_beginning=from_beginning, poll_interval=0.2
    )
