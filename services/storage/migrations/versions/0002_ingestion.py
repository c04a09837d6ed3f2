"""Ingestion: upload options and counters, served recommendations for analytics.

``uploads.details`` holds what an Upload reports beyond the first revision's columns
(mode, format, file name, dry run, creator, unknown-item policy, skipped rows, error
count), so new report fields need no further migration. ``served_recommendations`` is
filled by the ingestion consumer of RecommendationServed events; analytics joins it
with interactions on recommendation_id (CTR, conversion, attributed revenue).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(
            sa.Column("details", _json(), nullable=False, server_default=sa.text("'{}'"))
        )
    op.create_table(
        "served_recommendations",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("recommendation_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=True),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("item_ids", _json(), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("surface", sa.String(32), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_served_recommendations_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "recommendation_id", name="pk_served_recommendations"),
    )
    op.create_index(
        "ix_served_recommendations_tenant_id_served_at",
        "served_recommendations",
        ["tenant_id", "served_at"],
    )


def downgrade() -> None:
    op.drop_index(
        "ix_served_recommendations_tenant_id_served_at", table_name="served_recommendations"
    )
    op.drop_table("served_recommendations")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("details")
