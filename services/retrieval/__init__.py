"""The retrieval service: recommendations from the deployed models' indexes (issue #6).

See docs/retrieval-service.md. The module's ``background`` tasks (impression writer,
deployment and interaction consumers) must run with the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.app import ServiceContext
    from services.runtime.server import ServiceModule

__all__ = ["module"]


def module(ctx: ServiceContext) -> ServiceModule:
    from services.retrieval.servicer import build_module

    return build_module(ctx)
