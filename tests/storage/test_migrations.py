"""The migrations create exactly the models' schema, and go down and up again cleanly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from services.storage.db import create_engine, session_factory
from services.storage.migrate import alembic_config, current_revision, downgrade, upgrade
from services.storage.models import Base, Interaction, Tenant

EXPECTED_TABLES = {
    "tenants",
    "users",
    "refresh_tokens",
    "invitations",
    "api_keys",
    "items",
    "interactions",
    "uploads",
    "training_jobs",
    "models",
    "deployments",
    "schedules",
    "audit_events",
    "outbox",
    "processed_events",
    "event_log",
    "consumer_offsets",
    "served_recommendations",
    "analytics_hourly",
    "analytics_item_daily",
    "analytics_user_hourly_hll",
    "usage_hourly",
}


HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def _schema_diff(url: str) -> list[Any]:
    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(diff)
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    assert await current_revision(db_url) is None

    await upgrade(db_url)
    assert await current_revision(db_url) == HEAD
    assert await _tables(db_url) == EXPECTED_TABLES

    await downgrade(db_url)
    assert await current_revision(db_url) is None
    assert await _tables(db_url) == set()

    await upgrade(db_url)
    assert await current_revision(db_url) == HEAD
    assert await _tables(db_url) == EXPECTED_TABLES


async def test_upgrade_is_idempotent(db_url: str) -> None:
    await upgrade(db_url)
    await upgrade(db_url)
    assert await current_revision(db_url) == HEAD


async def test_migrated_schema_matches_models(db_url: str) -> None:
    await upgrade(db_url)
    assert await _schema_diff(db_url) == []


async def _recommendation_index(url: str) -> str:
    """The definition of interactions' (tenant_id, recommendation_id) index, as stored."""
    engine = create_engine(url)
    name = "ix_interactions_tenant_id_recommendation_id"
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                query = "SELECT sql FROM sqlite_master WHERE name = :name"
            else:
                query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
            return str(await conn.scalar(text(query), {"name": name}))
    finally:
        await engine.dispose()


async def test_recommendation_index_is_partial_and_downgrades(db_url: str) -> None:
    """0008 leaves unattributed interactions out of the recommendation-id index."""
    await upgrade(db_url)
    assert "recommendation_id IS NOT NULL" in await _recommendation_index(db_url)
    await downgrade(db_url, "0007")
    assert "WHERE" not in (await _recommendation_index(db_url)).upper()
    await upgrade(db_url)
    assert "recommendation_id IS NOT NULL" in await _recommendation_index(db_url)


async def test_user_day_rollup_downgrade_rebuilds_it_from_interactions(db_url: str) -> None:
    """0009 drops analytics_user_daily; going back to 0008 rebuilds it from the raw rows
    (one row per tenant, UTC day and user, with the mask of the hours they were active)."""
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        sessions = session_factory(engine)
        async with sessions() as session, session.begin():
            tenant = Tenant(name="Acme", slug="acme-0009", email="ops@acme.example")
            session.add(tenant)
            await session.flush()
            for user, ts in (
                ("u1", datetime(2026, 1, 1, 3, 15, tzinfo=UTC)),
                ("u1", datetime(2026, 1, 1, 3, 45, tzinfo=UTC)),
                ("u1", datetime(2026, 1, 1, 5, 0, tzinfo=UTC)),
                ("u2", datetime(2026, 1, 2, 23, 59, tzinfo=UTC)),
            ):
                session.add(
                    Interaction(tenant_id=tenant.id, user_id=user, item_id="i", type="view", ts=ts)
                )
    finally:
        await engine.dispose()
    assert "analytics_user_daily" not in await _tables(db_url)

    await downgrade(db_url, "0008")
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("SELECT day, user_id, hours FROM analytics_user_daily ORDER BY day")
                )
            ).all()
    finally:
        await engine.dispose()
    day = (datetime(2026, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).days
    assert [tuple(r) for r in rows] == [
        (day, "u1", (1 << 3) | (1 << 5)),
        (day + 1, "u2", 1 << 23),
    ]
    await upgrade(db_url)
    assert "analytics_user_daily" not in await _tables(db_url)
