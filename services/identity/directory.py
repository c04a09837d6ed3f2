"""The SQL side of authentication: API keys by prefix, tenant states, key use times.

Read-only apart from ``last_used_at``; the tenant service owns the writes. Kept apart
from ``principal`` so the gateway or a test can give the Authenticator another Directory.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.identity.principal import ApiKeyRecord, TenantRecord
from services.storage.models import ApiKey, Tenant

__all__ = ["SqlDirectory"]


class SqlDirectory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def api_key(self, prefix: str) -> ApiKeyRecord | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey, Tenant.plan)
                    .join(Tenant, Tenant.id == ApiKey.tenant_id)
                    .where(ApiKey.prefix == prefix)
                )
            ).first()
        if row is None:
            return None
        key, plan = row
        return ApiKeyRecord(
            id=key.id,
            tenant_id=key.tenant_id,
            secret_hash=key.secret_hash,
            scopes=frozenset(str(s) for s in key.scopes or ()),
            revoked=key.revoked_at is not None,
            plan=plan,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
        )

    async def tenant(self, id_or_slug: str) -> TenantRecord | None:
        async with self._sessions() as session:
            tenant = await session.scalar(
                select(Tenant).where(or_(Tenant.id == id_or_slug, Tenant.slug == id_or_slug))
            )
        if tenant is None:
            return None
        return TenantRecord(id=tenant.id, slug=tenant.slug, status=tenant.status, plan=tenant.plan)

    async def touch_api_key(self, key_id: str, when: datetime) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when)
            )
