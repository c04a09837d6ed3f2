"""Prometheus metrics per gRPC method, in a registry owned by the runtime (no globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["ServerMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ServerMetrics:
    """Handled count by code, latency histogram and in-flight gauge, per method."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ("grpc_service", "grpc_method")
        self.handled = Counter(
            "embrec_grpc_server_handled",
            "RPCs completed, by status code.",
            (*labels, "grpc_code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "embrec_grpc_server_handling_seconds",
            "Time from call start to status, in seconds.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "embrec_grpc_server_in_flight",
            "RPCs being handled now.",
            labels,
            registry=self.registry,
        )
        self.dependency_up = Gauge(
            "embrec_dependency_up",
            "1 when a backing dependency (database, broker, cache) answers, else 0.",
            ("dependency",),
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics on a port of its own (a daemon thread, stopped with the process)."""
        start_http_server(port, addr=host, registry=self.registry)
