"""Shared fixtures: a small synthetic dataset with latent structure."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.config import LightGCNConfig, load_config
from trainer.data import InteractionData


def make_clustered(
    n_users: int = 300, n_items: int = 200, n_clusters: int = 10, per_user: int = 24, seed: int = 0
) -> InteractionData:
    """Users like two of ``n_clusters`` item clusters; 90% of their events are there.

    A model that learns the clusters ranks a user's held-out items far above what
    popularity alone can, so "beats popularity" is a meaningful smoke check.
    """
    rng = np.random.default_rng(seed)
    cluster_of = np.arange(n_items) % n_clusters
    members = [np.flatnonzero(cluster_of == c) for c in range(n_clusters)]
    users, items, ts = [], [], []
    for u in range(n_users):
        favs = rng.choice(n_clusters, 2, replace=False)
        pool = np.concatenate([members[c] for c in favs])
        n_in = int(per_user * 0.9)
        chosen = set(rng.choice(pool, n_in, replace=False).tolist())
        while len(chosen) < per_user:
            chosen.add(int(rng.integers(n_items)))
        for it in chosen:
            users.append(f"u{u}")
            items.append(f"i{it}")
            ts.append(float(rng.random()))
    return InteractionData.from_interactions(users, items, ts, test_fraction=0.2)


@pytest.fixture(scope="session")
def clustered() -> InteractionData:
    return make_clustered()


@pytest.fixture
def small_config() -> LightGCNConfig:
    return load_config(
        None,
        embedding_dim=32,
        n_layers=2,
        init="normal",
        lr=0.02,
        batch_size=512,
        negatives=4,
        epochs=12,
        eval_every=4,
        patience=0,
        num_threads=1,
        l2=1e-4,
        seed=7,
        lr_schedule="cosine",
    )
