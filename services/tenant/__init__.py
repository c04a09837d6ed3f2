"""The tenant service: tenants, console identities, API keys (identity issue)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.app import ServiceContext
    from services.runtime.server import ServiceModule

__all__ = ["module"]


def module(ctx: ServiceContext) -> ServiceModule:
    from services.tenant.servicer import build_module

    return build_module(ctx)
