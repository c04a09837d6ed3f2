"""Interactions: index ``(tenant_id, recommendation_id)`` only where it is set.

Only attributed interactions (clicks and purchases on a served recommendation, a
minority) are ever looked up by recommendation id (``recommendation_id = …``, which
implies ``IS NOT NULL``, so both databases use a partial index for it). Unattributed
rows — nearly every row of a bulk import — no longer get an index entry, which makes
each insert cheaper (about 1 µs of ~9 µs a row on SQLite for a 1M-row import,
measured; see docs/ingestion.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "ix_interactions_tenant_id_recommendation_id"
_ATTRIBUTED = sa.text("recommendation_id IS NOT NULL")


def upgrade() -> None:
    op.drop_index(_NAME, table_name="interactions")
    op.create_index(
        _NAME,
        "interactions",
        ["tenant_id", "recommendation_id"],
        sqlite_where=_ATTRIBUTED,
        postgresql_where=_ATTRIBUTED,
    )


def downgrade() -> None:
    op.drop_index(_NAME, table_name="interactions")
    op.create_index(_NAME, "interactions", ["tenant_id", "recommendation_id"])
