"""The audit service: append-only, per-tenant hash-chained trail; search, export, verify.

Producers call :func:`services.audit.record.record_audit`; the event travels through the
outbox and the bus (``embrec.audit``) to this service's consumer, which appends it
(services/audit/store.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.app import ServiceContext
    from services.runtime.server import ServiceModule

__all__ = ["module"]


def module(ctx: ServiceContext) -> ServiceModule:
    from services.audit.servicer import build_module

    return build_module(ctx)
