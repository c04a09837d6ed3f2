"""Analytics rollups: hourly counters, per-day item counts, per-day active users.

GetAnalytics scanned the raw ``interactions`` and ``served_recommendations`` rows of
the range on every request (46 s for a year of 2M rows on PostgreSQL). These tables
hold the same numbers pre-aggregated; the writers of the raw rows keep them current in
the same transaction. ``hour`` and ``day`` count hours and days since the Unix epoch
(UTC), so bucket arithmetic is plain integer arithmetic on both databases.

The upgrade backfills them from the rows already stored, with one
``INSERT … SELECT … GROUP BY`` per table. The SQL is written out here rather than
imported from the application so that this revision keeps doing what it did when the
application changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=f"fk_{table}_tenant_id_tenants", ondelete="CASCADE"
    )


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "analytics_hourly",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        _count("interactions"),
        _count("clicks"),
        _count("conversions"),
        sa.Column("revenue", sa.Float(precision=53), nullable=False),
        _count("served"),
        _count("impressions"),
        _tenant_fk("analytics_hourly"),
        sa.PrimaryKeyConstraint("tenant_id", "hour", name="pk_analytics_hourly"),
    )
    op.create_table(
        "analytics_item_daily",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("item_id", sa.String(256), nullable=False),
        _count("interactions"),
        _count("clicks"),
        _count("impressions"),
        _tenant_fk("analytics_item_daily"),
        sa.PrimaryKeyConstraint("tenant_id", "day", "item_id", name="pk_analytics_item_daily"),
    )
    op.create_table(
        "analytics_user_daily",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        _count("hours"),
        _tenant_fk("analytics_user_daily"),
        sa.PrimaryKeyConstraint("tenant_id", "day", "user_id", name="pk_analytics_user_daily"),
    )
    for statement in _backfill(op.get_bind().dialect.name):
        op.execute(sa.text(statement))


def downgrade() -> None:
    op.drop_table("analytics_user_daily")
    op.drop_table("analytics_item_daily")
    op.drop_table("analytics_hourly")


def _backfill(dialect: str) -> list[str]:
    """The backfill statements; they differ only in epoch, JSON-array and bit-OR spelling."""
    if dialect == "postgresql":
        i_hour = "CAST(FLOOR(EXTRACT(EPOCH FROM i.ts) / 3600) AS INTEGER)"
        s_hour = "CAST(FLOOR(EXTRACT(EPOCH FROM s.served_at) / 3600) AS INTEGER)"
        shown = (
            "FROM served_recommendations s "
            "CROSS JOIN LATERAL jsonb_array_elements_text(s.item_ids) AS e(value)"
        )
        hours = f"bit_or(1 << ({i_hour} % 24))"
    else:
        i_hour = "(CAST(strftime('%s', i.ts) AS INTEGER) / 3600)"
        s_hour = "(CAST(strftime('%s', s.served_at) AS INTEGER) / 3600)"
        shown = "FROM served_recommendations s, json_each(s.item_ids) AS e"
        # Distinct powers of two sum to their OR; SQLite has no bit_or aggregate.
        hours = f"SUM(DISTINCT 1 << ({i_hour} % 24))"
    attributed = "i.recommendation_id IS NOT NULL"
    click = f"CASE WHEN {attributed} AND i.type = 'click' THEN 1 ELSE 0 END"
    purchase = f"{attributed} AND i.type = 'purchase'"
    # Only constant SQL fragments are interpolated; the statements take no input.
    return [
        f"""
        INSERT INTO analytics_hourly
            (tenant_id, hour, interactions, clicks, conversions, revenue, served, impressions)
        SELECT tenant_id, hour, SUM(n), SUM(c), SUM(p), SUM(r), SUM(s), SUM(im) FROM (
            SELECT i.tenant_id AS tenant_id, {i_hour} AS hour, 1 AS n, {click} AS c,
                   CASE WHEN {purchase} THEN 1 ELSE 0 END AS p,
                   CASE WHEN {purchase} THEN COALESCE(i.value, it.price, 0.0) ELSE 0.0 END
                       AS r,
                   0 AS s, 0 AS im
            FROM interactions i
            LEFT JOIN items it ON it.tenant_id = i.tenant_id AND it.item_id = i.item_id
            UNION ALL
            SELECT s.tenant_id, {s_hour}, 0, 0, 0, 0.0, 1, s.item_count
            FROM served_recommendations s
        ) AS rows GROUP BY tenant_id, hour
        """,  # noqa: S608
        f"""
        INSERT INTO analytics_item_daily
            (tenant_id, day, item_id, interactions, clicks, impressions)
        SELECT tenant_id, day, item_id, SUM(n), SUM(c), SUM(im) FROM (
            SELECT i.tenant_id AS tenant_id, {i_hour} / 24 AS day, i.item_id AS item_id,
                   1 AS n, {click} AS c, 0 AS im
            FROM interactions i
            UNION ALL
            SELECT s.tenant_id, {s_hour} / 24, e.value, 0, 0, 1 {shown}
        ) AS rows GROUP BY tenant_id, day, item_id
        """,  # noqa: S608
        f"""
        INSERT INTO analytics_user_daily (tenant_id, day, user_id, hours)
        SELECT i.tenant_id, {i_hour} / 24, i.user_id, {hours}
        FROM interactions i GROUP BY i.tenant_id, {i_hour} / 24, i.user_id
        """,  # noqa: S608
    ]
