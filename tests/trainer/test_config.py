"""Config loading: paper defaults, the shipped TOML recipe, overrides, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pydantic
import pytest
import torch

from trainer.config import LightGCNConfig, load_config, resolve_device


def test_paper_defaults() -> None:
    c = LightGCNConfig()
    assert (c.embedding_dim, c.n_layers, c.lr, c.l2) == (64, 3, 1e-3, 1e-4)


def test_shipped_recipe_loads_with_overrides(tmp_path: Path) -> None:
    c = load_config(lr=0.5)
    assert c.lr == 0.5 and c.embedding_dim == 64
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"batch_size": 7}))
    assert load_config(p, seed=3).batch_size == 7
    with pytest.raises(pydantic.ValidationError):
        load_config(None, unknown_knob=1)
    with pytest.raises(pydantic.ValidationError):
        load_config(None, lr=-1.0)


def test_device_auto() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
