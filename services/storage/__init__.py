"""Persistence: SQLAlchemy models, engines/sessions and Alembic migrations.

``models`` holds the whole schema, ``db`` creates engines and session factories, and
``migrate`` upgrades or downgrades a database to a revision of ``migrations/``.
"""

from services.storage.db import create_engine, dialect_insert, is_postgresql, session_factory

__all__ = ["create_engine", "dialect_insert", "is_postgresql", "session_factory"]
