"""The audit service: the whole contract is served; behaviour lands with its issue."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.app import ServiceContext
    from services.runtime.server import ServiceModule

__all__ = ["module"]


def module(ctx: ServiceContext) -> ServiceModule:
    from embrec.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
    from services.runtime.servicers import unbuilt_module

    return unbuilt_module(
        "audit",
        audit_service_pb2,
        audit_service_pb2_grpc,
        ["AuditService", "AuditInternalService"],
        "issue #3 (audit trail)",
    )
