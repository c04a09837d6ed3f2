"""Tenant lifecycle: create, get, list, update, suspend/reactivate, delete/undelete.

Slugs are the tenant's public handle (URLs, `POST /api/admin/train {"tenant_id":
"techgadgets"}`), so they are validated strictly and never change. Deletion is soft
(AIP-164): the row stays, marked deleted, with a purge time after the retention period
and the status it had, so UndeleteTenant can restore it. Both live in the tenant's
``settings`` JSON, which avoids a schema change for two rarely read values. Every
mutation is audited in its own transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.identity.principal import TENANT_ADMIN
from services.pagination import Page, next_token, parse_page
from services.storage.models import Tenant
from services.tenant.domain import (
    ANONYMOUS,
    Actor,
    email_violations,
    name_violations,
    normalise_email,
    validate_new_tenant,
)
from services.tenant.invitations import (
    IssuedInvitation,
    email_taken,
    email_taken_error,
    issue_invitation,
)

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "PLANS",
    "STATUSES",
    "CreatedTenant",
    "TenantPage",
    "TenantStore",
    "purge_time",
]

STATUSES = ("active", "suspended", "deleted")
PLANS = ("free", "starter", "pro", "enterprise")
DEFAULT_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 365
MAX_REASON_LENGTH = 1000
#: Fields UpdateTenant may change, and who may: plan is the platform's business.
UPDATABLE = ("name", "email", "plan")
ADMIN_ONLY_UPDATES = ("plan",)


@dataclass(frozen=True)
class TenantPage:
    tenants: list[Tenant]
    next_page_token: str
    total_size: int


@dataclass(frozen=True)
class CreatedTenant:
    tenant: Tenant
    invitation: IssuedInvitation  # for the contact email, role tenant_admin


def purge_time(tenant: Tenant) -> datetime | None:
    raw = (tenant.settings or {}).get("purge_at")
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def _slug_taken(slug: str) -> AlreadyExists:
    return AlreadyExists(
        f"The slug {slug!r} is taken; choose another.",
        reason="SLUG_TAKEN",
        metadata={"slug": slug},
    )


def _plan_violations(plan: str, field: str) -> list[FieldViolation]:
    if plan and plan not in PLANS:
        return [FieldViolation(field, f"one of {', '.join(PLANS)}")]
    return []


def _reason_violations(reason: str, *, required: bool) -> list[FieldViolation]:
    if required and not reason.strip():
        return [FieldViolation("reason", "required")]
    if len(reason) > MAX_REASON_LENGTH:
        return [FieldViolation("reason", f"at most {MAX_REASON_LENGTH} characters")]
    return []


class TenantStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_change: Callable[[str], None] = lambda tenant_id: None,
    ) -> None:
        self._sessions = sessions
        # Told about state changes so cached tenant states are dropped at once.
        self._on_change = on_change

    # -- creation ---------------------------------------------------------------------

    async def add(
        self, session: AsyncSession, *, name: str, slug: str, email: str, plan: str, actor: Actor
    ) -> Tenant:
        """Insert a validated tenant in ``session``'s transaction (SignUp uses this too)."""
        if await session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
            raise _slug_taken(slug)
        tenant = Tenant(name=name, slug=slug, email=email, plan=plan or "free", settings={})
        session.add(tenant)
        try:
            await session.flush()
        except IntegrityError:
            # A concurrent create won the race for the slug.
            raise _slug_taken(slug) from None
        actor.audit(
            session,
            tenant_id=tenant.id,
            action="tenant.create",
            target=f"tenants/{tenant.id}",
            metadata={"slug": slug, "plan": tenant.plan},
        )
        return tenant

    async def create(
        self, *, name: str, slug: str, email: str, plan: str = "", actor: Actor = ANONYMOUS
    ) -> CreatedTenant:
        name, slug, email = name.strip(), slug.strip(), normalise_email(email)
        violations = validate_new_tenant(name, slug, email) + _plan_violations(plan, "plan")
        if violations:
            raise InvalidArgument(
                "The tenant is invalid; fix the fields named.", violations=violations
            )
        async with self._sessions() as session, session.begin():
            tenant = await self.add(
                session, name=name, slug=slug, email=email, plan=plan, actor=actor
            )
            if await email_taken(session, email):
                raise email_taken_error(email)
            invitation = await issue_invitation(
                session, tenant_id=tenant.id, email=email, role=TENANT_ADMIN, actor=actor
            )
        return CreatedTenant(tenant, invitation)

    # -- reading ----------------------------------------------------------------------

    async def _find(self, session: AsyncSession, key: str) -> Tenant:
        key = key.strip()
        if not key:
            raise InvalidArgument(
                "tenant_id is required (an id or a slug)",
                violations=[FieldViolation("tenant_id", "required")],
            )
        tenant = await session.scalar(
            select(Tenant).where(or_(Tenant.id == key, Tenant.slug == key))
        )
        if tenant is None:
            raise NotFound("tenant", key)
        return tenant

    async def get(self, id_or_slug: str) -> Tenant:
        async with self._sessions() as session:
            return await self._find(session, id_or_slug)

    async def list(
        self,
        *,
        page_size: int,
        page_token: str,
        status: str = "",
        query: str = "",
        plan: str = "",
    ) -> TenantPage:
        if status and status not in STATUSES:
            raise InvalidArgument(
                f"unknown status {status!r}", violations=[FieldViolation("status", "unknown")]
            )
        query = query.strip()
        page: Page = parse_page(page_size, page_token, (status, query, plan))
        conditions: list[Any] = []
        if status:
            conditions.append(Tenant.status == status)
        else:
            conditions.append(Tenant.status != "deleted")
        if plan:
            conditions.append(Tenant.plan == plan)
        if query:
            # autoescape: '%' and '_' typed by a user are letters, not wildcards.
            needle = query.lower()
            conditions.append(
                or_(
                    func.lower(Tenant.name).contains(needle, autoescape=True),
                    Tenant.slug.contains(needle, autoescape=True),
                    Tenant.email.contains(needle, autoescape=True),
                )
            )
        async with self._sessions() as session:
            total = await session.scalar(
                select(func.count()).select_from(Tenant).where(*conditions)
            )
            rows = (
                await session.scalars(
                    select(Tenant)
                    .where(*conditions)
                    .order_by(Tenant.created_at.desc(), Tenant.id)
                    .offset(page.offset)
                    .limit(page.size + 1)
                )
            ).all()
        tenants = list(rows[: page.size])
        return TenantPage(
            tenants=tenants,
            next_page_token=next_token(page, len(tenants), len(rows) > page.size),
            total_size=int(total or 0),
        )

    # -- changes ----------------------------------------------------------------------

    async def update(
        self,
        tenant_id: str,
        *,
        values: dict[str, str],
        paths: Sequence[str],
        actor: Actor,
        is_platform_admin: bool,
    ) -> Tenant:
        violations: list[FieldViolation] = []
        if not paths:
            violations.append(FieldViolation("update_mask", "required: name the fields to change"))
        for path in paths:
            if path not in UPDATABLE:
                violations.append(
                    FieldViolation(
                        "update_mask", f"{path!r} cannot be updated; use {', '.join(UPDATABLE)}"
                    )
                )
        if violations:
            raise InvalidArgument("The update mask is invalid.", violations=violations)
        if not is_platform_admin and any(p in ADMIN_ONLY_UPDATES for p in paths):
            raise PermissionDenied(
                "Only platform admins change a tenant's plan.", reason="PLAN_CHANGE_DENIED"
            )
        changes: dict[str, str] = {}
        for path in paths:
            value = values.get(path, "")
            if path == "name":
                value = value.strip()
                violations += name_violations(value, "tenant.name")
            elif path == "email":
                value = normalise_email(value)
                violations += email_violations(value, "tenant.email")
            elif path == "plan":
                value = value or "free"
                violations += _plan_violations(value, "tenant.plan")
            changes[path] = value
        if violations:
            raise InvalidArgument(
                "The tenant is invalid; fix the fields named.", violations=violations
            )
        async with self._sessions() as session, session.begin():
            tenant = await self._find(session, tenant_id)
            if tenant.status == "deleted":
                raise FailedPrecondition(
                    "The tenant is deleted; undelete it first.",
                    reason="TENANT_DELETED",
                    metadata={"tenant_id": tenant.id},
                )
            before = {path: str(getattr(tenant, path)) for path in changes}
            for path, value in changes.items():
                setattr(tenant, path, value)
            tenant.updated_at = datetime.now(UTC)
            actor.audit(
                session,
                tenant_id=tenant.id,
                action="tenant.update",
                target=f"tenants/{tenant.id}",
                metadata={
                    "fields": ",".join(sorted(changes)),
                    **{f"old.{k}": v for k, v in before.items()},
                    **{f"new.{k}": v for k, v in changes.items()},
                },
            )
        self._on_change(tenant.id)
        return tenant

    async def _transition(
        self,
        tenant_id: str,
        *,
        allowed_from: tuple[str, ...],
        action: str,
        actor: Actor,
        apply: Callable[[Tenant, datetime], None],
        metadata: dict[str, str],
    ) -> Tenant:
        async with self._sessions() as session, session.begin():
            tenant = await self._find(session, tenant_id)
            if tenant.status not in allowed_from:
                raise FailedPrecondition(
                    f"The tenant is {tenant.status}; {action.split('.')[-1]} needs "
                    f"{' or '.join(allowed_from)}.",
                    reason="TENANT_STATE",
                    metadata={"tenant_id": tenant.id, "status": tenant.status},
                )
            now = datetime.now(UTC)
            apply(tenant, now)
            tenant.updated_at = now
            actor.audit(
                session,
                tenant_id=tenant.id,
                action=action,
                target=f"tenants/{tenant.id}",
                metadata=metadata,
            )
        self._on_change(tenant.id)
        return tenant

    async def suspend(self, tenant_id: str, *, reason: str, actor: Actor) -> Tenant:
        violations = _reason_violations(reason, required=True)
        if violations:
            raise InvalidArgument("Say why the tenant is suspended.", violations=violations)

        def apply(tenant: Tenant, now: datetime) -> None:
            tenant.status = "suspended"
            tenant.suspend_reason = reason.strip()

        return await self._transition(
            tenant_id,
            allowed_from=("active",),
            action="tenant.suspend",
            actor=actor,
            apply=apply,
            metadata={"reason": reason.strip()},
        )

    async def reactivate(self, tenant_id: str, *, reason: str, actor: Actor) -> Tenant:
        violations = _reason_violations(reason, required=False)
        if violations:
            raise InvalidArgument("The reason is too long.", violations=violations)

        def apply(tenant: Tenant, now: datetime) -> None:
            tenant.status = "active"
            tenant.suspend_reason = None

        return await self._transition(
            tenant_id,
            allowed_from=("suspended",),
            action="tenant.reactivate",
            actor=actor,
            apply=apply,
            metadata={"reason": reason.strip()},
        )

    async def delete(
        self, tenant_id: str, *, retention_days: int, reason: str, actor: Actor
    ) -> Tenant:
        violations = _reason_violations(reason, required=False)
        if retention_days < 0 or retention_days > MAX_RETENTION_DAYS:
            violations.append(
                FieldViolation("retention_days", f"0 (default {DEFAULT_RETENTION_DAYS}) to 365")
            )
        if violations:
            raise InvalidArgument("The deletion request is invalid.", violations=violations)
        days = retention_days or DEFAULT_RETENTION_DAYS

        def apply(tenant: Tenant, now: datetime) -> None:
            tenant.settings = {
                **(tenant.settings or {}),
                "purge_at": (now + timedelta(days=days)).isoformat(),
                "status_before_delete": tenant.status,
            }
            tenant.status = "deleted"
            tenant.deleted_at = now

        return await self._transition(
            tenant_id,
            allowed_from=("active", "suspended"),
            action="tenant.delete",
            actor=actor,
            apply=apply,
            metadata={"retention_days": str(days), "reason": reason.strip()},
        )

    async def undelete(self, tenant_id: str, *, actor: Actor) -> Tenant:
        def apply(tenant: Tenant, now: datetime) -> None:
            purge = purge_time(tenant)
            if purge is not None and purge <= now:
                raise NotFound("tenant", tenant_id)
            settings = dict(tenant.settings or {})
            tenant.status = str(settings.pop("status_before_delete", "active"))
            settings.pop("purge_at", None)
            tenant.settings = settings
            tenant.deleted_at = None

        return await self._transition(
            tenant_id,
            allowed_from=("deleted",),
            action="tenant.undelete",
            actor=actor,
            apply=apply,
            metadata={},
        )
