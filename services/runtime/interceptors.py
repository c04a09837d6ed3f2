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

#: Wrapped handlers kept (one per method, so far more than any server registers).
_MAX_WRAPPED = 4096


def _split_method(full_method: str) -> tuple[str, str]:
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service or "unknown", method or "unknown"


class _Method:
    """What every call of one method shares: its names and its metric children
    (``labels()`` takes a lock and a dict lookup; per call that adds up)."""

    def __init__(self, interceptor: RuntimeInterceptor, service: str, method: str) -> None:
        self.interceptor = interceptor
        self.service = service
        self.method = method
        metrics = interceptor.metrics
        self.in_flight = metrics.in_flight.labels(service, method)
        self.latency = metrics.latency.labels(service, method)
        self._handled: dict[grpc.StatusCode, Any] = {}
        # Envoy's ext_authz / rate-limit calls and health probes: nobody reads their
        # response headers, so no request id is sent back (one write less per call).
        self.internal = service in _QUIET_SERVICES
        self.log_level = logging.DEBUG if self.internal else logging.INFO

    def handled(self, code: grpc.StatusCode) -> Any:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = self.interceptor.metrics.handled.labels(
                self.service, self.method, code.name
            )
        return child


def _caller_request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str):
            return value
    return None


class _Call:
    """Book-keeping for one RPC: timing, code, logging, metrics."""

    def __init__(self, method: _Method, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.m = method
        self.service = method.service
        self.method = method.method
        self.request_id = new_request_id(_caller_request_id(context))
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()
        self.started_at = time.time()
        self.facts = CallFacts()

    async def begin(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        request_id_var.set(self.request_id)
        call_facts_var.set(self.facts)
        self.m.in_flight.inc()
        if not self.m.internal:
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

    def end(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        elapsed = time.perf_counter() - self.started
        m = self.m
        m.in_flight.dec()
        m.latency.observe(elapsed)
        m.handled(self.code).inc()
        usage = m.interceptor.usage
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
        if not access_logger.isEnabledFor(m.log_level):
            return
        access_logger.log(
            m.log_level,
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
                "peer": context.peer(),
                "request_id": self.request_id,
            },
        )

    def aborted_by_handler(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        code = context.code()
        self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


class RuntimeInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler with request id, access log, metrics, usage and error mapping.

    The wrapped handler of a method is built once and reused for every call of it (it
    reads the call's metadata from the call's context), so a call costs the wrapper's
    work only, not a new handler.
    """

    def __init__(self, metrics: ServerMetrics, usage: UsageRecorder | None = None) -> None:
        self.metrics = metrics
        self.usage = usage
        self._wrapped: dict[
            tuple[str, grpc.RpcMethodHandler[Any, Any]], grpc.RpcMethodHandler[Any, Any]
        ] = {}

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
        key = (handler_call_details.method, handler)
        wrapped = self._wrapped.get(key)
        if wrapped is None:
            wrapped = self._wrap_handler(handler_call_details.method, handler)
            # Bounded, in case a generic handler made a new handler object per call.
            if len(self._wrapped) < _MAX_WRAPPED:
                self._wrapped[key] = wrapped
        return wrapped

    def _wrap_handler(
        self, full_method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = _Method(self, *_split_method(full_method))
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            self._wrap(handler.stream_stream, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    @staticmethod
    def _wrap(behavior: Behavior, method: _Method) -> Behavior:
        if inspect.isasyncgenfunction(behavior):

            async def generator(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                call = _Call(method, context)
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
                    call.end(context)

            return generator

        # Unary responses, and streaming handlers written with context.write().
        async def coroutine(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = _Call(method, context)
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
                call.end(context)

        return coroutine
