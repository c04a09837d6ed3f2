"""Indexes for the event tables' retention: published outbox rows by publication time,
applied event ids by the time they were applied.

Nothing deleted published outbox rows, embedded event-log entries or remembered event
ids, so each table grew by a row per event forever (every Recommend emits one).
``services/events/retention.py`` now deletes what is past each table's retention, oldest
first, in small batches; these indexes let it find those rows without scanning the
table. (``event_log`` already has an index on ``time``.)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PUBLISHED = sa.text("published_at IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_outbox_published_at",
        "outbox",
        ["published_at"],
        sqlite_where=_PUBLISHED,
        postgresql_where=_PUBLISHED,
    )
    op.create_index("ix_processed_events_processed_at", "processed_events", ["processed_at"])


def downgrade() -> None:
    op.drop_index("ix_processed_events_processed_at", table_name="processed_events")
    op.drop_index("ix_outbox_published_at", table_name="outbox")
