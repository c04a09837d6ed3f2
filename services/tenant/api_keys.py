"""API keys: the credentials customers' servers send as ``Authorization: Bearer emb_live_…``.

The secret is returned once by ``create`` and stored only as a SHA-256 hash beside its
public prefix (format and hashing in ``services.identity.credentials``). Revocation
is immediate in this process (the Authenticator's cache is told) and within a second
elsewhere (the cache's lifetime).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.errors import FieldViolation, InvalidArgument, NotFound
from services.identity.credentials import API_KEY_PREFIX, generate_api_key
from services.identity.principal import API_KEY_SCOPES, DEFAULT_API_KEY_SCOPES
from services.pagination import next_token, parse_page
from services.storage.models import ApiKey
from services.tenant.domain import MAX_NAME_LENGTH, Actor

__all__ = ["ApiKeyPage", "ApiKeyStore", "CreatedApiKey", "display_prefix"]


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


class ApiKeyStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        on_revoke: Callable[[str], None] = lambda prefix: None,
    ) -> None:
        self._sessions = sessions
        self._on_revoke = on_revoke

    async def create(
        self,
        *,
        tenant_id: str,
        name: str,
        scopes: Sequence[str],
        has_expiry: bool,
        actor: Actor,
    ) -> CreatedApiKey:
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
        if has_expiry:
            # No expiry column in the schema yet: refuse rather than silently ignore it.
            violations.append(
                FieldViolation("api_key.expire_time", "expiring keys are not supported yet")
            )
        if violations:
            raise InvalidArgument(
                "The API key is invalid; fix the fields named.", violations=violations
            )
        granted = sorted(set(scopes or DEFAULT_API_KEY_SCOPES))
        generated = generate_api_key()
        async with self._sessions() as session, session.begin():
            key = ApiKey(
                tenant_id=tenant_id,
                name=name,
                prefix=generated.prefix,
                secret_hash=generated.secret_hash,
                scopes=granted,
                created_by=actor.subject,
                created_at=datetime.now(UTC),
            )
            session.add(key)
            await session.flush()
            actor.audit(
                session,
                tenant_id=tenant_id,
                action="api_key.create",
                target=f"apiKeys/{key.id}",
                metadata={"name": name, "prefix": display_prefix(key), "scopes": ",".join(granted)},
            )
        return CreatedApiKey(key, generated.full_key)

    async def list(
        self, *, tenant_id: str, page_size: int, page_token: str, show_revoked: bool
    ) -> ApiKeyPage:
        page = parse_page(page_size, page_token, (tenant_id, show_revoked))
        query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
        if not show_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
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
