"""Build and run the console: register every page, point the stubs at the services.

The console is its own process (``embrec console``; ``embrec up`` starts it as a
child): NiceGUI's server owns its event loop and its global app object, so keeping it
out of the services' process keeps a console problem from stopping the platform.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from nicegui import app, ui
from nicegui.storage import Storage

from . import session
from .client import Channels
from .pages import account, admin, auth, portal

__all__ = ["register", "run", "storage_secret_from"]

logger = logging.getLogger(__name__)


def storage_secret_from(jwt_secret: str) -> str:
    """The cookie-signing key, derived so no extra secret has to be configured, yet
    different from the token key itself (a leak of one does not give the other)."""
    return hmac.new(jwt_secret.encode(), b"embrec-console-storage", hashlib.sha256).hexdigest()


def register(target: str) -> Channels:
    """Register every page and aim the stubs at ``target`` (host:port of the services)."""
    channels = Channels(target)
    session.configure(channels)
    auth.register()
    admin.register()
    portal.register()
    account.register()

    async def close_channels() -> None:
        await channels.close()

    app.on_shutdown(close_channels)
    return channels


def run(*, target: str, host: str, port: int, storage_secret: str, storage_dir: Path) -> None:
    """Serve the console until interrupted (blocking; NiceGUI runs its own loop)."""
    # Sessions (which hold each browser's tokens) live in the data dir, not the cwd.
    storage_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    Storage.path = storage_dir
    app.storage = Storage()
    register(target)
    ui.run(
        host=host,
        port=port,
        title="embrec console",
        storage_secret=storage_secret,
        reload=False,
        show=False,
        show_welcome_message=False,
        uvicorn_logging_level="warning",
    )
