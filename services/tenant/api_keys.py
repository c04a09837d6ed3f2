"""API keys: the credentials customers' servers send as ``Authorization: Bearer emb_live_…``.

The secret is returned once by ``create`` and stored only as a SHA-256 hash beside its
public prefix (format and hashing in ``services.identity.credentials``). Revocation
is immediate in this process (the Authenticator's cache is told) and within a second
elsewhere (the cache's lifetime).

A key may be given an expiry at creation (in the future, at most
:data:`MAX_API_KEY_LIFETIME` ahead); it cannot be changed afterwards, so rotating means
creating a new key. Every check compares the expiry with the clock on each use, so an
expired key stops working at that instant, cached or not.

A tenant holds at most its plan's ``max_api_keys`` usable keys (gateway/plans.toml);
revoked and expired keys do not count, so revoking one makes room for a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.plans import PlanTable, load_plans
from services.errors import FieldViolation, InvalidArgument, NotFound, QuotaExceeded
from services.identity.credentials import API_KEY_PREFIX, format_utc, generate_api_key
from services.identity.principal import API_KEY_SCOPES, DEFAULT_API_KEY_SCOPES
from services.pagination import next_token, parse_page
from services.storage.models import ApiKey, Tenant
from services.tenant.domain import MAX_NAME_LENGTH, Actor

__all__ = [
    "MAX_API_KEY_LIFETIME",
    "ApiKeyPage",
    "ApiKeyStore",
    "CreatedApiKey",
    "display_prefix",
]

#: The longest expiry a key may be given: a bound on a leaked key's useful life when
#: someone chose one at all (a key without an expiry lives until revoked).
MAX_API_KEY_LIFETIME = timedelta(days=730)


@dataclass(frozen=True)
class CreatedApiKey:
    key: ApiKey
    secret: str  # the full key, shown once


@dataclass(frozen=True)
class ApiKeyPage:
    keys: list[ApiKey]
    next_page_token: str


def display_prefix(key: ApiKey) -> str:
    """What lists show: enough to tell keys apart, nothing that authenticates."""
    return f"{API_KEY_PREFIX}{key.prefix}"


def _usable(now: datetime) -> ColumnElement[bool]:
    """Neither revoked nor expired: what lists show and what the plan's limit counts."""
    return ApiKey.revoked_at.is_(None) & or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)


class ApiKeyStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_revoke: Callable[[str], None] = lambda prefix: None,
        plans: PlanTable | None = None,
    ) -> None:
        self._sessions = sessions
        self._on_revoke = on_revoke
        self._plans = plans or load_plans()

    async def create(
        self,
        *,
        tenant_id: str,
        name: str,
        scopes: Sequence[str],
        expire_time: datetime | None,
        actor: Actor,
    ) -> CreatedApiKey:
        """``expire_time``: timezone-aware, or None for a key that lives until revoked."""
        now = datetime.now(UTC)
        name = name.strip()
        violations: list[FieldViolation] = []
        if not name:
            violations.append(FieldViolation("api_key.name", "required"))
        elif len(name) > MAX_NAME_LENGTH:
            violations.append(
                FieldViolation("api_key.name", f"at most {MAX_NAME_LENGTH} characters")
            )
        for index, scope in enumerate(scopes):
            if scope not in API_KEY_SCOPES:
                violations.append(
                    FieldViolation(
                        f"api_key.scopes[{index}]",
                        f"unknown scope {scope!r}; use {', '.join(sorted(API_KEY_SCOPES))}",
                    )
                )
        if expire_time is not None:
            if expire_time <= now:
                violations.append(
                    FieldViolation(
                        "api_key.expire_time",
                        f"must be in the future (now is {format_utc(now)}); "
                        "leave it unset for a key that never expires",
                    )
                )
            elif expire_time > now + MAX_API_KEY_LIFETIME:
                violations.append(
                    FieldViolation(
                        "api_key.expire_time",
                        f"at most {MAX_API_KEY_LIFETIME.days} days ahead "
                        f"(no later than {format_utc(now + MAX_API_KEY_LIFETIME)}); "
                        "leave it unset for a key that never expires",
                    )
                )
        if violations:
            raise InvalidArgument(
                "The API key is invalid; fix the fields named.", violations=violations
            )
        granted = sorted(set(scopes or DEFAULT_API_KEY_SCOPES))
        generated = generate_api_key()
        async with self._sessions() as session, session.begin():
            await self._check_quota(session, tenant_id, now)
            key = ApiKey(
                tenant_id=tenant_id,
                name=name,
                prefix=generated.prefix,
                secret_hash=generated.secret_hash,
                scopes=granted,
                created_by=actor.subject,
                created_at=now,
                expires_at=expire_time,
            )
            session.add(key)
            await session.flush()
            actor.audit(
                session,
                tenant_id=tenant_id,
                action="api_key.create",
                target=f"apiKeys/{key.id}",
                metadata={
                    "name": name,
                    "prefix": display_prefix(key),
                    "scopes": ",".join(granted),
                    "expire_time": format_utc(expire_time) if expire_time else "never",
                },
            )
        return CreatedApiKey(key, generated.full_key)

    async def _check_quota(self, session: AsyncSession, tenant_id: str, now: datetime) -> None:
        # The tenant row is locked (PostgreSQL; SQLite has one writer) so two concurrent
        # creates cannot both take the last free slot.
        plan_name = await session.scalar(
            select(Tenant.plan).where(Tenant.id == tenant_id).with_for_update()
        )
        limit = self._plans.get(plan_name or "").max_api_keys
        if not limit:
            return
        usable = await session.scalar(
            select(func.count())
            .select_from(ApiKey)
            .where(ApiKey.tenant_id == tenant_id, _usable(now))
        )
        if (usable or 0) >= limit:
            raise QuotaExceeded(
                f"The {plan_name} plan allows {limit} usable API keys and this tenant has "
                f"{usable}; revoke one you no longer use, or move to a larger plan.",
                plan=str(plan_name),
                limit=limit,
                metadata={"usable": str(usable)},
            )

    async def list(
        self, *, tenant_id: str, page_size: int, page_token: str, show_revoked: bool
    ) -> ApiKeyPage:
        page = parse_page(page_size, page_token, (tenant_id, show_revoked))
        query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
        if not show_revoked:
            # "Usable keys": the same flag hides expired ones, as the contract says.
            query = query.where(_usable(datetime.now(UTC)))
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    query.order_by(ApiKey.created_at.desc(), ApiKey.id)
                    .offset(page.offset)
                    .limit(page.size + 1)
                )
            ).all()
        keys = list(rows[: page.size])
        return ApiKeyPage(keys, next_token(page, len(keys), len(rows) > page.size))

    async def revoke(self, *, tenant_id: str, key_id: str, reason: str, actor: Actor) -> ApiKey:
        key_id = key_id.strip()
        if not key_id:
            raise InvalidArgument(
                "api_key_id is required.", violations=[FieldViolation("api_key_id", "required")]
            )
        async with self._sessions() as session, session.begin():
            # Scoped by tenant: another tenant's key id is simply not found.
            key = await session.scalar(
                select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id)
            )
            if key is None:
                raise NotFound("API key", key_id, reason="API_KEY_NOT_FOUND")
            if key.revoked_at is not None:
                return key
            key.revoked_at = datetime.now(UTC)
            actor.audit(
                session,
                tenant_id=tenant_id,
                action="api_key.revoke",
                target=f"apiKeys/{key.id}",
                metadata={"prefix": display_prefix(key), "reason": reason.strip()[:1000]},
            )
        self._on_revoke(key.prefix)
        return key
