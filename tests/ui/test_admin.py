"""Admin back office: log in, create a tenant, suspend and reactivate it, audit search."""

from __future__ import annotations

import asyncio

from nicegui import ui
from nicegui.testing.user import User

from tests.services.conftest import RunningStack
from tests.ui.support import (
    eventually,
    has_rows,
    log_in,
    make_admin,
    see,
    table_rows,
    unique,
)


async def test_wrong_password_says_so_and_stays_on_login(
    console_user: User, stack: RunningStack
) -> None:
    email = await make_admin(stack)
    await log_in(console_user, email, "not the password at all")
    await see(console_user, "email or password")
    await console_user.should_not_see("Tenants")


async def test_pages_need_a_login(console_user: User) -> None:
    await console_user.open("/admin/tenants")
    await see(console_user, "Log in")
    await console_user.open("/app/keys")
    await see(console_user, "Log in")


async def test_admin_creates_suspends_and_reactivates_a_tenant(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    email = await make_admin(stack)
    await log_in(user, email)
    await see(user, "API calls (24 h)")  # the dashboard
    await user.open("/admin/tenants")
    await see(user, "Create tenant")

    # Create: the form validates before sending, then shows the one-time invitation.
    user.find(kind=ui.button, content="Create tenant").click()
    user.find(marker="create-submit").click()
    name_input = user.find(marker="tenant-name").elements.pop()
    assert isinstance(name_input, ui.input)
    await eventually(lambda: name_input.error == "Required")
    slug = unique("gadgets")
    user.find(marker="tenant-name").type("TechGadgets")
    user.find(marker="tenant-slug").type(slug)
    user.find(marker="tenant-email").type(f"admin@{slug}.example")
    user.find(marker="create-submit").click()
    await see(user, f"Created TechGadgets ({slug})")
    await see(user, "invitation token")

    # The same slug again: the service's message, not a traceback.
    user.find(marker="create-submit").click()
    await see(user, slug)

    # Search finds it; the detail page suspends it with a reason, after a confirmation.
    user.find(kind=ui.button, content="Close").click()
    user.find(marker="tenant-search").type(slug)
    user.find(kind=ui.button, content="Search").click()
    await eventually(lambda: has_rows(user, slug=slug))
    (tenant_id,) = [row["id"] for row in table_rows(user)]
    await user.open(f"/admin/tenants/{tenant_id}")
    await see(user, "Status: Active")
    user.find(kind=ui.button, content="Suspend").click()
    user.find(kind=ui.button, content="Confirm suspend").click()
    reason = user.find(marker="reason").elements.pop()
    assert isinstance(reason, ui.input)
    await eventually(lambda: reason.error == "A reason is required")
    user.find(marker="reason").type("unpaid invoices")
    user.find(kind=ui.button, content="Confirm suspend").click()
    await see(user, "Status: Suspended")
    await see(user, "Suspended because: unpaid invoices")
    user.find(kind=ui.button, content="Reactivate").click()
    user.find(marker="reason").type("paid")
    user.find(kind=ui.button, content="Confirm reactivate").click()
    await see(user, "Status: Active")

    # Each of those actions is in the audit trail, found by the audit page's filters
    # (the trail is fed from the event bus, so a search may need a moment to show them).
    await user.open("/admin/audit")
    user.find("Tenant (id or slug)").type(tenant_id)

    wanted = ("tenant.create", "tenant.suspend", "tenant.reactivate")
    for _ in range(60):
        if all(has_rows(user, action=action) for action in wanted):
            break
        user.find(kind=ui.button, content="Search").click()
        await asyncio.sleep(0.5)
    assert all(has_rows(user, action=action) for action in wanted)
