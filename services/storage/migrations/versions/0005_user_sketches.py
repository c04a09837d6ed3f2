"""HyperLogLog sketches of active users per tenant and UTC hour.

Exact distinct active users over a long range read one ``analytics_user_daily`` row
per user and day (1.6 s for a year of 1M synthetic interactions). This table holds,
per tenant and UTC hour, a 4,096-register HyperLogLog sketch of the users active in
that hour, which GetAnalytics merges for large ranges (relative standard error 1.6 %).
The writers maintain it in the transaction that writes the raw rows.

The upgrade backfills it from ``analytics_user_daily`` (each user counts in every hour
of its mask), one UTC day of one tenant at a time. The hashing and the stored form are
written out here rather than imported from ``services/ingestion/sketches.py`` so that
this revision keeps doing what it did; they must stay equal to it (a test compares the
backfill with the application's own sketches).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence
from hashlib import blake2b
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REGISTERS = 4096
_TAIL = 52


def upgrade() -> None:
    op.create_table(
        "analytics_user_hourly_hll",
        sa.Column("tenant_id", sa.String(36), nullable=False),
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("registers", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_analytics_user_hourly_hll_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "hour", name="pk_analytics_user_hourly_hll"),
    )
    _backfill(op.get_bind())


def downgrade() -> None:
    op.drop_table("analytics_user_hourly_hll")


def _backfill(connection: sa.Connection) -> None:
    days = connection.execute(
        sa.text("SELECT DISTINCT tenant_id, day FROM analytics_user_daily ORDER BY 1, 2")
    ).all()
    insert = sa.text(
        "INSERT INTO analytics_user_hourly_hll (tenant_id, hour, registers) "
        "VALUES (:tenant_id, :hour, :registers)"
    )
    for tenant_id, day in days:
        rows = connection.execute(
            sa.text(
                "SELECT user_id, hours FROM analytics_user_daily "
                "WHERE tenant_id = :tenant_id AND day = :day"
            ),
            {"tenant_id": tenant_id, "day": day},
        ).all()
        users = [str(r[0]) for r in rows]
        masks = np.array([int(r[1]) for r in rows], dtype=np.int64)
        digest = b"".join(blake2b(u.encode(), digest_size=8).digest() for u in users)
        hashes = np.frombuffer(digest, dtype=">u8").astype(np.uint64)
        index = (hashes >> np.uint64(_TAIL)).astype(np.intp)
        _, bits = np.frexp((hashes & np.uint64((1 << _TAIL) - 1)).astype(np.float64))
        rank = (_TAIL + 1 - bits).astype(np.uint8)
        registers = np.zeros((24, _REGISTERS), dtype=np.uint8)
        for hour in range(24):
            active = (masks >> hour) & 1 == 1
            np.maximum.at(registers[hour], index[active], rank[active])
        values = [
            {"tenant_id": tenant_id, "hour": day * 24 + hour, "registers": _encode(registers[hour])}
            for hour in range(24)
            if registers[hour].any()
        ]
        if values:
            connection.execute(insert, values)


def _encode(registers: np.ndarray[Any, np.dtype[np.uint8]]) -> bytes:
    used = np.flatnonzero(registers)
    if len(used) >= _REGISTERS // 4:
        return registers.tobytes()
    pairs = (used.astype(np.uint32) << np.uint32(8)) | registers[used].astype(np.uint32)
    return pairs.astype("<u4").tobytes()
