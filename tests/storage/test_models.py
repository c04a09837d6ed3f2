"""The models behave the same on SQLite and PostgreSQL: UTC times, JSON, constraints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, StatementError

from services.storage.models import AuditEvent, Interaction, Item, Tenant, Upload
from tests.storage.fixtures import Database


def _tenant(slug: str = "acme") -> Tenant:
    return Tenant(name="Acme", slug=slug, email="ops@acme.example")


async def test_defaults_and_utc_round_trip(database: Database) -> None:
    paris = timezone(timedelta(hours=1))
    async with database.sessions() as session, session.begin():
        tenant = _tenant()
        session.add(tenant)
        await session.flush()
        session.add(
            Interaction(
                tenant_id=tenant.id,
                user_id="u1",
                item_id="i1",
                type="view",
                ts=datetime(2026, 1, 1, 12, 0, tzinfo=paris),
            )
        )
    async with database.sessions() as session:
        loaded = await session.scalar(select(Tenant).where(Tenant.slug == "acme"))
        assert loaded is not None
        assert loaded.status == "active" and loaded.plan == "free" and loaded.settings == {}
        assert loaded.created_at.tzinfo is not None
        assert loaded.created_at.utcoffset() == timedelta(0)
        interaction = await session.scalar(select(Interaction))
        assert interaction is not None
        assert interaction.ts == datetime(2026, 1, 1, 11, 0, tzinfo=UTC)
        assert interaction.ts.utcoffset() == timedelta(0)
        assert isinstance(interaction.id, int)


async def test_naive_datetimes_are_refused(database: Database) -> None:
    async with database.sessions() as session:
        tenant = _tenant()
        tenant.deleted_at = datetime(2026, 1, 1)
        session.add(tenant)
        with pytest.raises(StatementError, match="naive datetime"):
            await session.flush()


async def test_json_columns_round_trip(database: Database) -> None:
    attributes = {"brand": "Zeta", "tags": ["a", "b"], "specs": {"ram_gb": 8}}
    async with database.sessions() as session, session.begin():
        tenant = _tenant()
        session.add(tenant)
        await session.flush()
        session.add(Item(tenant_id=tenant.id, item_id="p1", price=9.99, attributes=attributes))
    async with database.sessions() as session:
        item = await session.scalar(select(Item))
        assert item is not None and item.attributes == attributes and item.price == 9.99


async def test_unique_and_foreign_key_constraints(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        tenant = _tenant()
        session.add(tenant)
        await session.flush()
        session.add(Upload(tenant_id=tenant.id, kind="items", client_upload_id="u-1"))
        session.add(Upload(tenant_id=tenant.id, kind="items", client_upload_id=None))
        session.add(Upload(tenant_id=tenant.id, kind="items", client_upload_id=None))
    async with database.sessions() as session:
        session.add(Upload(tenant_id=tenant.id, kind="items", client_upload_id="u-1"))
        with pytest.raises(IntegrityError):
            await session.flush()
    async with database.sessions() as session:
        session.add(_tenant())  # duplicate slug
        with pytest.raises(IntegrityError):
            await session.flush()
    async with database.sessions() as session:  # foreign keys are enforced on SQLite too
        session.add(Item(tenant_id="no-such-tenant", item_id="p1"))
        with pytest.raises(IntegrityError):
            await session.flush()


async def test_sequence_columns_increase(database: Database) -> None:
    async with database.sessions() as session, session.begin():
        for n in range(3):
            session.add(
                AuditEvent(actor="admin", action=f"a{n}", outcome="ok", prev_hash="0", hash="1")
            )
    async with database.sessions() as session:
        seqs = list(await session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))
        assert len(seqs) == 3 and seqs == sorted(set(seqs))
