"""Every RPC of the descriptor set has an authz rule; REST and gRPC resolve alike."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pb2

from embrec.retrieval.v1 import retrieval_service_pb2
from gateway.policy import RULES, Access, build_policy, scan_proto_string_field

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLIC = {
    "embrec.platform.v1.PlatformService/GetHealth",
    "embrec.tenant.v1.AuthService/SignUp",
    "embrec.tenant.v1.AuthService/Login",
    "embrec.tenant.v1.AuthService/RefreshToken",
}


def _descriptor_methods() -> list[str]:
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    descriptor_set.ParseFromString((REPO_ROOT / "envoy/embrec.pb").read_bytes())
    return [
        f"{f.package}.{s.name}/{m.name}"
        for f in descriptor_set.file
        if f.package.startswith("embrec.")
        for s in f.service
        for m in s.method
    ]


def test_only_login_signup_refresh_and_health_are_public() -> None:
    policy = build_policy()
    methods = _descriptor_methods()
    assert methods and set(methods) <= set(policy.methods)
    public = {m for m in methods if policy.rule_for(m).access is Access.PUBLIC}
    assert public == PUBLIC
    # Public RPCs not routed by the gateway (internal services) fall to admin-only.
    unlisted = [m for m in methods if m not in RULES]
    assert all("InternalService" in m for m in unlisted)
    assert all(policy.rule_for(m).access is Access.ADMIN for m in unlisted)


def test_rest_paths_resolve_to_their_rpc() -> None:
    policy = build_policy()
    call = policy.resolve("POST", "/api/admin/tenants/acme:suspend", "application/json", b"{}")
    assert call.method == "embrec.tenant.v1.TenantService/SuspendTenant"
    assert call.named_tenants == ("acme",)
    assert call.rule.access is Access.ADMIN
    # GetTenant is a tenant RPC, but its /api/admin binding is for staff only.
    assert policy.resolve("GET", "/api/admin/tenants/x", "", b"").rule.access is Access.ADMIN
    assert policy.resolve("GET", "/api/v1/tenant", "", b"").rule.access is Access.TENANT
    call = policy.resolve("GET", "/api/v1/auditEvents:export?tenant_id=b", "", b"")
    assert call.method == "embrec.audit.v1.AuditService/ExportAuditEvents"
    assert call.named_tenants == ("b",)
    call = policy.resolve(
        "POST", "/api/v1/recommendations", "application/json", b'{"user_id": "u", "tenantId": "z"}'
    )
    assert call.named_tenants == ("z",)
    unknown = policy.resolve("GET", "/nowhere", "", b"")
    assert unknown.method == "" and unknown.rule.access is Access.TENANT


def test_tenant_read_from_truncated_grpc_body() -> None:
    message = retrieval_service_pb2.RecommendRequest(
        tenant_id="t-1", user_id="u" * 1000
    ).SerializeToString()
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    call = build_policy().resolve(
        "POST", "/embrec.retrieval.v1.RetrievalService/Recommend", "application/grpc", frame[:100]
    )  # Envoy forwarded only part of the body
    assert call.named_tenants == ("t-1",)  # read from the part that arrived
    assert scan_proto_string_field(message[:50], 1) == ["t-1"]
    full = build_policy().resolve(
        "POST", "/embrec.retrieval.v1.RetrievalService/Recommend", "application/grpc", frame
    )
    assert full.named_tenants == ("t-1",)
