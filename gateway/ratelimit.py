"""Global rate limits: one budget per tenant across every Envoy, counted in Redis.

Two ways in, one per ext_authz transport (gateway/security_config.py):

* HTTP ext_authz (what the generated configs use): the authz endpoint itself admits or
  refuses each allowed request (:class:`BatchedWindowLimiter`: counted in process,
  synced with Redis every 50 ms), so no request waits for a rate-limit call;
* gRPC ext_authz: Envoy's rate-limit filter asks this module's RLS v3 service per
  request (:class:`RedisRateLimiter`) whether the descriptors it built from the
  request are over their limit.

Counters live in Redis under the same keys either way, so several Envoys (and several
replicas of the gateway) share one budget per tenant.

Descriptors: Envoy builds one per request from headers the authz decision set
(gateway/authz.py), so a client cannot choose them::

    [("tenant", <tenant id | ip:<addr> | principal>), ("limit", <requests per second>)]

The limit travels in the descriptor because authz already resolved the tenant's plan
and per-tenant override (gateway/plans.py); this service needs no database.

Algorithm: a fixed one-second window per key (``INCR`` + ``EXPIRE`` in one pipeline):
one round trip, exact across Envoys, at worst 2x the rate at a window boundary, which
Envoy's local token buckets (per tenant, per Envoy) smooth out in front of it.

Redis down: the request is allowed (fail open) — an outage of the limiter must not
take the API down — counted in ``embrec_ratelimit_fail_open_total`` and logged at most
once per ``_LOG_EVERY_SECONDS``. The counters belong to the limiter and the gateway module
hands them to the runtime's registry (``collectors()``), so they appear on /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = [
    "DESCRIPTOR_LIMIT",
    "DESCRIPTOR_TENANT",
    "BatchedWindowLimiter",
    "RateLimitDecision",
    "RedisRateLimiter",
]

logger = logging.getLogger(__name__)

DESCRIPTOR_TENANT = "tenant"
DESCRIPTOR_LIMIT = "limit"
_WINDOW_SECONDS = 1
_LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True)
class DescriptorResult:
    over_limit: bool
    limit: int
    remaining: int
    reset_seconds: float


@dataclass(frozen=True)
class RateLimitDecision:
    over_limit: bool
    results: tuple[DescriptorResult, ...]
    failed_open: bool = False

    @property
    def retry_after_seconds(self) -> int:
        waits = [r.reset_seconds for r in self.results if r.over_limit]
        return max(1, math.ceil(max(waits))) if waits else 0


class RedisRateLimiter:
    """Fixed-window counters in Redis; one :meth:`check` per Envoy request."""

    def __init__(self, redis: Redis | None, domain: str = "embrec") -> None:
        self._redis = redis
        self._domain = domain
        self._last_warning = 0.0
        # Unregistered: the runtime registers them (no process-global registry).
        self.fail_open = Counter(
            "embrec_ratelimit_fail_open_total",
            "Requests allowed without a global rate-limit check because Redis was unavailable.",
            registry=None,
        )
        self.over_limit = Counter(
            "embrec_ratelimit_over_limit_total",
            "Requests refused by the global rate limit.",
            registry=None,
        )

    def collectors(self) -> list[Collector]:
        return [self.fail_open, self.over_limit]

    async def check(
        self, domain: str, descriptors: Sequence[Sequence[tuple[str, str]]], hits: int = 1
    ) -> RateLimitDecision:
        now = time.time()
        window = int(now // _WINDOW_SECONDS)
        reset = (window + 1) * _WINDOW_SECONDS - now
        keyed: list[tuple[str, int]] = []
        for entries in descriptors:
            values = dict(entries)
            tenant, limit_text = values.get(DESCRIPTOR_TENANT), values.get(DESCRIPTOR_LIMIT)
            if not tenant or not limit_text or not limit_text.isdigit():
                continue  # not one of ours: no limit applies
            keyed.append((self.window_key(tenant, window, domain), int(limit_text)))
        if not keyed:
            return RateLimitDecision(False, ())
        if self._redis is None:
            return self._fail_open(keyed, reset, "no Redis configured")
        try:
            counts = await self.add_counts([(key, hits) for key, _ in keyed])
        except (RedisError, OSError, TimeoutError) as exc:
            return self._fail_open(keyed, reset, f"{type(exc).__name__}: {exc}")
        results = []
        for (_, limit), count in zip(keyed, counts, strict=True):
            results.append(DescriptorResult(count > limit, limit, max(0, limit - count), reset))
        decision = RateLimitDecision(any(r.over_limit for r in results), tuple(results))
        if decision.over_limit:
            self.over_limit.inc()
        return decision

    def _fail_open(self, keyed: list[tuple[str, int]], reset: float, why: str) -> RateLimitDecision:
        self.failed_open(1, why)
        results = tuple(DescriptorResult(False, limit, limit, reset) for _, limit in keyed)
        return RateLimitDecision(False, results, failed_open=True)

    def failed_open(self, requests: int, why: str) -> None:
        """Count requests let through unchecked; log at most once per interval."""
        self.fail_open.inc(requests)
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_SECONDS:
            self._last_warning = now
            logger.warning("global rate limit failing open: %s", why)

    def window_key(self, tenant: str, window: int, domain: str = "") -> str:
        return f"rl:{domain or self._domain}:{tenant}:{window}"

    async def add_counts(self, counts: Sequence[tuple[str, int]]) -> list[int]:
        """Add each count to its window key in one round trip; the keys' new totals, in
        order. Raises what Redis raises (the callers fail open)."""
        if self._redis is None:
            raise RedisError("no Redis configured")
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, count in counts:
                pipe.incrby(key, count)
                pipe.expire(key, _WINDOW_SECONDS + 1)
            replies = await pipe.execute()
        return [int(replies[index * 2]) for index in range(len(counts))]

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


class BatchedWindowLimiter:
    """The global limit answered in process, for the HTTP ext_authz endpoint.

    Same fixed one-second windows and Redis keys as :class:`RedisRateLimiter`, but no
    Redis round trip per request: each admitted request is counted here, and every
    ``sync_seconds`` the counts are added to the shared windows in one pipeline, which
    returns every gateway replica's total so far. A request is refused when the last
    total read plus what this process admitted since reaches the limit.

    The price of not asking per request: between two syncs this process does not see the
    others' requests, so with N gateway replicas a window can take up to about
    (N - 1) x rate x ``sync_seconds`` more than the limit (with one replica, none). The
    fixed window already allows up to 2x the rate across a window boundary, which
    Envoy's local token buckets smooth out in front of it.

    Redis down: counts that cannot be added are dropped and their requests counted as
    failed open (the API stays up; the local buckets still apply).
    """

    def __init__(
        self,
        limiter: RedisRateLimiter,
        sync_seconds: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limiter = limiter
        self.sync_seconds = sync_seconds
        self._clock = clock
        #: (tenant, window) -> requests admitted here and not yet added to Redis.
        self._pending: dict[tuple[str, int], int] = {}
        #: tenant -> (window, total of every replica at the last sync).
        self._totals: dict[str, tuple[int, int]] = {}

    def admit(self, tenant: str, limit: int) -> float:
        """0 when the request may go on, else the seconds until its window resets."""
        now = self._clock()
        window = int(now // _WINDOW_SECONDS)
        known = self._totals.get(tenant)
        total = known[1] if known is not None and known[0] == window else 0
        pending = self._pending.get((tenant, window), 0)
        if total + pending >= limit:
            self._limiter.over_limit.inc()
            return (window + 1) * _WINDOW_SECONDS - now
        self._pending[(tenant, window)] = pending + 1
        return 0.0

    async def sync(self) -> None:
        """Add this process's counts to the shared windows and read the totals back."""
        pending, self._pending = list(self._pending.items()), {}
        if not pending:
            return
        try:
            totals = await self._limiter.add_counts(
                [(self._limiter.window_key(tenant, window), n) for (tenant, window), n in pending]
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._limiter.failed_open(sum(n for _, n in pending), f"{type(exc).__name__}: {exc}")
            return
        current = int(self._clock() // _WINDOW_SECONDS)
        for ((tenant, window), _), total in zip(pending, totals, strict=True):
            if window == current:
                self._totals[tenant] = (window, total)
        # Tenants whose window has passed need no total any more.
        for tenant in [t for t, (w, _) in self._totals.items() if w < current]:
            del self._totals[tenant]

    async def run(self, stop: asyncio.Event) -> None:
        """Sync every ``sync_seconds`` until ``stop``; a last sync on the way out."""
        while not stop.is_set():
            try:
                await self.sync()
            except Exception:  # the loop must outlive a bad sync, or counts pile up unshared
                logger.exception("global rate limit: sync failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.sync_seconds)
        await self.sync()
