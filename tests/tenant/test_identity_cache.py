"""The credential and tenant-state cache: one lookup per expiry, and forget means forget."""

from __future__ import annotations

import asyncio

from services.identity.directory import SqlDirectory
from services.identity.principal import Authenticator, TenantRecord
from services.storage.db import create_engine, session_factory
from tests.services.conftest import RunningStack
from tests.tenant.support import onboard


class CountingDirectory(SqlDirectory):
    """The real SQL directory, counting tenant lookups and able to hold them open."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.tenant_lookups = 0
        self.release = asyncio.Event()
        self.release.set()

    async def tenant(self, id_or_slug: str) -> TenantRecord | None:
        self.tenant_lookups += 1
        await self.release.wait()
        return await super().tenant(id_or_slug)


async def test_concurrent_misses_share_one_lookup_and_forget_wins(stack: RunningStack) -> None:
    user = await onboard(stack)
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        directory = CountingDirectory(session_factory(engine))
        auth = Authenticator(stack.runtime.settings, directory, cache_seconds=60)

        states = await asyncio.gather(*(auth.tenant_state(user.tenant.id) for _ in range(50)))
        assert {s.id for s in states if s is not None} == {user.tenant.id}
        assert directory.tenant_lookups == 1

        # A lookup that started before a forget (say, a suspension) must not be cached.
        directory.release.clear()
        auth.forget_tenant(user.tenant.id)
        stale = asyncio.create_task(auth.tenant_state(user.tenant.id))
        await asyncio.sleep(0.05)
        auth.forget_tenant(user.tenant.id)
        directory.release.set()
        await stale
        await auth.tenant_state(user.tenant.id)
        assert directory.tenant_lookups == 3
    finally:
        await engine.dispose()
