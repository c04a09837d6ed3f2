"""The training service: jobs, the model registry, deployments, schedules, the worker.

Modules: ``hyper`` (hyperparameter ranges and platform defaults; pure), ``quality``
(the data-quality check), ``domain`` (TrainingStore: jobs, models, deployments,
schedules; no grpc), ``convert`` (rows as protobuf), ``worker`` (claims and runs jobs),
``runner`` (the training child process: torch lives only there), ``servicer`` (the
gRPC adapter). docs/training-service.md describes the queue, the artifacts and the
deployment format the retrievers read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.app import ServiceContext
    from services.runtime.server import ServiceModule

__all__ = ["module"]


def module(ctx: ServiceContext) -> ServiceModule:
    from services.training.servicer import build_module

    return build_module(ctx)
