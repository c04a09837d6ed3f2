"""The tenant dashboard's API usage: calls, cache hit rate and error rate."""

from __future__ import annotations

from nicegui.testing.user import User

from services.platform.usage_store import flush_once
from services.storage.db import create_engine, session_factory
from tests.services.conftest import RunningStack
from tests.ui.support import see
from tests.ui.test_portal import sign_up


async def _flush(stack: RunningStack) -> None:
    """Write the process's usage counts now instead of waiting for the periodic flush."""
    assert stack.runtime.usage is not None
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        assert await flush_once(stack.runtime.usage, session_factory(engine))
    finally:
        await engine.dispose()


async def test_the_dashboard_counts_the_tenants_own_api_calls(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    await sign_up(user, stack)  # the dashboard's own calls are the tenant's first API calls
    await see(user, "API calls (30 d)")
    await see(user, "no requests yet")  # no Recommend call, so no cache hit rate
    await _flush(stack)
    await user.open("/app")
    await see(user, "Recent uploads")
    user.find(marker="usage-chart")  # calls exist now: the daily chart is drawn
