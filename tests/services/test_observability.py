"""Metrics on their own port, and traces when an exporter is configured."""

from __future__ import annotations

import asyncio

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from tests.services.conftest import StackFactory
from tests.support.servers import free_port


async def test_prometheus_metrics_count_calls_by_code(stack_factory: StackFactory) -> None:
    port = free_port()
    stack = await stack_factory(metrics_port=port)
    stub = tenant_grpc.TenantServiceStub(stack.channel)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.GetTenant(
            tenant_pb.GetTenantRequest(tenant_id="missing"), metadata=stack.admin_metadata()
        )
    await health_pb2_grpc.HealthStub(stack.channel).Check(health_pb2.HealthCheckRequest())
    # The dependency gauge is set by the background health watcher after its first
    # probe, which a loaded machine may not have finished yet: scrape until it is there.
    gauge = 'embrec_dependency_up{dependency="database"} 1.0'
    deadline = asyncio.get_running_loop().time() + 15
    async with httpx.AsyncClient() as client:
        while True:
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            if gauge in text or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.1)
    assert (
        'embrec_grpc_server_handled_total{grpc_code="NOT_FOUND",'
        'grpc_method="GetTenant",grpc_service="embrec.tenant.v1.TenantService"} 1.0'
    ) in text
    assert "embrec_grpc_server_handling_seconds_bucket" in text
    assert gauge in text


async def test_console_exporter_emits_a_span_per_call(
    stack_factory: StackFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = await stack_factory(tracing_exporter="console")
    await health_pb2_grpc.HealthStub(stack.channel).Check(health_pb2.HealthCheckRequest())
    await stack.runtime.stop()  # flushes the batch span processor
    out, _ = capsys.readouterr()
    assert '"name": "/grpc.health.v1.Health/Check"' in out
