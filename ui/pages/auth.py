"""Sign-in, sign-up, sign-out, and the landing redirect."""

from __future__ import annotations

import contextlib
import re

from nicegui import ui

from embrec.tenant.v1 import auth_service_pb2 as auth_pb

from .. import session
from ..client import ApiError
from ..layout import error_banner, frame

__all__ = ["register"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])?$")


def _email_ok(value: str) -> str | None:
    return None if _EMAIL.match(value.strip() or "") else "Enter an e-mail address"


def home_of(who: session.Session) -> str:
    return "/admin" if who.is_admin else "/app"


def register() -> None:
    @ui.page("/")
    def index() -> None:
        who = session.current()
        ui.navigate.to("/login" if who is None else home_of(who))

    @ui.page("/login")
    def login() -> None:
        with frame("Log in", None), ui.card().classes("w-full max-w-md mx-auto"):
            ui.label("Log in").classes("text-h5")
            email = ui.input("E-mail", validation=_email_ok).props("autofocus").mark("email")
            password = ui.input("Password", password=True, password_toggle_button=True).mark(
                "password"
            )
            problem = ui.column()

            async def submit() -> None:
                problem.clear()
                if not email.validate() or not password.value:
                    with problem:
                        ui.label("Enter your e-mail and password.").classes("text-negative")
                    return
                button.props("loading")
                try:
                    reply = await session.api().call(
                        session.api().auth.Login,
                        auth_pb.LoginRequest(email=email.value.strip(), password=password.value),
                    )
                except ApiError as error:
                    with problem:
                        error_banner(error)
                    return
                finally:
                    button.props(remove="loading")
                who = session.sign_in(reply.user, reply.access_token, reply.refresh_token)
                ui.navigate.to(home_of(who))

            password.on("keydown.enter", submit)
            button = ui.button("Log in", on_click=submit).classes("w-full")
            with ui.row().classes("gap-1"):
                ui.label("New here?")
                ui.link("Sign up", "/signup")

    @ui.page("/signup")
    def signup(invitation: str = "") -> None:
        with frame("Sign up", None), ui.card().classes("w-full max-w-md mx-auto"):
            ui.label("Create your account").classes("text-h5")
            ui.label(
                "Joining a tenant your platform admin created? Paste the invitation token "
                "you were given. Otherwise, leave it empty and name your new company."
            ).classes("text-body2 text-grey-8")
            name = ui.input("Your name").mark("name")
            email = ui.input("E-mail", validation=_email_ok).mark("email")
            password = ui.input(
                "Password (at least 10 characters)", password=True, password_toggle_button=True
            ).mark("password")
            token = ui.input("Invitation token", value=invitation).mark("invitation")
            with ui.column().classes("w-full gap-1") as new_tenant:
                company = ui.input("Company name").mark("company")
                slug = ui.input("Company slug (a-z, 0-9, -)").mark("slug")
            new_tenant.bind_visibility_from(token, "value", backward=lambda v: not v)
            problem = ui.column()

            async def submit() -> None:
                problem.clear()
                issues = []
                if not email.validate():
                    issues.append("Enter an e-mail address.")
                if len(password.value or "") < 10:
                    issues.append("The password needs at least 10 characters.")
                if not token.value:
                    if not (company.value or "").strip():
                        issues.append("Name your company, or paste an invitation token.")
                    if not _SLUG.match(slug.value or ""):
                        issues.append("The slug: lowercase letters, digits and dashes.")
                if issues:
                    with problem:
                        for issue in issues:
                            ui.label(issue).classes("text-negative")
                    return
                request = auth_pb.SignUpRequest(
                    email=email.value.strip(), password=password.value, name=name.value
                )
                if token.value:
                    request.invitation_token = token.value.strip()
                else:
                    request.new_tenant.name = company.value.strip()
                    request.new_tenant.slug = slug.value.strip()
                try:
                    reply = await session.api().call(session.api().auth.SignUp, request)
                except ApiError as error:
                    with problem:
                        error_banner(error)
                    return
                session.sign_in(reply.user, reply.access_token, reply.refresh_token)
                ui.navigate.to("/app")

            ui.button("Sign up", on_click=submit).classes("w-full")
            with ui.row().classes("gap-1"):
                ui.label("Have an account?")
                ui.link("Log in", "/login")

    @ui.page("/logout")
    async def logout() -> None:
        client = session.api()
        refresh = session.sign_out()
        if client.credentials is not None and refresh:
            # The session is gone here either way; a token the server kept expires anyway.
            with contextlib.suppress(ApiError):
                await client.call(client.auth.Logout, auth_pb.LogoutRequest(refresh_token=refresh))
        ui.navigate.to("/login")

    @ui.page("/impersonate/end")
    def end_impersonation() -> None:
        if session.end_impersonation():
            ui.navigate.to("/admin/support")
        else:
            ui.navigate.to("/")
