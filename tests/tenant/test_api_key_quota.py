"""The plan's API key limit (gateway/plans.toml `max_api_keys`), over gRPC on the real
runtime: the key past the limit is refused with QUOTA_EXCEEDED, revoked and expired keys
do not count, and a larger plan lifts the limit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from embrec.tenant.v1 import api_key_service_pb2 as keys_pb
from embrec.tenant.v1 import api_key_service_pb2_grpc as keys_grpc
from embrec.tenant.v1 import resources_pb2
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from gateway.plans import load_plans
from tests.services.conftest import RunningStack
from tests.tenant.support import error_info, onboard


async def test_plan_key_limit_refuses_then_makes_room(stack: RunningStack) -> None:
    limit = load_plans().get("free").max_api_keys
    assert limit > 0, "the free plan must limit keys for this test to mean anything"
    user = await onboard(stack)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)

    async def create(
        name: str, expire_time: Timestamp | None = None
    ) -> keys_pb.CreateApiKeyResponse:
        api_key = resources_pb2.ApiKey(name=name)
        if expire_time is not None:
            api_key.expire_time.CopyFrom(expire_time)
        return await keys.CreateApiKey(
            keys_pb.CreateApiKeyRequest(api_key=api_key), metadata=user.metadata
        )

    # An expired key is not usable, so it never counts: give one a 2-second life first.
    soon = Timestamp()
    soon.FromDatetime(datetime.now(UTC) + timedelta(seconds=2))
    await create("short-lived", soon)
    created = [await create(f"key-{n}") for n in range(limit - 1)]

    # The short-lived key still counts until it expires: the limit is reached now.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create("one too many")
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(refused.value)
    assert info.reason == "QUOTA_EXCEEDED"
    assert info.metadata["limit"] == str(limit) and info.metadata["plan"] == "free"

    # Once it has expired its slot is free again.
    await asyncio.sleep(2.5)
    created.append(await create("after expiry"))
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await create("still too many")
    assert error_info(again.value).reason == "QUOTA_EXCEEDED"

    # Revoking a key makes room for exactly one more.
    await keys.RevokeApiKey(
        keys_pb.RevokeApiKeyRequest(api_key_id=created[0].api_key.id, reason="rotated"),
        metadata=user.metadata,
    )
    await create("replacement")

    # A larger plan lifts the limit.
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    await tenants.UpdateTenant(
        tenant_pb.UpdateTenantRequest(
            tenant={"id": user.tenant.id, "plan": "pro"}, update_mask={"paths": ["plan"]}
        ),
        metadata=stack.admin_metadata(),
    )
    await create("on the pro plan")
    listed = await keys.ListApiKeys(keys_pb.ListApiKeysRequest(), metadata=user.metadata)
    assert len(listed.api_keys) == limit + 1
