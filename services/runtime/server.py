"""Server lifecycle: one grpc.aio server hosting any subset of embrec's services.

``embrec serve --services tenant,ingestion`` and the embedded ``embrec up`` both come
here. Every hosted service gets health (grpc.health.v1, per service name and
overall), reflection (so grpcurl and ghz work without .proto files), the runtime
interceptor, optional tracing, and a graceful stop: NOT_SERVING first, so Envoy's
health checks steer traffic away, then drain in-flight calls for the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider

from services.config import ConfigError, Settings
from services.runtime.interceptors import RuntimeInterceptor
from services.runtime.metrics import ServerMetrics
from services.runtime.tracing import tracing_interceptor
from services.runtime.usage import UsageRecorder

__all__ = ["HealthProbe", "Runtime", "ServiceModule", "ServiceModuleSpec"]

logger = logging.getLogger(__name__)

#: Consecutive failed probes before a dependency counts as down.
_UNHEALTHY_THRESHOLD = 2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServiceModule(Protocol):
    """What a service package offers the runtime (see ``services.registry``)."""

    name: str

    def full_names(self) -> Sequence[str]:
        """Fully-qualified gRPC service names this module adds to the server."""

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register the servicers."""


@dataclass
class ServiceModuleSpec:
    """A ServiceModule made of a short name, full service names and a registration."""

    name: str
    names: Sequence[str]
    register: Callable[[grpc.aio.Server], None]

    def full_names(self) -> Sequence[str]:
        return self.names

    def add_to_server(self, server: grpc.aio.Server) -> None:
        self.register(server)


@dataclass
class HealthProbe:
    """A named dependency check; False or an exception means 'down'."""

    name: str
    check: Callable[[], Awaitable[bool]]
    #: Services that cannot work while this dependency is down.
    affects_all: bool = True


@dataclass
class Runtime:
    settings: Settings
    modules: Sequence[ServiceModule]
    probes: Sequence[HealthProbe] = ()
    background: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = ()
    on_stop: Sequence[Callable[[], Awaitable[None]]] = ()
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    #: API usage counted per call; None leaves calls unmetered (tests of the bare runtime).
    usage: UsageRecorder | None = None

    def __post_init__(self) -> None:
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port: int = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Last probe result per dependency: (up, message when down).
        self.dependency_state: dict[str, tuple[bool, str]] = {}
        self._failures: dict[str, int] = {}
        self._tracer_provider: TracerProvider | None = None
        self.serving = False

    @property
    def service_names(self) -> list[str]:
        return [name for module in self.modules for name in module.full_names()]

    async def start(self) -> int:
        """Bind and start serving; returns the bound port (useful when port 0 was asked)."""
        interceptors: list[grpc.aio.ServerInterceptor] = [
            RuntimeInterceptor(self.metrics, self.usage)
        ]
        tracing = tracing_interceptor(
            self.settings.tracing_exporter, "embrec-" + "-".join(m.name for m in self.modules)
        )
        if tracing is not None:
            interceptors.insert(0, tracing[0])
            self._tracer_provider = tracing[1]
        server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
        )
        for module in self.modules:
            module.add_to_server(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            [*self.service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        try:
            self.port = server.add_insecure_port(self.settings.grpc_address)
        except RuntimeError:  # grpc raises this when the address is taken
            self.port = 0
        if self.port == 0:
            raise ConfigError(
                f"cannot listen on {self.settings.grpc_address} (is the port in use?); "
                "set EMBREC_GRPC_PORT or EMBREC_GRPC_HOST"
            )
        await server.start()
        self.server = server
        # Everything imported and built so far lives as long as the process: keep it out
        # of the collector's full passes, whose pauses are a request's tail latency.
        gc.freeze()
        await self._set_all(SERVING)
        for task in self.background:
            name = getattr(task, "__qualname__", repr(task))
            self._tasks.append(asyncio.create_task(task(self._stop), name=name))
        if self.probes:
            self._tasks.append(asyncio.create_task(self._watch_dependencies()))
        logger.info(
            "serving %s on %s:%d",
            ",".join(self.service_names),
            self.settings.grpc_host,
            self.port,
            extra={"services": self.service_names},
        )
        return self.port

    async def _set_all(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        self.serving = status == SERVING
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def _watch_dependencies(self) -> None:
        """Poll each probe; flip health to NOT_SERVING while a dependency is down."""
        while not self._stop.is_set():
            all_up = True
            for probe in self.probes:
                message = ""
                try:
                    up = await asyncio.wait_for(
                        probe.check(), self.settings.health_probe_timeout_seconds
                    )
                except Exception as exc:  # any failure of a probe means down
                    up, message = False, f"{type(exc).__name__}: {exc}"[:200]
                # Like a load balancer's unhealthy threshold: one slow probe (a busy
                # event loop, a GC pause) must not flap the whole process to NOT_SERVING.
                failures = 0 if up else self._failures.get(probe.name, 0) + 1
                self._failures[probe.name] = failures
                if not up and failures < _UNHEALTHY_THRESHOLD:
                    up = self.dependency_state.get(probe.name, (True, ""))[0]
                previous = self.dependency_state.get(probe.name)
                if previous is not None and previous[0] != up:
                    log = logger.info if up else logger.warning
                    log("dependency %s is %s %s", probe.name, "back up" if up else "DOWN", message)
                self.dependency_state[probe.name] = (up, message)
                self.metrics.dependency_up.labels(probe.name).set(1 if up else 0)
                all_up = all_up and (up or not probe.affects_all)
            if not self._stop.is_set():
                await self._set_all(SERVING if all_up else NOT_SERVING)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.settings.health_poll_seconds)

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, drain for the grace period, stop background work."""
        if self.server is None:
            return
        self._stop.set()
        self.serving = False
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.shutdown_grace_seconds)
        # Background loops watch the stop event and end after the work in hand (a relay's
        # batch, a consumer's transaction); only what still runs after another grace
        # period is cancelled. Cancelling them mid-statement left a relay's asyncpg
        # connection hung mid-protocol with its transaction open, and the stop never
        # returned (seen in CI on PostgreSQL).
        if self._tasks:
            grace = self.settings.shutdown_grace_seconds
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                logger.warning("background task %s did not stop in time", task.get_name())
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for hook in self.on_stop:
            await hook()
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        self.server = None
        logger.info("stopped")

    async def serve_until_signal(self) -> None:
        """Start, then stop gracefully on SIGINT/SIGTERM."""
        await self.start()
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_requested.set)
        try:
            await stop_requested.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            logger.info("shutting down (grace %.0fs)", self.settings.shutdown_grace_seconds)
            await self.stop()
