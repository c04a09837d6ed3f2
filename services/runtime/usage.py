"""API usage metering: per tenant, hour and method, counted in memory, flushed in batches.

Every service process counts the calls it handles (the runtime interceptor calls
:meth:`UsageRecorder.record`) and a background task writes the counts to the shared
``usage_hourly`` table every few seconds (``services/platform/usage_store.py``), where
GetUsage reads them for the console and the REST API. Counting in memory keeps the
database off the request path; the price is that figures lag by one flush interval
and a crashed process loses its last interval (a clean stop flushes).

Counts are additive, so several processes (replicas, one service per container) add to
the same rows with ``ON CONFLICT … DO UPDATE SET calls = calls + excluded.calls``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final

import grpc

__all__ = [
    "LATENCY_BOUNDS_MS",
    "UNMETERED_METHODS",
    "UNMETERED_SERVICES",
    "UsageKey",
    "UsageRecorder",
    "UsageTally",
    "is_client_error",
    "is_server_error",
]

#: Upper bounds (ms) of the latency histogram buckets; a last, open bucket lies above.
LATENCY_BOUNDS_MS: Final = (1, 5, 25, 100, 500, 2500)

#: Probes, reflection and Envoy's per-request checks are not API calls: counting them
#: would double every gateway call and drown the figures in health checks.
UNMETERED_SERVICES: Final = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
        "envoy.service.auth.v3.Authorization",
        "envoy.service.ratelimit.v3.RateLimitService",
    }
)
#: ``GET /health`` is what uptime checks and compose healthchecks poll every few seconds.
UNMETERED_METHODS: Final = frozenset({("embrec.platform.v1.PlatformService", "GetHealth")})

_SERVER_ERRORS: Final = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

#: Keys kept in memory between flushes. A database outage must not grow a process
#: without bound; past this, new keys are dropped (and counted) until a flush succeeds.
_MAX_KEYS: Final = 50_000


def is_server_error(code: grpc.StatusCode) -> bool:
    """The platform failed the call (UNIMPLEMENTED included: the platform lacks it)."""
    return code in _SERVER_ERRORS


def is_client_error(code: grpc.StatusCode) -> bool:
    """The call was refused for the caller's mistake (or cancelled by the caller)."""
    return code != grpc.StatusCode.OK and code not in _SERVER_ERRORS


@dataclass(frozen=True)
class UsageKey:
    tenant_id: str
    #: Hours since the Unix epoch (UTC), as in the analytics rollups.
    hour: int
    service: str
    method: str


@dataclass
class UsageTally:
    calls: int = 0
    client_errors: int = 0
    server_errors: int = 0
    cache_hits: int = 0
    latency_ms_total: float = 0.0
    #: Calls per latency bucket: one count per bound in LATENCY_BOUNDS_MS, then the rest.
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def add(self, other: UsageTally) -> None:
        self.calls += other.calls
        self.client_errors += other.client_errors
        self.server_errors += other.server_errors
        self.cache_hits += other.cache_hits
        self.latency_ms_total += other.latency_ms_total
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


class UsageRecorder:
    """In-memory counters since the last flush. Single event loop: no locking needed."""

    def __init__(self) -> None:
        self._tallies: dict[UsageKey, UsageTally] = {}
        #: Calls not counted because the key table was full (a long database outage).
        self.dropped = 0

    def record(
        self,
        *,
        tenant_id: str,
        service: str,
        method: str,
        code: grpc.StatusCode,
        elapsed_seconds: float,
        started_at: float,
        cache_hit: bool = False,
    ) -> None:
        """Count one finished call. ``started_at`` is its wall-clock start (epoch seconds)."""
        if service in UNMETERED_SERVICES or (service, method) in UNMETERED_METHODS:
            return
        key = UsageKey(tenant_id, int(started_at // 3600), service, method)
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= _MAX_KEYS:
                self.dropped += 1
                return
            tally = self._tallies[key] = UsageTally()
        elapsed_ms = elapsed_seconds * 1000
        tally.calls += 1
        tally.client_errors += is_client_error(code)
        tally.server_errors += is_server_error(code)
        tally.cache_hits += cache_hit
        tally.latency_ms_total += elapsed_ms
        tally.buckets[bisect.bisect_left(LATENCY_BOUNDS_MS, elapsed_ms)] += 1

    def drain(self) -> dict[UsageKey, UsageTally]:
        """Take every count so far (the caller writes them, or gives them back)."""
        tallies, self._tallies = self._tallies, {}
        return tallies

    def restore(self, tallies: dict[UsageKey, UsageTally]) -> None:
        """Give back counts a failed flush could not write, merged with newer ones."""
        for key, tally in tallies.items():
            current = self._tallies.get(key)
            if current is None:
                if len(self._tallies) >= _MAX_KEYS:
                    self.dropped += tally.calls
                    continue
                self._tallies[key] = tally
            else:
                current.add(tally)

    def __len__(self) -> int:
        return len(self._tallies)
