"""Alembic environment for embrec, async-capable and configured from code.

There is no alembic.ini: :mod:`services.storage.migrate` builds the Alembic ``Config``
and usually hands over an open connection in ``config.attributes["connection"]`` (run
through ``AsyncConnection.run_sync``). When Alembic's own command line is used instead
(``alembic -c ...``), the URL comes from ``sqlalchemy.url`` and an async engine is created
here. SQLite gets ``render_as_batch`` so later ALTERs work through table copies.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from services.storage.db import create_engine
from services.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_with_connection(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_with_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with_connection)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


_connection = config.attributes.get("connection")
if context.is_offline_mode():
    run_offline(config.get_main_option("sqlalchemy.url") or "")
elif _connection is not None:
    run_with_connection(_connection)
else:
    asyncio.run(run_with_url(config.get_main_option("sqlalchemy.url") or ""))
