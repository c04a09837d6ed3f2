"""API keys that expire, over gRPC on the real runtime (SQLite): what CreateApiKey
accepts, when the key stops working, what ListApiKeys shows, what the audit records."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from embrec.tenant.v1 import api_key_service_pb2 as keys_pb
from embrec.tenant.v1 import api_key_service_pb2_grpc as keys_grpc
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from tests.services.conftest import RunningStack
from tests.tenant.support import audit_events, bearer, error_info, onboard


def _stamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type,unused-ignore]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    raise AssertionError("no BadRequest")


async def test_expiry_must_be_in_the_future_and_within_two_years(stack: RunningStack) -> None:
    user = await onboard(stack)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    now = datetime.now(UTC)
    said = {}
    for case, expire_time in (
        ("past", _stamp(now - timedelta(minutes=1))),
        ("too far", _stamp(now + timedelta(days=731))),
        ("malformed", Timestamp(seconds=1, nanos=-5)),  # a 400, never a 500
    ):
        error = await _refused(
            keys.CreateApiKey(
                keys_pb.CreateApiKeyRequest(api_key={"name": "ci", "expire_time": expire_time}),
                metadata=user.metadata,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        said[case] = _violations(error)["api_key.expire_time"]
    assert "in the future" in said["past"]
    assert "730 days" in said["too far"]
    listed = await keys.ListApiKeys(
        keys_pb.ListApiKeysRequest(show_revoked=True), metadata=user.metadata
    )
    assert list(listed.api_keys) == []  # nothing was created by the refused calls

    # Just inside the cap is fine, and the expiry comes back as given.
    within = now + timedelta(days=729)
    created = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(api_key={"name": "ci", "expire_time": _stamp(within)}),
        metadata=user.metadata,
    )
    assert created.api_key.expire_time.ToDatetime(tzinfo=UTC) == within


async def test_key_stops_working_at_its_expiry_and_is_hidden_from_lists(
    stack: RunningStack,
) -> None:
    user = await onboard(stack)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    forever = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(api_key={"name": "forever"}), metadata=user.metadata
    )
    assert not forever.api_key.HasField("expire_time")
    expires = datetime.now(UTC) + timedelta(seconds=2)
    created = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(
            api_key={"name": "short-lived", "expire_time": _stamp(expires)}
        ),
        metadata=user.metadata,
    )
    assert created.api_key.expire_time.ToDatetime(tzinfo=UTC) == expires
    listed = await keys.ListApiKeys(keys_pb.ListApiKeysRequest(), metadata=user.metadata)
    assert {k.name for k in listed.api_keys} == {"forever", "short-lived"}

    # Used until just before its expiry, so the row sits in the Authenticator's cache...
    while datetime.now(UTC) < expires - timedelta(milliseconds=300):
        own = await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(created.secret))
        assert own.id == user.tenant.id
        await asyncio.sleep(0.1)
    # ...and refused from the expiry on, not from the cache's next reload.
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.02)
    error = await _refused(
        tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(created.secret))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info(error)
    assert info.reason == "API_KEY_EXPIRED"
    assert "expired at" in (error.details() or "") and "create a new one" in (error.details() or "")
    assert info.metadata["expire_time"] == expires.isoformat(timespec="seconds").replace(
        "+00:00", "Z"
    )
    # The key without an expiry is untouched.
    await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(forever.secret))

    hidden = await keys.ListApiKeys(keys_pb.ListApiKeysRequest(), metadata=user.metadata)
    assert [k.name for k in hidden.api_keys] == ["forever"]
    shown = await keys.ListApiKeys(
        keys_pb.ListApiKeysRequest(show_revoked=True), metadata=user.metadata
    )
    expired = next(k for k in shown.api_keys if k.id == created.api_key.id)
    assert expired.expire_time.ToDatetime(tzinfo=UTC) == expires
    assert not expired.HasField("revoke_time")

    creations = {
        e.target: dict(e.metadata)
        for e in await audit_events(stack)
        if e.action == "api_key.create"
    }
    assert creations[f"apiKeys/{created.api_key.id}"]["expire_time"] == info.metadata["expire_time"]
    assert creations[f"apiKeys/{forever.api_key.id}"]["expire_time"] == "never"
