"""Bulk loading of synthetic interactions, for benchmarks (``embrec bench ingest``).

Not a user path: it writes straight into ``interactions`` (COPY on PostgreSQL, multi-row
INSERTs on SQLite), skipping validation, outbox and audit, so that analytics can be
timed on tens of millions of rows without waiting for the import pipeline. It does
maintain the analytics rollups, per block, exactly as the import does.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import text

from services.ingestion.rollups import record_interactions
from services.storage.db import create_engine

__all__ = ["load_synthetic_interactions"]

_TYPES = ("view", "click", "add_to_cart", "purchase")
_TYPE_P = (0.70, 0.20, 0.06, 0.04)
_COLUMNS = ("tenant_id", "user_id", "item_id", "type", "ts", "value", "recommendation_id")
_BLOCK = 250_000
_ROLLUPS = ("analytics_hourly", "analytics_item_daily", "analytics_user_hourly_hll")


async def load_synthetic_interactions(
    url: str,
    tenant_id: str,
    rows: int,
    *,
    days: int = 365,
    users: int = 200_000,
    items: int = 20_000,
    seed: int = 11,
) -> dict[str, float]:
    """``rows`` interactions spread over the last ``days`` days, 10 % attributed to a
    recommendation (so CTR and conversion have something to count).

    Fills the analytics rollups as the import does; returns the seconds spent on them
    (``rollups``) and in total (``total``)."""
    timings = {"rollups": 0.0, "total": 0.0}
    began_all = time.perf_counter()
    rng = np.random.default_rng(seed)
    end = datetime.now(UTC).timestamp() - 60
    start = end - days * 86400
    # In time order, as events arrive (tracking) and as exports are usually sorted: the
    # table's physical order then follows time, which range queries depend on.
    times = np.sort(rng.uniform(start, end, rows))
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            postgres = connection.dialect.name == "postgresql"
            driver: Any = None
            if postgres:
                raw = await connection.get_raw_connection()
                driver = raw.driver_connection
                await connection.execute(text("SELECT 1"))  # begin before COPY
            for first in range(0, rows, _BLOCK):
                n = min(_BLOCK, rows - first)
                u = rng.integers(0, users, n)
                i = np.minimum(rng.zipf(1.3, n) - 1, items - 1)
                t = times[first : first + n]
                kinds = rng.choice(len(_TYPES), n, p=_TYPE_P)
                attributed = rng.random(n) < 0.1
                stamps = [datetime.fromtimestamp(s, UTC) for s in t.tolist()]
                records = [
                    (
                        tenant_id,
                        f"user_{a}",
                        f"item_{b}",
                        _TYPES[k],
                        s,
                        None,
                        f"rec_{first + j}" if flag else None,
                    )
                    for j, (a, b, k, s, flag) in enumerate(
                        zip(
                            u.tolist(),
                            i.tolist(),
                            kinds.tolist(),
                            stamps,
                            attributed.tolist(),
                            strict=True,
                        )
                    )
                ]
                # Rollups as the import keeps them, in the same transaction; timed
                # separately by the benchmark's caller through ``rollup_seconds``.
                began = time.perf_counter()
                await record_interactions(connection, tenant_id, [r[1:] for r in records])
                timings["rollups"] += time.perf_counter() - began
                if postgres:
                    await driver.copy_records_to_table(
                        "interactions", columns=_COLUMNS, records=records
                    )
                    continue
                # Constant column names; every value is a bound parameter.
                head = f"INSERT INTO interactions ({', '.join(_COLUMNS)}) VALUES "  # noqa: S608
                for k in range(0, n, 500):
                    part = records[k : k + 500]
                    flat = [
                        v
                        for r in part
                        for v in (*r[:4], r[4].isoformat(" ", "microseconds")[:26], *r[5:])
                    ]
                    await connection.exec_driver_sql(
                        head + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(part)), tuple(flat)
                    )
        if postgres:
            async with engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("interactions", *_ROLLUPS):
                    await connection.execute(text(f"ANALYZE {table}"))
    finally:
        await engine.dispose()
    timings["total"] = time.perf_counter() - began_all
    return timings
