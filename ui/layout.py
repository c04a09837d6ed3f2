"""The shared frame of every page (header, role-aware navigation, impersonation
banner) and the small pieces pages reuse: error display, empty states, guards."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import ParamSpec

from nicegui import ui

from . import session
from .client import ApiError
from .session import Session

__all__ = [
    "ADMIN_NAV",
    "TENANT_NAV",
    "empty_state",
    "error_banner",
    "floating_dialog",
    "frame",
    "guarded",
    "not_built",
    "require",
    "show_error",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")

ADMIN_NAV = (
    ("Dashboard", "/admin", "dashboard"),
    ("Tenants", "/admin/tenants", "apartment"),
    ("Models", "/admin/models", "model_training"),
    ("Support", "/admin/support", "support_agent"),
    ("Monitoring", "/admin/monitoring", "monitor_heart"),
    ("Audit logs", "/admin/audit", "receipt_long"),
    ("Account", "/admin/account", "manage_accounts"),
)
TENANT_NAV = (
    ("Dashboard", "/app", "dashboard"),
    ("Data", "/app/data", "upload_file"),
    ("API keys", "/app/keys", "key"),
    ("Analytics", "/app/analytics", "insights"),
    ("Models", "/app/models", "model_training"),
    ("Test", "/app/test", "science"),
    ("Settings", "/app/settings", "settings"),
)


def show_error(error: Exception, *, what: str = "") -> None:
    """A readable notification for a failed call; unexpected errors are logged, not shown."""
    if isinstance(error, ApiError):
        text = error.message
    else:
        logger.exception("console action failed", exc_info=error)
        text = "Something went wrong in the console; it has been logged."
    ui.notify(f"{what}: {text}" if what else text, type="negative", multi_line=True)


def error_banner(error: ApiError, *, what: str = "") -> None:
    """An inline error where data should be (a list that could not load)."""
    with ui.row().classes("items-center gap-2 text-negative").props("role=alert"):
        ui.icon("error_outline")
        ui.label(f"{what}: {error.message}" if what else error.message)


def floating_dialog() -> ui.dialog:
    """A dialog owned by the page itself, not by the list that opened it: a handler
    running in it must survive the list being redrawn (NiceGUI cancels the tasks of
    deleted elements)."""
    with ui.context.client.content:
        return ui.dialog()


def empty_state(text: str, icon: str = "inbox") -> None:
    with ui.column().classes("items-center w-full py-8 text-grey-7"):
        ui.icon(icon, size="2.5rem")
        ui.label(text)


def not_built(what: str) -> None:
    """Said plainly: a page (or part) the console does not have yet. Never fake data."""
    with ui.card().classes("w-full"):
        ui.label(f"{what}: not built yet").classes("text-h6")
        ui.label(
            "This part of the console is not built yet; nothing here is real data. "
            "The REST/gRPC API may already offer it (see the README)."
        )


def guarded(
    handler: Callable[P, Awaitable[object]],
) -> Callable[P, Awaitable[None]]:
    """Wrap a button handler: any ApiError becomes a notification, never a traceback."""

    @functools.wraps(handler)
    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await handler(*args, **kwargs)
        except ApiError as error:
            show_error(error)
        except Exception as error:
            show_error(error)

    return run


def require(*, admin: bool = False, tenant: bool = False) -> Session | None:
    """The signed-in person if they may see this page; otherwise redirect and None."""
    who = session.current()
    if who is None:
        ui.navigate.to("/login")
        return None
    if admin and not who.is_admin:
        ui.navigate.to("/app" if who.is_tenant_user else "/login")
        return None
    if tenant and not who.is_tenant_user:
        ui.navigate.to("/admin")
        return None
    return who


@contextlib.contextmanager
def frame(title: str, who: Session | None) -> Iterator[None]:
    """Header, navigation for the person's role, and the page body."""
    ui.page_title(f"{title} · embrec console")
    ui.colors(primary="#3949ab")
    with ui.header().classes("items-center justify-between px-4 py-2"):
        with ui.row().classes("items-center gap-2 no-wrap"):
            if who is not None:
                ui.button(icon="menu", on_click=lambda: toggle()).props(
                    "flat round color=white"
                ).classes("lg:hidden")
            ui.label("embrec").classes("text-h6 text-weight-bold")
            ui.label(title).classes("text-subtitle1 gt-xs")
        if who is not None:
            with ui.row().classes("items-center gap-2 no-wrap"):
                ui.label(who.email).classes("gt-sm")
                ui.button("Log out", on_click=lambda: ui.navigate.to("/logout")).props(
                    "flat color=white"
                )
    if who is not None and who.impersonating:
        # Visible on every page while it lasts, with the way out one click away.
        with (
            ui.element("div")
            .classes("w-full bg-warning text-black px-4 py-2 row items-center justify-between")
            .props("role=status")
        ):
            ui.label(
                f"Impersonating {who.impersonating} as {who.email}: every action is "
                "recorded in the audit trail under your admin account."
            )
            ui.button("End impersonation", on_click=lambda: ui.navigate.to("/impersonate/end"))
    drawers: list[ui.left_drawer] = []

    def toggle() -> None:
        for drawer in drawers:
            drawer.toggle()

    if who is not None:
        nav = ADMIN_NAV if who.is_admin else TENANT_NAV
        with ui.left_drawer(value=None).props("breakpoint=1024 bordered") as drawer:
            drawers.append(drawer)
            for label, target, icon in nav:
                with (
                    ui.link(target=target).classes("no-underline text-inherit w-full"),
                    ui.row().classes("items-center gap-3 py-2"),
                ):
                    ui.icon(icon)
                    ui.label(label)
    with ui.column().classes("w-full max-w-screen-xl mx-auto p-2 sm:p-4 gap-4"):
        yield
