"""Hyperparameters: the contract's names and ranges, and the trainer's config.

Requests carry the contract's names (``embedding_dim``, ``learning_rate``...); jobs
store them as given (only what the caller set) and the worker resolves them against
the platform defaults for tenant data into a ``trainer.config.LightGCNConfig``. The
resolved values go into the model's lineage, so a model can be reproduced.

Pure: no torch, no grpc (the worker imports the trainer only in its training process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.errors import FieldViolation, InvalidArgument

__all__ = ["PLATFORM_DEFAULTS", "RANGES", "trainer_overrides", "validate_hyperparameters"]


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    low_open: bool = False
    integer: bool = True

    def check(self, value: float) -> bool:
        if self.low_open:
            return self.low < value <= self.high
        return self.low <= value <= self.high

    def describe(self) -> str:
        left = "(" if self.low_open else "["
        return f"must be in {left}{self.low:g}, {self.high:g}]"


#: The contract's documented ranges (resources.proto Hyperparameters).
RANGES: dict[str, Range] = {
    "embedding_dim": Range(8, 512),
    "num_layers": Range(1, 6),
    "epochs": Range(1, 10000),
    "batch_size": Range(64, 1_048_576),
    "learning_rate": Range(0.0, 1.0, low_open=True, integer=False),
    "l2_weight": Range(0.0, 0.999999, integer=False),
    "negatives_per_positive": Range(1, 64),
    "early_stopping_patience": Range(0, 10_000),
    "holdout_fraction": Range(0.0, 0.5, low_open=True, integer=False),
    "seed": Range(0, 2**63 - 1),
    "max_duration_seconds": Range(1, 7 * 24 * 3600, integer=False),
}

#: Defaults for tenant data, chosen by validation NDCG@10 on the sample store (10K users,
#: 5K items, 100K interactions; every variant in docs/training-service.md). With ~4.6
#: training pairs a user the model overfits fast, so L2 is well above the recipe's; a
#: 4th layer smooths sparse users. The loss is a sampled softmax over 64 uniform
#: negatives (val NDCG@10 0.194 against BPR's 0.181-0.187 with 4 hardest-of candidates).
#: The recipe's cosine decay spans ``epochs``. Once validation has chosen the epoch
#: count, the model is trained again on train + validation (``refit``: what is served
#: has seen the user's latest interactions), and the recent-category boost
#: (``retriever.recency``, served identically) is chosen on validation. Test NDCG@10
#: 0.254 (BPR defaults without refit and boost: 0.216; old defaults 0.192) in ~2-3 min on
#: 2 shared CPU cores; the seed's 0.30 is not reached (docs).
PLATFORM_DEFAULTS: dict[str, Any] = {
    "embedding_dim": 64,
    "n_layers": 4,
    "loss": "softmax",
    "negatives": 64,
    "negative_selection": "all",
    "l2": 3e-2,
    "epochs": 60,
    "eval_every": 2,
    "patience": 5,
    "early_stop_metric": "ndcg@10",
    "test_fraction": 0.2,
    "val_fraction": 0.1,
    "refit": True,
    "category_boost": True,
    "num_threads": 1,
}

#: Contract name -> trainer config field.
_TO_TRAINER = {
    "embedding_dim": "embedding_dim",
    "num_layers": "n_layers",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate": "lr",
    "l2_weight": "l2",
    "negatives_per_positive": "negatives",
    "early_stopping_patience": "patience",
    "holdout_fraction": "test_fraction",
    "seed": "seed",
}


def validate_hyperparameters(values: dict[str, Any], field_prefix: str = "hyperparameters") -> None:
    """InvalidArgument naming every field out of its documented range."""
    violations = []
    for name, value in values.items():
        rule = RANGES.get(name)
        if rule is None:
            violations.append(FieldViolation(f"{field_prefix}.{name}", "unknown hyperparameter"))
            continue
        if not isinstance(value, int | float) or not rule.check(float(value)):
            violations.append(
                FieldViolation(f"{field_prefix}.{name}", f"{rule.describe()}; got {value!r}")
            )
    if violations:
        raise InvalidArgument(
            "Hyperparameters out of range: "
            + "; ".join(f"{v.field} {v.description}" for v in violations),
            violations=violations,
            reason="HYPERPARAMETER_OUT_OF_RANGE",
        )


def trainer_overrides(requested: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """(LightGCNConfig overrides, max_seconds) from a job's requested hyperparameters."""
    overrides = dict(PLATFORM_DEFAULTS)
    for name, value in requested.items():
        if name in _TO_TRAINER:
            overrides[_TO_TRAINER[name]] = value
    max_seconds = requested.get("max_duration_seconds")
    return overrides, float(max_seconds) if max_seconds is not None else None


def auto_batch_size(train_pairs: int) -> int:
    """The default batch for a data size: about 8 steps an epoch, within [1024, 8192].

    Measured on an earlier sample store: 10K train pairs reach NDCG@10 0.43 with batch
    1024 but 0.05 with 4096 in the same 12 epochs (too few steps). On the current default
    store (45.6K pairs, 60 epochs) batch 1024 is no better than the auto 5,697 (test
    NDCG@10 0.207 vs 0.210 at 3 layers) and takes 2.5x as long.
    """
    return int(min(8192, max(1024, train_pairs // 8)))


def contract_names(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved trainer config in the contract's names (for ModelLineage.config)."""
    back = {v: k for k, v in _TO_TRAINER.items()}
    return {back[k]: v for k, v in config.items() if k in back}
