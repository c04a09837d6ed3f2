"""Index maps, splits, adjacency normalisation and negative sampling."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from trainer.data import InteractionData, NegativeSampler


def test_time_split_holds_out_each_users_latest(tmp_path: Path) -> None:
    users = ["b"] * 5 + ["a"] * 2 + ["b"]
    items = ["x", "y", "z", "w", "v", "x", "y", "x"]  # last row: b re-does x, later
    ts = [1, 2, 3, 4, 5, 1, 2, 9]
    d = InteractionData.from_interactions(users, items, ts, test_fraction=0.2)
    assert d.user_ids == ["a", "b"] and d.item_ids == ["v", "w", "x", "y", "z"]
    test = {(d.user_ids[u], d.item_ids[i]) for u, i in zip(d.test.users, d.test.items, strict=True)}
    # b: 5 distinct items, 20% -> 1 held out: x (latest at t=9). a: 2 * 0.2 rounds to 0.
    assert test == {("b", "x")}
    assert len(d.train) == 6


def test_time_split_keeps_one_train_item_and_validation() -> None:
    d = InteractionData.from_interactions(
        ["u"] * 10,
        [f"i{k}" for k in range(10)],
        list(range(10)),
        test_fraction=0.2,
        val_fraction=0.25,
    )
    assert sorted(d.item_ids[i] for i in d.test.items) == ["i8", "i9"]
    assert sorted(d.item_ids[i] for i in d.valid.items) == ["i6", "i7"]
    assert len(d.train) == 6
    single = InteractionData.from_interactions(["u"], ["i"], [0.0], test_fraction=0.9)
    assert len(single.train) == 1 and len(single.test) == 0


def test_gowalla_format(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("0 0 1\n1 2\n2 1 3\n")
    with gzip.open(tmp_path / "test.txt.gz", "wt") as fh:
        fh.write("0 2\n1 3\n2 0\n")
    d = InteractionData.from_gowalla(tmp_path / "train.txt", tmp_path / "test.txt.gz")
    assert (d.n_users, d.n_items, len(d.train), len(d.test)) == (3, 4, 5, 3)
    assert d.user_index["2"] == 2 and d.item_ids[3] == "3"
    assert d.item_popularity().tolist() == [1, 2, 1, 1]


def test_adjacency_is_symmetric_normalised() -> None:
    d = InteractionData.from_interactions(
        ["a", "a", "b"], ["x", "y", "x"], [0, 1, 2], test_fraction=0.0
    )
    a = d.adjacency().to_dense()
    n_u = d.n_users
    dense = torch.zeros_like(a)
    for u, i in zip(d.train.users, d.train.items, strict=True):
        dense[u, n_u + i] = dense[n_u + i, u] = 1
    deg = dense.sum(1)
    expected = dense / torch.sqrt(deg[:, None] * deg[None, :])
    assert torch.allclose(a, expected)
    assert d.adjacency().layout == torch.sparse_csr


def test_negative_sampler_never_returns_positives() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(50), 18)
    items = np.concatenate([rng.choice(20, 18, replace=False) for _ in range(50)])
    s = NegativeSampler(users, items, 20)
    neg = s.sample(np.arange(50), 40, np.random.default_rng(1))
    assert neg.shape == (50, 40)
    pos = set(zip(users.tolist(), items.tolist(), strict=True))
    assert not any((u, int(j)) in pos for u in range(50) for j in neg[u])


def test_data_hash_changes_with_data() -> None:
    a = InteractionData.from_interactions(["a", "b"], ["x", "x"], [0, 1], test_fraction=0.0)
    b = InteractionData.from_interactions(["a", "b"], ["x", "y"], [0, 1], test_fraction=0.0)
    assert a.data_hash() != b.data_hash()
    assert (
        a.data_hash()
        == InteractionData.from_interactions(
            ["b", "a"], ["x", "x"], [1, 0], test_fraction=0.0
        ).data_hash()
    )


def test_same_category_negatives_stay_in_the_positives_category() -> None:
    from trainer.data import NegativeSampler, sample_same_category

    rng = np.random.default_rng(0)
    n_items = 60
    category = np.arange(n_items, dtype=np.int64) % 3
    category[::20] = -1  # 0, 20, 40 have none: their own group
    users = rng.integers(0, 10, 400).astype(np.int64)
    items = rng.integers(0, n_items, 400).astype(np.int64)
    sampler = NegativeSampler(users, items, n_items)
    neg = sample_same_category(sampler, users, items, category, 5, rng)
    assert neg.shape == (400, 5)
    assert not sampler.is_positive(np.repeat(users, 5), neg.ravel()).any()
    same = category[neg] == category[items][:, None]
    assert same.mean() > 0.95  # the rest: a user owning nearly all of a category
