"""Loaded model indexes per (tenant, model version), with atomic swap and a memory cap.

Why this shape:

* Swap is one dict assignment under a lock, done only after the new
  ``TenantModelIndex`` is completely built (outside the lock, typically on a worker
  thread). A reader either gets the old object or the new one, never a half-built
  one, and ``TenantModelIndex`` is immutable, so a reader that got the old object
  finishes its request on it even if it is replaced or evicted meanwhile (Python
  keeps it alive while referenced; nothing is closed under a reader's feet).
* Memory is accounted per tenant (sum of ``TenantModelIndex.nbytes`` of its loaded
  versions). When the total exceeds ``memory_cap_bytes``, whole tenants are evicted in
  least-recently-used order (use = ``get`` or ``put``), never the tenant being loaded;
  a single tenant larger than the cap stays loaded, with a warning (serving it slowly
  from a popular-items fallback would be worse than going over a soft cap).
* Versions no longer routed to (traffic split changed) are dropped with
  :meth:`IndexRegistry.retain`.
* Concurrent loads of the same key share one background job.

Thread-safe; from asyncio use ``await asyncio.wrap_future(registry.load_in_background(...))``
for loads, and call ``get`` directly (it never blocks on a load).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from retriever.engine import TenantModelIndex
from retriever.errors import ModelNotLoadedError

__all__ = ["IndexRegistry", "Key"]

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (tenant_id, model_version)


class IndexRegistry:
    """Registry of serving indexes; see the module docstring."""

    def __init__(self, memory_cap_bytes: int | None = None, *, load_workers: int = 1) -> None:
        self._cap = memory_cap_bytes
        self._lock = threading.Lock()
        self._entries: dict[Key, TenantModelIndex] = {}
        self._tenant_lru: OrderedDict[str, None] = OrderedDict()
        self._pending: dict[Key, Future[TenantModelIndex]] = {}
        self._pool = ThreadPoolExecutor(max_workers=load_workers, thread_name_prefix="index-load")
        self.evictions: list[str] = []  # evicted tenants, oldest first (observability)

    # ----------------------------------------------------------------- reads
    def get(self, tenant_id: str, model_version: str) -> TenantModelIndex:
        """The loaded index, or :class:`ModelNotLoadedError`. Marks the tenant used."""
        with self._lock:
            entry = self._entries.get((tenant_id, model_version))
            if entry is None:
                raise ModelNotLoadedError(tenant_id, model_version)
            self._tenant_lru.move_to_end(tenant_id)
            return entry

    def best_available(self, tenant_id: str, model_version: str) -> tuple[TenantModelIndex, bool]:
        """The requested version, else the tenant's most recently installed one.

        Returns ``(index, is_requested)``; with ``False`` the caller serves from another
        version (e.g. its popularity) and flags the response as a fallback. Raises
        :class:`ModelNotLoadedError` when the tenant has nothing loaded.
        """
        with self._lock:
            entry = self._entries.get((tenant_id, model_version))
            if entry is not None:
                self._tenant_lru.move_to_end(tenant_id)
                return entry, True
            for (tenant, _), other in reversed(self._entries.items()):
                if tenant == tenant_id:
                    self._tenant_lru.move_to_end(tenant_id)
                    return other, False
            raise ModelNotLoadedError(tenant_id, model_version)

    def peek(self, tenant_id: str, model_version: str) -> TenantModelIndex | None:
        """Like :meth:`get` but returns ``None`` and does not touch the LRU order."""
        with self._lock:
            return self._entries.get((tenant_id, model_version))

    def loaded(self) -> list[Key]:
        with self._lock:
            return sorted(self._entries)

    def versions(self, tenant_id: str) -> list[str]:
        with self._lock:
            return sorted(v for t, v in self._entries if t == tenant_id)

    def memory_by_tenant(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for (tenant, _), entry in self._entries.items():
                out[tenant] = out.get(tenant, 0) + entry.nbytes
            return out

    @property
    def total_bytes(self) -> int:
        return sum(self.memory_by_tenant().values())

    # ---------------------------------------------------------------- writes
    def put(self, index: TenantModelIndex) -> list[str]:
        """Install (or atomically replace) an index; returns the tenants evicted."""
        key = (index.tenant_id, index.model_version)
        _ = index.nbytes  # computed before the swap, not under a reader's request
        with self._lock:
            self._entries.pop(key, None)  # re-insert: dict order = install order
            self._entries[key] = index
            self._tenant_lru[index.tenant_id] = None
            self._tenant_lru.move_to_end(index.tenant_id)
            evicted = self._evict_locked(protect=index.tenant_id)
        for tenant in evicted:
            logger.info("evicted tenant %s (memory cap %s bytes)", tenant, self._cap)
        return evicted

    def load(
        self, tenant_id: str, model_version: str, loader: Callable[[], TenantModelIndex]
    ) -> TenantModelIndex:
        """Build with ``loader`` on this thread (outside the lock), then swap it in."""
        index = loader()
        if (index.tenant_id, index.model_version) != (tenant_id, model_version):
            raise ValueError(
                f"loader built {(index.tenant_id, index.model_version)}, "
                f"expected {(tenant_id, model_version)}"
            )
        self.put(index)
        return index

    def load_in_background(
        self, tenant_id: str, model_version: str, loader: Callable[[], TenantModelIndex]
    ) -> Future[TenantModelIndex]:
        """Start (or join) a background load; the swap happens when it completes."""
        key = (tenant_id, model_version)
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                return pending
            fut = self._pool.submit(self.load, tenant_id, model_version, loader)
            self._pending[key] = fut

        def done(_: Future[TenantModelIndex]) -> None:
            with self._lock:
                if self._pending.get(key) is fut:
                    del self._pending[key]

        fut.add_done_callback(done)
        return fut

    def unload(self, tenant_id: str, model_version: str) -> bool:
        with self._lock:
            removed = self._entries.pop((tenant_id, model_version), None) is not None
            if removed and not any(t == tenant_id for t, _ in self._entries):
                self._tenant_lru.pop(tenant_id, None)
            return removed

    def retain(self, tenant_id: str, versions_in_use: Iterable[str]) -> list[str]:
        """Unload this tenant's versions not in ``versions_in_use``; returns them."""
        keep = set(versions_in_use)
        with self._lock:
            drop = [v for t, v in self._entries if t == tenant_id and v not in keep]
            for v in drop:
                del self._entries[(tenant_id, v)]
            if not any(t == tenant_id for t, _ in self._entries):
                self._tenant_lru.pop(tenant_id, None)
        return sorted(drop)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # --------------------------------------------------------------- helpers
    def _evict_locked(self, protect: str) -> list[str]:
        if self._cap is None:
            return []
        usage: dict[str, int] = {}
        for (tenant, _), entry in self._entries.items():
            usage[tenant] = usage.get(tenant, 0) + entry.nbytes
        total = sum(usage.values())
        evicted: list[str] = []
        for tenant in list(self._tenant_lru):  # least recently used first
            if total <= self._cap:
                break
            if tenant == protect:
                continue
            for key in [k for k in self._entries if k[0] == tenant]:
                del self._entries[key]
            del self._tenant_lru[tenant]
            total -= usage.get(tenant, 0)
            evicted.append(tenant)
        if total > self._cap:
            logger.warning(
                "tenant %s alone needs %d bytes, over the %d byte cap", protect, total, self._cap
            )
        self.evictions.extend(evicted)
        return evicted
