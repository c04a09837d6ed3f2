"""The ingestion service: catalog and interaction imports, real-time events, analytics.

Modules: ``parsing`` (reading and validating rows; pure), ``imports`` (the import
pipeline: bulk writes, outbox events, audit, idempotency), ``tracking`` (TrackEvents and
the bus consumers that store events), ``queries`` (uploads, catalog, data stats,
analytics), ``auth`` (the caller and its tenant), ``servicer`` (the gRPC adapter).

The module's ``background`` tasks (the consumers) must run with the server: the
composition root starts them with the outbox relay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.app import ServiceContext
    from services.runtime.server import ServiceModule

__all__ = ["module"]


def module(ctx: ServiceContext) -> ServiceModule:
    from services.ingestion.servicer import build_module

    return build_module(ctx)
