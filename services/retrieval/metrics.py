"""Prometheus metrics of the retrieval service, registered in the runtime's registry.

Memory per tenant is read live from the index registry at scrape time (a collector),
so it never goes stale after an eviction or an unload.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["RetrievalMetrics"]


class _MemoryCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, int]], cap: Callable[[], int]) -> None:
        self._read = read
        self._cap = cap

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "embrec_retrieval_index_memory_bytes",
            "Approximate memory of the loaded model indexes, per tenant.",
            labels=["tenant"],
        )
        for tenant, size in sorted(self._read().items()):
            family.add_metric([tenant], float(size))
        yield family
        yield GaugeMetricFamily(
            "embrec_retrieval_index_memory_cap_bytes",
            "Memory cap of the loaded indexes (0: none); coldest tenants are evicted beyond.",
            value=float(self._cap()),
        )


class RetrievalMetrics:
    """Counters and gauges; ``collectors()`` is what the runtime registers."""

    def __init__(self) -> None:
        self.cache_requests = Counter(
            "embrec_retrieval_cache_requests",
            "Response cache lookups by result: hit, miss, bypass (Redis unavailable).",
            ("result",),
            registry=None,
        )
        self.cache_errors = Counter(
            "embrec_retrieval_cache_errors",
            "Redis failures of the response cache (served uncached).",
            registry=None,
        )
        self.cache_up = Gauge(
            "embrec_retrieval_cache_up",
            "1 when the last response-cache call to Redis succeeded, else 0.",
            registry=None,
        )
        self.served = Counter(
            "embrec_retrieval_served",
            "Responses served, by tenant, model version and fallback reason.",
            ("tenant", "model_version", "fallback_reason"),
            registry=None,
        )
        self.impressions_dropped = Counter(
            "embrec_retrieval_impressions_dropped",
            "Impression events dropped because the buffer was full (database down).",
            registry=None,
        )
        self.index_loads = Counter(
            "embrec_retrieval_index_loads",
            "Model index loads by outcome (ready, failed).",
            ("outcome",),
            registry=None,
        )
        self._memory: Callable[[], dict[str, int]] = dict
        self._cap: Callable[[], int] = lambda: 0

    def watch_memory(self, read: Callable[[], dict[str, int]], cap: Callable[[], int]) -> None:
        self._memory, self._cap = read, cap

    def hit_rate(self) -> float:
        hits = self.cache_requests.labels("hit")._value.get()
        misses = self.cache_requests.labels("miss")._value.get()
        total = hits + misses
        return float(hits / total) if total else 0.0

    def collectors(self) -> list[Collector]:
        return [
            self.cache_requests,
            self.cache_errors,
            self.cache_up,
            self.served,
            self.impressions_dropped,
            self.index_loads,
            _MemoryCollector(lambda: self._memory(), lambda: self._cap()),
        ]
