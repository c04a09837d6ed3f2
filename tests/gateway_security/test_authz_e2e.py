"""Through real Envoy, PostgreSQL and Redis: what a caller sees from the gateway's authz."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest

from embrec.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc
from services.embedded import render_gateway_config
from tests.gateway_security.conftest import REPO_ROOT, SecuredStack
from tests.support.servers import free_port, start_envoy

RECOMMEND = "/api/v1/recommendations"
#: What the gateway answers when it refuses; anything else means authz let the call through.
DENIED = (401, 403, 429)


async def _post(
    stack: SecuredStack,
    path: str,
    body: dict[str, object],
    token: str | None = None,
    **headers: str,
) -> httpx.Response:
    if token:
        headers["authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        return await client.post(path, json=body, headers=headers)


def _reason(reply: httpx.Response) -> str:
    if "x-embrec-error-reason" in reply.headers:
        return reply.headers["x-embrec-error-reason"]
    details = reply.json().get("details", [])
    return next((str(d["reason"]) for d in details if "reason" in d), "")


async def test_credentials_decide_401_403_or_through(
    secured_either_transport: SecuredStack,
) -> None:
    secured = secured_either_transport
    tenant_a, tenant_b = await secured.tenant(), await secured.tenant()
    body = {"user_id": "user_123", "count": 5}

    missing = await _post(secured, RECOMMEND, body)
    assert missing.status_code == 401
    assert missing.headers["content-type"].startswith("application/json")
    assert missing.json()["code"] == 401
    assert missing.headers["x-content-type-options"] == "nosniff"

    assert (await _post(secured, RECOMMEND, body, "not-a-jwt")).status_code == 401
    forged = secured.token(tenant_a.id)[:-4] + "AAAA"
    assert (await _post(secured, RECOMMEND, body, forged)).status_code == 401
    expired = secured.token(tenant_a.id, now=datetime.now(UTC) - timedelta(hours=1))
    reply = await _post(secured, RECOMMEND, body, expired)
    assert reply.status_code == 401
    assert reply.headers["x-embrec-error-reason"] == "TOKEN_EXPIRED"

    token_b = secured.token(tenant_b.id)
    # Authz lets it through to the service.
    assert (await _post(secured, RECOMMEND, body, token_b)).status_code not in DENIED
    cross = await _post(secured, RECOMMEND, {**body, "tenant_id": tenant_a.id}, token_b)
    assert cross.status_code == 403
    assert cross.headers["x-embrec-error-reason"] == "CROSS_TENANT"
    by_slug = await _post(secured, RECOMMEND, {**body, "tenant_id": tenant_a.slug}, token_b)
    assert by_slug.status_code == 403
    # Own slug is fine.
    assert (
        await _post(secured, RECOMMEND, {**body, "tenant_id": tenant_b.slug}, token_b)
    ).status_code not in DENIED
    # Scope and admin-only.
    no_scope = secured.token(tenant_b.id, scopes=frozenset({"data:read"}))
    assert (await _post(secured, RECOMMEND, body, no_scope)).status_code == 403
    admin_only = await _post(secured, "/api/admin/tenants", {"name": "x"}, token_b)
    assert admin_only.status_code == 403
    # Client-sent principal headers do not help.
    spoof = await _post(
        secured,
        "/api/admin/tenants",
        {"name": "x"},
        token_b,
        **{"x-role": "platform_admin", "x-tenant-id": ""},
    )
    assert spoof.status_code == 403


async def test_client_sent_gateway_headers_never_reach_a_service(
    secured_either_transport: SecuredStack,
) -> None:
    secured = secured_either_transport
    tenant = await secured.tenant()
    token = secured.token(tenant.id)
    forged = {
        # Not set for this principal: must be removed, or the service's check of the
        # gateway's signature fails (401 PRINCIPAL_SIGNATURE_INVALID).
        "x-impersonator": "user:someone-else",
        # Set for this principal: must be replaced by the gateway's values.
        "x-tenant-id": "another-tenant",
        "x-role": "platform_admin",
        "x-embrec-principal-sig": "0" * 64,
    }
    reply = await _post(secured, RECOMMEND, {"user_id": "u", "count": 1}, token, **forged)
    assert reply.status_code == 200, reply.text
    assert reply.json()["fallback"] is True  # the tenant's own (empty) catalog answered


async def test_sql_injection_user_id_is_data(secured: SecuredStack) -> None:
    tenant = await secured.tenant()
    body = {"user_id": "x'; DROP TABLE tenants; --", "count": 5}
    reply = await _post(secured, RECOMMEND, body, secured.token(tenant.id))
    assert reply.status_code not in DENIED
    # The tenants table is still there: authz can still read the tenant.
    assert (
        await _post(secured, RECOMMEND, body, secured.token(tenant.id))
    ).status_code not in DENIED


async def test_grpc_callers_get_status_codes(secured_either_transport: SecuredStack) -> None:
    secured = secured_either_transport
    tenant_a, tenant_b = await secured.tenant(), await secured.tenant()
    async with grpc.aio.insecure_channel(secured.grpc_target) as channel:
        stub = retrieval_service_pb2_grpc.RetrievalServiceStub(channel)
        request = retrieval_service_pb2.RecommendRequest(user_id="u1", count=5)
        try:
            await stub.Recommend(request)
            raise AssertionError("no credential got through")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        metadata = (("authorization", f"Bearer {secured.token(tenant_b.id)}"),)
        try:
            await stub.Recommend(
                retrieval_service_pb2.RecommendRequest(tenant_id=tenant_a.id, user_id="u"),
                metadata=metadata,
            )
            raise AssertionError("cross-tenant got through")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
        try:
            await stub.Recommend(request, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            # Through authz: whatever the service answers, it is not an auth refusal.
            assert exc.code() not in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED,
            )


async def test_revocation_and_suspension_take_effect(secured: SecuredStack) -> None:
    tenant = await secured.tenant()
    key, key_id = await secured.api_key(tenant.id)
    body = {"user_id": "u", "count": 1}
    assert (await _post(secured, RECOMMEND, body, key)).status_code not in DENIED
    assert (await _post(secured, RECOMMEND, body, **{"x-api-key": key})).status_code not in DENIED
    bad = key[:-3] + "zzz"
    assert (await _post(secured, RECOMMEND, body, bad)).status_code == 401

    await secured.revoke(key_id, tenant.id)
    for _ in range(50):  # the bus watcher drops the cached key within a poll or two
        reply = await _post(secured, RECOMMEND, body, key)
        if reply.status_code == 401:
            break
        await asyncio.sleep(0.1)
    assert reply.status_code == 401
    assert reply.headers["x-embrec-error-reason"] == "API_KEY_REVOKED"

    token = secured.token(tenant.id)
    assert (await _post(secured, RECOMMEND, body, token)).status_code not in DENIED
    await secured.suspend(tenant.id)
    for _ in range(50):
        reply = await _post(secured, RECOMMEND, body, token)
        if reply.status_code == 403:
            break
        await asyncio.sleep(0.1)
    assert reply.status_code == 403
    # The gateway's refusal names the reason in a header; the service's (its tenant
    # cache may notice the suspension first) in the JSON body's ErrorInfo.
    assert _reason(reply) == "TENANT_SUSPENDED"


async def test_burst_of_100_gets_some_429s(secured: SecuredStack) -> None:
    tenant = await secured.tenant(plan="free")
    token = secured.token(tenant.id)
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as client:
        replies = await asyncio.gather(
            *(
                client.post(
                    RECOMMEND, json={"user_id": "u"}, headers={"authorization": f"Bearer {token}"}
                )
                for _ in range(100)
            )
        )
    codes = [r.status_code for r in replies]
    assert 429 in codes and any(c not in DENIED for c in codes), codes
    limited = next(r for r in replies if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1


async def test_public_methods_need_no_credential(secured: SecuredStack) -> None:
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as client:
        health = await client.get("/health")
        assert health.status_code in (200, 503)
        login = await client.post("/api/v1/auth/login", json={"email": "a@b.c", "password": "x"})
        assert (
            login.status_code not in (401, 403)
            or login.headers.get("x-embrec-error-reason") is None
        )


async def test_an_unreachable_authz_refuses_every_call(
    secured: SecuredStack, tmp_path: Path
) -> None:
    """Fail closed: an Envoy whose authz endpoint does not answer lets nothing through."""
    tenant = await secured.tenant()
    token = secured.token(tenant.id)
    data_dir = tmp_path / "dead-authz"
    data_dir.mkdir()
    nobody = free_port()  # nothing listens there

    def configure(listen: int, admin: int) -> Path:
        ports = {"envoy_port": listen, "envoy_admin_port": admin, "data_dir": data_dir}
        settings = secured.runtime.settings.model_copy(update=ports)
        return render_gateway_config(
            settings, REPO_ROOT, secured.runtime.port, security=True, authz_http_port=nobody
        )

    envoy, listen = await asyncio.to_thread(start_envoy, configure, data_dir)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}", timeout=10) as client:
            reply = await client.post(
                RECOMMEND,
                json={"user_id": "u", "count": 1},
                headers={"authorization": f"Bearer {token}"},
            )
        assert reply.status_code == 503
        assert reply.json()["code"] == 503
        async with grpc.aio.insecure_channel(f"127.0.0.1:{listen}") as channel:
            stub = retrieval_service_pb2_grpc.RetrievalServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Recommend(
                    retrieval_service_pb2.RecommendRequest(user_id="u", count=1),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        envoy.close()
