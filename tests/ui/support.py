"""Helpers for the console tests: a platform admin with a password, signed-in users."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from nicegui import ui
from nicegui.testing.user import User

from services.tenant.admins import create_platform_admin
from tests.services.conftest import RunningStack

PASSWORD = "correct horse battery staple"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def make_admin(stack: RunningStack) -> str:
    """A platform admin as `embrec admin create` makes one; returns the e-mail."""
    email = f"{unique('admin')}@platform.example"
    await create_platform_admin(stack.runtime.settings, email=email, password=PASSWORD)
    return email


async def log_in(user: User, email: str, password: str = PASSWORD) -> None:
    await user.open("/login")
    user.find(marker="email").type(email)
    user.find(marker="password").type(password)
    user.find(kind=ui.button, content="Log in").click()


async def see(user: User, content: str | None = None, **kwargs: object) -> None:
    """`should_see` with time for real services (password hashing, imports) to answer."""
    await user.should_see(content, retries=150, **kwargs)  # type: ignore[arg-type]


async def eventually(check: Callable[[], bool], seconds: float = 15.0) -> None:
    """Wait for a handler running in the background (a click's coroutine) to get there."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the console did not get there in time")
        await asyncio.sleep(0.05)


def table_rows(user: User) -> list[dict[str, Any]]:
    """Every row of every table on the page (table cells are not 'seen' as content)."""
    return [row for t in user.find(ui.table).elements if isinstance(t, ui.table) for row in t.rows]


def has_rows(user: User, **match: object) -> bool:
    try:
        rows = table_rows(user)
    except AssertionError:  # no table (yet)
        return False
    return any(all(row.get(k) == v for k, v in match.items()) for row in rows)
