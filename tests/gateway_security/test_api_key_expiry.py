"""Through real Envoy (ext_authz on), PostgreSQL and Redis: a key created with an expiry
over JSON works until that instant and is refused from it on, although the gateway
caches key rows for 30 seconds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import httpx

from embrec.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc
from tests.gateway_security.conftest import SecuredStack

RECOMMEND = "/api/v1/recommendations"
DENIED = (401, 403, 429)


async def test_expired_key_is_401_api_key_expired_over_json_and_grpc(
    secured: SecuredStack,
) -> None:
    tenant = await secured.tenant(plan="enterprise")
    admin = {"authorization": f"Bearer {secured.token(tenant.id)}"}
    # Room for a slow create on a busy machine; the key must still be valid when stored.
    expires = datetime.now(UTC) + timedelta(seconds=4)
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as client:
        created = await client.post(
            "/api/v1/apiKeys",
            json={"name": "ci", "expire_time": expires.isoformat().replace("+00:00", "Z")},
            headers=admin,
        )
        assert created.status_code == 200, created.text
        secret = created.json()["secret"]
        assert created.json()["api_key"]["expire_time"].startswith(
            expires.strftime("%Y-%m-%dT%H:%M:%S")
        )
        key = {"authorization": f"Bearer {secret}"}
        body = {"user_id": "u", "count": 1}

        # In use until just before the expiry: the gateway has the row cached.
        while datetime.now(UTC) < expires - timedelta(milliseconds=400):
            reply = await client.post(RECOMMEND, json=body, headers=key)
            assert reply.status_code not in DENIED, reply.text
            await asyncio.sleep(0.2)
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)

        reply = await client.post(RECOMMEND, json=body, headers=key)
        assert reply.status_code == 401
        assert reply.headers["x-embrec-error-reason"] == "API_KEY_EXPIRED"
        assert "expired at" in reply.json()["message"]
        assert "create a new one" in reply.json()["message"]

    async with grpc.aio.insecure_channel(secured.grpc_target) as channel:
        stub = retrieval_service_pb2_grpc.RetrievalServiceStub(channel)
        try:
            await stub.Recommend(
                retrieval_service_pb2.RecommendRequest(user_id="u", count=1),
                metadata=(("authorization", f"Bearer {secret}"),),
            )
            raise AssertionError("an expired key got through")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "expired at" in (exc.details() or "")
            seen = dict(exc.trailing_metadata() or ()) | dict(exc.initial_metadata() or ())
            assert seen.get("x-embrec-error-reason") == "API_KEY_EXPIRED"
