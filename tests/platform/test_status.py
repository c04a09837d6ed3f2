"""GetPlatformStatus and the envoy component of GET /health."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from embrec.platform.v1 import platform_service_pb2 as pb
from embrec.platform.v1 import platform_service_pb2_grpc as pb_grpc
from services.identity.credentials import Principal
from tests.retrieval_service.conftest import code_of
from tests.services.conftest import RunningStack, StackFactory
from tests.support.servers import free_port


def _stub(stack: RunningStack) -> pb_grpc.PlatformServiceStub:
    return pb_grpc.PlatformServiceStub(stack.channel)


def _states(report: Any) -> dict[str, bool]:
    return {c.component: c.state == pb.COMPONENT_STATE_SERVING for c in report.components}


async def test_admins_see_every_component_and_others_are_refused(stack: RunningStack) -> None:
    for _ in range(50):  # the database shows once the first dependency probe ran
        report = await _stub(stack).GetPlatformStatus(
            pb.GetPlatformStatusRequest(), metadata=stack.admin_metadata(), timeout=10
        )
        if "database" in _states(report):
            break
        await asyncio.sleep(0.1)
    assert report.status == "healthy"
    states = _states(report)
    for name in ("tenant", "ingestion", "training", "retrieval", "audit", "database"):
        assert states[name], report
    assert "envoy" not in states  # no Envoy admin address configured for this stack

    member = Principal(
        subject="u1", tenant_id="t1", role="tenant_admin", scopes=frozenset({"analytics:read"})
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _stub(stack).GetPlatformStatus(
            pb.GetPlatformStatusRequest(),
            metadata=(("authorization", f"Bearer {stack.token_for(member)}"),),
            timeout=10,
        )
    assert code_of(refused.value) in (
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,  # the token's tenant does not exist
    )
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await _stub(stack).GetPlatformStatus(pb.GetPlatformStatusRequest(), timeout=10)
    assert code_of(anonymous.value) == grpc.StatusCode.UNAUTHENTICATED


async def test_the_gateway_counts_when_its_admin_address_is_set(
    stack_factory: StackFactory, envoy_for: Any
) -> None:
    envoy, _ = await envoy_for(free_port())  # any upstream: /ready is about Envoy itself
    up = await stack_factory(gateway_admin_url=f"http://127.0.0.1:{envoy.port}")
    report = await _stub(up).GetPlatformStatus(
        pb.GetPlatformStatusRequest(), metadata=up.admin_metadata(), timeout=10
    )
    assert _states(report)["envoy"] and report.status == "healthy"

    down = await stack_factory(gateway_admin_url=f"http://127.0.0.1:{free_port()}")
    report = await _stub(down).GetPlatformStatus(
        pb.GetPlatformStatusRequest(), metadata=down.admin_metadata(), timeout=10
    )
    assert report.status == "unhealthy" and not _states(report)["envoy"]
    gateway = next(c for c in report.components if c.component == "envoy")
    assert gateway.message  # why: connection refused
    # GET /health says so too, with the same report in the error's details.
    with pytest.raises(grpc.aio.AioRpcError) as unhealthy:
        await _stub(down).GetHealth(pb.GetHealthRequest(), timeout=10)
    assert code_of(unhealthy.value) == grpc.StatusCode.UNAVAILABLE
    assert "envoy is not serving" in (unhealthy.value.details() or "")
    trailing = dict(unhealthy.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailing["grpc-status-details-bin"])
    health = pb.HealthReport()
    assert any(d.Unpack(health) for d in status.details)
    assert not _states(health)["envoy"]
