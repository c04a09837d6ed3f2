"""Seed guide Phase 6.1: PostgreSQL stops mid-run, then comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from tests.services.conftest import StackFactory, unique_slug
from tests.support.servers import EnvoyProcess, PostgresServer

pytestmark = pytest.mark.integration


async def wait_for_status(
    health: health_pb2_grpc.HealthStub, wanted: int, timeout: float = 20.0
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        if reply.status == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError(f"health never became {wanted}")


async def test_postgres_outage_degrades_then_recovers(
    postgres_server: PostgresServer,
    stack_factory: StackFactory,
    envoy_for: Callable[[int], Awaitable[tuple[EnvoyProcess, int]]],
) -> None:
    stack = await stack_factory(database_url=postgres_server.url)
    _, envoy_port = await envoy_for(stack.runtime.port)
    stub = tenant_grpc.TenantServiceStub(stack.channel)
    health = health_pb2_grpc.HealthStub(stack.channel)
    slug = unique_slug()
    admin = stack.admin_metadata()
    await stub.CreateTenant(
        tenant_pb.CreateTenantRequest(
            tenant={"name": "Kept", "slug": slug, "email": "k@k.example"}
        ),
        metadata=admin,
    )

    postgres_server.stop()
    await wait_for_status(health, health_pb2.HealthCheckResponse.NOT_SERVING)

    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTenant(tenant_pb.GetTenantRequest(tenant_id=slug), timeout=10, metadata=admin)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "database" in (caught.value.details() or "")
    assert time.monotonic() - started < 9, "the call hung instead of failing fast"

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{envoy_port}") as client:
        reply = await client.get("/health")
        assert reply.status_code == 503
        assert "database" in reply.text

        postgres_server.start()
        await wait_for_status(health, health_pb2.HealthCheckResponse.SERVING)
        fetched = await stub.GetTenant(
            tenant_pb.GetTenantRequest(tenant_id=slug), timeout=10, metadata=admin
        )
        assert fetched.slug == slug  # nothing lost, and the service recovered by itself
        assert (await client.get("/health")).json() == {"status": "healthy"}
