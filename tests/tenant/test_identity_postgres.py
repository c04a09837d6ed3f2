"""The identity flows on PostgreSQL, including the races a real database lets happen."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from embrec.tenant.v1 import api_key_service_pb2 as keys_pb
from embrec.tenant.v1 import api_key_service_pb2_grpc as keys_grpc
from embrec.tenant.v1 import auth_service_pb2 as auth_pb
from embrec.tenant.v1 import auth_service_pb2_grpc as auth_grpc
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from tests.services.conftest import StackFactory
from tests.tenant.support import PASSWORD, audit_events, bearer, error_info, onboard

pytestmark = pytest.mark.integration


async def test_identity_on_postgresql(postgres_url: str, stack_factory: StackFactory) -> None:
    stack = await stack_factory(database_url=postgres_url)
    alice, bob = await onboard(stack, "Alice"), await onboard(stack, "Bob")
    auth = auth_grpc.AuthServiceStub(stack.channel)
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)

    login = await auth.Login(auth_pb.LoginRequest(email=alice.email, password=PASSWORD))
    assert login.access_token

    # Two concurrent refreshes with one token: exactly one wins, the other is reuse.
    results = await asyncio.gather(
        *(
            auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=login.refresh_token))
            for _ in range(2)
        ),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(errors) == 1 and errors[0].code() == grpc.StatusCode.UNAUTHENTICATED

    key = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(api_key={"name": "pg"}), metadata=alice.metadata
    )
    assert (await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(key.secret))).id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenants.GetTenant(
            tenant_pb.GetTenantRequest(tenant_id=bob.tenant.slug), metadata=bearer(key.secret)
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await keys.RevokeApiKey(
        keys_pb.RevokeApiKeyRequest(api_key_id=key.api_key.id), metadata=alice.metadata
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(key.secret))
    assert error_info(caught.value).reason == "API_KEY_REVOKED"

    # Concurrent wrong guesses each count towards the lockout (atomic increments).
    wrong = [
        auth.Login(auth_pb.LoginRequest(email=bob.email, password=f"wrong-guess-{i}"))
        for i in range(5)
    ]
    await asyncio.gather(*wrong, return_exceptions=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.Login(auth_pb.LoginRequest(email=bob.email, password=PASSWORD))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    actions = {e.action for e in await audit_events(stack) if e.tenant_id == alice.tenant.id}
    assert {"tenant.create", "auth.signup", "api_key.create", "api_key.revoke"} <= actions
