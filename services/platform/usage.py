"""GetUsage: who may see which usage, over which hours, and the answer's shape."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from embrec.platform.v1 import platform_service_pb2 as pb
from services.errors import FieldViolation, InvalidArgument
from services.identity.principal import Authenticator
from services.platform.usage_store import MethodTotals, UsageTotals, read_usage
from services.runtime.usage import LATENCY_BOUNDS_MS
from services.time_ranges import check_time_range

__all__ = ["UsageReport", "percentile_bound"]

_HOUR = 3600
_DEFAULT_HOURS = 24
#: Ranges up to this many hours default to hourly buckets; longer ones to days.
_HOURLY_DEFAULT_LIMIT = 72
#: Hourly series beyond this are refused: 744 points is already more than a chart shows.
_HOURLY_MAX = 31 * 24


def percentile_bound(at_or_under: Sequence[int], calls: int, q: float) -> tuple[float, bool]:
    """The latency bound holding the ``q`` quantile, and whether it lies above the last."""
    if calls <= 0:
        return 0.0, False
    rank = max(1, math.ceil(q * calls))
    for bound, count in zip(LATENCY_BOUNDS_MS, at_or_under, strict=False):
        if count >= rank:
            return float(bound), False
    return float(LATENCY_BOUNDS_MS[-1]), True


def _counts(totals: UsageTotals) -> pb.UsageCounts:
    calls = totals.calls
    return pb.UsageCounts(
        api_calls=calls,
        client_errors=totals.client_errors,
        server_errors=totals.server_errors,
        error_rate=totals.server_errors / calls if calls else 0.0,
        recommendations=totals.recommendations,
        cache_hits=totals.cache_hits,
        cache_hit_rate=(
            totals.cache_hits / totals.recommendations if totals.recommendations else 0.0
        ),
        mean_latency_ms=totals.latency_ms_total / calls if calls else 0.0,
    )


def _method(found: MethodTotals) -> pb.MethodUsage:
    calls = found.totals.calls
    p50, _ = percentile_bound(found.at_or_under, calls, 0.50)
    p95, _ = percentile_bound(found.at_or_under, calls, 0.95)
    p99, over = percentile_bound(found.at_or_under, calls, 0.99)
    return pb.MethodUsage(
        service=found.service,
        method=found.method,
        counts=_counts(found.totals),
        p50_latency_ms=p50,
        p95_latency_ms=p95,
        p99_latency_ms=p99,
        latency_over_last_bound=over,
    )


def _hours(request: pb.GetUsageRequest) -> tuple[int, int]:
    """The request's range as whole UTC hours ``[start, end)``, validated."""
    time_range = request.time_range
    has_end = request.HasField("time_range") and time_range.HasField("end_time")
    has_start = request.HasField("time_range") and time_range.HasField("start_time")
    end_seconds = time_range.end_time.ToSeconds() if has_end else time.time()
    end = math.ceil(end_seconds / _HOUR)
    start = (
        math.floor(time_range.start_time.ToSeconds() / _HOUR) if has_start else end - _DEFAULT_HOURS
    )
    check_time_range(_at_hour(start), _at_hour(end))
    return start, max(end, start + 1)


def _granularity(request: pb.GetUsageRequest, hours: int) -> pb.UsageGranularity:
    wanted = request.granularity
    if wanted == pb.USAGE_GRANULARITY_UNSPECIFIED:
        return (
            pb.USAGE_GRANULARITY_HOUR
            if hours <= _HOURLY_DEFAULT_LIMIT
            else pb.USAGE_GRANULARITY_DAY
        )
    if wanted == pb.USAGE_GRANULARITY_HOUR and hours > _HOURLY_MAX:
        raise InvalidArgument(
            "Hourly usage covers at most 31 days; ask for daily buckets or a shorter range.",
            violations=[FieldViolation("granularity", "HOUR allows at most 31 days")],
        )
    if wanted not in (pb.USAGE_GRANULARITY_HOUR, pb.USAGE_GRANULARITY_DAY):
        raise InvalidArgument(
            "granularity must be HOUR or DAY.",
            violations=[FieldViolation("granularity", "unknown value")],
        )
    return wanted


def _at_hour(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * _HOUR, UTC)


def _timestamp_hours(message: Any, hour: int) -> None:
    message.FromDatetime(_at_hour(hour))


class UsageReport:
    """The GetUsage method, given the process's authenticator and database."""

    def __init__(
        self, authenticator: Authenticator, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        self._auth = authenticator
        self._sessions = sessions

    async def get_usage(
        self, request: pb.GetUsageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Usage:
        principal = await self._auth.require(context, scope="analytics:read", allow_suspended=True)
        tenant_id: str | None
        if principal.is_platform_admin and not request.tenant_id.strip():
            tenant_id = None
        else:
            tenant_id = (await self._auth.resolve_tenant(principal, request.tenant_id)).id
        start, end = _hours(request)
        granularity = _granularity(request, end - start)
        by_hour, methods = await read_usage(
            self._sessions, tenant_id=tenant_id, start_hour=start, end_hour=end
        )

        width = 1 if granularity == pb.USAGE_GRANULARITY_HOUR else 24
        first, last = start // width, (end - 1) // width
        buckets = {index: UsageTotals() for index in range(first, last + 1)}
        total = UsageTotals()
        for hour, totals in by_hour.items():
            buckets[hour // width].add(totals)
            total.add(totals)

        usage = pb.Usage(
            tenant_id=tenant_id or "",
            granularity=granularity,
            totals=_counts(total),
            methods=[
                _method(m)
                for m in sorted(methods, key=lambda m: (-m.totals.calls, m.service, m.method))
            ],
        )
        _timestamp_hours(usage.time_range.start_time, start)
        _timestamp_hours(usage.time_range.end_time, end)
        for index, totals in buckets.items():
            bucket = usage.series.add(counts=_counts(totals))
            _timestamp_hours(bucket.start_time, index * width)
        return usage
