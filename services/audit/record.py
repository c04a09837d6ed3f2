"""Recording audit events: every mutating action calls ``record_audit`` in its transaction.

The record travels as an ``AuditRecorded`` event through the outbox, so the audit trail
cannot disagree with the state change: both commit or neither does. The audit service
consumes the topic into its append-only, hash-chained store (identity issue #3).
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncSession

from embrec.audit.v1 import resources_pb2 as audit_pb
from embrec.events.v1 import events_pb2
from services.event_messages import emit
from services.runtime.context import current_request_id
from services.storage.models import new_id

__all__ = ["record_audit"]

_OUTCOMES = {
    "success": audit_pb.AUDIT_OUTCOME_SUCCESS,
    "failure": audit_pb.AUDIT_OUTCOME_FAILURE,
    "denied": audit_pb.AUDIT_OUTCOME_DENIED,
}


def record_audit(
    session: AsyncSession,
    *,
    tenant_id: str,
    actor: str,
    action: str,
    target: str = "",
    outcome: str = "success",
    impersonator: str = "",
    source_ip: str = "",
    metadata: dict[str, str] | None = None,
) -> str:
    """Add one audit event to the outbox in ``session``'s transaction; returns its id."""
    now = datetime.now(UTC)
    stamp = Timestamp()
    stamp.FromDatetime(now)
    event = audit_pb.AuditEvent(
        id=new_id(),
        tenant_id=tenant_id,
        actor=actor,
        impersonator=impersonator,
        action=action,
        target=target,
        request_id=current_request_id() or "",
        source_ip=source_ip,
        outcome=_OUTCOMES[outcome],
        metadata=metadata or {},
        time=stamp,
    )
    return emit(session, events_pb2.AuditRecorded(event=event), tenant_id=tenant_id, occurred=now)
