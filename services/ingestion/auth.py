"""Who is calling, and for which tenant.

Authentication is the shared identity helper's (``services.identity.principal``): the
principal the gateway vouched for in signed headers, or, for direct gRPC callers, an
``Authorization: Bearer`` access token (JWT) or API key. The tenant always comes from
the principal: a request's ``tenant_id`` may only repeat it (id or slug), except for
platform admins, who must name the tenant they act on.

:func:`caller` takes the service's context (``ServiceContext``), which gives it the
process's shared :class:`~services.identity.principal.Authenticator` (API keys are
looked up in the database, cached for at most a second). Given only ``Settings`` it
checks what needs no database (signed headers, access tokens) and refuses API keys
with a message that says so: pass the context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config import Settings
from services.errors import NotFound, PermissionDenied, Unauthenticated
from services.identity.credentials import Principal
from services.identity.principal import (
    ApiKeyRecord,
    authenticate,
    authenticator_for,
    metadata_of,
)
from services.storage.models import Tenant

if TYPE_CHECKING:
    from services.app import ServiceContext

__all__ = ["caller", "resolve_tenant"]


async def _no_api_key_lookup(prefix: str) -> ApiKeyRecord | None:
    raise Unauthenticated(
        "This service cannot check API keys here; call it through the gateway, or use an "
        "access token (POST /api/v1/auth/login).",
        reason="API_KEY_UNSUPPORTED",
    )


async def caller(
    context: grpc.aio.ServicerContext[Any, Any], source: ServiceContext | Settings
) -> Principal:
    """The authenticated principal behind the call; Unauthenticated when there is none.

    ``source``: the service's context (every credential works) or its settings (no
    database: gateway headers and access tokens only).
    """
    metadata = metadata_of(context)
    if isinstance(source, Settings):
        return await authenticate(metadata, settings=source, api_keys_lookup=_no_api_key_lookup)
    return await authenticator_for(source).authenticate(metadata)


async def resolve_tenant(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    requested: str,
    scope: str,
    *,
    write: bool = False,
) -> Tenant:
    """The tenant the call acts on, after checking scope and tenancy.

    ``requested`` is the request's ``tenant_id`` (id or slug, empty = the caller's own).
    Raises PermissionDenied for a missing scope or another tenant, NotFound for an
    unknown tenant, PermissionDenied (TENANT_INACTIVE) for writes to a suspended one.
    """
    if not principal.is_platform_admin and not principal.has_scope(scope):
        raise PermissionDenied(
            f"This call needs the {scope} scope; use a key or role that has it.",
            reason="SCOPE_MISSING",
            metadata={"scope": scope},
        )
    if not requested and not principal.tenant_id:
        raise PermissionDenied(
            "Platform staff must name the tenant (tenant_id) they act on.",
            reason="TENANT_MISMATCH",
        )
    wanted = requested or principal.tenant_id
    async with sessions() as session:
        tenant = await session.scalar(
            select(Tenant).where(or_(Tenant.id == wanted, Tenant.slug == wanted))
        )
    if not principal.is_platform_admin and (tenant is None or tenant.id != principal.tenant_id):
        # Same answer whether the other tenant exists or not: no probing of tenant names.
        raise PermissionDenied(
            "Your credential belongs to another tenant.",
            reason="TENANT_MISMATCH",
            metadata={"tenant_id": requested},
        )
    if tenant is None or tenant.status == "deleted":
        raise NotFound("tenant", wanted)
    if write and tenant.status != "active":
        raise PermissionDenied(
            f"Tenant {tenant.slug!r} is {tenant.status}; writes are refused until it is "
            "reactivated.",
            reason="TENANT_INACTIVE",
            metadata={"tenant_id": tenant.id, "status": tenant.status},
        )
    return tenant
