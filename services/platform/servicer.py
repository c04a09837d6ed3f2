"""PlatformService: aggregates health for `GET /health` through Envoy.

The answer covers the services hosted by this process (their grpc.health.v1 state),
the dependencies this process probes (database, ...), and, in compose, the peer
services named in EMBREC_HEALTH_TARGETS (checked over grpc.health.v1). Healthy →
``{"status": "healthy"}``; a required component down → UNAVAILABLE (HTTP 503) whose
details carry a HealthReport naming every component.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embrec.platform.v1 import platform_service_pb2 as pb
from embrec.platform.v1 import platform_service_pb2_grpc as pb_grpc
from services.errors import Unavailable
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


class PlatformServicer(pb_grpc.PlatformServiceServicer):
    def __init__(
        self,
        local_components: Callable[[], Sequence[Component]],
        peers: dict[str, str],
        usage: Callable[[], UsageReport],
    ) -> None:
        self._local = local_components
        self._peers = peers
        # Built on first use: it needs the identity secrets, which GetHealth does not.
        self._usage_factory = usage
        self._usage: UsageReport | None = None

    async def GetUsage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Usage:
        if self._usage is None:
            self._usage = self._usage_factory()
        return await self._usage.get_usage(request, context)

    async def GetHealth(
        self, request: pb.GetHealthRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetHealthResponse:
        components = list(self._local())
        components += await asyncio.gather(
            *(_check_peer(name, address) for name, address in sorted(self._peers.items()))
        )
        down_required = [c for c in components if not c.up and not c.optional]
        if down_required:
            report = pb.HealthReport(
                components=[
                    pb.ComponentHealth(
                        component=c.name,
                        state=(
                            pb.COMPONENT_STATE_SERVING if c.up else pb.COMPONENT_STATE_NOT_SERVING
                        ),
                        optional=c.optional,
                        message=c.message,
                        latency_ms=c.latency_ms,
                    )
                    for c in components
                ]
            )
            raise Unavailable(
                "Unhealthy: " + ", ".join(f"{c.name} is not serving" for c in down_required),
                reason="PLATFORM_UNHEALTHY",
                metadata={c.name: "SERVING" if c.up else "NOT_SERVING" for c in components},
                details=[report],
            )
        degraded = any(not c.up for c in components)
        return pb.GetHealthResponse(status="degraded" if degraded else "healthy")
