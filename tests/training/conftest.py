"""Helpers for training tests: a tenant with generated sample data, a caller, stubs."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import grpc
from sqlalchemy import insert

from embrec.training.v1 import training_service_pb2_grpc
from services.identity.credentials import Principal, principal_headers
from services.sampledata import SampleData, generate
from services.storage.models import Interaction, Item
from tests.ingestion.conftest import make_tenant, sql
from tests.services.conftest import (
    TEST_INTERNAL_SECRET,
    RunningStack,
    envoy_for,
    stack,
    stack_factory,
)
from tests.storage.fixtures import pg_scratch_url

__all__ = [
    "envoy_for",
    "pg_scratch_url",
    "stack",
    "stack_factory",
]  # fixtures shared with tests/services

SCOPES = frozenset({"models:read", "models:write", "data:read"})


@dataclass
class Caller:
    stub: training_service_pb2_grpc.TrainingServiceStub
    tenant_id: str
    metadata: tuple[tuple[str, str], ...]


def caller_for(stack: RunningStack, tenant_id: str, scopes: Iterable[str] = SCOPES) -> Caller:
    principal = Principal(
        subject=f"apikey:{tenant_id[:8]}",
        tenant_id=tenant_id,
        role="api_key",
        scopes=frozenset(scopes),
    )
    headers = principal_headers(principal, TEST_INTERNAL_SECRET)
    return Caller(
        training_service_pb2_grpc.TrainingServiceStub(stack.channel),
        tenant_id,
        tuple(headers.items()),
    )


async def tenant_with_data(
    stack: RunningStack, *, users: int = 800, items: int = 300, interactions: int = 12_000
) -> str:
    """A tenant holding a small generated store (catalog and interactions)."""
    tenant_id = await make_tenant(stack)
    data = _sample(users, items, interactions)
    await sql(
        stack,
        insert(Item).values(
            [
                {"tenant_id": tenant_id, "item_id": i["item_id"], "category": i["category"]}
                for i in data.items
            ]
        ),
    )
    rows = [
        {
            "tenant_id": tenant_id,
            "user_id": u,
            "item_id": i,
            "type": kind,
            "ts": datetime.fromisoformat(ts.replace("Z", "+00:00")),
        }
        for u, i, kind, ts, _ in data.interactions
    ]
    # PostgreSQL takes at most 32767 parameters a statement (5 a row here).
    for start in range(0, len(rows), 5000):
        await sql(stack, insert(Interaction).values(rows[start : start + 5000]))
    return tenant_id


@functools.lru_cache(maxsize=4)
def _sample(users: int, items: int, interactions: int) -> SampleData:
    # Generating takes seconds; tests share the same deterministic store.
    return generate(users=users, items=items, interactions=interactions, seed=7)


def error_reason(error: grpc.aio.AioRpcError) -> str:
    from tests.ingestion.conftest import rpc_error_reason

    return rpc_error_reason(error)
