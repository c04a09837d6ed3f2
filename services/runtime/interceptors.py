"""Server interceptors: request id, access log, metrics, usage metering and the error
boundary.

All of them live in one interceptor because they share the call's start time, its
request id and its final status code. Handlers may be coroutines or async
generators (server-streaming, reflection, health Watch): a generator is iterated,
never awaited (FACTS: awaiting one breaks streaming RPCs).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from services.runtime.context import (
    REQUEST_ID_HEADER,
    CallFacts,
    call_facts_var,
    new_request_id,
    request_id_var,
)
from services.runtime.errors import classify, to_grpc_status
from services.runtime.metrics import ServerMetrics
from services.runtime.usage import UsageRecorder

__all__ = ["RuntimeInterceptor"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("embrec.access")

# Probes hit these every few seconds; their access lines go to DEBUG.
_QUIET_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        # Envoy asks these once per request; the request's own access line suffices.
        "envoy.service.auth.v3.Authorization",
        "envoy.service.ratelimit.v3.RateLimitService",
    }
)

Behavior = Callable[..., Any]


def _split_method(full_method: str) -> tuple[str, str]:
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service or "unknown", method or "unknown"


class _Call:
    """Book-keeping for one RPC: timing, code, logging, metrics."""

    def __init__(
        self, interceptor: RuntimeInterceptor, service: str, method: str, metadata: dict[str, str]
    ) -> None:
        self.interceptor = interceptor
        self.service = service
        self.method = method
        self.request_id = new_request_id(metadata.get(REQUEST_ID_HEADER))
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()
        self.started_at = time.time()
        self.facts = CallFacts()

    async def begin(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        request_id_var.set(self.request_id)
        call_facts_var.set(self.facts)
        self.interceptor.metrics.in_flight.labels(self.service, self.method).inc()
        await context.send_initial_metadata(((REQUEST_ID_HEADER, self.request_id),))

    async def fail(self, exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Turn ``exc`` into a status and abort the call with it (raises AbortError)."""
        error = classify(exc)
        status = to_grpc_status(exc, self.request_id)
        self.code = status.code
        if error is None:
            logger.error("unhandled error in %s/%s", self.service, self.method, exc_info=exc)
        elif status.code == grpc.StatusCode.UNAVAILABLE:
            logger.warning("%s/%s: %s (%s)", self.service, self.method, error.message, exc)
        await context.abort(status.code, status.details, status.trailing_metadata)

    def end(self, peer: str) -> None:
        elapsed = time.perf_counter() - self.started
        metrics = self.interceptor.metrics
        metrics.in_flight.labels(self.service, self.method).dec()
        metrics.latency.labels(self.service, self.method).observe(elapsed)
        metrics.handled.labels(self.service, self.method, self.code.name).inc()
        usage = self.interceptor.usage
        if usage is not None:
            usage.record(
                tenant_id=self.facts.tenant_id,
                service=self.service,
                method=self.method,
                code=self.code,
                elapsed_seconds=elapsed,
                started_at=self.started_at,
                cache_hit=self.facts.cache_hit,
            )
        level = logging.DEBUG if self.service in _QUIET_SERVICES else logging.INFO
        access_logger.log(
            level,
            "%s/%s %s %.1fms",
            self.service,
            self.method,
            self.code.name,
            elapsed * 1000,
            extra={
                "grpc_service": self.service,
                "grpc_method": self.method,
                "grpc_code": self.code.name,
                "duration_ms": round(elapsed * 1000, 3),
                "peer": peer,
                "request_id": self.request_id,
            },
        )

    def aborted_by_handler(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        code = context.code()
        self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler with request id, access log, metrics, usage and error mapping."""

    def __init__(self, metrics: ServerMetrics, usage: UsageRecorder | None = None) -> None:
        self.metrics = metrics
        self.usage = usage

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, method = _split_method(handler_call_details.method)
        metadata = {
            str(k).lower(): v
            for k, v in (handler_call_details.invocation_metadata or ())
            if isinstance(v, str)
        }
        make = lambda: _Call(self, service, method, metadata)  # noqa: E731

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, make),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(handler.stream_unary, make),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap(handler.unary_stream, make),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._wrap(handler.stream_stream, make),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    @staticmethod
    def _wrap(behavior: Behavior, make: Callable[[], _Call]) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def generator(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                call = make()
                await call.begin(context)
                try:
                    async for response in behavior(request, context):
                        yield response
                except grpc.aio.AbortError:
                    call.aborted_by_handler(context)
                    raise
                except asyncio.CancelledError:
                    call.code = grpc.StatusCode.CANCELLED
                    raise
                except Exception as exc:
                    await call.fail(exc, context)
                finally:
                    call.end(context.peer())

            return generator

        # Unary responses, and streaming handlers written with context.write().
        async def coroutine(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = make()
            await call.begin(context)
            try:
                return await behavior(request, context)
            except grpc.aio.AbortError:
                call.aborted_by_handler(context)
                raise
            except asyncio.CancelledError:
                call.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                await call.fail(exc, context)
            finally:
                call.end(context.peer())

        return coroutine
