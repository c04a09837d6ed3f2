"""Upgrade or downgrade a database with the Alembic migrations shipped in this package.

Alembic is configured from code (no alembic.ini at the repository root): the script
location is this package's ``migrations`` folder and the database connection is opened
here with :func:`services.storage.db.create_engine` (so SQLite gets the same pragmas as at
run time) and handed to Alembic through ``run_sync``; Alembic's synchronous API then runs
on that connection without blocking the event loop on a second thread.

On PostgreSQL the migration runs under a transaction-scoped advisory lock, so several
service containers starting at once and each calling :func:`upgrade` apply a revision
exactly once; the others wait, then find nothing to do. DDL is transactional on both
databases, so a failed migration leaves the schema as it was.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from services.storage.db import create_engine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "downgrade", "upgrade"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# An arbitrary 64-bit constant naming the "embrec schema migration" advisory lock.
_MIGRATION_LOCK_KEY = 0x656D_6272_6563_0001


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for this package's migrations (for ad-hoc Alembic commands)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # configparser interpolation: a literal % (e.g. in a password) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (default: the latest)."""
    await _run(url, "upgrade", revision)


async def downgrade(url: str, revision: str = "base") -> None:
    """Downgrade the database at ``url`` to ``revision`` (default: empty schema)."""
    await _run(url, "downgrade", revision)


async def current_revision(url: str) -> str | None:
    """The revision the database is at, or None when it has never been migrated."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()


async def _run(url: str, direction: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run_sync, direction, revision)
    finally:
        await engine.dispose()


def _run_sync(connection: Connection, direction: str, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    config = alembic_config()
    config.attributes["connection"] = connection
    if direction == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)
