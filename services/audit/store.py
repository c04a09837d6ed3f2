"""The audit trail's store: append-only, one hash chain per tenant.

    hash = SHA-256(prev_hash ‖ canonical JSON of the entry)

``prev_hash`` is the hash of the same tenant's previous entry (64 zeros for its first;
platform-level entries, tenant NULL, form their own chain). A chain per tenant lets a
tenant's trail be verified and exported on its own, and appends of different tenants do
not wait on each other. Editing any stored field of an entry changes its recomputed
hash; deleting an entry breaks the ``prev_hash`` link of the tenant's next entry.
VerifyChain walks ``seq`` order and reports the first entry that does not verify.
(Deleting the newest entries of a chain leaves no later link to break: ship
VerifyChain's last hash to an external witness to cover that.)

Nothing here updates or deletes rows. Appends of one tenant are serialised (an
in-process lock, and a transaction-scoped advisory lock on PostgreSQL for several
replicas) so two writers never chain onto the same predecessor.

Domain module: no grpc import; the servicer converts protobuf ↔ :class:`Entry`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Select, String, and_, cast, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.errors import FieldViolation, InvalidArgument
from services.pagination import next_token, parse_page
from services.storage.db import is_postgresql
from services.storage.models import AuditEvent, Tenant

__all__ = [
    "GENESIS_HASH",
    "AuditFilter",
    "AuditStore",
    "ChainReport",
    "Entry",
    "entry_hash",
]

GENESIS_HASH = "0" * 64
OUTCOMES = ("success", "failure", "denied")
_MAX_BATCH = 1000
_EXPORT_BATCH = 1000


@dataclass(frozen=True)
class Entry:
    """One audited action, as producers describe it."""

    id: str
    actor: str
    action: str
    outcome: str
    time: datetime
    tenant_id: str = ""
    impersonator: str = ""
    target: str = ""
    request_id: str = ""
    source_ip: str = ""
    user_agent: str = ""
    status_code: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def details(self) -> dict[str, object]:
        return {
            "metadata": dict(self.metadata),
            "user_agent": self.user_agent,
            "status_code": self.status_code,
        }


def _canonical(row: AuditEvent) -> bytes:
    document = {
        "id": row.id,
        "tenant_id": row.tenant_id or "",
        "actor": row.actor,
        "impersonator": row.impersonator or "",
        "action": row.action,
        "target": row.target or "",
        "request_id": row.request_id or "",
        "source_ip": row.source_ip or "",
        "outcome": row.outcome,
        "details": row.details or {},
        "time": row.time.isoformat(timespec="microseconds"),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def entry_hash(prev_hash: str, row: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _canonical(row)).hexdigest()


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: str | None = None  # None: every tenant (platform admins)
    actor: str = ""
    action: str = ""
    outcome: str = ""
    start: datetime | None = None
    end: datetime | None = None
    query: str = ""

    def key(self) -> tuple[object, ...]:
        return (
            self.tenant_id,
            self.actor,
            self.action,
            self.outcome,
            self.start.isoformat() if self.start else "",
            self.end.isoformat() if self.end else "",
            self.query,
        )


@dataclass(frozen=True)
class SearchPage:
    events: list[AuditEvent]
    next_page_token: str


@dataclass(frozen=True)
class ChainReport:
    valid: bool
    checked: int
    broken_sequence: int = 0
    broken_event_id: str = ""
    expected_hash: str = ""
    actual_hash: str = ""


def _validate(entries: Sequence[Entry]) -> None:
    if not entries or len(entries) > _MAX_BATCH:
        raise InvalidArgument(
            f"send 1 to {_MAX_BATCH} events",
            violations=[FieldViolation("events", f"must hold 1 to {_MAX_BATCH} events")],
        )
    violations = []
    for index, entry in enumerate(entries):
        for name in ("id", "actor", "action"):
            if not getattr(entry, name):
                violations.append(FieldViolation(f"events[{index}].{name}", "is required"))
        if entry.outcome not in OUTCOMES:
            violations.append(FieldViolation(f"events[{index}].outcome", "is required"))
    if violations:
        raise InvalidArgument("some events are incomplete; none was stored", violations=violations)


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class AuditStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._lock = asyncio.Lock()

    # --- writing -----------------------------------------------------------------------

    async def record(self, entries: Sequence[Entry]) -> tuple[int, int]:
        """Append in a transaction of our own; returns (newly stored, last sequence)."""
        _validate(entries)
        async with self._sessions() as session, session.begin():
            stored = await self.append(session, entries)
            last = await session.scalar(select(func.max(AuditEvent.seq)))
        return stored, int(last or 0)

    async def append(self, session: AsyncSession, entries: Sequence[Entry]) -> int:
        """Append ``entries`` in ``session``'s open transaction, skipping known ids."""
        _validate(entries)
        async with self._lock:
            known = set(
                (
                    await session.scalars(
                        select(AuditEvent.id).where(AuditEvent.id.in_([e.id for e in entries]))
                    )
                ).all()
            )
            heads: dict[str, str] = {}
            stored = 0
            for entry in entries:
                if entry.id in known:
                    continue
                known.add(entry.id)
                tenant = entry.tenant_id or ""
                if tenant not in heads:
                    heads[tenant] = await self._head(session, tenant)
                row = AuditEvent(
                    id=entry.id,
                    tenant_id=entry.tenant_id or None,
                    actor=entry.actor,
                    impersonator=entry.impersonator or None,
                    action=entry.action,
                    target=entry.target or None,
                    request_id=entry.request_id or None,
                    source_ip=entry.source_ip or None,
                    outcome=entry.outcome,
                    details=entry.details(),
                    time=entry.time.astimezone(UTC),
                    prev_hash=heads[tenant],
                )
                row.hash = entry_hash(row.prev_hash, row)
                heads[tenant] = row.hash
                session.add(row)
                stored += 1
            await session.flush()
        return stored

    async def _head(self, session: AsyncSession, tenant: str) -> str:
        if is_postgresql(session):
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"audit:{tenant}"}
            )
        condition = AuditEvent.tenant_id == tenant if tenant else AuditEvent.tenant_id.is_(None)
        last = await session.scalar(
            select(AuditEvent.hash).where(condition).order_by(AuditEvent.seq.desc()).limit(1)
        )
        return last or GENESIS_HASH

    # --- reading -----------------------------------------------------------------------

    async def resolve_tenant(self, id_or_slug: str) -> str:
        """A tenant's id from its id or slug; unknown values pass through unchanged
        (the trail outlives deleted tenants, so a vanished id still filters)."""
        async with self._sessions() as session:
            found = await session.scalar(
                select(Tenant.id).where(or_(Tenant.id == id_or_slug, Tenant.slug == id_or_slug))
            )
        return found or id_or_slug

    def _filtered(self, flt: AuditFilter) -> Select[AuditEvent]:
        if flt.start and flt.end and flt.start > flt.end:
            raise InvalidArgument(
                "time_range starts after it ends",
                violations=[FieldViolation("time_range", "start_time must not exceed end_time")],
            )
        statement = select(AuditEvent)
        conditions = []
        if flt.tenant_id is not None:
            conditions.append(AuditEvent.tenant_id == flt.tenant_id)
        if flt.actor:
            conditions.append(AuditEvent.actor == flt.actor)
        if flt.action.endswith("."):
            conditions.append(AuditEvent.action.like(_escape_like(flt.action) + "%", escape="\\"))
        elif flt.action:
            conditions.append(AuditEvent.action == flt.action)
        if flt.outcome:
            conditions.append(AuditEvent.outcome == flt.outcome)
        if flt.start:
            conditions.append(AuditEvent.time >= flt.start)
        if flt.end:
            conditions.append(AuditEvent.time < flt.end)
        if flt.query:
            pattern = "%" + _escape_like(flt.query.lower()) + "%"
            conditions.append(
                or_(
                    *(
                        func.lower(func.coalesce(column, "")).like(pattern, escape="\\")
                        for column in (
                            AuditEvent.target,
                            AuditEvent.request_id,
                            AuditEvent.source_ip,
                            cast(AuditEvent.details, String),
                        )
                    )
                )
            )
        return statement.where(and_(*conditions)) if conditions else statement

    async def search(self, flt: AuditFilter, page_size: int, page_token: str) -> SearchPage:
        page = parse_page(page_size, page_token, flt.key())
        statement = (
            self._filtered(flt)
            .order_by(AuditEvent.seq.desc())
            .offset(page.offset)
            .limit(page.size + 1)
        )
        async with self._sessions() as session:
            rows = list((await session.scalars(statement)).all())
        has_more = len(rows) > page.size
        rows = rows[: page.size]
        return SearchPage(rows, next_token(page, len(rows), has_more))

    async def export(self, flt: AuditFilter) -> AsyncIterator[list[AuditEvent]]:
        """Matching rows oldest first, in batches (keyset on seq: memory stays flat)."""
        base = self._filtered(flt)
        after = 0
        while True:
            statement = (
                base.where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(_EXPORT_BATCH)
            )
            async with self._sessions() as session:
                rows = list((await session.scalars(statement)).all())
            if not rows:
                return
            yield rows
            after = rows[-1].seq
            if len(rows) < _EXPORT_BATCH:
                return

    async def verify(self, start: int = 0, end: int = 0) -> ChainReport:
        if start < 0 or end < 0 or (end and start > end):
            raise InvalidArgument(
                "start_sequence must not exceed end_sequence",
                violations=[FieldViolation("start_sequence", "must be <= end_sequence")],
            )
        start = start or 1
        heads: dict[str, str] = {}
        checked = 0
        after = start - 1
        async with self._sessions() as session:
            while True:
                statement = select(AuditEvent).where(AuditEvent.seq > after)
                if end:
                    statement = statement.where(AuditEvent.seq <= end)
                rows = (
                    await session.scalars(statement.order_by(AuditEvent.seq).limit(_EXPORT_BATCH))
                ).all()
                if not rows:
                    break
                for row in rows:
                    tenant = row.tenant_id or ""
                    if tenant not in heads:
                        heads[tenant] = await self._head_before(session, tenant, row.seq)
                    expected = entry_hash(heads[tenant], row)
                    checked += 1
                    if row.prev_hash != heads[tenant] or row.hash != expected:
                        return ChainReport(False, checked, row.seq, row.id, expected, row.hash)
                    heads[tenant] = row.hash
                after = rows[-1].seq
        return ChainReport(True, checked)

    async def _head_before(self, session: AsyncSession, tenant: str, seq: int) -> str:
        condition = AuditEvent.tenant_id == tenant if tenant else AuditEvent.tenant_id.is_(None)
        previous = await session.scalar(
            select(AuditEvent.hash)
            .where(condition, AuditEvent.seq < seq)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
        return previous or GENESIS_HASH
