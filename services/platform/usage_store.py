"""The ``usage_hourly`` table: the usage flush writes it, GetUsage reads it.

Every process flushes its :class:`~services.runtime.usage.UsageRecorder` here every few
seconds with one additive upsert per chunk, so replicas and one-service-per-container
deployments add to the same rows. A failed flush gives the counts back to the recorder
and tries again next time: a database outage delays the figures, it does not lose them
(unless the process dies meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.runtime.usage import LATENCY_BOUNDS_MS, UsageKey, UsageRecorder, UsageTally
from services.storage.db import dialect_insert
from services.storage.models import UsageHour

__all__ = [
    "MethodTotals",
    "UsageTotals",
    "read_usage",
    "run_usage_flush",
    "write_usage",
]

logger = logging.getLogger(__name__)

_BUCKET_COLUMNS = tuple(f"le_{bound}ms" for bound in LATENCY_BOUNDS_MS)
_ADDITIVE = (
    "calls",
    "client_errors",
    "server_errors",
    "cache_hits",
    "latency_ms_total",
    *_BUCKET_COLUMNS,
)
#: Rows per INSERT: 15 values each stays well under SQLite's 32,766 bound parameters.
_CHUNK = 1_000

RECOMMEND_SERVICE = "embrec.retrieval.v1.RetrievalService"
RECOMMEND_METHOD = "Recommend"


def _row(key: UsageKey, tally: UsageTally) -> dict[str, object]:
    # Stored cumulatively ("at or under the bound") so a percentile is one comparison.
    cumulative: list[int] = []
    running = 0
    for count in tally.buckets[: len(LATENCY_BOUNDS_MS)]:
        running += count
        cumulative.append(running)
    return {
        "tenant_id": key.tenant_id,
        "hour": key.hour,
        "service": key.service,
        "method": key.method,
        "calls": tally.calls,
        "client_errors": tally.client_errors,
        "server_errors": tally.server_errors,
        "cache_hits": tally.cache_hits,
        "latency_ms_total": tally.latency_ms_total,
        **dict(zip(_BUCKET_COLUMNS, cumulative, strict=True)),
    }


async def write_usage(
    sessions: async_sessionmaker[AsyncSession], tallies: dict[UsageKey, UsageTally]
) -> None:
    """Add ``tallies`` to the stored rows, in one transaction."""
    rows = [_row(key, tally) for key, tally in tallies.items()]
    if not rows:
        return
    async with sessions.begin() as session:
        for start in range(0, len(rows), _CHUNK):
            insert = dialect_insert(session, UsageHour)
            table = UsageHour.__table__
            statement = insert.values(rows[start : start + _CHUNK]).on_conflict_do_update(
                index_elements=["tenant_id", "hour", "service", "method"],
                set_={name: table.c[name] + insert.excluded[name] for name in _ADDITIVE},
            )
            await session.execute(statement)


async def flush_once(recorder: UsageRecorder, sessions: async_sessionmaker[AsyncSession]) -> bool:
    """Write what the recorder counted; on failure give it back. True when written."""
    tallies = recorder.drain()
    if not tallies:
        return True
    try:
        await write_usage(sessions, tallies)
    except Exception as exc:  # the database is down or busy: keep the counts, retry later
        recorder.restore(tallies)
        logger.warning("usage flush failed, %d keys kept for the next one: %s", len(tallies), exc)
        return False
    return True


async def run_usage_flush(
    recorder: UsageRecorder,
    sessions: async_sessionmaker[AsyncSession],
    interval_seconds: float,
    stop: asyncio.Event,
) -> None:
    """Flush every ``interval_seconds`` until ``stop``; the runtime's stop hook flushes last."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)
        if not stop.is_set():
            await flush_once(recorder, sessions)


# --------------------------------------------------------------------------- reading


@dataclass
class UsageTotals:
    """Sums over a set of rows (a bucket of the series, a method, the whole range)."""

    calls: int = 0
    client_errors: int = 0
    server_errors: int = 0
    recommendations: int = 0
    cache_hits: int = 0
    latency_ms_total: float = 0.0

    def add(self, other: UsageTotals) -> None:
        self.calls += other.calls
        self.client_errors += other.client_errors
        self.server_errors += other.server_errors
        self.recommendations += other.recommendations
        self.cache_hits += other.cache_hits
        self.latency_ms_total += other.latency_ms_total


@dataclass
class MethodTotals:
    service: str
    method: str
    totals: UsageTotals
    #: Calls at or under each bound of LATENCY_BOUNDS_MS (cumulative).
    at_or_under: list[int] = field(default_factory=list)


def _sums() -> tuple[Any, ...]:
    is_recommend = (UsageHour.service == RECOMMEND_SERVICE) & (UsageHour.method == RECOMMEND_METHOD)
    answered = UsageHour.calls - UsageHour.client_errors - UsageHour.server_errors
    return (
        func.sum(UsageHour.calls),
        func.sum(UsageHour.client_errors),
        func.sum(UsageHour.server_errors),
        func.sum(case((is_recommend, answered), else_=0)),
        func.sum(case((is_recommend, UsageHour.cache_hits), else_=0)),
        func.sum(UsageHour.latency_ms_total),
    )


def _totals(values: Sequence[object]) -> UsageTotals:
    calls, client, server, recs, hits, latency = values
    return UsageTotals(
        calls=int(calls or 0),  # type: ignore[call-overload]
        client_errors=int(client or 0),  # type: ignore[call-overload]
        server_errors=int(server or 0),  # type: ignore[call-overload]
        recommendations=int(recs or 0),  # type: ignore[call-overload]
        cache_hits=int(hits or 0),  # type: ignore[call-overload]
        latency_ms_total=float(latency or 0.0),  # type: ignore[arg-type]
    )


def _scoped(statement: Select[Any], tenant_id: str | None, start: int, end: int) -> Select[Any]:
    statement = statement.where(UsageHour.hour >= start, UsageHour.hour < end)
    if tenant_id is not None:
        statement = statement.where(UsageHour.tenant_id == tenant_id)
    return statement


async def read_usage(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant_id: str | None,
    start_hour: int,
    end_hour: int,
) -> tuple[dict[int, UsageTotals], list[MethodTotals]]:
    """Per-hour totals and per-method totals for ``[start_hour, end_hour)``.

    ``tenant_id=None`` covers every tenant and the calls that named none.
    """
    by_hour = _scoped(
        select(UsageHour.hour, *_sums()).group_by(UsageHour.hour),
        tenant_id,
        start_hour,
        end_hour,
    )
    by_method = _scoped(
        select(
            UsageHour.service,
            UsageHour.method,
            *_sums(),
            *(func.sum(UsageHour.__table__.c[name]) for name in _BUCKET_COLUMNS),
        ).group_by(UsageHour.service, UsageHour.method),
        tenant_id,
        start_hour,
        end_hour,
    )
    async with sessions() as session:
        hour_rows: list[Any] = list((await session.execute(by_hour)).all())
        method_rows: list[Any] = list((await session.execute(by_method)).all())
    hours = {int(row[0]): _totals(row[1:]) for row in hour_rows}
    methods = [
        MethodTotals(
            service=row[0],
            method=row[1],
            totals=_totals(row[2:8]),
            at_or_under=[int(v or 0) for v in row[8:]],
        )
        for row in method_rows
    ]
    return hours, methods
