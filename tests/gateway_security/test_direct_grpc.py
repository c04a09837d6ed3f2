"""Services called over gRPC without the gateway check the caller's access token
themselves (the shared identity helper), and still keep tenants apart."""

from __future__ import annotations

import uuid

import grpc
import pytest

from embrec.ingestion.v1 import ingestion_service_pb2 as ingestion
from embrec.ingestion.v1 import ingestion_service_pb2_grpc
from services.identity.credentials import SCOPES, Principal
from services.storage.models import Tenant
from tests.services.conftest import StackFactory, stack_factory

__all__ = ["stack_factory"]  # the fixture, imported for this module


async def test_ingestion_accepts_an_access_token_directly(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    sessions = next(m for m in stack.runtime.modules if m.name == "audit").store._sessions  # type: ignore[attr-defined]
    ids = []
    async with sessions() as session, session.begin():
        for _ in range(2):
            slug = f"t-{uuid.uuid4().hex[:10]}"
            row = Tenant(name=slug, slug=slug, email=f"a@{slug}.example")
            session.add(row)
            await session.flush()
            ids.append(row.id)
    tenant_a, tenant_b = ids
    token = stack.token_for(
        Principal(subject="user:a", tenant_id=tenant_a, role="tenant_admin", scopes=SCOPES)
    )
    stub = ingestion_service_pb2_grpc.IngestionServiceStub(stack.channel)
    metadata = (("authorization", f"Bearer {token}"),)

    stats = await stub.GetDataStats(ingestion.GetDataStatsRequest(), metadata=metadata)
    assert stats.tenant_id == tenant_a
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await stub.GetDataStats(
            ingestion.GetDataStatsRequest(tenant_id=tenant_b), metadata=metadata
        )
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as forged:
        await stub.GetDataStats(
            ingestion.GetDataStatsRequest(), metadata=(("authorization", f"Bearer {token}x"),)
        )
    assert forged.value.code() == grpc.StatusCode.UNAUTHENTICATED
