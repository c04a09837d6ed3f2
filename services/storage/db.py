"""Engines and sessions for PostgreSQL (asyncpg) and SQLite (aiosqlite).

Why these settings:

* PostgreSQL: ``pool_pre_ping`` drops connections that died while idle (a database
  restart would otherwise surface as one failed request per pooled connection); a connect
  timeout of ~3 s and a pool checkout timeout make an outage fail fast with an error the
  caller can map to UNAVAILABLE instead of hanging a request forever; ``pool_recycle``
  bounds connection age behind proxies and load balancers that cut idle TCP sessions.
* SQLite: WAL lets readers proceed while one writer writes, ``foreign_keys`` is off by
  default in SQLite and must be switched on per connection, ``busy_timeout`` makes a
  second writer wait for the lock instead of failing at once with "database is locked",
  and ``synchronous=NORMAL`` is the durable-enough setting for WAL. A new database file
  gets 16 KiB pages instead of SQLite's 4 KiB: the random inserts into the
  ``(tenant_id, user_id)`` index dominate a bulk import, and fewer, fuller pages made a
  1M-row import ~10 % faster (docs/ingestion.md, session 5); ``page_size`` is a no-op on
  an existing file, which keeps its pages. In-memory databases
  get a single shared connection (``StaticPool``), or every connection would see its own
  empty database.

No engine is global: the entry point creates one per process and passes it (or its
session factory) to whatever needs it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import StaticPool

__all__ = ["create_engine", "dialect_insert", "is_postgresql", "session_factory"]


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    max_overflow: int = 10,
    connect_timeout: float = 3.0,
    pool_timeout: float = 5.0,
    statement_timeout_ms: int | None = None,
    application_name: str = "embrec",
) -> AsyncEngine:
    """Create an async engine for ``url`` with the settings described in the module doc.

    ``url`` is a SQLAlchemy URL: ``sqlite+aiosqlite:///path/to.db`` (or
    ``sqlite+aiosqlite://`` for an in-memory database) or
    ``postgresql+asyncpg://user:password@host:port/db``.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _create_sqlite_engine(
            url, echo=echo, memory=parsed.database in (None, "", ":memory:")
        )
    if backend == "postgresql":
        server_settings = {"application_name": application_name}
        if statement_timeout_ms is not None:
            server_settings["statement_timeout"] = str(statement_timeout_ms)
        connect_args: dict[str, Any] = {
            "timeout": connect_timeout,
            "server_settings": server_settings,
        }
        return _create_async_engine(
            url,
            echo=echo,
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=1800,
            connect_args=connect_args,
        )
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")


def _create_sqlite_engine(url: str, *, echo: bool, memory: bool) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": echo}
    if memory:
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
    engine = _create_async_engine(url, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA page_size=16384")
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
        finally:
            cursor.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (``expire_on_commit=False``).

    Async code cannot lazy-load an expired attribute implicitly, so objects returned from a
    committed unit of work must stay readable.
    """
    return async_sessionmaker(engine, expire_on_commit=False)


def is_postgresql(engine_or_session: AsyncEngine | AsyncSession) -> bool:
    """Whether the engine (or the session's bind) talks to PostgreSQL."""
    if isinstance(engine_or_session, AsyncSession):
        return engine_or_session.get_bind().dialect.name == "postgresql"
    return engine_or_session.dialect.name == "postgresql"


def dialect_insert(session: AsyncSession, table: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT for ``table`` in the session's dialect, which offers ``on_conflict_do_*``.

    PostgreSQL and SQLite spell upserts the same way (``ON CONFLICT``) but SQLAlchemy has a
    construct per dialect; this picks the right one.
    """
    if is_postgresql(session):
        return postgresql.insert(table)
    name = session.get_bind().dialect.name
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert support for dialect {name!r}")
