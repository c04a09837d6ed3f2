"""The logged-in person, as the browser session remembers them.

``app.storage.user`` is per browser (a signed cookie names it) and lives on the
console's server, never in the page: it holds the tokens Login gave and what the
pages need to decide what to show (role, tenant, e-mail, an impersonation in
progress). Authorisation itself is the services' job: a page hidden from a tenant
user is a convenience, the service refusing the call is the guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nicegui import app

from embrec.tenant.v1 import resources_pb2 as tenant_pb

from .client import Api, Channels, Credentials

__all__ = [
    "Session",
    "api",
    "configure",
    "current",
    "end_impersonation",
    "replace_tokens",
    "sign_in",
    "sign_out",
    "start_impersonation",
]

_ROLE_NAMES = {
    tenant_pb.ROLE_PLATFORM_ADMIN: "platform_admin",
    tenant_pb.ROLE_TENANT_ADMIN: "tenant_admin",
    tenant_pb.ROLE_TENANT_MEMBER: "tenant_member",
}

_channels: Channels | None = None


def configure(channels: Channels) -> None:
    """Set the process's channels to the services (done once by ui.app.register)."""
    global _channels
    _channels = channels


def channels() -> Channels:
    if _channels is None:
        raise RuntimeError("the console is not configured: call ui.app.register() first")
    return _channels


@dataclass(frozen=True)
class Session:
    email: str
    name: str
    role: str
    tenant_id: str
    user_id: str
    impersonating: str  # the tenant an admin is acting as, "" when not impersonating

    @property
    def is_admin(self) -> bool:
        return self.role == "platform_admin" and not self.impersonating

    @property
    def is_tenant_user(self) -> bool:
        return bool(self.tenant_id)


def _store() -> Any:
    return app.storage.user


def current() -> Session | None:
    """The signed-in person of this browser, or None."""
    data = _store().get("session")
    if not data or not _store().get("access_token"):
        return None
    return Session(**data)


def sign_in(
    user: tenant_pb.User, access_token: str, refresh_token: str, *, impersonating: str = ""
) -> Session:
    session = Session(
        email=user.email,
        name=user.name,
        role=_ROLE_NAMES.get(user.role, "tenant_member"),
        tenant_id=user.tenant_id,
        user_id=user.id,
        impersonating=impersonating,
    )
    _store()["session"] = session.__dict__
    _store()["access_token"] = access_token
    _store()["refresh_token"] = refresh_token
    return session


def replace_tokens(access_token: str, refresh_token: str) -> None:
    """Keep the fresh pair a password change hands back (the old refresh token is dead)."""
    _store()["access_token"] = access_token
    _store()["refresh_token"] = refresh_token


def start_impersonation(user: tenant_pb.User, access_token: str, tenant_label: str) -> None:
    """Keep the admin's own session aside and act as the tenant user until it ends."""
    store = _store()
    store["admin_saved"] = {
        "session": store.get("session"),
        "access_token": store.get("access_token"),
        "refresh_token": store.get("refresh_token"),
    }
    # No refresh token: an impersonation ends when its short-lived token does.
    sign_in(user, access_token, "", impersonating=tenant_label)


def end_impersonation() -> bool:
    """Back to the admin's own session; False when none was saved."""
    store = _store()
    saved = store.pop("admin_saved", None)
    if not saved:
        return False
    for key in ("session", "access_token", "refresh_token"):
        store[key] = saved.get(key)
    return True


def sign_out() -> str:
    """Forget the session; returns the refresh token so the caller can revoke it."""
    store = _store()
    refresh = str(store.get("refresh_token") or "")
    for key in ("session", "access_token", "refresh_token", "admin_saved"):
        store.pop(key, None)
    return refresh


def api() -> Api:
    """Stubs carrying this browser's credential (none when signed out)."""
    store = _store()
    token = store.get("access_token")
    creds = None
    if token:

        def keep(access: str, refresh: str) -> None:
            store["access_token"] = access
            store["refresh_token"] = refresh

        creds = Credentials(str(token), str(store.get("refresh_token") or ""), keep)
    return Api(channels().get(), creds)
