"""Bounded-load ring hash through a real Envoy: a hot tenant spills over to a second
retrieval replica, a quiet one stays on its own replica."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2_grpc

from services.retrieval.bench import _envoy_config
from tests.support.servers import EnvoyProcess, free_port, start_envoy

REPO_ROOT = Path(__file__).resolve().parents[2]
RECOMMEND = "/embrec.retrieval.v1.RetrievalService/Recommend"

Served = collections.Counter[int]


async def _replica(index: int, served: Served) -> tuple[grpc.aio.Server, int]:
    """A stand-in retrieval replica: answers Recommend (empty message) after 50 ms."""

    async def recommend(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        served[index] += 1
        await asyncio.sleep(0.05)
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "embrec.retrieval.v1.RetrievalService",
                {"Recommend": grpc.unary_unary_rpc_method_handler(recommend)},
            )
        ]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


StartEnvoy = Callable[[int | None], Awaitable[tuple[Served, int]]]


@pytest.fixture
async def envoy_over_two_replicas(tmp_path: Path) -> AsyncIterator[StartEnvoy]:
    """Envoy (no authz: the test names the tenant header itself) in front of two replicas
    in the retrieval cluster; returns (requests served per replica, listener port)."""
    servers: list[grpc.aio.Server] = []
    envoys: list[EnvoyProcess] = []

    async def start(factor: int | None) -> tuple[Served, int]:
        served: Served = collections.Counter()
        ports = []
        for index in range(2):
            server, port = await _replica(index, served)
            servers.append(server)
            ports.append(port)
        workdir = tmp_path / f"envoy-{len(envoys)}"
        workdir.mkdir()

        def configure(listen: int, admin: int) -> Path:
            # The bench's config: both replicas in the retrieval cluster; nothing else
            # is called, so the other clusters point at a closed port.
            path = workdir / "envoy.yaml"
            _envoy_config(
                REPO_ROOT, path, listen, admin, free_port(), ports,
                hash_balance_factor=factor, authz=False,
            )  # fmt: skip
            return path

        envoy, listen = await asyncio.to_thread(start_envoy, configure, workdir)
        envoys.append(envoy)
        return served, listen

    yield start
    for envoy in envoys:
        envoy.close()
    for server in servers:
        await server.stop(None)


async def _recommend(channel: grpc.aio.Channel, tenant: str) -> None:
    call = channel.unary_unary(RECOMMEND)
    await call(b"", metadata=(("x-tenant-id", tenant),), timeout=10)


async def _both_replicas_healthy(channel: grpc.aio.Channel, served: Served) -> None:
    """Envoy marks a replica routable after its first health check: wait until both
    have answered a request (distinct tenants hash around the ring)."""
    for n in range(400):
        await _recommend(channel, f"probe-{n}")
        if len(served) == 2:
            served.clear()
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"a replica never got a request: {served}")


async def test_a_hot_tenant_spills_to_the_next_replica(
    envoy_over_two_replicas: StartEnvoy,
) -> None:
    served, port = await envoy_over_two_replicas(150)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await _both_replicas_healthy(channel, served)
        # One request at a time: the tenant stays on its replica.
        for _ in range(10):
            await _recommend(channel, "quiet-shop")
        assert len(served) == 1 and sum(served.values()) == 10, served
        served.clear()
        # 40 at once: its replica is past 150 % of the average, the rest go next door.
        await asyncio.gather(*(_recommend(channel, "hot-shop") for _ in range(40)))
        assert len(served) == 2 and min(served.values()) >= 5, served


async def test_without_bounded_load_a_hot_tenant_stays_on_one_replica(
    envoy_over_two_replicas: StartEnvoy,
) -> None:
    served, port = await envoy_over_two_replicas(None)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await _both_replicas_healthy(channel, served)
        await asyncio.gather(*(_recommend(channel, "hot-shop") for _ in range(40)))
        assert len(served) == 1 and sum(served.values()) == 40, served
