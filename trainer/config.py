"""Typed hyperparameters for the LightGCN trainer.

Why this module exists: every knob that changes what a training run produces lives in
one validated object, so a run can be reproduced from the ``config.json`` written next
to its artifacts, and the tuned recipe is data (``trainer/configs/lightgcn.toml``), not
code. The Python defaults are the paper's (He et al., SIGIR 2020, section 4.1); the
TOML file holds the recipe measured to reach the paper's quality on a 2-core CPU
within an hour (see docs/trainer.md).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DEFAULT_CONFIG_PATH", "LightGCNConfig", "load_config", "resolve_device"]

DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "lightgcn.toml"


class LightGCNConfig(BaseModel):
    """LightGCN + BPR training hyperparameters (defaults: the paper's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Model.
    embedding_dim: int = Field(64, ge=1)
    n_layers: int = Field(3, ge=0)
    init: Literal["xavier", "normal"] = "xavier"  # paper: Xavier; PyTorch port: N(0, 0.1)
    init_std: float = Field(0.1, gt=0)  # used when init == "normal"

    # Optimisation (Adam).
    lr: float = Field(1e-3, gt=0)
    adam_eps: float = Field(1e-8, gt=0)
    l2: float = Field(1e-4, ge=0)  # reg * 0.5 * ||ego embeddings of the batch||^2 / batch
    batch_size: int = Field(1024, ge=1)
    negatives: int = Field(1, ge=1)  # sampled negatives (or candidates) per positive pair
    negative_selection: Literal["all", "hardest"] = "all"  # "hardest": DNS over candidates
    # "bpr": softplus(s_neg - s_pos) per negative; "softmax": sampled softmax (InfoNCE)
    # of the positive against all ``negatives`` at ``temperature`` (selection unused).
    loss: Literal["bpr", "softmax"] = "bpr"
    # Share of the negatives drawn from the positive's own category (needs item
    # categories): trains the ranking within a category, where the category boost
    # leaves the choice to the embeddings.
    category_negatives: float = Field(0.0, ge=0, le=1)
    temperature: float = Field(1.0, gt=0)
    epochs: int = Field(1000, ge=1)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_fraction: float = Field(0.0, ge=0, lt=1)  # linear warm-up, share of the run
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # cosine floor as a share of lr

    # Evaluation and early stopping.
    eval_every: int = Field(1, ge=1)  # epochs between evaluations
    eval_ks: tuple[int, ...] = (10, 20)
    eval_batch_users: int = Field(2048, ge=1)
    early_stop_metric: str = "recall@20"
    patience: int = Field(50, ge=0)  # evaluations without improvement; 0 disables
    # With a validation split: once it has chosen the epoch count, train again from
    # scratch on train + validation for that many epochs and return that model.
    refit: bool = False
    # With a validation split and item categories: choose the recent-category boost
    # (retriever.recency) on validation; the test metrics then score with it.
    category_boost: bool = False

    # Data split for tenant data (time-based, per user).
    test_fraction: float = Field(0.2, ge=0, lt=1)
    val_fraction: float = Field(0.0, ge=0, lt=1)

    # Runtime.
    seed: int = 2020
    device: str = "auto"  # "auto" -> cuda when available, else cpu
    num_threads: int = Field(0, ge=0)  # torch intra-op threads; 0 leaves torch's default

    def with_overrides(self, **overrides: Any) -> LightGCNConfig:
        """Return a validated copy with ``overrides`` applied (None values ignored)."""
        merged = self.model_dump()
        merged.update({k: v for k, v in overrides.items() if v is not None})
        return LightGCNConfig.model_validate(merged)


def load_config(path: str | Path | None = DEFAULT_CONFIG_PATH, **overrides: Any) -> LightGCNConfig:
    """Load a config from a TOML or JSON file (``None``: paper defaults) plus overrides.

    A TOML file may put the keys at top level or under a ``[lightgcn]`` table.
    """
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        raw: dict[str, Any]
        if p.suffix == ".json":
            raw = json.loads(p.read_text())
        else:
            with p.open("rb") as fh:
                raw = tomllib.load(fh)
        values = dict(raw.get("lightgcn", raw))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return LightGCNConfig.model_validate(values)


def resolve_device(device: str) -> torch.device:
    """Map ``"auto"`` to cuda when a GPU is present, else cpu; pass others through."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
