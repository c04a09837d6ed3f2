"""Wiring: from Settings and a list of service names to a ready Runtime.

This is the composition root. It creates the process's engine, session factory and
event publisher once, hands them to the service packages that need them, and gives
the runtime the probes (database), the background work (outbox relay) and the stop
hooks. Nothing below this module creates its own connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.config import Settings
from services.runtime.server import HealthProbe, Runtime, ServiceModule, ServiceModuleSpec

__all__ = ["ServiceContext", "WorkingModule", "build_runtime"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceContext:
    """What a service package may use. Built once per process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


@dataclass
class WorkingModule(ServiceModuleSpec):
    """A service module that also runs background work (a bus consumer) and stop hooks."""

    background: Sequence[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = ()
    on_stop: Sequence[Callable[[], Awaitable[None]]] = ()


def _service_module(name: str, ctx: ServiceContext) -> ServiceModule:
    # Imported per service so a process hosting only `retrieval` never imports torch.
    if name == "tenant":
        from services.tenant import module as tenant_module

        return tenant_module(ctx)
    if name == "ingestion":
        from services.ingestion import module as ingestion_module

        return ingestion_module(ctx)
    if name == "training":
        from services.training import module as training_module

        return training_module(ctx)
    if name == "retrieval":
        from services.retrieval import module as retrieval_module

        return retrieval_module(ctx)
    if name == "audit":
        from services.audit import module as audit_module

        return audit_module(ctx)
    if name == "gateway":
        # Envoy's ext_authz and rate-limit services (gateway/service.py): not a domain
        # service, but hosted by the same runtime (embedded: on the same port).
        from gateway.service import module as gateway_module

        return gateway_module(ctx)
    raise ValueError(f"unknown service {name!r}")


def _platform_module(runtime_ref: list[Runtime], ctx: ServiceContext) -> ServiceModule:
    from embrec.platform.v1 import platform_service_pb2, platform_service_pb2_grpc
    from services.identity.principal import authenticator_for
    from services.platform.servicer import Component, PlatformServicer
    from services.platform.usage import UsageReport

    settings = ctx.settings

    def local_components() -> list[Component]:
        runtime = runtime_ref[0]
        components = [
            Component(name=m.name, up=runtime.serving)
            for m in runtime.modules
            if m.name != "platform"
        ]
        for dependency, (up, message) in sorted(runtime.dependency_state.items()):
            components.append(Component(name=dependency, up=up, message=message))
        return components

    servicer = PlatformServicer(
        local_components,
        dict(settings.health_targets),
        usage=lambda: UsageReport(authenticator_for(ctx), ctx.sessions),
        authenticator=lambda: authenticator_for(ctx),
        gateway_admin_url=settings.gateway_admin_url,
    )
    descriptor = platform_service_pb2.DESCRIPTOR.services_by_name["PlatformService"]
    return ServiceModuleSpec(
        "platform",
        [descriptor.full_name],
        lambda server: platform_service_pb2_grpc.add_PlatformServiceServicer_to_server(
            servicer, server
        ),
    )


async def _database_ping(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True


async def build_runtime(
    settings: Settings, service_names: Sequence[str], *, migrate: bool | None = None
) -> Runtime:
    """Create the engine, run migrations (SQLite by default), build every module.

    ``migrate=None`` migrates SQLite automatically (the embedded database belongs to
    this process) but not PostgreSQL, where ``embrec migrate`` is an explicit step.
    """
    from services.events import retention
    from services.events.outbox import OutboxRelay
    from services.platform import usage_store
    from services.runtime.usage import UsageRecorder
    from services.storage import migrate as migrations
    from services.storage.db import create_engine, session_factory

    url = settings.effective_database_url
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if migrate or (migrate is None and is_sqlite):
        await migrations.upgrade(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    ctx = ServiceContext(settings=settings, engine=engine, sessions=sessions)

    runtime_ref: list[Runtime] = []
    modules = [_platform_module(runtime_ref, ctx)]
    modules += [_service_module(name, ctx) for name in service_names]

    relay = OutboxRelay(sessions, _publisher(settings, sessions))

    async def run_relay(stop: asyncio.Event) -> None:
        if settings.event_bus == "kafka":
            from services.event_messages import TOPICS
            from services.events.kafka import ensure_topics

            # Topics first; if the broker is down now, the relay's backoff covers it.
            try:
                await ensure_topics(settings.kafka_bootstrap, sorted(set(TOPICS.values())))
            except Exception as exc:
                logger.warning("could not create Kafka topics yet: %s", exc)
        await relay.run(stop)

    async def run_event_retention(stop: asyncio.Event) -> None:
        await retention.run_retention(sessions, settings, stop)

    usage = UsageRecorder()

    async def run_usage_flush(stop: asyncio.Event) -> None:
        await usage_store.run_usage_flush(usage, sessions, settings.usage_flush_seconds, stop)

    async def flush_usage() -> None:
        # After the server drained, so the last calls are in; before the engine goes.
        await usage_store.flush_once(usage, sessions)

    async def dispose() -> None:
        await engine.dispose()

    runtime = Runtime(
        settings=settings,
        modules=modules,
        probes=[HealthProbe("database", lambda: _database_ping(engine))],
        background=[
            run_relay,
            run_event_retention,
            run_usage_flush,
            *(w for m in modules for w in getattr(m, "background", ())),
        ],
        on_stop=[*(h for m in modules for h in getattr(m, "on_stop", ())), flush_usage, dispose],
        usage=usage,
    )
    runtime_ref.append(runtime)
    # Service metrics (e.g. retrieval's cache hit rate) join the runtime's registry.
    for collector in (c for m in modules for c in getattr(m, "collectors", ())):
        runtime.metrics.registry.register(collector)
    if settings.metrics_port:
        try:
            runtime.metrics.serve(settings.grpc_host, settings.metrics_port)
        except OSError as exc:
            logger.warning("metrics port %d unavailable: %s", settings.metrics_port, exc)
    return runtime


def _publisher(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Any:
    if settings.event_bus == "kafka":
        from services.events.kafka import KafkaPublisher

        return KafkaPublisher(settings.kafka_bootstrap)
    from services.events.sqllog import SqlLogPublisher

    return SqlLogPublisher(sessions)
