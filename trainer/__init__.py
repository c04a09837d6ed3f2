"""embrec's LightGCN trainer library: data, model, evaluation, loop, artifacts.

Why a library and not a service: the trainer worker, the bench command and the tests
all drive the same functions; services wrap them. See docs/trainer.md.
"""

from trainer.artifacts import Artifacts, ArtifactsCorruptError, load_artifacts, write_artifacts
from trainer.config import LightGCNConfig, load_config
from trainer.data import InteractionData
from trainer.evaluate import evaluate_embeddings, popularity_baseline
from trainer.model import LightGCN
from trainer.train import NonFiniteLossError, TrainResult, train

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
