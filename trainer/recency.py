"""The recent-category boost in evaluation: every user at once, and its choice.

The formula and the serving side are in ``retriever.recency`` (one user per request);
this is its vectorised twin for full-ranking evaluation, and a test holds the two to
the same numbers. A user's history when a split is scored is what happened before it
(validation: the train pairs; test: train and validation), newest first, the same
items the retriever reads from the user's interactions when they ask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from retriever.recency import RecentCategoryBoost
from trainer.data import InteractionData, Split
from trainer.evaluate import CSR, evaluate_embeddings, evaluate_scorer

__all__ = [
    "HALF_LIVES",
    "WEIGHTS",
    "choose_boost",
    "evaluate_boosted",
    "history_before",
    "share_matrix",
]

#: The grid tried on validation: every half-life with every weight (and the plain
#: model, weight 0).
HALF_LIVES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)
WEIGHTS: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)


def history_before(data: InteractionData, split: str) -> Split:
    """The pairs a user had before ``split`` ("valid": train; "test": train + valid)."""
    parts = [data.train] if split == "valid" else [data.train, data.valid]
    times = [p.times if p.times is not None else np.zeros(len(p)) for p in parts]
    return Split(
        np.concatenate([p.users for p in parts]),
        np.concatenate([p.items for p in parts]),
        np.concatenate(times),
    )


def share_matrix(
    history: Split,
    item_category: npt.NDArray[np.int64],
    n_users: int,
    n_categories: int,
    boost: RecentCategoryBoost,
) -> npt.NDArray[np.float32]:
    """``(n_users, n_categories)`` category shares of each user's recent items."""
    times = history.times if history.times is not None else np.zeros(len(history))
    order = np.lexsort((-times, history.users))
    users, items = history.users[order], history.items[order]
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(users)) - starts[users]
    keep = rank < boost.max_items
    users, items, rank = users[keep], items[keep], rank[keep]
    weights = 0.5 ** (rank / boost.half_life)
    total = np.bincount(users, weights=weights, minlength=n_users)
    cats = item_category[items]
    known = cats >= 0
    shares = np.zeros((n_users, max(n_categories, 1)), np.float64)
    np.add.at(shares, (users[known], cats[known]), weights[known])
    shares /= np.where(total > 0, total, 1.0)[:, None]
    return shares.astype(np.float32)


def evaluate_boosted(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    shares: npt.NDArray[np.float32],
    item_category: npt.NDArray[np.int64],
    weight: float,
    train: CSR,
    test: CSR,
    *,
    ks: Sequence[int] = (10, 20),
    batch_users: int = 2048,
) -> dict[str, float]:
    """Full-ranking metrics of ``<u, i> + weight * share_u(category(i))``."""
    n_cat = shares.shape[1]
    onehot = np.zeros((len(item_category), n_cat), np.float32)
    known = item_category >= 0
    onehot[np.flatnonzero(known), item_category[known]] = 1.0
    boost_t = torch.from_numpy(onehot.T.copy()).to(user_emb.device)
    shares_t = torch.from_numpy(shares).to(user_emb.device)
    item_t = item_emb.T.contiguous()

    def scorer(u: torch.Tensor) -> torch.Tensor:
        return user_emb[u] @ item_t + weight * (shares_t[u] @ boost_t)

    return evaluate_scorer(
        scorer,
        item_emb.shape[0],
        train,
        test,
        ks=ks,
        batch_users=batch_users,
        device=user_emb.device,
    )


def choose_boost(
    data: InteractionData,
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    metric: str,
    *,
    ks: Sequence[int] = (10, 20),
    batch_users: int = 2048,
    plain: dict[str, float] | None = None,
) -> tuple[RecentCategoryBoost, dict[str, float]]:
    """The grid point with the best validation ``metric`` (the plain model included).

    Returns the boost (weight 0 when nothing beats the plain model, or when the items
    have no categories) and its validation metrics.
    """
    codes, n_cat = data.category_codes()
    train_csr, valid_csr = data.train_csr(), data.split_csr("valid")
    best = RecentCategoryBoost()
    best_metrics = plain or evaluate_embeddings(
        user_emb, item_emb, train_csr, valid_csr, ks=ks, batch_users=batch_users
    )
    if n_cat == 0 or len(data.valid) == 0:
        return best, best_metrics
    history = history_before(data, "valid")
    for half_life in HALF_LIVES:
        candidate = RecentCategoryBoost(half_life=half_life)
        shares = share_matrix(history, codes, data.n_users, n_cat, candidate)
        for weight in WEIGHTS:
            metrics = evaluate_boosted(
                user_emb, item_emb, shares, codes, weight, train_csr, valid_csr,
                ks=ks, batch_users=batch_users,
            )  # fmt: skip
            if metrics.get(metric, -1.0) > best_metrics.get(metric, -1.0):
                best = RecentCategoryBoost(weight=weight, half_life=half_life)
                best_metrics = metrics
    return best, best_metrics
