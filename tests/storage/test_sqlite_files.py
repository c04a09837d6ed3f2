"""The embedded database's file settings (services/storage/db.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.storage.db import create_engine
from services.storage.migrate import upgrade


def _pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as connection:
        return connection.execute(f"PRAGMA {name}").fetchone()[0]


async def test_a_new_file_gets_16k_pages_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    await upgrade(f"sqlite+aiosqlite:///{path}")
    assert _pragma(path, "page_size") == 16384
    assert _pragma(path, "journal_mode") == "wal"


async def test_an_existing_file_keeps_its_pages(tmp_path: Path) -> None:
    """Page size is fixed when a file is created: an older 4 KiB database opens as is."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE earlier (n INTEGER)")
        connection.execute("INSERT INTO earlier VALUES (1)")
    assert _pragma(path, "page_size") == 4096
    await upgrade(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("SELECT n FROM earlier")).scalar() == 1
    finally:
        await engine.dispose()
    assert _pragma(path, "page_size") == 4096
