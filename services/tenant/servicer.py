"""The tenant service's gRPC adapters: TenantService, AuthService, ApiKeyService.

Thin: each method authorises the caller (``Authenticator.require``), calls a store,
and turns the result into protobuf. Who may call what:

* CreateTenant, ListTenants, Suspend/Reactivate/Delete/UndeleteTenant, Impersonate:
  platform admins only.
* GetTenant: anyone of the tenant (read-only, so a suspended tenant's users may);
  platform admins name the tenant.
* UpdateTenant, CreateApiKey, CreateInvitation: tenant admins of their tenant
  (scope tenant:manage / keys:manage) or platform admins naming the tenant.
* ListApiKeys, RevokeApiKey: the same, and also while suspended (reading, and taking
  access away, stay possible).
* SignUp, Login, RefreshToken: no credential. Logout: any signed-in user.
  ChangePassword: the signed-in user themself (never an API key or an impersonation),
  also while the tenant is suspended: securing an account must not wait on billing.

CreateTenant also issues the tenant's first invitation (role tenant_admin, for the
contact email). Its one-time token travels in the trailing metadata key
``x-embrec-invitation-token``; CreateInvitation re-issues it at any time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from embrec.tenant.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    resources_pb2,
    tenant_service_pb2,
    tenant_service_pb2_grpc,
)
from services.app import ServiceContext
from services.errors import FieldViolation, InvalidArgument
from services.identity.credentials import Principal
from services.identity.principal import (
    PLATFORM_ADMIN,
    TENANT_ADMIN,
    TENANT_MEMBER,
    Authenticator,
    authenticator_for,
    source_ip,
)
from services.runtime.server import ServiceModuleSpec
from services.runtime.servicers import contract_servicer
from services.storage.models import ApiKey, Invitation, Tenant, User
from services.tenant.api_keys import ApiKeyStore, display_prefix
from services.tenant.auth import AuthStore, TokenPair
from services.tenant.domain import Actor
from services.tenant.invitations import InvitationStore
from services.tenant.tenants import TenantStore, purge_time

__all__ = ["INVITATION_TOKEN_HEADER", "build_module", "tenant_to_proto"]

INVITATION_TOKEN_HEADER = "x-embrec-invitation-token"  # noqa: S105 - a header name
TOKEN_TYPE = "Bearer"  # noqa: S105 - OAuth 2.0 token_type, not a secret
_ADMINS = frozenset({PLATFORM_ADMIN})
_TENANT_ADMINS = frozenset({PLATFORM_ADMIN, TENANT_ADMIN})

_STATUS_TO_PROTO = {
    "active": resources_pb2.TENANT_STATUS_ACTIVE,
    "suspended": resources_pb2.TENANT_STATUS_SUSPENDED,
    "deleted": resources_pb2.TENANT_STATUS_DELETED,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}
_ROLE_TO_PROTO = {
    PLATFORM_ADMIN: resources_pb2.ROLE_PLATFORM_ADMIN,
    TENANT_ADMIN: resources_pb2.ROLE_TENANT_ADMIN,
    TENANT_MEMBER: resources_pb2.ROLE_TENANT_MEMBER,
}
_ROLE_FROM_PROTO = {v: k for k, v in _ROLE_TO_PROTO.items()}

Context = grpc.aio.ServicerContext[Any, Any]


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _set_times(message: Any, **times: datetime | None) -> None:
    for field, value in times.items():
        stamp = _timestamp(value)
        if stamp is not None:
            getattr(message, field).CopyFrom(stamp)


def tenant_to_proto(tenant: Tenant) -> resources_pb2.Tenant:
    message = resources_pb2.Tenant(
        id=tenant.id,
        name=tenant.name,
        slug=tenant.slug,
        email=tenant.email,
        plan=tenant.plan,
        status=_STATUS_TO_PROTO.get(tenant.status, resources_pb2.TENANT_STATUS_UNSPECIFIED),
        suspend_reason=tenant.suspend_reason or "",
    )
    _set_times(
        message,
        create_time=tenant.created_at,
        update_time=tenant.updated_at,
        delete_time=tenant.deleted_at,
        purge_time=purge_time(tenant) if tenant.status == "deleted" else None,
    )
    return message


def user_to_proto(user: User) -> resources_pb2.User:
    message = resources_pb2.User(
        id=user.id,
        tenant_id=user.tenant_id or "",
        email=user.email,
        name=user.display_name or "",
        role=_ROLE_TO_PROTO.get(user.role, resources_pb2.ROLE_UNSPECIFIED),
    )
    _set_times(message, create_time=user.created_at, last_login_time=user.last_login_at)
    return message


def invitation_to_proto(invitation: Invitation) -> resources_pb2.Invitation:
    message = resources_pb2.Invitation(
        id=invitation.id,
        tenant_id=invitation.tenant_id,
        email=invitation.email,
        role=_ROLE_TO_PROTO.get(invitation.role, resources_pb2.ROLE_UNSPECIFIED),
        inviter_id=invitation.invited_by or "",
    )
    _set_times(
        message,
        create_time=invitation.created_at,
        expire_time=invitation.expires_at,
        accept_time=invitation.accepted_at,
    )
    return message


def api_key_to_proto(key: ApiKey) -> resources_pb2.ApiKey:
    message = resources_pb2.ApiKey(
        id=key.id,
        tenant_id=key.tenant_id,
        name=key.name,
        prefix=display_prefix(key),
        scopes=[str(s) for s in key.scopes or ()],
        creator_id=key.created_by or "",
    )
    _set_times(
        message,
        create_time=key.created_at,
        last_used_time=key.last_used_at,
        revoke_time=key.revoked_at,
        expire_time=key.expires_at,
    )
    return message


def _expire_time(key: resources_pb2.ApiKey) -> datetime | None:
    if not key.HasField("expire_time"):
        return None
    try:
        return key.expire_time.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:  # seconds or nanos out of range
        raise InvalidArgument(
            "The API key is invalid; fix the fields named.",
            violations=[FieldViolation("api_key.expire_time", f"not a valid timestamp: {exc}")],
        ) from None


def _actor(principal: Principal, context: Context) -> Actor:
    return Actor.of(principal, source_ip(context))


# Contract bases: a method added to a .proto later answers UNIMPLEMENTED until built here.
_TRACKED_IN = "issue #3 (identity and tenancy)"
_TenantBase: Any = contract_servicer(
    tenant_service_pb2_grpc.TenantServiceServicer,
    tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"],
    _TRACKED_IN,
)
_AuthBase: Any = contract_servicer(
    auth_service_pb2_grpc.AuthServiceServicer,
    auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
    _TRACKED_IN,
)
_ApiKeyBase: Any = contract_servicer(
    api_key_service_pb2_grpc.ApiKeyServiceServicer,
    api_key_service_pb2.DESCRIPTOR.services_by_name["ApiKeyService"],
    _TRACKED_IN,
)


class TenantServicer(_TenantBase):  # type: ignore[misc]
    def __init__(self, store: TenantStore, auth: Authenticator) -> None:
        self._store = store
        self._auth = auth

    async def CreateTenant(
        self, request: tenant_service_pb2.CreateTenantRequest, context: Context
    ) -> resources_pb2.Tenant:
        principal = await self._auth.require(context, roles=_ADMINS)
        created = await self._store.create(
            name=request.tenant.name,
            slug=request.tenant.slug,
            email=request.tenant.email,
            plan=request.tenant.plan,
            actor=_actor(principal, context),
        )
        context.set_trailing_metadata(((INVITATION_TOKEN_HEADER, created.invitation.token),))
        return tenant_to_proto(created.tenant)

    async def GetTenant(
        self, request: tenant_service_pb2.GetTenantRequest, context: Context
    ) -> resources_pb2.Tenant:
        principal = await self._auth.require(context, allow_suspended=True)
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        return tenant_to_proto(await self._store.get(tenant.id))

    async def ListTenants(
        self, request: tenant_service_pb2.ListTenantsRequest, context: Context
    ) -> tenant_service_pb2.ListTenantsResponse:
        await self._auth.require(context, roles=_ADMINS)
        page = await self._store.list(
            page_size=request.page_size,
            page_token=request.page_token,
            status=_STATUS_FROM_PROTO.get(request.status, ""),
            query=request.query,
            plan=request.plan.strip(),
        )
        return tenant_service_pb2.ListTenantsResponse(
            tenants=[tenant_to_proto(t) for t in page.tenants],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def UpdateTenant(
        self, request: tenant_service_pb2.UpdateTenantRequest, context: Context
    ) -> resources_pb2.Tenant:
        principal = await self._auth.require(context, scope="tenant:manage")
        tenant = await self._auth.resolve_tenant(principal, request.tenant.id)
        updated = await self._store.update(
            tenant.id,
            values={
                "name": request.tenant.name,
                "email": request.tenant.email,
                "plan": request.tenant.plan,
            },
            paths=list(request.update_mask.paths),
            actor=_actor(principal, context),
            is_platform_admin=principal.is_platform_admin,
        )
        return tenant_to_proto(updated)

    async def SuspendTenant(
        self, request: tenant_service_pb2.SuspendTenantRequest, context: Context
    ) -> resources_pb2.Tenant:
        principal = await self._auth.require(context, roles=_ADMINS)
        tenant = await self._store.suspend(
            request.tenant_id, reason=request.reason, actor=_actor(principal, context)
        )
        return tenant_to_proto(tenant)

    async def ReactivateTenant(
        self, request: tenant_service_pb2.ReactivateTenantRequest, context: Context
    ) -> resources_pb2.Tenant:
        principal = await self._auth.require(context, roles=_ADMINS)
        tenant = await self._store.reactivate(
            request.tenant_id, reason=request.reason, actor=_actor(principal, context)
        )
        return tenant_to_proto(tenant)

    async def DeleteTenant(
        self, request: tenant_service_pb2.DeleteTenantRequest, context: Context
    ) -> resources_pb2.Tenant:
        principal = await self._auth.require(context, roles=_ADMINS)
        tenant = await self._store.delete(
            request.tenant_id,
            retention_days=request.retention_days,
            reason=request.reason,
            actor=_actor(principal, context),
        )
        return tenant_to_proto(tenant)

    async def UndeleteTenant(
        self, request: tenant_service_pb2.UndeleteTenantRequest, context: Context
    ) -> resources_pb2.Tenant:
        principal = await self._auth.require(context, roles=_ADMINS)
        tenant = await self._store.undelete(request.tenant_id, actor=_actor(principal, context))
        return tenant_to_proto(tenant)


def _token_fields(tokens: TokenPair) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": TOKEN_TYPE,
        "expires_in": tokens.expires_in,
    }


class AuthServicer(_AuthBase):  # type: ignore[misc]
    def __init__(self, store: AuthStore, invitations: InvitationStore, auth: Authenticator) -> None:
        self._store = store
        self._invitations = invitations
        self._auth = auth

    async def SignUp(
        self, request: auth_service_pb2.SignUpRequest, context: Context
    ) -> auth_service_pb2.SignUpResponse:
        join = request.WhichOneof("join")
        signed = await self._store.sign_up(
            email=request.email,
            password=request.password,
            name=request.name,
            invitation_token=request.invitation_token if join == "invitation_token" else None,
            new_tenant=(
                (request.new_tenant.name, request.new_tenant.slug) if join == "new_tenant" else None
            ),
            source_ip=source_ip(context),
        )
        assert signed.tenant is not None
        return auth_service_pb2.SignUpResponse(
            user=user_to_proto(signed.user),
            tenant=tenant_to_proto(signed.tenant),
            **_token_fields(signed.tokens),
        )

    async def Login(
        self, request: auth_service_pb2.LoginRequest, context: Context
    ) -> auth_service_pb2.LoginResponse:
        signed = await self._store.login(
            request.email, request.password, source_ip=source_ip(context)
        )
        return auth_service_pb2.LoginResponse(
            user=user_to_proto(signed.user), **_token_fields(signed.tokens)
        )

    async def RefreshToken(
        self, request: auth_service_pb2.RefreshTokenRequest, context: Context
    ) -> auth_service_pb2.RefreshTokenResponse:
        tokens = await self._store.refresh(request.refresh_token, source_ip=source_ip(context))
        return auth_service_pb2.RefreshTokenResponse(**_token_fields(tokens))

    async def Logout(
        self, request: auth_service_pb2.LogoutRequest, context: Context
    ) -> auth_service_pb2.LogoutResponse:
        principal = await self._auth.require(context, allow_suspended=True)
        await self._store.logout(
            principal,
            refresh_token=request.refresh_token,
            all_sessions=request.all_sessions,
            actor=_actor(principal, context),
        )
        return auth_service_pb2.LogoutResponse()

    async def ChangePassword(
        self, request: auth_service_pb2.ChangePasswordRequest, context: Context
    ) -> auth_service_pb2.ChangePasswordResponse:
        principal = await self._auth.require(context, allow_suspended=True)
        tokens = await self._store.change_password(
            principal,
            current_password=request.current_password,
            new_password=request.new_password,
            actor=_actor(principal, context),
        )
        return auth_service_pb2.ChangePasswordResponse(**_token_fields(tokens))

    async def CreateInvitation(
        self, request: auth_service_pb2.CreateInvitationRequest, context: Context
    ) -> auth_service_pb2.CreateInvitationResponse:
        principal = await self._auth.require(context, roles=_TENANT_ADMINS)
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        issued = await self._invitations.create(
            tenant_id=tenant.id,
            email=request.invitation.email,
            role=_ROLE_FROM_PROTO.get(request.invitation.role, ""),
            actor=_actor(principal, context),
        )
        return auth_service_pb2.CreateInvitationResponse(
            invitation=invitation_to_proto(issued.invitation), token=issued.token
        )

    async def Impersonate(
        self, request: auth_service_pb2.ImpersonateRequest, context: Context
    ) -> auth_service_pb2.ImpersonateResponse:
        principal = await self._auth.require(context, roles=_ADMINS)
        user, token = await self._store.impersonate(
            tenant_id=request.tenant_id,
            user_id=request.user_id.strip(),
            reason=request.reason,
            actor=_actor(principal, context),
        )
        return auth_service_pb2.ImpersonateResponse(
            access_token=token, token_type=TOKEN_TYPE, expires_in=900, user=user_to_proto(user)
        )


class ApiKeyServicer(_ApiKeyBase):  # type: ignore[misc]
    def __init__(self, store: ApiKeyStore, auth: Authenticator) -> None:
        self._store = store
        self._auth = auth

    async def CreateApiKey(
        self, request: api_key_service_pb2.CreateApiKeyRequest, context: Context
    ) -> api_key_service_pb2.CreateApiKeyResponse:
        principal = await self._auth.require(context, scope="keys:manage")
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        created = await self._store.create(
            tenant_id=tenant.id,
            name=request.api_key.name,
            scopes=list(request.api_key.scopes),
            expire_time=_expire_time(request.api_key),
            actor=_actor(principal, context),
        )
        return api_key_service_pb2.CreateApiKeyResponse(
            api_key=api_key_to_proto(created.key), secret=created.secret
        )

    async def ListApiKeys(
        self, request: api_key_service_pb2.ListApiKeysRequest, context: Context
    ) -> api_key_service_pb2.ListApiKeysResponse:
        principal = await self._auth.require(context, scope="keys:manage", allow_suspended=True)
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        page = await self._store.list(
            tenant_id=tenant.id,
            page_size=request.page_size,
            page_token=request.page_token,
            show_revoked=request.show_revoked,
        )
        return api_key_service_pb2.ListApiKeysResponse(
            api_keys=[api_key_to_proto(k) for k in page.keys],
            next_page_token=page.next_page_token,
        )

    async def RevokeApiKey(
        self, request: api_key_service_pb2.RevokeApiKeyRequest, context: Context
    ) -> resources_pb2.ApiKey:
        principal = await self._auth.require(context, scope="keys:manage", allow_suspended=True)
        tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
        key = await self._store.revoke(
            tenant_id=tenant.id,
            key_id=request.api_key_id,
            reason=request.reason,
            actor=_actor(principal, context),
        )
        return api_key_to_proto(key)


def build_module(ctx: ServiceContext) -> ServiceModuleSpec:
    auth = authenticator_for(ctx)  # ConfigError at start when the secrets are missing
    tenant_store = TenantStore(ctx.sessions, on_change=auth.forget_tenant)
    tenants = TenantServicer(tenant_store, auth)
    sessions = AuthServicer(
        AuthStore(ctx.sessions, ctx.settings, tenant_store), InvitationStore(ctx.sessions), auth
    )
    api_keys = ApiKeyServicer(ApiKeyStore(ctx.sessions, on_revoke=auth.forget_api_key), auth)

    def register(server: grpc.aio.Server) -> None:
        tenant_service_pb2_grpc.add_TenantServiceServicer_to_server(tenants, server)
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(sessions, server)
        api_key_service_pb2_grpc.add_ApiKeyServiceServicer_to_server(api_keys, server)

    return ServiceModuleSpec(
        name="tenant",
        names=[
            tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name,
            auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
            api_key_service_pb2.DESCRIPTOR.services_by_name["ApiKeyService"].full_name,
        ],
        register=register,
    )
