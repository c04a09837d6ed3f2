"""The service runtime as a gRPC client sees it: health, reflection, request ids,
error mapping, streaming through the interceptor, graceful shutdown, and logs."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from embrec.retrieval.v1 import retrieval_service_pb2 as retrieval_pb
from embrec.retrieval.v1 import retrieval_service_pb2_grpc as retrieval_grpc
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from services.runtime.server import ServiceModuleSpec
from tests.services.conftest import RunningStack, StackFactory, log_lines, unique_slug

ALL_SERVICES = [
    "embrec.platform.v1.PlatformService",
    "embrec.tenant.v1.TenantService",
    "embrec.tenant.v1.AuthService",
    "embrec.tenant.v1.ApiKeyService",
    "embrec.ingestion.v1.IngestionService",
    "embrec.training.v1.TrainingService",
    "embrec.retrieval.v1.RetrievalService",
    "embrec.retrieval.v1.RetrievalInternalService",
    "embrec.audit.v1.AuditService",
    "embrec.audit.v1.AuditInternalService",
]


def details_of(error: grpc.aio.AioRpcError) -> dict[str, Any]:
    """Unpack google.rpc.Status details from a failed call's trailers."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no grpc-status-details-bin trailer"
    found: dict[str, Any] = {}
    for detail in status.details:
        for cls in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RequestInfo,
        ):
            if detail.Is(cls.DESCRIPTOR):
                message = cls()
                detail.Unpack(message)
                found[cls.DESCRIPTOR.name] = message
    return found


async def listed_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def requests() -> Any:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for reply in stub.ServerReflectionInfo(requests()):
        return {s.name for s in reply.list_services_response.service}
    return set()


async def test_every_service_serving_and_listed_by_reflection(stack: RunningStack) -> None:
    health = health_pb2_grpc.HealthStub(stack.channel)
    for name in ["", *ALL_SERVICES]:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    assert set(ALL_SERVICES) <= await listed_services(stack.channel)


async def test_reflection_serves_file_descriptors(stack: RunningStack) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(stack.channel)

    async def requests() -> Any:
        yield reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="embrec.tenant.v1.TenantService"
        )

    async for reply in stub.ServerReflectionInfo(requests()):
        files = reply.file_descriptor_response.file_descriptor_proto
        names = {descriptor_pb2.FileDescriptorProto.FromString(f).name for f in files}
        assert "embrec/tenant/v1/tenant_service.proto" in names


async def test_request_id_round_trip(stack: RunningStack) -> None:
    stub = tenant_grpc.TenantServiceStub(stack.channel)
    admin = stack.admin_metadata()
    call = stub.ListTenants(
        tenant_pb.ListTenantsRequest(), metadata=(("x-request-id", "caller-chosen-42"), *admin)
    )
    await call
    assert dict(await call.initial_metadata())["x-request-id"] == "caller-chosen-42"

    call = stub.ListTenants(tenant_pb.ListTenantsRequest(), metadata=admin)
    await call
    generated = dict(await call.initial_metadata())["x-request-id"]
    assert len(generated) == 32


async def test_invalid_argument_names_each_field(stack: RunningStack) -> None:
    stub = tenant_grpc.TenantServiceStub(stack.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateTenant(
            tenant_pb.CreateTenantRequest(tenant={"name": "", "slug": "Not A Slug", "email": "x"}),
            metadata=(("x-request-id", "rid-invalid"), *stack.admin_metadata()),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = details_of(caught.value)
    fields = {v.field for v in details["BadRequest"].field_violations}
    assert fields == {"name", "slug", "email"}
    assert details["ErrorInfo"].domain == "embrec.dev"
    assert details["RequestInfo"].request_id == "rid-invalid"


async def test_not_found_and_already_exists(stack: RunningStack) -> None:
    stub = tenant_grpc.TenantServiceStub(stack.channel)
    admin = stack.admin_metadata()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTenant(tenant_pb.GetTenantRequest(tenant_id="no-such-tenant"), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert details_of(caught.value)["ErrorInfo"].reason == "TENANT_NOT_FOUND"

    slug = unique_slug()
    tenant = {"name": "Acme", "slug": slug, "email": "ops@acme.example"}
    created = await stub.CreateTenant(tenant_pb.CreateTenantRequest(tenant=tenant), metadata=admin)
    fetched = await stub.GetTenant(tenant_pb.GetTenantRequest(tenant_id=slug), metadata=admin)
    assert fetched.id == created.id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateTenant(tenant_pb.CreateTenantRequest(tenant=tenant), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert details_of(caught.value)["ErrorInfo"].reason == "SLUG_TAKEN"


async def test_unbuilt_methods_say_what_is_missing(tmp_path: Path) -> None:
    # Every service is built now; the mechanism still guards any method added to a
    # contract before its behaviour: serve RetrievalService with nothing built.
    from services.config import load_settings
    from services.runtime.server import Runtime
    from services.runtime.servicers import unbuilt_module

    module = unbuilt_module(
        "retrieval", retrieval_pb, retrieval_grpc, ["RetrievalService"], "issue #99"
    )
    runtime = Runtime(
        settings=load_settings(data_dir=tmp_path, grpc_port=0, metrics_port=0),
        modules=[module],
    )
    port = await runtime.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = retrieval_grpc.RetrievalServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Recommend(retrieval_pb.RecommendRequest(user_id="u1", count=5))
    finally:
        await runtime.stop()
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "Recommend is not implemented yet" in (caught.value.details() or "")
    assert "issue #99" in (caught.value.details() or "")
    assert details_of(caught.value)["ErrorInfo"].reason == "NOT_IMPLEMENTED"


def _faulty_module() -> ServiceModuleSpec:
    """A test service whose handlers fail in the ways the boundary must handle."""

    async def explode(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        raise RuntimeError("secret internals: password=hunter2 at /srv/db")

    async def slow(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await asyncio.sleep(1.0)
        return b"done"

    async def stream(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        for i in range(3):
            yield bytes([i])
        raise RuntimeError("stream broke")

    handler = grpc.method_handlers_generic_handler(
        "test.Faulty",
        {
            "Explode": grpc.unary_unary_rpc_method_handler(explode),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    return ServiceModuleSpec(
        "faulty", ["test.Faulty"], lambda server: server.add_generic_rpc_handlers((handler,))
    )


async def test_internal_error_hides_details_and_carries_request_id(
    stack_factory: StackFactory, captured_logs: io.StringIO
) -> None:
    stack = await stack_factory(extra_modules=[_faulty_module()])
    explode = stack.channel.unary_unary("/test.Faulty/Explode")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await explode(b"", metadata=(("x-request-id", "rid-boom"),))
    error = caught.value
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in (error.details() or "") and "hunter2" not in (error.details() or "")
    assert "rid-boom" in (error.details() or "")
    assert details_of(error)["ErrorInfo"].metadata["request_id"] == "rid-boom"
    # The trace is in the log, with the request id, but the password is not.
    text = captured_logs.getvalue()
    assert "hunter2" not in text
    errors = [line for line in log_lines(captured_logs) if line.get("level") == "ERROR"]
    assert any(line.get("request_id") == "rid-boom" and "exception" in line for line in errors)


async def test_streaming_handler_through_interceptor(stack_factory: StackFactory) -> None:
    stack = await stack_factory(extra_modules=[_faulty_module()])
    call = stack.channel.unary_stream("/test.Faulty/Stream")(b"")
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for item in call:
            received.append(item)
    assert received == [b"\x00", b"\x01", b"\x02"]
    assert caught.value.code() == grpc.StatusCode.INTERNAL


async def test_graceful_shutdown_drains_in_flight_calls(stack_factory: StackFactory) -> None:
    stack = await stack_factory(extra_modules=[_faulty_module()])
    slow = stack.channel.unary_unary("/test.Faulty/Slow")
    in_flight = asyncio.ensure_future(slow(b"", timeout=10))
    await asyncio.sleep(0.2)
    await stack.runtime.stop()
    assert await in_flight == b"done"


async def test_secrets_in_metadata_never_reach_logs(
    stack: RunningStack, captured_logs: io.StringIO
) -> None:
    stub = tenant_grpc.TenantServiceStub(stack.channel)
    api_key = "emb_live_SuperSecretKeyValue123"
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # a made-up key is refused...
        await stub.ListTenants(
            tenant_pb.ListTenantsRequest(),
            metadata=(("authorization", f"Bearer {api_key}"), ("x-api-key", api_key)),
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert api_key not in (caught.value.details() or "")
    text = captured_logs.getvalue()
    assert "ListTenants" in text  # the access line is there...
    assert api_key not in text  # ...without the credential
