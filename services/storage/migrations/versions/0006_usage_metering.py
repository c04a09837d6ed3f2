"""API usage metering: calls, errors, cache hits and a latency histogram per tenant,
UTC hour and method, written by every service process's usage flush (GetUsage reads it).

No backfill: calls made before this revision were not metered.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "usage_hourly",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("service", sa.String(200), nullable=False),
        sa.Column("method", sa.String(100), nullable=False),
        _count("calls"),
        _count("client_errors"),
        _count("server_errors"),
        _count("cache_hits"),
        sa.Column("latency_ms_total", sa.Float(), nullable=False),
        _count("le_1ms"),
        _count("le_5ms"),
        _count("le_25ms"),
        _count("le_100ms"),
        _count("le_500ms"),
        _count("le_2500ms"),
        sa.PrimaryKeyConstraint("tenant_id", "hour", "service", "method", name="pk_usage_hourly"),
    )
    op.create_index("ix_usage_hourly_hour", "usage_hourly", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_usage_hourly_hour", table_name="usage_hourly")
    op.drop_table("usage_hourly")
