"""Drop ``analytics_user_daily``: exact active users come from the raw rows.

The table held one row per tenant, UTC day and active user (a 24-bit hour mask), for
exact distinct active users. GetAnalytics only counts exactly when the range holds at
most 50,000 interactions (above that it merges the per-hour HyperLogLog sketches), and
that many raw rows are as cheap to read through the ``(tenant_id, ts)`` index. Keeping
the table current cost every import about as much as a second interactions index
(roughly one row per interaction on busy data): 54K → 67K interactions/s for a 1M-row
SQLite import without it (docs/ingestion.md, session 5).

The downgrade recreates the table and backfills it from ``interactions`` with the
statement of revision 0004 (written out here, so this revision keeps doing what it does
when the application changes).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("analytics_user_daily")


def downgrade() -> None:
    op.create_table(
        "analytics_user_daily",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("hours", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_analytics_user_daily_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "day", "user_id", name="pk_analytics_user_daily"),
    )
    if op.get_bind().dialect.name == "postgresql":
        hour = "CAST(FLOOR(EXTRACT(EPOCH FROM ts) / 3600) AS INTEGER)"
        hours = f"bit_or(1 << ({hour} % 24))"
    else:
        hour = "(CAST(strftime('%s', ts) AS INTEGER) / 3600)"
        # Distinct powers of two sum to their OR; SQLite has no bit_or aggregate.
        hours = f"SUM(DISTINCT 1 << ({hour} % 24))"
    # Only constant SQL fragments are interpolated; the statement takes no input.
    op.execute(
        sa.text(
            f"""
            INSERT INTO analytics_user_daily (tenant_id, day, user_id, hours)
            SELECT tenant_id, {hour} / 24, user_id, {hours}
            FROM interactions GROUP BY tenant_id, {hour} / 24, user_id
            """  # noqa: S608
        )
    )
