"""Training: job options, deployment and schedule metadata.

``training_jobs.details`` (auto_deploy, the failure reason code, the data snapshot a
job trained on), ``deployments.details`` (state, previous deployment, forced,
rollback, reason, activation time) and ``schedules.details`` (name, the
new-interactions trigger and its watermark) hold what the training contract reports
beyond the first revision's columns, as ``uploads.details`` does for ingestion, so
new report fields need no further migration.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("training_jobs", "deployments", "schedules")


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("details", _json(), nullable=False, server_default=sa.text("'{}'"))
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("details")
