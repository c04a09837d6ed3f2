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

Local layer: an answer read from Redis is also kept in the replica's memory for
``local_seconds`` (2 s by default), so a user asking again soon costs no Redis round
trip (on a busy replica that round trip was the largest part of a cache hit's CPU). It
is invalidated exactly like Redis's copy: a user's new events drop the user's local
entries on every replica (each replica consumes every interactions event for the
tenants it serves, the same consumer that sends Redis the ``DEL``), and a deploy or a
catalog change changes the field name. Only answers read from Redis enter it (not the
ones a replica just computed and wrote), so it never holds what Redis does not; it is
bounded by ``local_max_bytes``, least recently used users first.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from services.retrieval.metrics import RetrievalMetrics

__all__ = ["ResponseCache", "cache_key"]

logger = logging.getLogger(__name__)

_PREFIX = "embrec:rec:"


def cache_key(tenant_id: str, user_id: str) -> str:
    return f"{_PREFIX}{tenant_id}:{user_id}"


class _LocalAnswers:
    """Per (tenant, user): field -> (expiry, answer); LRU over users, bounded in bytes."""

    def __init__(self, seconds: float, max_bytes: int, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self._max_bytes = max_bytes
        self._clock = clock
        self._users: OrderedDict[tuple[str, str], dict[str, tuple[float, bytes]]] = OrderedDict()
        self.nbytes = 0
        #: Bumped by every invalidation: an answer read from Redis across one (its user's
        #: events may have arrived meanwhile) is not kept.
        self.generation = 0

    def get(self, tenant_id: str, user_id: str, field: str) -> bytes | None:
        fields = self._users.get((tenant_id, user_id))
        if fields is None:
            return None
        entry = fields.get(field)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del fields[field]
            self.nbytes -= len(entry[1])
            if not fields:
                del self._users[(tenant_id, user_id)]
            return None
        self._users.move_to_end((tenant_id, user_id))
        return entry[1]

    def put(self, tenant_id: str, user_id: str, field: str, value: bytes, generation: int) -> None:
        if self.seconds <= 0 or len(value) > self._max_bytes or generation != self.generation:
            return
        fields = self._users.setdefault((tenant_id, user_id), {})
        old = fields.get(field)
        if old is not None:
            self.nbytes -= len(old[1])
        fields[field] = (self._clock() + self.seconds, value)
        self.nbytes += len(value)
        self._users.move_to_end((tenant_id, user_id))
        while self.nbytes > self._max_bytes and self._users:
            _, evicted = self._users.popitem(last=False)
            self.nbytes -= sum(len(v) for _, v in evicted.values())

    def drop_users(self, tenant_id: str, user_ids: Iterable[str]) -> None:
        self.generation += 1
        for user_id in user_ids:
            fields = self._users.pop((tenant_id, user_id), None)
            if fields:
                self.nbytes -= sum(len(v) for _, v in fields.values())

    def __len__(self) -> int:
        return len(self._users)


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
        local_seconds: float = 2.0,
        local_max_bytes: int = 64 * 1024 * 1024,
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
        self.local = _LocalAnswers(local_seconds, local_max_bytes, clock)
        # Metric children, looked up once (labels() per call costs a lock and a lookup).
        self._hit = metrics.cache_requests.labels("hit")
        self._miss = metrics.cache_requests.labels("miss")
        self._bypass = metrics.cache_requests.labels("bypass")

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
        if self._client is None:
            return None
        local = self.local.get(tenant_id, user_id, field)
        if local is not None:
            self._hit.inc()
            return local
        if not self._available():
            self._bypass.inc()
            return None
        generation = self.local.generation
        try:
            value = await self._client.hget(cache_key(tenant_id, user_id), field)
        except Exception as exc:  # any Redis failure means "no cache", never an error
            self._failed(exc, "get")
            self._bypass.inc()
            return None
        self._ok()
        if value is None:
            self._miss.inc()
            return None
        self._hit.inc()
        answer = bytes(value)
        self.local.put(tenant_id, user_id, field, answer, generation)
        return answer

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
        users = set(user_ids)
        self.local.drop_users(tenant_id, users)
        keys = [cache_key(tenant_id, u) for u in users]
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
