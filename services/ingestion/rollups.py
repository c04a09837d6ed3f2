"""Analytics rollups, maintained in the transaction that writes the raw rows.

Every writer of ``interactions`` (the import, the TrackEvents consumer, the benchmark
loader) and of ``served_recommendations`` (the RecommendationServed consumer) calls
:func:`record_interactions` / :func:`record_served` with the rows it has just written.
They aggregate the rows in memory and add them with one upsert per table
(``ON CONFLICT DO UPDATE SET n = n + excluded.n``: one ``INSERT … SELECT FROM unnest``
of column arrays on PostgreSQL, 500-row statements on SQLite; never one per row),
so the counters commit or roll back with the rows they count: a rolled-back import or
a redelivered event (the consumers are idempotent per event id) never counts twice.

Buckets are integers since the Unix epoch (UTC): ``hour`` for the counters, ``day``
for items. See ``docs/ingestion.md`` for how GetAnalytics reads them.

Active users go into a HyperLogLog sketch per UTC hour (``sketches.py``), which is a
read-modify-write rather than an upsert: see :func:`_record_sketches` for how
concurrent writers keep each other's users. (Exact counts read the raw rows, and only
for ranges small enough; a per-user-and-day table cost a 1M-row import a fifth of its
time, migration 0009.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.ingestion import sketches
from services.ingestion.parsing import gc_paused
from services.storage.models import (
    AnalyticsHour,
    AnalyticsItemDay,
    AnalyticsUserHourSketch,
    Item,
)

__all__ = ["RawInteraction", "record_interactions", "record_served", "statement_sizes"]

#: Rows start with user_id, item_id, type, ts (aware UTC), value, recommendation_id
#: ('' or None: not attributed), as :class:`~services.ingestion.parsing.CleanInteraction`
#: does; further fields are ignored.
RawInteraction = tuple[Any, ...]

_HOURLY = cast(Table, AnalyticsHour.__table__)
_ITEMS = cast(Table, AnalyticsItemDay.__table__)
_SKETCHES = cast(Table, AnalyticsUserHourSketch.__table__)
_PRICE_LOOKUP = 1000
_SQLITE_ROWS = 500
#: PostgreSQL array type of each rollup column, for ``unnest``.
_PG_ARRAY = {
    "tenant_id": "TEXT[]",
    "item_id": "TEXT[]",
    "user_id": "TEXT[]",
    "revenue": "FLOAT8[]",
    "registers": "BYTEA[]",
    **{
        c: "INTEGER[]"
        for c in (
            "hour",
            "day",
            "interactions",
            "clicks",
            "conversions",
            "served",
            "impressions",
            "hours",
        )
    },
}


def _dialect(db: AsyncSession | AsyncConnection) -> str:
    if isinstance(db, AsyncSession):
        return str(db.get_bind().dialect.name)
    return str(db.dialect.name)


async def _upsert(
    db: AsyncSession | AsyncConnection,
    table: Table,
    keys: Sequence[str],
    columns: dict[str, list[Any]],
    merge: dict[str, str],
) -> None:
    """One upsert of the batch, given as one list per column (all of one length);
    ``merge`` maps a column to ``add``, ``or`` or ``set``."""
    names = list(columns)
    if not names or not columns[names[0]]:
        return
    updates = ", ".join(
        f"{c} = excluded.{c}"
        if how == "set"
        else f"{c} = {table.name}.{c} {'+' if how == 'add' else '|'} excluded.{c}"
        for c, how in merge.items()
    )
    tail = f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    if _dialect(db) == "sqlite":
        await _sqlite_upsert(db, table, names, list(zip(*columns.values(), strict=True)), tail)
        return
    # PostgreSQL: the whole batch as one array per column, unnested server-side: one
    # statement and one round trip (an executemany of 250,000 rows took 69 s of a 98 s
    # benchmark load). Table and column names are constants of this module.
    arrays = ", ".join(f"CAST(:c{n} AS {_PG_ARRAY[c]})" for n, c in enumerate(names))
    statement = text(
        f"INSERT INTO {table.name} ({', '.join(names)}) "  # noqa: S608
        f"SELECT * FROM unnest({arrays}){tail}"
    )
    await db.execute(statement, {f"c{n}": columns[c] for n, c in enumerate(names)})


def statement_sizes(count: int, most: int) -> Iterator[tuple[int, int]]:
    """``(start, size)`` pieces of ``count`` rows for multi-row statements: ``most`` rows
    at a time, then the rest in powers of two.

    Each distinct row count is a distinct SQL text, which the sqlite3 module keeps
    prepared in its per-connection cache (128 statements): with a tail of any size,
    a long import filled it with a few hundred kB of program per statement and the
    server's peak memory grew with the file. Powers of two bound the shapes to ~10.
    """
    start = 0
    while count - start >= most:
        yield start, most
        start += most
    size = 1 << max(count - start, 1).bit_length()
    while start < count:
        size >>= 1
        if count - start >= size:
            yield start, size
            start += size


async def _sqlite_upsert(
    db: AsyncSession | AsyncConnection,
    table: Table,
    columns: list[str],
    rows: list[tuple[Any, ...]],
    tail: str,
) -> None:
    """Multi-row ``INSERT … VALUES (…),(…) ON CONFLICT`` of _SQLITE_ROWS rows at a time.

    As for the interactions themselves (``imports._insert_interactions``): one statement
    step per 500 rows instead of one per row, measured 1.6x faster on SQLite.
    """
    # Table and column names are constants of this module; every value is a parameter.
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "  # noqa: S608
    one = "(" + ", ".join(["?"] * len(columns)) + ")"
    connection = await db.connection() if isinstance(db, AsyncSession) else db
    for start, size in statement_sizes(len(rows), _SQLITE_ROWS):
        part = rows[start : start + size]
        values = tuple(chain.from_iterable(part))
        await connection.exec_driver_sql(head + ", ".join([one] * len(part)) + tail, values)


async def _prices(
    db: AsyncSession | AsyncConnection, tenant_id: str, item_ids: set[str]
) -> dict[str, float]:
    ordered = sorted(item_ids)
    prices: dict[str, float] = {}
    for start in range(0, len(ordered), _PRICE_LOOKUP):
        result = await db.execute(
            select(Item.item_id, Item.price).where(
                Item.tenant_id == tenant_id,
                Item.item_id.in_(ordered[start : start + _PRICE_LOOKUP]),
                Item.price.is_not(None),
            )
        )
        prices.update((str(item), float(price or 0.0)) for item, price in result)
    return prices


def _codes(values: list[str]) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Each value's position among the distinct values (in order of appearance), and
    those values. (A dict, not ``np.unique`` of a string array, which would drop
    trailing NUL characters.)"""
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
    )
    return codes, list(index)


async def record_interactions(
    db: AsyncSession | AsyncConnection,
    tenant_id: str,
    rows: Iterable[RawInteraction],
    *,
    micros: npt.NDArray[np.int64] | None = None,
) -> None:
    """Add interactions just written (in this transaction) to the rollups.

    Attributed purchases without a value are worth the item's price now, as GetAnalytics
    used to compute with a join at read time. ``micros``: each row's time in
    microseconds since the epoch, if the caller has it (the import does, cheaply).

    Aggregated with numpy over the whole batch (a Python loop of dict updates per row
    cost ~1.5 us a row of a bulk import): counts per hour and per (day, item) and the
    (hour, user) pairs of the sketches come from ``np.unique`` of integer keys. The attributed
    rows (a minority) are summed in Python in row order, so revenue adds up exactly as
    before.
    """
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return
    unpriced = {r[1] for r in rows if r[5] and r[4] is None and r[2] == "purchase"}
    prices = await _prices(db, tenant_id, unpriced) if unpriced else {}
    with gc_paused():  # tens of thousands of short-lived tuples per import batch
        batch = _aggregate(tenant_id, rows, micros, prices)
    await _upsert(
        db,
        _HOURLY,
        ("tenant_id", "hour"),
        batch.hourly,
        {"interactions": "add", "clicks": "add", "conversions": "add", "revenue": "add"},
    )
    await _upsert(
        db,
        _ITEMS,
        ("tenant_id", "day", "item_id"),
        batch.items,
        {"interactions": "add", "clicks": "add"},
    )
    await _record_sketches(db, tenant_id, batch.hours, batch.sketches)


@dataclass
class _Batch:
    """A batch's rollup rows, one list per column (see :func:`_aggregate`)."""

    hourly: dict[str, list[Any]]
    items: dict[str, list[Any]]
    hours: list[int]
    sketches: npt.NDArray[np.uint8]


def _aggregate(
    tenant_id: str,
    rows: list[RawInteraction],
    micros: npt.NDArray[np.int64] | None,
    prices: dict[str, float],
) -> _Batch:
    count = len(rows)
    if micros is None:
        # Exact: the float timestamp is within 0.25 us of the true time for any date
        # this side of year 2200, so rounding its microseconds gives the true count.
        seconds = np.fromiter((r[3].timestamp() for r in rows), dtype=np.float64, count=count)
        micros = np.round(seconds * 1e6).astype(np.int64)
    hour = micros // 3_600_000_000
    day = hour // 24
    hours, at_hour, per_hour = np.unique(hour, return_inverse=True, return_counts=True)
    at_hour = at_hour.reshape(-1)
    clicks = [0] * len(hours)
    conversions = [0] * len(hours)
    revenue = [0.0] * len(hours)
    clicked = np.zeros(count, dtype=np.int64)
    for n, r in enumerate(rows):
        if not r[5]:
            continue
        _, item_id, kind, _, value = r[:5]
        h = int(at_hour[n])
        if kind == "click":
            clicks[h] += 1
            clicked[n] = 1
        elif kind == "purchase":
            conversions[h] += 1
            revenue[h] += value if value is not None else prices.get(item_id, 0.0)
    hour_list = hours.tolist()
    hourly = {
        "tenant_id": [tenant_id] * len(hour_list),
        "hour": hour_list,
        "interactions": per_hour.tolist(),
        "clicks": clicks,
        "conversions": conversions,
        "revenue": revenue,
        "served": [0] * len(hour_list),
        "impressions": [0] * len(hour_list),
    }
    item_codes, item_names = _codes([r[1] for r in rows])
    keys, at_key, per_key = np.unique(
        day * len(item_names) + item_codes, return_inverse=True, return_counts=True
    )
    item_clicks = np.zeros(len(keys), dtype=np.int64)
    np.add.at(item_clicks, at_key.reshape(-1), clicked)
    items = {
        "tenant_id": [tenant_id] * len(keys),
        "day": (keys // len(item_names)).tolist(),
        "item_id": [item_names[c] for c in (keys % len(item_names)).tolist()],
        "interactions": per_key.tolist(),
        "clicks": item_clicks.tolist(),
        "impressions": [0] * len(keys),
    }
    user_codes, user_names = _codes([r[0] for r in rows])
    users = len(user_names)
    # Distinct (hour, user) pairs: the users to merge into each hour's sketch.
    pairs = np.unique(at_hour * users + user_codes)
    merged = sketches.sketches_by_group(
        sketches.hash_users(user_names)[pairs % users], (pairs // users).astype(np.intp), len(hours)
    )
    return _Batch(hourly, items, hour_list, merged)


async def _record_sketches(
    db: AsyncSession | AsyncConnection,
    tenant_id: str,
    hours: list[int],
    merged: npt.NDArray[np.uint8],
) -> None:
    """Merge the batch's sketches (``merged[n]``: the users of ``hours[n]``, ascending)
    into the stored per-hour sketches.

    A sketch is rewritten whole, so two transactions merging into the same hour must
    not both read the old value. On PostgreSQL every hour of the batch first gets a row
    (``ON CONFLICT DO NOTHING``), then the rows are read ``FOR UPDATE``, in ascending
    hour order in both statements so that concurrent writers queue instead of
    deadlocking; a second writer waits at the lock and then reads the first one's
    committed sketch. (Merge-on-read of several rows per hour would avoid the wait,
    but the TrackEvents consumer writes a batch every few hundred milliseconds, so
    rows would pile up and need a compaction job; writers of the same tenant and hour
    already serialise on the ``analytics_hourly`` row they both update.) SQLite has one
    writer at a time, and this transaction already holds the write lock.
    """
    if not hours:
        return
    postgres = _dialect(db) != "sqlite"
    # PostgreSQL: three statements per batch, whatever its size; SQLite: a SELECT and an
    # upsert per 500 hours.
    if postgres:
        await db.execute(
            text(
                f"INSERT INTO {_SKETCHES.name} (tenant_id, hour, registers) "  # noqa: S608
                "SELECT :tenant_id, h, CAST('' AS BYTEA) "
                "FROM unnest(CAST(:hours AS INTEGER[])) AS h "
                "ON CONFLICT DO NOTHING"
            ),
            {"tenant_id": tenant_id, "hours": hours},
        )
        stored = await db.execute(
            text(
                f"SELECT hour, registers FROM {_SKETCHES.name} "  # noqa: S608
                "WHERE tenant_id = :tenant_id AND hour = ANY(CAST(:hours AS INTEGER[])) "
                "ORDER BY hour FOR UPDATE"
            ),
            {"tenant_id": tenant_id, "hours": hours},
        )
        found = [(int(h), bytes(r)) for h, r in stored]
    else:
        found = []
        for start in range(0, len(hours), _SQLITE_ROWS):
            stored = await db.execute(
                select(AnalyticsUserHourSketch.hour, AnalyticsUserHourSketch.registers).where(
                    AnalyticsUserHourSketch.tenant_id == tenant_id,
                    AnalyticsUserHourSketch.hour.in_(hours[start : start + _SQLITE_ROWS]),
                )
            )
            found.extend((int(h), bytes(r)) for h, r in stored)
    index = {hour: n for n, hour in enumerate(hours)}
    unchanged: set[int] = set()
    if found:
        rows_of = np.array([index[h] for h, _ in found], dtype=np.intp)
        before = sketches.decode_many([r for _, r in found])
        after = np.maximum(merged[rows_of], before)
        merged[rows_of] = after
        # Users seen earlier in the hour often change no register: skip those rewrites.
        same = (after == before).all(axis=1)
        unchanged = {found[n][0] for n in np.flatnonzero(same).tolist()}
    write = [n for n, hour in enumerate(hours) if hour not in unchanged]
    blobs = sketches.encode_many(merged[write])
    await _upsert(
        db,
        _SKETCHES,
        ("tenant_id", "hour"),
        {
            "tenant_id": [tenant_id] * len(write),
            "hour": [hours[n] for n in write],
            "registers": blobs,
        },
        {"registers": "set"},
    )


async def record_served(
    db: AsyncSession | AsyncConnection,
    tenant_id: str,
    served: Sequence[tuple[datetime, Sequence[str]]],
) -> None:
    """Add served recommendations (just inserted, no duplicates) to the rollups:
    ``(served_at, item_ids)`` per recommendation, aggregated to one row per key."""
    hours: dict[int, list[int]] = {}
    shown: dict[tuple[int, str], int] = {}
    for served_at, item_ids in served:
        hour = int(served_at.timestamp() // 3600)
        counts = hours.setdefault(hour, [0, 0])
        counts[0] += 1
        counts[1] += len(item_ids)
        for item_id in item_ids:
            shown[hour // 24, item_id] = shown.get((hour // 24, item_id), 0) + 1
    await _upsert(
        db,
        _HOURLY,
        ("tenant_id", "hour"),
        {
            "tenant_id": [tenant_id] * len(hours),
            "hour": list(hours),
            "interactions": [0] * len(hours),
            "clicks": [0] * len(hours),
            "conversions": [0] * len(hours),
            "revenue": [0.0] * len(hours),
            "served": [c[0] for c in hours.values()],
            "impressions": [c[1] for c in hours.values()],
        },
        {"served": "add", "impressions": "add"},
    )
    await _upsert(
        db,
        _ITEMS,
        ("tenant_id", "day", "item_id"),
        {
            "tenant_id": [tenant_id] * len(shown),
            "day": [day for day, _ in shown],
            "item_id": [item_id for _, item_id in shown],
            "interactions": [0] * len(shown),
            "clicks": [0] * len(shown),
            "impressions": list(shown.values()),
        },
        {"impressions": "add"},
    )
