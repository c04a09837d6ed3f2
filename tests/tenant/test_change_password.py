"""ChangePassword through the real runtime (SQLite): the old password stops working,
every earlier session ends, the change is audited without secrets, and only the user
themself may do it."""

from __future__ import annotations

import io

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from embrec.audit.v1 import resources_pb2 as audit_pb
from embrec.tenant.v1 import api_key_service_pb2 as keys_pb
from embrec.tenant.v1 import api_key_service_pb2_grpc as keys_grpc
from embrec.tenant.v1 import auth_service_pb2 as auth_pb
from embrec.tenant.v1 import auth_service_pb2_grpc as auth_grpc
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from tests.services.conftest import RunningStack, StackFactory
from tests.tenant.support import PASSWORD, audit_events, bearer, error_info, onboard

NEW_PASSWORD = "a brand new passphrase 2026"


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type,unused-ignore]
    assert status is not None
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def test_change_password_swaps_the_password_and_ends_every_session(
    stack: RunningStack, captured_logs: io.StringIO
) -> None:
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    # A second device signed in too: its session must end with the change.
    other_device = await auth.Login(auth_pb.LoginRequest(email=user.email, password=PASSWORD))

    reply = await auth.ChangePassword(
        auth_pb.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD),
        metadata=user.metadata,
    )
    assert reply.access_token and reply.refresh_token
    assert reply.token_type == "Bearer" and reply.expires_in == 900

    old = await rpc_error(auth.Login(auth_pb.LoginRequest(email=user.email, password=PASSWORD)))
    assert old.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(old).reason == "LOGIN_FAILED"
    await auth.Login(auth_pb.LoginRequest(email=user.email, password=NEW_PASSWORD))

    for stale in (user.refresh_token, other_device.refresh_token):
        ended = await rpc_error(auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=stale)))
        assert ended.code() == grpc.StatusCode.UNAUTHENTICATED
    # The session handed back by the change is the one that keeps working.
    await auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=reply.refresh_token))
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    own = await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(reply.access_token))
    assert own.id == user.tenant.id

    changed = [e for e in await audit_events(stack) if e.action == "auth.change_password"]
    assert len(changed) == 1
    event = changed[0]
    assert event.outcome == audit_pb.AUDIT_OUTCOME_SUCCESS
    assert event.tenant_id == user.tenant.id and event.target == f"users/{event.actor}"
    assert event.metadata["sessions_ended"] == "2"
    serialized = event.SerializeToString()
    logs = captured_logs.getvalue()
    assert "ChangePassword" in logs
    for secret in (PASSWORD, NEW_PASSWORD, reply.refresh_token, reply.access_token):
        assert secret.encode() not in serialized
        assert secret not in logs


async def test_wrong_current_password_is_refused_audited_and_throttled(
    stack_factory: StackFactory,
) -> None:
    stack = await stack_factory(login_max_failures=3, login_lockout_seconds=30)
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    for _ in range(3):
        wrong = await rpc_error(
            auth.ChangePassword(
                auth_pb.ChangePasswordRequest(
                    current_password="not the password", new_password=NEW_PASSWORD
                ),
                metadata=user.metadata,
            )
        )
        assert wrong.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(wrong).reason == "CURRENT_PASSWORD_WRONG"
    # The guesses count towards Login's lockout: even the right password waits now.
    locked = await rpc_error(
        auth.ChangePassword(
            auth_pb.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD),
            metadata=user.metadata,
        )
    )
    assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(locked).reason == "LOGIN_LOCKED"
    login = await rpc_error(auth.Login(auth_pb.LoginRequest(email=user.email, password=PASSWORD)))
    assert error_info(login).reason == "LOGIN_LOCKED"

    failures = [e for e in await audit_events(stack) if e.action == "auth.change_password"]
    assert [e.outcome for e in failures] == [audit_pb.AUDIT_OUTCOME_FAILURE] * 3
    assert failures[-1].metadata["failed_attempts"] == "3"
    for event in failures:
        assert b"not the password" not in event.SerializeToString()
        assert NEW_PASSWORD.encode() not in event.SerializeToString()


async def test_new_password_follows_the_sign_up_policy(stack: RunningStack) -> None:
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    cases = [
        (PASSWORD, "short", {"new_password": "at least 10 characters"}),
        (PASSWORD, "x" * 1025, {"new_password": "at most 1024 characters"}),
        (PASSWORD, PASSWORD, {"new_password": "must differ from the current password"}),
        ("", NEW_PASSWORD, {"current_password": "required"}),
    ]
    for current, new, expected in cases:
        error = await rpc_error(
            auth.ChangePassword(
                auth_pb.ChangePasswordRequest(current_password=current, new_password=new),
                metadata=user.metadata,
            )
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violations(error) == expected
    # Nothing changed: the password still works and no lockout was counted.
    await auth.Login(auth_pb.LoginRequest(email=user.email, password=PASSWORD))


async def test_only_the_signed_in_user_may_change_their_password(stack: RunningStack) -> None:
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    key = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(api_key={"name": "website"}), metadata=user.metadata
    )
    impersonation = await auth.Impersonate(
        auth_pb.ImpersonateRequest(tenant_id=user.tenant.slug, reason="ticket #7"),
        metadata=stack.admin_metadata(),
    )
    request = auth_pb.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD)
    for credential, reason in (
        (bearer(key.secret), "NOT_A_USER"),
        (bearer(impersonation.access_token), "IMPERSONATION_NOT_ALLOWED"),
    ):
        denied = await rpc_error(auth.ChangePassword(request, metadata=credential))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(denied).reason == reason
    anonymous = await rpc_error(auth.ChangePassword(request))
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    # None of those attempts touched the password.
    await auth.Login(auth_pb.LoginRequest(email=user.email, password=PASSWORD))
