"""Database fixtures shared by tests/storage and tests/events.

Every test gets a database of its own: a fresh SQLite file, or a freshly created
PostgreSQL database on the session's server (`postgres_url`), dropped afterwards, so
tests never see each other's rows and a migration test can downgrade freely.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from services.storage.db import create_engine, session_factory
from services.storage.migrate import upgrade


@asynccontextmanager
async def scratch_postgres_database(server_url: str) -> AsyncIterator[str]:
    """Create a uniquely named database next to `server_url`'s, yield its URL, drop it."""
    url = make_url(server_url)
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url.set(database=name).render_as_string(hide_password=False)
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'embrec.db'}"


@pytest.fixture
async def pg_scratch_url(postgres_url: str) -> AsyncIterator[str]:
    async with scratch_postgres_database(postgres_url) as url:
        yield url


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database of the test's own, on each backend in turn."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_scratch_url"))


@dataclass
class Database:
    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """`db_url` migrated to head, with an engine and a session factory."""
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        yield Database(db_url, engine, session_factory(engine))
    finally:
        await engine.dispose()
