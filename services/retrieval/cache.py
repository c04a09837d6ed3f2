"""Redis cache of recommendation responses; a Redis outage costs speed, never a request.

Layout: one Redis hash per (tenant, user), ``embrec:rec:{tenant}:{user}``, whose fields
are ``{deployment}:{version}:{request digest}`` and whose values are serialised
responses. Why a hash per user: a user's new interaction must drop every cached answer
for that user, and with a hash that is one ``DEL`` (no key scans). Why the deployment
id in the field: a deploy must drop the tenant's answers on every replica, and a new
deployment id makes the old fields unreachable at once (they expire with the hash's TTL).
The TTL is refreshed on each write.

Failure policy: every Redis error is counted (``embrec_retrieval_cache_errors_total``),
logged at most once per ``log_every`` seconds, and then Redis is skipped for
``cooldown`` seconds (a circuit breaker), so a down Redis costs one short timeout per
cooldown rather than one per request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from services.retrieval.metrics import RetrievalMetrics

__all__ = ["ResponseCache", "cache_key"]

logger = logging.getLogger(__name__)

_PREFIX = "embrec:rec:"


def cache_key(tenant_id: str, user_id: str) -> str:
    return f"{_PREFIX}{tenant_id}:{user_id}"


class ResponseCache:
    """See the module docstring. ``client`` is a ``redis.asyncio.Redis`` or None (off)."""

    def __init__(
        self,
        client: Any,
        metrics: RetrievalMetrics,
        *,
        ttl_seconds: float = 300.0,
        cooldown: float = 1.0,
        log_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._metrics = metrics
        self._ttl = max(1, int(ttl_seconds))
        self._cooldown = cooldown
        self._log_every = log_every
        self._clock = clock
        self._skip_until = 0.0
        self._last_log = -1e9

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def _available(self) -> bool:
        return self._client is not None and self._clock() >= self._skip_until

    def _failed(self, exc: BaseException, what: str) -> None:
        self._metrics.cache_errors.inc()
        self._metrics.cache_up.set(0)
        self._skip_until = self._clock() + self._cooldown
        now = self._clock()
        if now - self._last_log >= self._log_every:
            self._last_log = now
            logger.warning(
                "response cache unavailable (%s: %s: %s); serving uncached",
                what,
                type(exc).__name__,
                exc,
            )

    def _ok(self) -> None:
        self._metrics.cache_up.set(1)

    async def get(self, tenant_id: str, user_id: str, field: str) -> bytes | None:
        if not self._available():
            if self._client is not None:
                self._metrics.cache_requests.labels("bypass").inc()
            return None
        try:
            value = await self._client.hget(cache_key(tenant_id, user_id), field)
        except Exception as exc:  # any Redis failure means "no cache", never an error
            self._failed(exc, "get")
            self._metrics.cache_requests.labels("bypass").inc()
            return None
        self._ok()
        self._metrics.cache_requests.labels("hit" if value is not None else "miss").inc()
        return value if value is None else bytes(value)

    async def put(self, tenant_id: str, user_id: str, field: str, value: bytes) -> None:
        if not self._available():
            return
        key = cache_key(tenant_id, user_id)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(key, field, value)
                pipe.expire(key, self._ttl)
                await pipe.execute()
        except Exception as exc:
            self._failed(exc, "put")
            return
        self._ok()

    async def invalidate_users(self, tenant_id: str, user_ids: Iterable[str]) -> None:
        """Drop every cached answer of these users (their history changed)."""
        keys = [cache_key(tenant_id, u) for u in set(user_ids)]
        if not keys or not self._available():
            return
        try:
            for start in range(0, len(keys), 500):
                await self._client.delete(*keys[start : start + 500])
        except Exception as exc:
            self._failed(exc, "invalidate")
            return
        self._ok()

    async def close(self) -> None:
        if self._client is not None:
            try:
                await self._client.aclose()
            except Exception as exc:  # closing a dead connection is not worth a traceback
                logger.debug("closing the cache client: %s", exc)
