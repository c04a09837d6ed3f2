"""Identity and tenancy through the real runtime (SQLite): login, tokens, API keys,
isolation between tenants, suspension, impersonation, and what never reaches the logs."""

from __future__ import annotations

import asyncio
import io
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from embrec.audit.v1 import resources_pb2 as audit_pb
from embrec.tenant.v1 import api_key_service_pb2 as keys_pb
from embrec.tenant.v1 import api_key_service_pb2_grpc as keys_grpc
from embrec.tenant.v1 import auth_service_pb2 as auth_pb
from embrec.tenant.v1 import auth_service_pb2_grpc as auth_grpc
from embrec.tenant.v1 import resources_pb2
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from services.identity.credentials import Principal, issue_access_token
from tests.services.conftest import RunningStack, StackFactory
from tests.tenant.support import PASSWORD, audit_events, bearer, error_info, onboard, slug


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_seed_login_returns_access_token(stack: RunningStack) -> None:
    user = await onboard(stack, "Demo E-commerce")
    auth = auth_grpc.AuthServiceStub(stack.channel)
    reply = await auth.Login(auth_pb.LoginRequest(email=user.email.upper(), password=PASSWORD))
    assert reply.access_token and reply.refresh_token
    assert reply.token_type == "Bearer" and reply.expires_in == 900
    assert reply.user.role == resources_pb2.ROLE_TENANT_ADMIN
    # The token is the tenant's: GET /api/v1/tenant (no id) answers with its own tenant.
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    own = await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(reply.access_token))
    assert own.id == user.tenant.id


async def test_wrong_password_and_unknown_email_look_the_same(stack: RunningStack) -> None:
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    wrong = await rpc_error(auth.Login(auth_pb.LoginRequest(email=user.email, password="x" * 12)))
    unknown = await rpc_error(
        auth.Login(auth_pb.LoginRequest(email="nobody@nowhere.example", password="x" * 12))
    )
    for error in (wrong, unknown):
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(error).reason == "LOGIN_FAILED"
    assert wrong.details() == unknown.details()
    failures = [e for e in await audit_events(stack) if e.action == "auth.login"]
    assert [e.outcome for e in failures] == [audit_pb.AUDIT_OUTCOME_FAILURE] * 2
    assert all("password" not in key for e in failures for key in e.metadata)


async def test_lockout_after_repeated_failures(stack_factory: StackFactory) -> None:
    stack = await stack_factory(login_max_failures=3, login_lockout_seconds=30)
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    for email in (user.email, "ghost@nowhere.example"):
        for _ in range(3):
            error = await rpc_error(
                auth.Login(auth_pb.LoginRequest(email=email, password="bad" * 4))
            )
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        # Locked now, even with the right password; an unknown email locks the same way.
        locked = await rpc_error(auth.Login(auth_pb.LoginRequest(email=email, password=PASSWORD)))
        assert locked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(locked).reason == "LOGIN_LOCKED"
        assert 0 < int(error_info(locked).metadata["retry_after_seconds"]) <= 30


async def test_refresh_rotates_and_reuse_revokes_the_family(stack: RunningStack) -> None:
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    first = user.refresh_token
    second = (
        await auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=first))
    ).refresh_token
    third = (
        await auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=second))
    ).refresh_token
    assert len({first, second, third}) == 3

    reused = await rpc_error(auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=first)))
    assert reused.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(reused).reason == "REFRESH_TOKEN_REUSED"
    # The newest token of the family died with it: a thief's copy and the owner's both end.
    after = await rpc_error(auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=third)))
    assert after.code() == grpc.StatusCode.UNAUTHENTICATED
    assert any(e.action == "auth.refresh_reuse" for e in await audit_events(stack))

    # Another login is another family, unaffected.
    fresh = await auth.Login(auth_pb.LoginRequest(email=user.email, password=PASSWORD))
    await auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=fresh.refresh_token))


async def test_logout_ends_the_session(stack: RunningStack) -> None:
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    await auth.Logout(
        auth_pb.LogoutRequest(refresh_token=user.refresh_token), metadata=user.metadata
    )
    error = await rpc_error(
        auth.RefreshToken(auth_pb.RefreshTokenRequest(refresh_token=user.refresh_token))
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert (await rpc_error(auth.Logout(auth_pb.LogoutRequest(all_sessions=True)))).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert any(e.action == "auth.logout" for e in await audit_events(stack))


async def test_expired_or_forged_token_is_401(stack: RunningStack) -> None:
    user = await onboard(stack)
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    principal = Principal(
        subject="someone", tenant_id=user.tenant.id, role="tenant_admin", scopes=frozenset()
    )
    old, _ = issue_access_token(
        principal, stack.jwt_secret, now=datetime.now(UTC) - timedelta(minutes=16)
    )
    expired = await rpc_error(tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(old)))
    assert expired.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(expired).reason == "TOKEN_EXPIRED"

    forged, _ = issue_access_token(principal, "another-secret-of-at-least-32-characters!")
    bad = await rpc_error(tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(forged)))
    assert error_info(bad).reason == "TOKEN_INVALID"
    missing = await rpc_error(tenants.GetTenant(tenant_pb.GetTenantRequest()))
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(missing).reason == "CREDENTIAL_MISSING"


async def test_api_key_secret_once_listed_without_it_revoked_within_a_second(
    stack: RunningStack,
) -> None:
    user = await onboard(stack)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    created = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(
            api_key={"name": "Production - Website", "scopes": ["recommend:read"]}
        ),
        metadata=user.metadata,
    )
    secret = created.secret
    assert secret.startswith("emb_live_") and secret.startswith(created.api_key.prefix)
    assert secret != created.api_key.prefix
    assert list(created.api_key.scopes) == ["recommend:read"]

    listed = await keys.ListApiKeys(keys_pb.ListApiKeysRequest(), metadata=user.metadata)
    assert [k.id for k in listed.api_keys] == [created.api_key.id]
    assert secret not in str(listed) and secret.split("_")[
        -1
    ] not in listed.SerializeToString().decode("latin-1")

    # `Authorization: Bearer <api-key>` works, and its use is recorded.
    own = await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(secret))
    assert own.id == user.tenant.id
    listed = await keys.ListApiKeys(keys_pb.ListApiKeysRequest(), metadata=user.metadata)
    assert listed.api_keys[0].HasField("last_used_time")
    # A key is for the data plane: it cannot manage keys.
    denied = await rpc_error(
        keys.ListApiKeys(keys_pb.ListApiKeysRequest(), metadata=bearer(secret))
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(denied).reason == "SCOPE_MISSING"

    await keys.RevokeApiKey(
        keys_pb.RevokeApiKeyRequest(api_key_id=created.api_key.id, reason="rotated"),
        metadata=user.metadata,
    )
    revoked_at = time.monotonic()
    while True:
        try:
            await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(secret))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_info(error).reason == "API_KEY_REVOKED"
            break
        assert time.monotonic() - revoked_at < 1.0, "revocation took longer than a second"
        await asyncio.sleep(0.05)
    hidden = await keys.ListApiKeys(keys_pb.ListApiKeysRequest(), metadata=user.metadata)
    assert list(hidden.api_keys) == []
    shown = await keys.ListApiKeys(
        keys_pb.ListApiKeysRequest(show_revoked=True), metadata=user.metadata
    )
    assert shown.api_keys[0].HasField("revoke_time")
    actions = [e.action for e in await audit_events(stack)]
    assert "api_key.create" in actions and "api_key.revoke" in actions


async def test_api_key_bad_input_is_a_clear_400(stack: RunningStack) -> None:
    user = await onboard(stack)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    error = await rpc_error(
        keys.CreateApiKey(
            keys_pb.CreateApiKeyRequest(api_key={"name": "", "scopes": ["root:all"]}),
            metadata=user.metadata,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "root:all" in (error.details() or "") or error_info(error).reason == "INVALID_ARGUMENT"


async def test_tenant_a_cannot_touch_tenant_b(stack: RunningStack) -> None:
    alice, bob = await onboard(stack, "Alice Co"), await onboard(stack, "Bob Co")
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    key = (
        await keys.CreateApiKey(
            keys_pb.CreateApiKeyRequest(api_key={"name": "alice"}), metadata=alice.metadata
        )
    ).secret
    for credential in (alice.metadata, bearer(key)):
        for target in (bob.tenant.id, bob.tenant.slug, "no-such-tenant"):
            error = await rpc_error(
                tenants.GetTenant(tenant_pb.GetTenantRequest(tenant_id=target), metadata=credential)
            )
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, target
            assert error_info(error).reason == "TENANT_MISMATCH"
    stolen = await rpc_error(
        keys.ListApiKeys(
            keys_pb.ListApiKeysRequest(tenant_id=bob.tenant.slug), metadata=alice.metadata
        )
    )
    assert stolen.code() == grpc.StatusCode.PERMISSION_DENIED
    not_admin = await rpc_error(
        tenants.ListTenants(tenant_pb.ListTenantsRequest(), metadata=alice.metadata)
    )
    assert not_admin.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(not_admin).reason == "ROLE_REQUIRED"
    # Bob's key ids are not found from Alice's tenant (no cross-tenant revocation).
    bob_key = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(api_key={"name": "bob"}), metadata=bob.metadata
    )
    missing = await rpc_error(
        keys.RevokeApiKey(
            keys_pb.RevokeApiKeyRequest(api_key_id=bob_key.api_key.id), metadata=alice.metadata
        )
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_suspended_tenant_is_403_for_data_plane_and_read_only_in_console(
    stack: RunningStack,
) -> None:
    user = await onboard(stack)
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    key = (
        await keys.CreateApiKey(
            keys_pb.CreateApiKeyRequest(api_key={"name": "web"}), metadata=user.metadata
        )
    ).secret
    admin = stack.admin_metadata()
    missing_reason = await rpc_error(
        tenants.SuspendTenant(
            tenant_pb.SuspendTenantRequest(tenant_id=user.tenant.slug), metadata=admin
        )
    )
    assert missing_reason.code() == grpc.StatusCode.INVALID_ARGUMENT
    suspended = await tenants.SuspendTenant(
        tenant_pb.SuspendTenantRequest(tenant_id=user.tenant.slug, reason="unpaid invoices"),
        metadata=admin,
    )
    assert suspended.status == resources_pb2.TENANT_STATUS_SUSPENDED

    data_plane = await rpc_error(
        tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(key))
    )
    assert data_plane.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(data_plane).reason == "TENANT_SUSPENDED"
    # The console still reads (and shows why), but cannot change anything.
    seen = await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=user.metadata)
    assert seen.suspend_reason == "unpaid invoices"
    write = await rpc_error(
        keys.CreateApiKey(
            keys_pb.CreateApiKeyRequest(api_key={"name": "x"}), metadata=user.metadata
        )
    )
    assert error_info(write).reason == "TENANT_SUSPENDED"
    relogin = await auth.Login(auth_pb.LoginRequest(email=user.email, password=PASSWORD))
    assert relogin.access_token

    await tenants.ReactivateTenant(
        tenant_pb.ReactivateTenantRequest(tenant_id=user.tenant.id), metadata=admin
    )
    assert (await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(key))).id
    actions = [e.action for e in await audit_events(stack)]
    assert "tenant.suspend" in actions and "tenant.reactivate" in actions


async def test_impersonation_token_carries_both_identities(stack: RunningStack) -> None:
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    no_reason = await rpc_error(
        auth.Impersonate(
            auth_pb.ImpersonateRequest(tenant_id=user.tenant.slug), metadata=stack.admin_metadata()
        )
    )
    assert no_reason.code() == grpc.StatusCode.INVALID_ARGUMENT
    reply = await auth.Impersonate(
        auth_pb.ImpersonateRequest(tenant_id=user.tenant.slug, reason="ticket #42"),
        metadata=stack.admin_metadata(),
    )
    assert reply.user.email == user.email and reply.expires_in == 900
    # A tenant admin cannot impersonate; nor can an impersonation token (it is the user's).
    for credential in (user.metadata, bearer(reply.access_token)):
        denied = await rpc_error(
            auth.Impersonate(
                auth_pb.ImpersonateRequest(tenant_id=user.tenant.slug, reason="x"),
                metadata=credential,
            )
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED

    created = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(api_key={"name": "made by support"}),
        metadata=bearer(reply.access_token),
    )
    events = await audit_events(stack)
    started = next(e for e in events if e.action == "auth.impersonate")
    assert started.actor == "test-admin" and started.metadata["reason"] == "ticket #42"
    acted = next(
        e for e in events if e.action == "api_key.create" and e.target.endswith(created.api_key.id)
    )
    assert acted.actor == reply.user.id and acted.impersonator == "test-admin"
    assert acted.tenant_id == user.tenant.id


async def test_secrets_never_reach_the_logs(
    stack: RunningStack, captured_logs: io.StringIO
) -> None:
    user = await onboard(stack)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    refreshed = await auth.RefreshToken(
        auth_pb.RefreshTokenRequest(refresh_token=user.refresh_token)
    )
    await rpc_error(auth.Login(auth_pb.LoginRequest(email=user.email, password="wrong-password-1")))
    key = await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(api_key={"name": "k"}), metadata=user.metadata
    )
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    await tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=bearer(key.secret))
    text = captured_logs.getvalue()
    assert "RefreshToken" in text and "CreateApiKey" in text  # the calls were logged...
    for secret in (
        PASSWORD,
        "wrong-password-1",
        user.refresh_token,
        refreshed.refresh_token,
        refreshed.access_token,
        key.secret,
    ):
        assert secret not in text  # ...without any secret


async def test_sql_injection_looking_input_is_just_data(stack: RunningStack) -> None:
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    auth = auth_grpc.AuthServiceStub(stack.channel)
    admin = stack.admin_metadata()
    user = await onboard(stack)
    bad_slug = await rpc_error(
        tenants.CreateTenant(
            tenant_pb.CreateTenantRequest(
                tenant={"name": "x", "slug": "x'; DROP TABLE tenants; --", "email": "a@b.example"}
            ),
            metadata=admin,
        )
    )
    assert bad_slug.code() == grpc.StatusCode.INVALID_ARGUMENT
    login = await rpc_error(
        auth.Login(auth_pb.LoginRequest(email="' OR '1'='1' --@x.example", password="' OR '1'='1"))
    )
    assert login.code() == grpc.StatusCode.UNAUTHENTICATED
    for query in ("' OR 1=1 --", "%", "_"):
        found = await tenants.ListTenants(tenant_pb.ListTenantsRequest(query=query), metadata=admin)
        assert list(found.tenants) == [], query
    # A name that looks like SQL is stored and returned as written.
    odd = await tenants.UpdateTenant(
        tenant_pb.UpdateTenantRequest(
            tenant={"id": user.tenant.id, "name": "Robert'); DROP TABLE users;--"},
            update_mask={"paths": ["name"]},
        ),
        metadata=user.metadata,
    )
    assert odd.name == "Robert'); DROP TABLE users;--"
    everything = await tenants.ListTenants(tenant_pb.ListTenantsRequest(), metadata=admin)
    assert everything.total_size == 1
    assert (
        await auth.Login(auth_pb.LoginRequest(email=user.email, password=PASSWORD))
    ).access_token


async def test_tenant_lifecycle_update_list_delete_undelete(stack: RunningStack) -> None:
    tenants = tenant_grpc.TenantServiceStub(stack.channel)
    admin = stack.admin_metadata()
    user = await onboard(stack, "Gadgets")
    other = await onboard(stack, "Widgets")

    immutable = await rpc_error(
        tenants.UpdateTenant(
            tenant_pb.UpdateTenantRequest(
                tenant={"slug": "new-slug"}, update_mask={"paths": ["slug"]}
            ),
            metadata=user.metadata,
        )
    )
    assert immutable.code() == grpc.StatusCode.INVALID_ARGUMENT
    plan = await rpc_error(
        tenants.UpdateTenant(
            tenant_pb.UpdateTenantRequest(tenant={"plan": "pro"}, update_mask={"paths": ["plan"]}),
            metadata=user.metadata,
        )
    )
    assert plan.code() == grpc.StatusCode.PERMISSION_DENIED
    upgraded = await tenants.UpdateTenant(
        tenant_pb.UpdateTenantRequest(
            tenant={"id": user.tenant.slug, "plan": "pro", "name": "Ignored"},
            update_mask={"paths": ["plan"]},
        ),
        metadata=admin,
    )
    assert upgraded.plan == "pro" and upgraded.name == "Gadgets"

    found = await tenants.ListTenants(tenant_pb.ListTenantsRequest(query="gadg"), metadata=admin)
    assert [t.id for t in found.tenants] == [user.tenant.id]
    page = await tenants.ListTenants(tenant_pb.ListTenantsRequest(page_size=1), metadata=admin)
    assert len(page.tenants) == 1 and page.next_page_token and page.total_size == 2

    deleted = await tenants.DeleteTenant(
        tenant_pb.DeleteTenantRequest(tenant_id=other.tenant.slug, retention_days=7), metadata=admin
    )
    assert deleted.status == resources_pb2.TENANT_STATUS_DELETED
    retention = deleted.purge_time.ToDatetime() - deleted.delete_time.ToDatetime()
    assert timedelta(days=6, hours=23) < retention <= timedelta(days=7)
    listed = await tenants.ListTenants(tenant_pb.ListTenantsRequest(), metadata=admin)
    assert [t.id for t in listed.tenants] == [user.tenant.id]
    only_deleted = await tenants.ListTenants(
        tenant_pb.ListTenantsRequest(status=resources_pb2.TENANT_STATUS_DELETED), metadata=admin
    )
    assert [t.id for t in only_deleted.tenants] == [other.tenant.id]
    gone = await rpc_error(tenants.GetTenant(tenant_pb.GetTenantRequest(), metadata=other.metadata))
    assert error_info(gone).reason == "TENANT_INACTIVE"
    too_long = await rpc_error(
        tenants.DeleteTenant(
            tenant_pb.DeleteTenantRequest(tenant_id=user.tenant.id, retention_days=999),
            metadata=admin,
        )
    )
    assert too_long.code() == grpc.StatusCode.INVALID_ARGUMENT

    restored = await tenants.UndeleteTenant(
        tenant_pb.UndeleteTenantRequest(tenant_id=other.tenant.id), metadata=admin
    )
    assert restored.status == resources_pb2.TENANT_STATUS_ACTIVE
    assert not restored.HasField("purge_time")
    again = await rpc_error(
        tenants.ReactivateTenant(
            tenant_pb.ReactivateTenantRequest(tenant_id=other.tenant.id), metadata=admin
        )
    )
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION
    actions = [e.action for e in await audit_events(stack)]
    for action in (
        "tenant.create",
        "tenant.update",
        "tenant.delete",
        "tenant.undelete",
        "auth.signup",
    ):
        assert action in actions


async def test_sign_up_paths(stack: RunningStack) -> None:
    auth = auth_grpc.AuthServiceStub(stack.channel)
    new_slug = slug("self")
    signed = await auth.SignUp(
        auth_pb.SignUpRequest(
            email="founder@startup.example",
            password=PASSWORD,
            name="Founder",
            new_tenant={"name": "Startup", "slug": new_slug},
        )
    )
    assert signed.tenant.slug == new_slug and signed.user.role == resources_pb2.ROLE_TENANT_ADMIN
    taken = await rpc_error(
        auth.SignUp(
            auth_pb.SignUpRequest(
                email="founder@startup.example",
                password=PASSWORD,
                new_tenant={"name": "Again", "slug": slug("again")},
            )
        )
    )
    assert error_info(taken).reason == "EMAIL_TAKEN"
    short = await rpc_error(
        auth.SignUp(auth_pb.SignUpRequest(email="a@b.example", password="short"))
    )
    assert short.code() == grpc.StatusCode.INVALID_ARGUMENT

    # An invitation is for one address, and works once.
    invite = await auth.CreateInvitation(
        auth_pb.CreateInvitationRequest(
            invitation={"email": "member@startup.example", "role": resources_pb2.ROLE_TENANT_MEMBER}
        ),
        metadata=bearer(signed.access_token),
    )
    mismatch = await rpc_error(
        auth.SignUp(
            auth_pb.SignUpRequest(
                email="intruder@evil.example", password=PASSWORD, invitation_token=invite.token
            )
        )
    )
    assert error_info(mismatch).reason == "INVITATION_EMAIL_MISMATCH"
    member = await auth.SignUp(
        auth_pb.SignUpRequest(
            email="member@startup.example", password=PASSWORD, invitation_token=invite.token
        )
    )
    assert member.user.role == resources_pb2.ROLE_TENANT_MEMBER
    assert member.tenant.id == signed.tenant.id
    used = await rpc_error(
        auth.SignUp(
            auth_pb.SignUpRequest(
                email="member@startup.example", password=PASSWORD, invitation_token=invite.token
            )
        )
    )
    assert used.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS)
    # Members use the tenant but do not manage keys.
    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    denied = await rpc_error(
        keys.CreateApiKey(
            keys_pb.CreateApiKeyRequest(api_key={"name": "x"}), metadata=bearer(member.access_token)
        )
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
