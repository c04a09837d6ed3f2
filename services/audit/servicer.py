"""AuditService and AuditInternalService: protobuf ↔ AuditStore.

Who sees what comes from the authenticated principal (the shared identity helper,
services/identity/principal.py: the gateway's signed headers, or a direct gRPC caller's
access token or API key), never from the request: platform admins and services see every
tenant (or the one they name); tenant principals with ``audit:read`` see only their own
tenant, and naming another tenant is PERMISSION_DENIED. A suspended tenant's people may
still read their trail (it is read-only); its API keys may not.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.api import httpbody_pb2  # type: ignore[import-untyped]
from google.protobuf.timestamp_pb2 import Timestamp

from embrec.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from embrec.audit.v1 import resources_pb2 as audit_pb
from services.app import ServiceContext, WorkingModule
from services.audit.consumer import (
    AUDIT_TOPIC,
    CONSUMER_NAME,
    OUTCOME_NAMES,
    audit_handler,
    bus_consumer,
    entry_from_proto,
)
from services.audit.store import AuditFilter, AuditStore
from services.identity.credentials import Principal
from services.identity.principal import PLATFORM_ADMIN, Authenticator, authenticator_for
from services.storage.models import AuditEvent

__all__ = ["build_module", "csv_chunks"]

_OUTCOME_TO_PROTO = {name: value for value, name in OUTCOME_NAMES.items()}
_CSV_COLUMNS = (
    "sequence",
    "time",
    "tenant_id",
    "actor",
    "impersonator",
    "action",
    "target",
    "outcome",
    "status_code",
    "request_id",
    "source_ip",
    "user_agent",
    "metadata",
    "prev_hash",
    "hash",
)
_CHUNK_BYTES = 64 * 1024
_STAFF = frozenset({PLATFORM_ADMIN, "service"})


def _stamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def event_to_proto(row: AuditEvent) -> audit_pb.AuditEvent:
    details = row.details or {}
    return audit_pb.AuditEvent(
        id=row.id,
        tenant_id=row.tenant_id or "",
        actor=row.actor,
        impersonator=row.impersonator or "",
        action=row.action,
        target=row.target or "",
        request_id=row.request_id or "",
        source_ip=row.source_ip or "",
        user_agent=str(details.get("user_agent", "")),
        outcome=_OUTCOME_TO_PROTO.get(row.outcome, audit_pb.AUDIT_OUTCOME_UNSPECIFIED),
        status_code=str(details.get("status_code", "")),
        metadata={str(k): str(v) for k, v in (details.get("metadata") or {}).items()},
        time=_stamp(row.time),
        sequence=row.seq,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def _csv_row(row: AuditEvent) -> list[str]:
    details = row.details or {}
    return [
        str(row.seq),
        row.time.isoformat(),
        row.tenant_id or "",
        row.actor,
        row.impersonator or "",
        row.action,
        row.target or "",
        row.outcome,
        str(details.get("status_code", "")),
        row.request_id or "",
        row.source_ip or "",
        str(details.get("user_agent", "")),
        json.dumps(details.get("metadata") or {}, sort_keys=True),
        row.prev_hash,
        row.hash,
    ]


def _csv_safe(value: str) -> str:
    # Spreadsheet formula injection: a cell starting with = + - @ is executed by Excel.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def csv_chunks(store: AuditStore, flt: AuditFilter) -> AsyncIterator[bytes]:
    """The export as CSV in ~64 KiB chunks: a header, then rows oldest first.

    Rows come from the store in keyset batches and leave as soon as a chunk fills, so
    memory stays flat whatever the trail's size (``embrec bench audit-export``).
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    async for rows in store.export(flt):
        for row in rows:
            writer.writerow([_csv_safe(v) for v in _csv_row(row)])
        if buffer.tell() >= _CHUNK_BYTES:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


class AuditServicer(audit_service_pb2_grpc.AuditServiceServicer):
    def __init__(self, store: AuditStore, auth: Authenticator) -> None:
        self._store = store
        self._auth = auth

    @staticmethod
    def _is_staff(principal: Principal) -> bool:
        return principal.role in _STAFF and not principal.impersonator

    async def _filter(
        self,
        request: audit_service_pb2.SearchAuditEventsRequest
        | audit_service_pb2.ExportAuditEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AuditFilter:
        principal = await self._auth.require(context, allow_suspended=True)
        tenant: str | None
        if self._is_staff(principal):
            # Staff may name any tenant, deleted ones too (the trail outlives them), or none.
            named = request.tenant_id.strip()
            tenant = await self._store.resolve_tenant(named) if named else None
        else:
            await self._auth.check(principal, scope="audit:read", allow_suspended=True)
            tenant = (await self._auth.resolve_tenant(principal, request.tenant_id)).id
        time_range = request.time_range
        return AuditFilter(
            tenant_id=tenant,
            actor=request.actor,
            action=request.action,
            outcome=OUTCOME_NAMES.get(request.outcome, ""),
            start=time_range.start_time.ToDatetime(tzinfo=UTC)
            if time_range.HasField("start_time")
            else None,
            end=time_range.end_time.ToDatetime(tzinfo=UTC)
            if time_range.HasField("end_time")
            else None,
            query=request.query,
        )

    async def SearchAuditEvents(
        self,
        request: audit_service_pb2.SearchAuditEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> audit_service_pb2.SearchAuditEventsResponse:
        flt = await self._filter(request, context)
        page = await self._store.search(flt, request.page_size, request.page_token)
        return audit_service_pb2.SearchAuditEventsResponse(
            audit_events=[event_to_proto(r) for r in page.events],
            next_page_token=page.next_page_token,
        )

    async def ExportAuditEvents(
        self,
        request: audit_service_pb2.ExportAuditEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        flt = await self._filter(request, context)
        async for chunk in csv_chunks(self._store, flt):
            yield httpbody_pb2.HttpBody(content_type="text/csv", data=chunk)

    async def VerifyChain(
        self,
        request: audit_service_pb2.VerifyChainRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> audit_service_pb2.VerifyChainResponse:
        await self._auth.require(context, roles=_STAFF)
        report = await self._store.verify(request.start_sequence, request.end_sequence)
        return audit_service_pb2.VerifyChainResponse(
            valid=report.valid,
            events_checked=report.checked,
            first_broken_sequence=report.broken_sequence,
            first_broken_event_id=report.broken_event_id,
            expected_hash=report.expected_hash,
            actual_hash=report.actual_hash,
            verify_time=_stamp(datetime.now(UTC)),
        )


class AuditInternalServicer(audit_service_pb2_grpc.AuditInternalServiceServicer):
    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def RecordEvents(
        self,
        request: audit_service_pb2.RecordEventsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> audit_service_pb2.RecordEventsResponse:
        entries = [entry_from_proto(e) for e in request.events]
        recorded, last = await self._store.record(entries)
        return audit_service_pb2.RecordEventsResponse(recorded_count=recorded, last_sequence=last)


@dataclass
class AuditModule(WorkingModule):
    store: AuditStore | None = None


def build_module(ctx: ServiceContext) -> AuditModule:
    store = AuditStore(ctx.sessions)
    # ConfigError at start when the identity secrets are missing, as for every service.
    public = AuditServicer(store, authenticator_for(ctx))
    internal = AuditInternalServicer(store)
    service = audit_service_pb2.DESCRIPTOR.services_by_name

    async def consume(stop: asyncio.Event) -> None:
        consumer = bus_consumer(ctx.settings, ctx.sessions, CONSUMER_NAME, [AUDIT_TOPIC])
        await consumer.run(audit_handler(ctx.sessions, store), stop)

    def register(server: grpc.aio.Server) -> None:
        audit_service_pb2_grpc.add_AuditServiceServicer_to_server(public, server)
        audit_service_pb2_grpc.add_AuditInternalServiceServicer_to_server(internal, server)

    return AuditModule(
        store=store,
        name="audit",
        names=[service["AuditService"].full_name, service["AuditInternalService"].full_name],
        register=register,
        background=[consume],
    )
