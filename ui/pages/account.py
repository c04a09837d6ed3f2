"""The signed-in person's own account: the password-change form, shared by the tenant
portal's settings page and the staff's account page."""

from __future__ import annotations

from nicegui import ui

from embrec.tenant.v1 import auth_service_pb2 as auth_pb

from .. import session
from ..client import ApiError
from ..layout import error_banner, frame, require

__all__ = ["password_form", "register"]

#: The service's rule (services.identity.passwords); checked here only to answer sooner.
MIN_PASSWORD_LENGTH = 10

#: Server field names → the input that shows the problem.
_FIELDS = ("current_password", "new_password")


def password_form(who: session.Session) -> None:
    """A card that changes the caller's password via AuthService.ChangePassword."""
    with ui.card().classes("w-full max-w-lg"):
        ui.label("Change password").classes("text-h6")
        if who.impersonating:
            # The service refuses it too; saying so beats a form that always fails.
            ui.label(
                "Not available while impersonating: only the user can change their password."
            ).classes("text-grey-8")
            return
        current = ui.input("Current password", password=True, password_toggle_button=True).mark(
            "current-password"
        )
        new = ui.input(
            f"New password (at least {MIN_PASSWORD_LENGTH} characters)",
            password=True,
            password_toggle_button=True,
        ).mark("new-password")
        confirm = ui.input(
            "Repeat the new password", password=True, password_toggle_button=True
        ).mark("confirm-password")
        inputs = {"current_password": current, "new_password": new}
        outcome = ui.column().classes("w-full")

        def check() -> bool:
            for field in (current, new, confirm):
                field.error = None
            if not current.value:
                current.error = "Enter your current password"
            if len(new.value or "") < MIN_PASSWORD_LENGTH:
                new.error = f"At least {MIN_PASSWORD_LENGTH} characters"
            elif new.value == current.value:
                new.error = "Choose a password different from the current one"
            if confirm.value != new.value:
                confirm.error = "The two new passwords differ"
            return not (current.error or new.error or confirm.error)

        async def submit() -> None:
            outcome.clear()
            if not check():
                return
            button.props("loading")
            api = session.api()
            try:
                reply = await api.call(
                    api.auth.ChangePassword,
                    auth_pb.ChangePasswordRequest(
                        current_password=current.value, new_password=new.value
                    ),
                )
            except ApiError as error:
                _show_problem(error, inputs, outcome)
                return
            finally:
                button.props(remove="loading")
            session.replace_tokens(reply.access_token, reply.refresh_token)
            for field in (current, new, confirm):
                field.value = ""
                field.error = None  # emptied on purpose: not a mistake to flag
            with outcome, ui.row().classes("items-center gap-2 text-positive").props("role=status"):
                ui.icon("check_circle")
                ui.label("Password changed. Every other session has been signed out.")
            ui.notify("Password changed", type="positive")

        button = ui.button("Change password", on_click=submit).mark("change-password")


def _show_problem(error: ApiError, inputs: dict[str, ui.input], outcome: ui.column) -> None:
    if error.reason == "CURRENT_PASSWORD_WRONG":
        inputs["current_password"].error = "The current password is wrong"
        return
    shown = False
    for name, text in error.fields.items():
        if name in _FIELDS:
            inputs[name].error = text[:1].upper() + text[1:]
            shown = True
    if not shown:
        with outcome:
            error_banner(error, what="The password was not changed")


def register() -> None:
    @ui.page("/admin/account")
    async def account() -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Account", who):
            with ui.card().classes("w-full max-w-lg"):
                ui.label("Profile").classes("text-h6")
                ui.label(f"E-mail: {who.email}")
                ui.label(f"Role: {who.role.replace('_', ' ')}")
            password_form(who)
