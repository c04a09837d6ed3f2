"""OpenTelemetry tracing for the gRPC server; off unless an exporter is configured."""

from __future__ import annotations

import sys

import grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from services.config import ConfigError

__all__ = ["tracing_interceptor"]


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        # Bind stdout now: the class default is bound once, at import time.
        return ConsoleSpanExporter(out=sys.stdout)
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise ConfigError(
                "EMBREC_TRACING_EXPORTER=otlp needs the package "
                "opentelemetry-exporter-otlp-proto-grpc (pip install it)"
            ) from exc
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    raise ConfigError(f"unknown tracing exporter {name!r}")


def tracing_interceptor(
    exporter: str, service_name: str
) -> tuple[grpc.aio.ServerInterceptor, TracerProvider] | None:
    """A server interceptor creating a span per RPC and its provider (shut it down on
    stop, so buffered spans are flushed), or None when tracing is off.

    The provider is passed explicitly rather than installed globally, so two runtimes
    in one process (tests) do not share tracing state.
    """
    if exporter == "none":
        return None
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(_exporter(exporter)))
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider
    )
    return interceptor, provider
