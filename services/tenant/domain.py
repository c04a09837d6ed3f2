"""Tenant lifecycle rules, independent of gRPC.

Slugs are the tenant's public handle (URLs, `POST /api/admin/train {"tenant_id":
"techgadgets"}`), so they are validated strictly and never change. Every mutation is
recorded for the audit trail through the outbox, in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit.record import record_audit
from services.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from services.pagination import Page, next_token, parse_page
from services.storage.models import Tenant

__all__ = ["TenantPage", "TenantStore", "validate_new_tenant"]

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MAX_NAME_LENGTH = 200
STATUSES = ("active", "suspended", "deleted")


@dataclass(frozen=True)
class TenantPage:
    tenants: list[Tenant]
    next_page_token: str
    total_size: int


def validate_new_tenant(name: str, slug: str, email: str) -> list[FieldViolation]:
    violations: list[FieldViolation] = []
    if not name.strip():
        violations.append(FieldViolation("name", "required"))
    elif len(name) > MAX_NAME_LENGTH:
        violations.append(FieldViolation("name", f"at most {MAX_NAME_LENGTH} characters"))
    if not slug:
        violations.append(FieldViolation("slug", "required"))
    elif not SLUG_PATTERN.match(slug):
        violations.append(
            FieldViolation(
                "slug",
                "3-63 characters: lowercase letters, digits and '-', starting with a letter "
                "and not ending with '-'",
            )
        )
    if not email:
        violations.append(FieldViolation("email", "required"))
    elif not EMAIL_PATTERN.match(email):
        violations.append(FieldViolation("email", "not a valid email address"))
    return violations


class TenantStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self, *, name: str, slug: str, email: str, plan: str = "", actor: str = "anonymous"
    ) -> Tenant:
        name, slug, email = name.strip(), slug.strip(), email.strip().lower()
        violations = validate_new_tenant(name, slug, email)
        if violations:
            raise InvalidArgument(
                "The tenant is invalid; fix the fields named.", violations=violations
            )
        async with self._sessions() as session, session.begin():
            exists = await session.scalar(select(Tenant.id).where(Tenant.slug == slug))
            if exists is not None:
                raise AlreadyExists(
                    f"The slug {slug!r} is taken; choose another.",
                    reason="SLUG_TAKEN",
                    metadata={"slug": slug},
                )
            tenant = Tenant(name=name, slug=slug, email=email, plan=plan or "free")
            session.add(tenant)
            try:
                await session.flush()
            except IntegrityError:
                raise AlreadyExists(
                    f"The slug {slug!r} is taken; choose another.",
                    reason="SLUG_TAKEN",
                    metadata={"slug": slug},
                ) from None
            record_audit(
                session,
                tenant_id=tenant.id,
                actor=actor,
                action="tenant.create",
                target=f"tenants/{tenant.id}",
            )
        return tenant

    async def get(self, id_or_slug: str) -> Tenant:
        key = id_or_slug.strip()
        if not key:
            raise InvalidArgument(
                "tenant_id is required (an id or a slug)",
                violations=[FieldViolation("tenant_id", "required")],
            )
        async with self._sessions() as session:
            tenant = await session.scalar(
                select(Tenant).where(or_(Tenant.id == key, Tenant.slug == key))
            )
        if tenant is None:
            raise NotFound("tenant", key)
        return tenant

    async def list(
        self, *, page_size: int, page_token: str, status: str = "", query: str = ""
    ) -> TenantPage:
        if status and status not in STATUSES:
            raise InvalidArgument(
                f"unknown status {status!r}", violations=[FieldViolation("status", "unknown")]
            )
        page: Page = parse_page(page_size, page_token, (status, query))
        conditions = []
        if status:
            conditions.append(Tenant.status == status)
        if query:
            pattern = f"%{query.lower()}%"
            conditions.append(or_(func.lower(Tenant.name).like(pattern), Tenant.slug.like(pattern)))
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
