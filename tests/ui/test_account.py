"""Changing one's password in the console: the tenant portal's settings and the staff's
account page, with the mistakes a person makes shown on the field they concern."""

from __future__ import annotations

from nicegui import ui
from nicegui.testing.user import User

from tests.services.conftest import RunningStack
from tests.ui.support import PASSWORD, eventually, log_in, make_admin, see
from tests.ui.test_portal import sign_up

NEW_PASSWORD = "a fresh passphrase for 2026"


def field(user: User, marker: str) -> ui.input:
    element = user.find(marker=marker).elements.pop()
    assert isinstance(element, ui.input)
    return element


def fill(user: User, **values: str) -> None:
    for marker, text in values.items():
        user.find(marker=marker.replace("_", "-")).clear().type(text)


async def test_tenant_user_changes_password_on_the_settings_page(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    email = await sign_up(user, stack)
    await user.open("/app/settings")
    await see(user, "Change password")

    # Mistakes caught before anything is sent.
    user.find(marker="change-password").click()
    await eventually(lambda: field(user, "current-password").error == "Enter your current password")
    assert field(user, "new-password").error == "At least 10 characters"
    fill(user, current_password=PASSWORD, new_password=NEW_PASSWORD, confirm_password="typo")
    user.find(marker="change-password").click()
    await eventually(
        lambda: field(user, "confirm-password").error == "The two new passwords differ"
    )

    # The service's answer to a wrong current password lands on that field.
    fill(
        user,
        current_password="not my password",
        new_password=NEW_PASSWORD,
        confirm_password=NEW_PASSWORD,
    )
    user.find(marker="change-password").click()
    await eventually(
        lambda: field(user, "current-password").error == "The current password is wrong"
    )

    fill(user, current_password=PASSWORD, new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    user.find(marker="change-password").click()
    await see(user, "Password changed. Every other session has been signed out.")
    assert field(user, "new-password").value == ""
    # The console kept the fresh session: the page's own calls still work.
    await user.open("/app/settings")
    await see(user, "Company name")
    await user.should_not_see("Could not load the tenant")

    await user.open("/logout")
    await log_in(user, email)
    await see(user, "email or password")
    await log_in(user, email, NEW_PASSWORD)
    await see(user, "Recent uploads")


async def test_platform_admin_changes_password_on_the_account_page(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    email = await make_admin(stack)
    await log_in(user, email)
    await see(user, "API calls (24 h)")
    await user.open("/admin/account")
    await see(user, "Change password")
    fill(user, current_password=PASSWORD, new_password=NEW_PASSWORD, confirm_password=NEW_PASSWORD)
    user.find(marker="change-password").click()
    await see(user, "Password changed. Every other session has been signed out.")
    await user.open("/logout")
    await log_in(user, email, NEW_PASSWORD)
    await see(user, "API calls (24 h)")
