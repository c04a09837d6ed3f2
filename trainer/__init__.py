"""embrec's LightGCN trainer library: data, model, evaluation, loop, artifacts.

Why a library and not a service: the trainer worker, the bench command and the tests
all drive the same functions; services wrap them. See docs/trainer.md.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562): services read artifacts without paying for torch,
# whose import blocks an event loop for seconds.
_EXPORTS = {
    "Artifacts": "trainer.artifacts",
    "ArtifactsCorruptError": "trainer.artifacts",
    "load_artifacts": "trainer.artifacts",
    "write_artifacts": "trainer.artifacts",
    "LightGCNConfig": "trainer.config",
    "load_config": "trainer.config",
    "InteractionData": "trainer.data",
    "evaluate_embeddings": "trainer.evaluate",
    "popularity_baseline": "trainer.evaluate",
    "LightGCN": "trainer.model",
    "NonFiniteLossError": "trainer.train",
    "TrainResult": "trainer.train",
    "train": "trainer.train",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "Artifacts",
    "ArtifactsCorruptError",
    "InteractionData",
    "LightGCN",
    "LightGCNConfig",
    "NonFiniteLossError",
    "TrainResult",
    "evaluate_embeddings",
    "load_artifacts",
    "load_config",
    "popularity_baseline",
    "train",
    "write_artifacts",
]
