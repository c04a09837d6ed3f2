"""Atomic, checksummed artifacts: round trip and corruption detection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer.artifacts import ArtifactsCorruptError, load_artifacts, write_artifacts


def _write(root: Path, version: str = "v1") -> Path:
    kw: dict[str, Any] = {
        "user_embeddings": np.ones((2, 4), np.float32),
        "item_embeddings": np.arange(12, dtype=np.float32).reshape(3, 4),
        "user_ids": ["a", "b"],
        "item_ids": ["x", "y", "z"],
        "popularity": np.array([3, 1, 0]),
        "metrics": {"recall@20": 0.5},
        "config": {"lr": 0.01},
        "data_hash": "abc",
    }
    return write_artifacts(root, version, **kw)


def test_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path)
    art = load_artifacts(path)
    assert art.item_embeddings.dtype == np.float32
    assert art.item_embeddings[2, 3] == 11 and art.user_ids == ["a", "b"]
    assert art.popularity.tolist() == [3, 1, 0] and art.data_hash == "abc"
    assert set(art.manifest["files"]) >= {"item_embeddings.npy", "config.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no temp dirs left behind
    with pytest.raises(FileExistsError):
        _write(tmp_path)


def test_checksum_mismatch_detected(tmp_path: Path) -> None:
    path = _write(tmp_path)
    emb = path / "item_embeddings.npy"
    raw = bytearray(emb.read_bytes())
    raw[-1] ^= 0xFF
    emb.chmod(0o644)
    emb.write_bytes(bytes(raw))
    with pytest.raises(ArtifactsCorruptError, match=r"item_embeddings\.npy"):
        load_artifacts(path)


def test_missing_file_detected(tmp_path: Path) -> None:
    path = _write(tmp_path)
    (path / "metrics.json").unlink()
    with pytest.raises(ArtifactsCorruptError, match="missing"):
        load_artifacts(path)
