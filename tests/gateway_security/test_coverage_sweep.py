"""Coverage proof for the gateway's authz: every method, every REST binding, both wire forms.

Envoy's transcoder re-matches the route after ext_authz ran (FACTS), so a rule keyed on
routes could miss a path. This sweep does not trust the rule table: it reads the
descriptor set Envoy loads (envoy/embrec.pb), and through real Envoy in front of the
real services calls

* every HTTP binding of every method (additional_bindings included), with its verb,
  path variables filled, a JSON body or query;
* every RPC of every service over gRPC (internal services too: the gateway does not
  route them, and must still refuse them to callers without staff credentials);

(a) without a credential: only GetHealth, SignUp, Login, RefreshToken and the gRPC
    health/reflection services may get past the gateway; everything else is
    401 / UNAUTHENTICATED;
(b) with tenant A's JWT and with tenant A's API key (all scopes), naming tenant B
    wherever the request can name a tenant (path, query, JSON body, nested
    ``options.tenant_id`` or ``tenant.id``): 403 / PERMISSION_DENIED, whether the
    gateway or the service behind it refuses. Admin-only methods are 403 to a tenant
    credential too (authenticated, not allowed). Public methods, Logout and
    ChangePassword (which name no tenant: they act on the caller's own sessions and
    password) are not cross-tenant calls.

One test, one stack, one Envoy; every mismatch is collected and reported together.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from services.storage.models import Tenant
from tests.gateway_security.conftest import SecuredStack

REPO_ROOT = Path(__file__).resolve().parents[2]
DESCRIPTOR_SET = REPO_ROOT / "envoy" / "embrec.pb"

PUBLIC_METHODS = {
    "embrec.platform.v1.PlatformService/GetHealth",
    "embrec.tenant.v1.AuthService/SignUp",
    "embrec.tenant.v1.AuthService/Login",
    "embrec.tenant.v1.AuthService/RefreshToken",
}
PUBLIC_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")
#: Authenticated, but names no tenant: they act on the caller's own account only.
NAMES_NO_TENANT = {
    "embrec.tenant.v1.AuthService/Logout",
    "embrec.tenant.v1.AuthService/ChangePassword",
}
#: The gateway's own denial carries this header (a service's 401 would not).
AUTHZ_CHALLENGE = 'Bearer realm="embrec"'
_OTHER_ID = "0f0e0d0c-0000-4000-8000-000000000001"  # a non-tenant path variable


@dataclass(frozen=True)
class Binding:
    method: str
    verb: str
    template: str
    body: str  # "", "*" or a field name


def _pool() -> tuple[descriptor_pool.DescriptorPool, list[str]]:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    services: list[str] = []
    for file in files.file:
        pool.Add(file)
        if file.package.startswith("embrec."):
            services += [f"{file.package}.{s.name}" for s in file.service]
    return pool, services


POOL, SERVICES = _pool()


def _methods() -> Iterator[MethodDescriptor]:
    for service in SERVICES:
        yield from POOL.FindServiceByName(service).methods


def _full(method: MethodDescriptor) -> str:
    return f"{method.containing_service.full_name}/{method.name}"


def _bindings(method: MethodDescriptor) -> Iterator[Binding]:
    # Options parsed from a descriptor set hold the google.api.http extension as
    # unknown bytes; re-parse them with the extension registered.
    raw = method.GetOptions().SerializeToString()
    options = descriptor_pb2.MethodOptions.FromString(raw)
    if not options.HasExtension(annotations_pb2.http):
        return

    def walk(rule: http_pb2.HttpRule) -> Iterator[Binding]:
        kind = rule.WhichOneof("pattern")
        if kind == "custom":
            yield Binding(_full(method), rule.custom.kind.upper(), rule.custom.path, rule.body)
        elif kind is not None:
            yield Binding(_full(method), kind.upper(), getattr(rule, kind), rule.body)
        for extra in rule.additional_bindings:
            yield from walk(extra)

    yield from walk(options.Extensions[annotations_pb2.http])


def _tenant_paths(message: Descriptor, prefix: str = "", depth: int = 0) -> list[str]:
    """Field paths in ``message`` that name a tenant: ``tenant_id`` anywhere two levels
    deep (``options.tenant_id``), and the ``id`` of an embedded Tenant resource."""
    found: list[str] = []
    for field in message.fields:
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING and field.name == "tenant_id":
            found.append(path)
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and not field.message_type.GetOptions().map_entry
            and not field.is_repeated
            and depth < 1
        ):
            if field.message_type.full_name == "embrec.tenant.v1.Tenant":
                found.append(f"{path}.id")
            else:
                found += _tenant_paths(field.message_type, f"{path}.", depth + 1)
    return found


def _message_class(descriptor: Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def _grpc_request(method: MethodDescriptor, tenant: str | None) -> bytes:
    request = _message_class(method.input_type)()
    if tenant is not None:
        for path in _tenant_paths(method.input_type):
            *parents, leaf = path.split(".")
            target: Any = request
            for name in parents:
                target = getattr(target, name)
            setattr(target, leaf, tenant)
    return request.SerializeToString()


def _set(document: dict[str, Any], path: str, value: str) -> None:
    *parents, leaf = path.split(".")
    for name in parents:
        document = document.setdefault(name, {})
    document[leaf] = value


@dataclass(frozen=True)
class RestCall:
    verb: str
    path: str
    query: dict[str, str]
    json: dict[str, Any] | None
    content: bytes | None
    names_tenant: bool


def _rest_call(binding: Binding, tenant: str | None) -> RestCall:
    method = POOL.FindMethodByName(binding.method.replace("/", "."))
    tenant_paths = _tenant_paths(method.input_type) if tenant is not None else []
    path = binding.template
    named = False
    bound: set[str] = set()
    for variable in _path_variables(binding.template):
        value = _OTHER_ID
        if variable in tenant_paths and tenant is not None:
            value, named = tenant, True
        path = path.replace("{" + variable + "}", value)
        bound.add(variable)
    remaining = [p for p in tenant_paths if p not in bound]
    query: dict[str, str] = {}
    document: dict[str, Any] = {}
    content: bytes | None = None
    body_field = method.input_type.fields_by_name.get(binding.body)
    for field_path in remaining:
        if binding.body == "*":
            _set(document, field_path, tenant or "")
        elif binding.body and field_path.startswith(binding.body + "."):
            _set(document, field_path.removeprefix(binding.body + "."), tenant or "")
        else:
            query[field_path] = tenant or ""
        named = True
    is_http_body = (
        body_field is not None
        and body_field.message_type is not None
        and body_field.message_type.full_name == "google.api.HttpBody"
    )
    if is_http_body:
        content = b"item_id,title\nsku-1,Phone\n"
    if binding.verb in ("GET", "DELETE") or is_http_body:
        return RestCall(binding.verb, path, query, None, content, named)
    return RestCall(binding.verb, path, query, document, None, named)


def _path_variables(template: str) -> list[str]:
    return re.findall(r"\{([a-zA-Z0-9_.]+)(?:=[^}]*)?\}", template)


async def _rest(
    client: httpx.AsyncClient, call: RestCall, headers: dict[str, str]
) -> httpx.Response:
    request_headers = dict(headers)
    if call.content is not None:
        request_headers["content-type"] = "text/csv"
    return await client.request(
        call.verb,
        call.path,
        params=call.query or None,
        json=call.json,
        content=call.content,
        headers=request_headers,
    )


async def _grpc(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    payload: bytes,
    metadata: tuple[tuple[str, str], ...],
) -> grpc.StatusCode:
    path = f"/{_full(method)}"
    identity = {"request_serializer": None, "response_deserializer": None}
    try:
        if method.client_streaming and method.server_streaming:
            call: Any = channel.stream_stream(path, **identity)(iter([payload]), metadata=metadata)
            async for _ in call:
                break
        elif method.client_streaming:
            await channel.stream_unary(path, **identity)(iter([payload]), metadata=metadata)
        elif method.server_streaming:
            async for _ in channel.unary_stream(path, **identity)(payload, metadata=metadata):
                break
        else:
            await channel.unary_unary(path, **identity)(payload, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _rest_denied_by_gateway(reply: httpx.Response) -> bool:
    return reply.status_code == 401 and reply.headers.get("www-authenticate") == AUTHZ_CHALLENGE


async def test_every_method_over_rest_and_grpc_needs_the_right_credential(
    secured: SecuredStack,
) -> None:
    methods = list(_methods())
    bindings = [b for m in methods for b in _bindings(m)]
    # The sweep must see what Envoy serves: every service, and every binding's verb.
    assert len(methods) > 40 and len(bindings) > len(methods) - 5
    assert {b.verb for b in bindings} >= {"GET", "POST", "PATCH", "DELETE"}
    assert any(b.template.startswith("/api/admin/") for b in bindings)

    tenant_a = await secured.tenant(plan="enterprise")
    tenant_b: Tenant = await secured.tenant(plan="enterprise")
    api_key, _ = await secured.api_key(tenant_a.id)
    credentials = {
        "jwt": (secured.token(tenant_a.id), tenant_b.id),
        "api key": (api_key, tenant_b.slug),  # name B by slug this time
    }
    failures: list[str] = []
    calls = 0

    async with (
        httpx.AsyncClient(base_url=secured.base_url, timeout=15) as client,
        grpc.aio.insecure_channel(secured.grpc_target) as channel,
    ):
        # (a) REST without a credential.
        for binding in bindings:
            call = _rest_call(binding, None)
            reply = await _rest(client, call, {})
            calls += 1
            where = f"REST {binding.verb} {binding.template} ({binding.method})"
            if binding.method in PUBLIC_METHODS:
                if _rest_denied_by_gateway(reply) or reply.status_code == 403:
                    failures.append(f"{where}: public, but the gateway said {reply.status_code}")
            elif reply.status_code != 401:
                failures.append(f"{where}: no credential got {reply.status_code}, not 401")
            elif not reply.headers.get("content-type", "").startswith("application/json"):
                failures.append(f"{where}: 401 without a JSON body")

        # (a) gRPC without a credential.
        for method in methods:
            code = await _grpc(channel, method, _grpc_request(method, None), ())
            calls += 1
            where = f"gRPC {_full(method)}"
            if _full(method) in PUBLIC_METHODS:
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    failures.append(f"{where}: public, but got {code.name}")
            elif code != grpc.StatusCode.UNAUTHENTICATED:
                failures.append(f"{where}: no credential got {code.name}, not UNAUTHENTICATED")

        # Health and reflection answer anyone (probes, grpcurl and ghz need them).
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for answer in listing:
            listed = {s.name for s in answer.list_services_response.service}
            assert "embrec.retrieval.v1.RetrievalService" in listed
            break

        # Paths no binding knows, and JSON posted to a gRPC path, need a credential too.
        for verb, path in (("GET", "/api/v1/nowhere"), ("POST", "/api/admin/whatever")):
            reply = await client.request(verb, path, json={} if verb == "POST" else None)
            if reply.status_code != 401:
                failures.append(f"REST {verb} {path}: unknown path got {reply.status_code}")
        reply = await client.post("/embrec.tenant.v1.TenantService/ListTenants", json={})
        if reply.status_code != 401:
            failures.append(f"REST JSON to a gRPC path got {reply.status_code}, not 401")

        # (b) Tenant A's credentials, naming tenant B.
        for kind, (secret, other) in credentials.items():
            headers = {"authorization": f"Bearer {secret}"}
            metadata = (("authorization", f"Bearer {secret}"),)
            for binding in bindings:
                if binding.method in PUBLIC_METHODS | NAMES_NO_TENANT:
                    continue
                call = _rest_call(binding, other)
                reply = await _rest(client, call, headers)
                calls += 1
                where = f"REST {binding.verb} {binding.template} with A's {kind}"
                if not call.names_tenant and not binding.template.startswith("/api/admin/"):
                    failures.append(f"{where}: the sweep could not name tenant B in it")
                elif reply.status_code != 403:
                    failures.append(f"{where} naming B: {reply.status_code}, not 403")
            for method in methods:
                if _full(method) in PUBLIC_METHODS | NAMES_NO_TENANT:
                    continue
                code = await _grpc(channel, method, _grpc_request(method, other), metadata)
                calls += 1
                if code != grpc.StatusCode.PERMISSION_DENIED:
                    failures.append(
                        f"gRPC {_full(method)} with A's {kind} naming B: {code.name}, "
                        "not PERMISSION_DENIED"
                    )

    assert not failures, f"{len(failures)} of {calls} calls broke the rules:\n" + "\n".join(
        failures
    )
