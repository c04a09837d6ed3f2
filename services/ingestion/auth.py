"""Who is calling, and for which tenant.

The gateway authenticates the credential (API key or JWT) and hands the services the
principal in signed headers (``credentials.principal_headers``). Until the shared
identity helper (``services.identity.principal``) lands, ingestion reads them here;
the lead swaps :func:`caller` for it. The tenant always comes from the principal: a
request's ``tenant_id`` may only repeat it (id or slug), except for platform admins,
who must name the tenant they act on.
"""

from __future__ import annotations

from typing import Any

import grpc
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config import Settings
from services.errors import NotFound, PermissionDenied, Unauthenticated
from services.identity.credentials import Principal, principal_from_headers
from services.storage.models import Tenant

__all__ = ["caller", "resolve_tenant"]


async def caller(context: grpc.aio.ServicerContext[Any, Any], settings: Settings) -> Principal:
    """The principal the gateway vouched for; Unauthenticated when there is none."""
    metadata = {str(k): str(v) for k, v in (context.invocation_metadata() or ())}
    secret = settings.internal_secret.get_secret_value() if settings.internal_secret else ""
    principal = principal_from_headers(metadata, secret) if secret else None
    if principal is None:
        raise Unauthenticated(
            "Send a valid API key or access token (Authorization: Bearer ...).",
            reason="CREDENTIAL_INVALID",
        )
    return principal


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
