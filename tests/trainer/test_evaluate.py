"""Metrics against values computed by hand on a toy case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.evaluate import evaluate_scorer, popularity_baseline


def _csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    return indptr, np.array([i for r in rows for i in sorted(r)], dtype=np.int64)


# 5 items. user0: train {0}, test {1, 3}; user1: test {4}; user2: no test (skipped).
TRAIN = _csr([[0], [], [2]])
TEST = _csr([[1, 3], [4], []])
SCORES = torch.tensor(
    [[9.0, 8.0, 7.0, 1.0, 0.0], [5.0, 1.0, 3.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
)


def test_metrics_match_hand_computed_values() -> None:
    m = evaluate_scorer(lambda u: SCORES[u], 5, TRAIN, TEST, ks=(1, 2, 3), batch_users=1)
    d = [1 / math.log2(r + 2) for r in range(3)]  # 1, 0.6309, 0.5
    # user0 ranking (item 0 masked): 1, 2, 3, 4 -> hits at ranks 0 and 2.
    # user1 ranking: 0, 4, 2, 1, 3 -> hit at rank 1.
    expected = {
        "recall@1": (0.5 + 0) / 2,
        "precision@1": (1 + 0) / 2,
        "hit_rate@1": 0.5,
        "ndcg@1": (1 + 0) / 2,
        "recall@2": (0.5 + 1) / 2,
        "precision@2": (0.5 + 0.5) / 2,
        "hit_rate@2": 1.0,
        "ndcg@2": (d[0] / (d[0] + d[1]) + d[1] / d[0]) / 2,
        "recall@3": (1 + 1) / 2,
        "precision@3": (2 / 3 + 1 / 3) / 2,
        "hit_rate@3": 1.0,
        "ndcg@3": ((d[0] + d[2]) / (d[0] + d[1]) + d[1] / d[0]) / 2,
    }
    assert m.keys() == expected.keys()
    for k, v in expected.items():
        assert m[k] == pytest.approx(v), k


def test_batching_does_not_change_results() -> None:
    a = evaluate_scorer(lambda u: SCORES[u], 5, TRAIN, TEST, ks=(1, 2, 3), batch_users=1)
    b = evaluate_scorer(lambda u: SCORES[u], 5, TRAIN, TEST, ks=(1, 2, 3), batch_users=100)
    assert a == pytest.approx(b)


def test_popularity_baseline_masks_train_items() -> None:
    pop = np.array([10, 9, 8, 7, 6], dtype=np.int64)  # same order as user0's scores
    m = popularity_baseline(pop, TRAIN, TEST, ks=(1,))
    # user0 top-1 (item 0 masked) = item 1 (hit); user1 top-1 = item 0 (miss).
    assert m["recall@1"] == pytest.approx(0.25)
    assert m["hit_rate@1"] == pytest.approx(0.5)
