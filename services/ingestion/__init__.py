"""The ingestion service: the whole contract is served; behaviour lands with its issue."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.app import ServiceContext
    from services.runtime.server import ServiceModule

__all__ = ["module"]


def module(ctx: ServiceContext) -> ServiceModule:
    from embrec.ingestion.v1 import ingestion_service_pb2, ingestion_service_pb2_grpc
    from services.runtime.servicers import unbuilt_module

    return unbuilt_module(
        "ingestion",
        ingestion_service_pb2,
        ingestion_service_pb2_grpc,
        ["IngestionService"],
        "issue #4 (ingestion)",
    )
