"""The runtime behind a real Envoy: JSON via the transcoder, native gRPC, /health."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import httpx
import pytest

from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from tests.services.conftest import RunningStack, unique_slug
from tests.services.test_runtime import ALL_SERVICES, listed_services
from tests.support.servers import EnvoyProcess

pytestmark = pytest.mark.integration

EnvoyFor = Callable[[int], Awaitable[tuple[EnvoyProcess, int]]]


@pytest.fixture
async def gateway(stack: RunningStack, envoy_for: EnvoyFor) -> str:
    _, port = await envoy_for(stack.runtime.port)
    return f"127.0.0.1:{port}"


async def test_health_through_envoy(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as client:
        reply = await client.get("/health")
    assert reply.status_code == 200
    assert reply.json() == {"status": "healthy"}


async def test_seed_tenant_calls_over_json(gateway: str, stack: RunningStack) -> None:
    slug = unique_slug("demo")
    body = {"name": "Demo E-commerce", "slug": slug, "email": "admin@demo-ecommerce.com"}
    async with httpx.AsyncClient(
        base_url=f"http://{gateway}", headers=stack.admin_headers()
    ) as client:
        created = await client.post("/api/admin/tenants", json=body)
        assert created.status_code == 200, created.text
        tenant = created.json()
        assert tenant["slug"] == slug and tenant["id"]
        assert created.headers["x-request-id"]

        fetched = await client.get(f"/api/admin/tenants/{slug}")
        assert fetched.json()["id"] == tenant["id"]

        missing = await client.get("/api/admin/tenants/nobody-here")
        assert missing.status_code == 404
        error = missing.json()
        assert error["details"][0]["reason"] == "TENANT_NOT_FOUND"

        bad = await client.post("/api/admin/tenants", json={"name": "x", "slug": "NO", "email": ""})
        assert bad.status_code == 400
        violations = next(d for d in bad.json()["details"] if "field_violations" in d)
        assert {v["field"] for v in violations["field_violations"]} == {"slug", "email"}

    # The seed's recommendation call without a credential: refused at the gateway.
    async with httpx.AsyncClient(base_url=f"http://{gateway}") as anonymous:
        refused = await anonymous.post(
            "/api/v1/recommendations",
            json={"user_id": "user_123", "count": 5, "filters": {"category": "smartphones"}},
        )
    assert refused.status_code == 401
    assert refused.json()["message"]


async def test_native_grpc_through_envoy(gateway: str, stack: RunningStack) -> None:
    admin = stack.admin_metadata()
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = tenant_grpc.TenantServiceStub(channel)
        slug = unique_slug()
        created = await stub.CreateTenant(
            tenant_pb.CreateTenantRequest(
                tenant={"name": "Grpc Co", "slug": slug, "email": "a@grpc.example"}
            ),
            timeout=5,
            metadata=admin,
        )
        fetched = await stub.GetTenant(
            tenant_pb.GetTenantRequest(tenant_id=slug), timeout=5, metadata=admin
        )
        assert fetched.id == created.id
        # Reflection works through the gateway too (grpcurl / ghz without .proto files).
        public = [s for s in ALL_SERVICES if not s.endswith("InternalService")]
        assert set(public) <= await listed_services(channel)


async def test_request_ids_through_envoy_match_the_services(
    gateway: str, stack: RunningStack
) -> None:
    """Envoy puts x-request-id on the response itself (the service does not send it
    then): one value, the caller's own when sent, the one the service used otherwise."""
    from tests.services.test_runtime import details_of

    admin = stack.admin_metadata()
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = tenant_grpc.TenantServiceStub(channel)
        call = stub.ListTenants(
            tenant_pb.ListTenantsRequest(),
            metadata=(("x-request-id", "caller-chosen-7"), *admin),
            timeout=5,
        )
        await call
        ids = [v for k, v in await call.initial_metadata() if k == "x-request-id"]
        assert ids == ["caller-chosen-7"]

        failing = stub.GetTenant(
            tenant_pb.GetTenantRequest(tenant_id="nobody-here"), metadata=admin, timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await failing
        ids = [v for k, v in await failing.initial_metadata() if k == "x-request-id"]
        assert len(ids) == 1 and ids[0]
        assert details_of(caught.value)["ErrorInfo"].metadata["request_id"] == ids[0]

    async with httpx.AsyncClient(base_url=f"http://{gateway}", headers=stack.admin_headers()) as c:
        reply = await c.get("/api/admin/tenants", headers={"x-request-id": "rest-chosen-9"})
        assert reply.status_code == 200
        assert reply.headers.get_list("x-request-id") == ["rest-chosen-9"]
