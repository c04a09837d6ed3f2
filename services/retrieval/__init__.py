"""The retrieval service: the whole contract is served; behaviour lands with its issue."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.app import ServiceContext
    from services.runtime.server import ServiceModule

__all__ = ["module"]


def module(ctx: ServiceContext) -> ServiceModule:
    from embrec.retrieval.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc
    from services.runtime.servicers import unbuilt_module

    return unbuilt_module(
        "retrieval",
        retrieval_service_pb2,
        retrieval_service_pb2_grpc,
        ["RetrievalService", "RetrievalInternalService"],
        "issue #6 (retrieval)",
    )
