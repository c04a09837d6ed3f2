"""PlatformService: aggregates health for `GET /health` through Envoy, the admins'
component report, and API usage (services/platform/usage.py).

The answer covers the services hosted by this process (their grpc.health.v1 state),
the dependencies this process probes (database, ...), in compose the peer services
named in EMBREC_HEALTH_TARGETS (checked over grpc.health.v1), and the gateway when
EMBREC_GATEWAY_ADMIN_URL names Envoy's admin address (its ``/ready``). Healthy →
``{"status": "healthy"}``; a required component down → UNAVAILABLE (HTTP 503) whose
details carry a HealthReport naming every component. GetPlatformStatus returns the same
report to platform admins whatever the state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embrec.platform.v1 import platform_service_pb2 as pb
from embrec.platform.v1 import platform_service_pb2_grpc as pb_grpc
from services.errors import Unavailable
from services.identity.principal import PLATFORM_ADMIN, Authenticator
from services.platform.usage import UsageReport

__all__ = ["Component", "PlatformServicer"]

_PEER_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class Component:
    name: str
    up: bool
    optional: bool = False
    message: str = ""
    latency_ms: float = 0.0


async def _check_peer(name: str, address: str) -> Component:
    started = time.perf_counter()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=_PEER_TIMEOUT_SECONDS
            )
        up = reply.status == health_pb2.HealthCheckResponse.SERVING
        message = "" if up else health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.aio.AioRpcError as exc:
        up, message = False, f"{exc.code().name}: {exc.details()}"
    latency = (time.perf_counter() - started) * 1000
    return Component(name, up, message=message, latency_ms=round(latency, 2))


async def _check_gateway(admin_url: str) -> Component:
    """Envoy's admin ``/ready``: 200 "LIVE" once its listeners and clusters are up."""
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=_PEER_TIMEOUT_SECONDS) as client:
            reply = await client.get(admin_url.rstrip("/") + "/ready")
        up = reply.status_code == 200
        message = "" if up else f"HTTP {reply.status_code}: {reply.text.strip()[:100]}"
    except httpx.HTTPError as exc:
        up, message = False, f"{type(exc).__name__}: {exc}"[:200]
    latency = (time.perf_counter() - started) * 1000
    return Component("envoy", up, message=message, latency_ms=round(latency, 2))


def _component_health(c: Component) -> pb.ComponentHealth:
    return pb.ComponentHealth(
        component=c.name,
        state=pb.COMPONENT_STATE_SERVING if c.up else pb.COMPONENT_STATE_NOT_SERVING,
        optional=c.optional,
        message=c.message,
        latency_ms=c.latency_ms,
    )


class PlatformServicer(pb_grpc.PlatformServiceServicer):
    def __init__(
        self,
        local_components: Callable[[], Sequence[Component]],
        peers: dict[str, str],
        usage: Callable[[], UsageReport],
        authenticator: Callable[[], Authenticator],
        gateway_admin_url: str = "",
    ) -> None:
        self._local = local_components
        self._peers = peers
        self._gateway_admin_url = gateway_admin_url
        # Built on first use: they need the identity secrets, which GetHealth does not.
        self._usage_factory = usage
        self._usage: UsageReport | None = None
        self._auth_factory = authenticator

    async def _components(self) -> list[Component]:
        checks = [_check_peer(name, address) for name, address in sorted(self._peers.items())]
        if self._gateway_admin_url:
            checks.append(_check_gateway(self._gateway_admin_url))
        return [*self._local(), *await asyncio.gather(*checks)]

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Usage:
        if self._usage is None:
            self._usage = self._usage_factory()
        return await self._usage.get_usage(request, context)

    async def GetHealth(
        self, request: pb.GetHealthRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetHealthResponse:
        components = await self._components()
        down_required = [c for c in components if not c.up and not c.optional]
        if down_required:
            raise Unavailable(
                "Unhealthy: " + ", ".join(f"{c.name} is not serving" for c in down_required),
                reason="PLATFORM_UNHEALTHY",
                metadata={c.name: "SERVING" if c.up else "NOT_SERVING" for c in components},
                details=[pb.HealthReport(components=[_component_health(c) for c in components])],
            )
        degraded = any(not c.up for c in components)
        return pb.GetHealthResponse(status="degraded" if degraded else "healthy")

    async def GetPlatformStatus(
        self, request: pb.GetPlatformStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PlatformStatus:
        await self._auth_factory().require(context, roles={PLATFORM_ADMIN})
        components = await self._components()
        if any(not c.up and not c.optional for c in components):
            status = "unhealthy"
        elif any(not c.up for c in components):
            status = "degraded"
        else:
            status = "healthy"
        return pb.PlatformStatus(
            status=status, components=[_component_health(c) for c in components]
        )
