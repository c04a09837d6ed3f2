"""Platform admins: created from the command line (``embrec admin create``), never by API.

No admin and no password exist in any config file. The first admin comes from the
CLI, or in the embedded mode from ``ensure_demo_admin``, which makes one with a random
password that ``embrec up`` prints once.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.config import Settings
from services.errors import InvalidArgument
from services.identity.passwords import hash_password, password_violations
from services.identity.principal import PLATFORM_ADMIN
from services.storage.models import User
from services.tenant.domain import Actor, email_violations, normalise_email
from services.tenant.invitations import email_taken, email_taken_error

__all__ = [
    "DEMO_ADMIN_EMAIL",
    "add_platform_admin",
    "create_platform_admin",
    "ensure_demo_admin",
    "ensure_demo_admin_for",
]

DEMO_ADMIN_EMAIL = "admin@embrec.local"


async def add_platform_admin(
    sessions: async_sessionmaker[AsyncSession],
    *,
    email: str,
    password: str,
    name: str = "",
    actor: Actor,
) -> User:
    email = normalise_email(email)
    violations = email_violations(email) + password_violations(password)
    if violations:
        raise InvalidArgument("The admin is invalid; fix the fields named.", violations=violations)
    password_hash = await hash_password(password)
    async with sessions() as session, session.begin():
        if await email_taken(session, email):
            raise email_taken_error(email)
        user = User(
            tenant_id=None,
            email=email,
            display_name=name.strip() or None,
            password_hash=password_hash,
            role=PLATFORM_ADMIN,
            failed_logins=0,
        )
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:
            raise email_taken_error(email) from None
        actor.audit(
            session,
            tenant_id="",
            action="user.create",
            target=f"users/{user.id}",
            metadata={"email": email, "role": PLATFORM_ADMIN},
        )
    return user


async def _with_sessions(
    settings: Settings,
) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    from services.storage import migrate as migrations
    from services.storage.db import create_engine, session_factory

    url = settings.effective_database_url
    if url.startswith("sqlite"):
        # The embedded database belongs to this installation: bring it up to date.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await migrations.upgrade(url)
    engine = create_engine(url)
    return engine, session_factory(engine)


async def create_platform_admin(
    settings: Settings, *, email: str, password: str, name: str = ""
) -> str:
    """``embrec admin create``: add an admin; returns the user id."""
    engine, sessions = await _with_sessions(settings)
    try:
        user = await add_platform_admin(
            sessions, email=email, password=password, name=name, actor=Actor("cli")
        )
    finally:
        await engine.dispose()
    return user.id


async def ensure_demo_admin(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str] | None:
    """The embedded mode's first admin: (email, password) when just created, else None."""
    async with sessions() as session:
        exists = await session.scalar(select(User.id).where(User.role == PLATFORM_ADMIN).limit(1))
    if exists is not None:
        return None
    password = secrets.token_urlsafe(15)
    await add_platform_admin(
        sessions,
        email=DEMO_ADMIN_EMAIL,
        password=password,
        name="Demo admin",
        actor=Actor("embedded"),
    )
    return DEMO_ADMIN_EMAIL, password


async def ensure_demo_admin_for(settings: Settings) -> tuple[str, str] | None:
    """``ensure_demo_admin`` on the settings' database (embedded ``embrec up``)."""
    engine, sessions = await _with_sessions(settings)
    try:
        return await ensure_demo_admin(sessions)
    finally:
        await engine.dispose()
