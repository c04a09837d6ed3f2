"""Helpers for ingestion tests: a tenant, credentials as the gateway signs them, stubs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import grpc
from sqlalchemy import insert

from embrec.ingestion.v1 import ingestion_service_pb2 as svc
from embrec.ingestion.v1 import ingestion_service_pb2_grpc
from embrec.ingestion.v1 import resources_pb2 as pb
from services.identity.credentials import Principal, principal_headers
from services.storage.db import create_engine
from services.storage.models import Tenant, utcnow
from tests.services.conftest import RunningStack, envoy_for, stack_factory

__all__ = ["envoy_for", "stack_factory"]  # fixtures shared with tests/services

SECRET = "test-secret-of-at-least-thirty-two-chars"
ALL_SCOPES = frozenset({"data:read", "data:write", "events:write"})


@dataclass
class Caller:
    stub: ingestion_service_pb2_grpc.IngestionServiceStub
    tenant_id: str
    metadata: tuple[tuple[str, str], ...]


async def sql(stack: RunningStack, statement: object) -> list[tuple[object, ...]]:
    """Run one statement against the stack's database, from outside the services."""
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(statement)  # type: ignore[call-overload]
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def make_tenant(stack: RunningStack, *, settings: dict[str, str] | None = None) -> str:
    tenant_id = str(uuid.uuid4())
    await sql(
        stack,
        insert(Tenant).values(
            id=tenant_id,
            name="Shop",
            slug=f"shop-{tenant_id[:8]}",
            email="a@shop.example",
            status="active",
            plan="free",
            settings=settings or {},
            created_at=utcnow(),
            updated_at=utcnow(),
        ),
    )
    return tenant_id


def caller_for(stack: RunningStack, tenant_id: str, scopes: Iterable[str] = ALL_SCOPES) -> Caller:
    principal = Principal(
        subject=f"apikey:{tenant_id[:8]}",
        tenant_id=tenant_id,
        role="api_key",
        scopes=frozenset(scopes),
    )
    headers = principal_headers(principal, SECRET)
    return Caller(
        ingestion_service_pb2_grpc.IngestionServiceStub(stack.channel),
        tenant_id,
        tuple(headers.items()),
    )


async def csv_stream(
    data: bytes,
    *,
    kind: str = "items",
    chunk: int = 64 * 1024,
    **options: object,
) -> AsyncIterator[object]:
    message = svc.ImportItemsRequest if kind == "items" else svc.ImportInteractionsRequest
    yield message(options=pb.ImportOptions(**options))  # type: ignore[arg-type]
    for start in range(0, len(data), chunk):
        yield message(chunk=data[start : start + chunk])


async def import_csv(
    c: Caller, data: bytes, *, kind: str = "items", **options: object
) -> pb.Upload:
    method = c.stub.ImportItems if kind == "items" else c.stub.ImportInteractions
    result: pb.Upload = await method(csv_stream(data, kind=kind, **options), metadata=c.metadata)
    return result


def rpc_error_reason(error: grpc.aio.AioRpcError) -> str:
    from google.rpc import error_details_pb2, status_pb2

    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""
