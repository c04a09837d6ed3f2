"""Global rate limits: Envoy's rate-limit service protocol (RLS v3) backed by Redis.

Every Envoy asks this service, per request, whether the descriptors it built from the
request are over their limit. Counters live in Redis, so several Envoys (and several
replicas of this service) share one budget per tenant.

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

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["DESCRIPTOR_LIMIT", "DESCRIPTOR_TENANT", "RateLimitDecision", "RedisRateLimiter"]

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
            keyed.append((f"rl:{domain or self._domain}:{tenant}:{window}", int(limit_text)))
        if not keyed:
            return RateLimitDecision(False, ())
        if self._redis is None:
            return self._fail_open(keyed, reset, "no Redis configured")
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, _ in keyed:
                    pipe.incrby(key, hits)
                    pipe.expire(key, _WINDOW_SECONDS + 1)
                replies = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            return self._fail_open(keyed, reset, f"{type(exc).__name__}: {exc}")
        results = []
        for index, (_, limit) in enumerate(keyed):
            count = int(replies[index * 2])
            results.append(DescriptorResult(count > limit, limit, max(0, limit - count), reset))
        decision = RateLimitDecision(any(r.over_limit for r in results), tuple(results))
        if decision.over_limit:
            self.over_limit.inc()
        return decision

    def _fail_open(self, keyed: list[tuple[str, int]], reset: float, why: str) -> RateLimitDecision:
        self.fail_open.inc()
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_SECONDS:
            self._last_warning = now
            logger.warning("global rate limit failing open: %s", why)
        results = tuple(DescriptorResult(False, limit, limit, reset) for _, limit in keyed)
        return RateLimitDecision(False, results, failed_open=True)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
