"""What the sample store allows a recommender (``embrec bench sample --ceiling``).

Why this module exists: the seed's "NDCG@10 > 0.30" on the sample store is a claim about
the data as much as about the model. The oracle that knows every user's hidden style
is no bound for a recommender, which knows a user only through their history. The
figure that bounds a learned model is the predictor that knows everything the generator
knows about the *items* (styles, popularity, categories, the choice rule) and infers
each user from their history alone: a model that learned the items perfectly can do no
better, up to how the ranking metric rewards probabilities.

The user's style is inferred by importance sampling: styles are drawn from the
generator's prior (standard normal), weighted by the likelihood of the user's history
pairs under the choice rule, and the predicted probabilities are averaged with those
weights. More samples → closer to the exact posterior (the figures rise slowly with
the sample count; docs/training-service.md gives them at 30K, 100K and 300K). The
category a session is in is inferred from the history too: half the weight on the
recent items' categories, half on all of them.

The split, masking and metrics are the trainer's own (per-user time split with the
platform's fractions, the history's items masked), so the figures compare one to one
with ``embrec bench sample``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import numpy.typing as npt
import torch

from services.sampledata.generator import CATEGORIES, Latent, SampleData
from trainer.data import InteractionData, Split
from trainer.evaluate import evaluate_scorer
from trainer.recency import history_before

__all__ = ["category_weights", "posterior_choice", "sample_store_ceiling"]

IntArray = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

#: Probability mass spread over the whole category, so that a history item outside a
#: sampled style's considered set lowers that sample's weight instead of zeroing it
#: (with finitely many samples none might fit every item exactly).
SMOOTHING = 0.01
#: The category estimate: this share on the recent items' categories (half-life in
#: items), the rest on the smoothed counts of all of them.
RECENT_SHARE, HALF_LIFE, PRIOR_COUNT = 0.5, 0.25, 0.1


def posterior_choice(
    latent: Latent,
    users: IntArray,
    items: IntArray,
    n_users: int,
    *,
    samples: int,
    seed: int = 0,
    chunk: int = 10_000,
) -> F32:
    """``(n_users, items)``: each item's within-category choice probability, averaged
    over the styles that explain the user's history pairs ``(users[k], items[k])``.

    Styles come from the prior in chunks; the weights are accumulated as a running
    log-sum-exp, so memory is one chunk's likelihoods, not all samples'.
    """
    n_items = len(latent.item_category)
    pool = np.bincount(latent.item_category, minlength=len(CATEGORIES))
    floor = (SMOOTHING / pool[latent.item_category]).astype(np.float32)
    history = torch.sparse_coo_tensor(
        torch.from_numpy(np.vstack([users, items])),
        torch.ones(len(users)),
        (n_users, n_items),
        check_invariants=True,
    ).coalesce()
    history = torch.sparse_coo_tensor(
        history.indices(), torch.ones_like(history.values()), history.shape, check_invariants=True
    )  # a pair seen twice counts once, as the model sees it
    rng = np.random.default_rng(seed)
    best = torch.full((n_users,), -torch.inf)
    total = torch.zeros(n_users)
    mixed = torch.zeros(n_users, n_items)
    for start in range(0, samples, chunk):
        styles = rng.normal(size=(min(chunk, samples - start), latent.item_style.shape[1]))
        probs = torch.from_numpy(latent.choice_probabilities(styles))
        log_probs = torch.log((1.0 - SMOOTHING) * probs + torch.from_numpy(floor))
        loglik = torch.sparse.mm(history, log_probs.T)  # (users, chunk)
        new_best = torch.maximum(best, loglik.max(1).values)
        rescale = torch.exp(best - new_best)
        weights = torch.exp(loglik - new_best[:, None])
        total = total * rescale + weights.sum(1)
        mixed = mixed * rescale[:, None] + weights @ probs
        best = new_best
    out: F32 = (mixed / total[:, None]).numpy()
    return out


def category_weights(
    users: IntArray,
    items: IntArray,
    times: npt.NDArray[np.float64],
    item_category: IntArray,
    n_users: int,
) -> npt.NDArray[np.float64]:
    """``(n_users, categories)``: the chance the user's next session is in each category,
    from their history pairs (recent ones weigh more; see the module constants)."""
    n_cat = len(CATEGORIES)
    order = np.lexsort((-times, users))
    users, items = users[order], items[order]
    starts = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=n_users))[:-1]])
    rank = np.arange(len(users)) - starts[users]
    cats = item_category[items]
    recent = np.zeros((n_users, n_cat))
    np.add.at(recent, (users, cats), 0.5 ** (rank / HALF_LIFE))
    recent /= np.maximum(recent.sum(1, keepdims=True), 1e-12)
    counts = np.full((n_users, n_cat), PRIOR_COUNT)
    np.add.at(counts, (users, cats), 1.0)
    counts /= counts.sum(1, keepdims=True)
    weights: npt.NDArray[np.float64] = RECENT_SHARE * recent + (1.0 - RECENT_SHARE) * counts
    return weights


def sample_store_ceiling(
    data: SampleData,
    *,
    samples: int = 100_000,
    seed: int = 0,
    test_fraction: float = 0.2,
    val_fraction: float = 0.1,
    split: str = "test",
    out: Callable[[str], object] = print,
) -> dict[str, float]:
    """NDCG@10 and Recall@10 on ``split`` of: popularity, the oracle (true styles and
    tastes), and the predictors that know the items but infer the users."""
    latent = data.latent
    if latent is None:
        raise ValueError("the sample data carries no latent parameters")
    if split not in ("valid", "test"):
        raise ValueError("split must be 'valid' or 'test'")
    interactions = data.interactions
    split_data = InteractionData.from_interactions(
        [row[0] for row in interactions],
        [row[1] for row in interactions],
        [datetime.fromisoformat(row[3].replace("Z", "+00:00")).timestamp() for row in interactions],
        test_fraction=test_fraction,
        val_fraction=val_fraction,
    )
    # Generator indices of the split's users and items ("user_12" -> 12).
    uid = np.array([int(u.removeprefix("user_")) for u in split_data.user_ids], np.int64)
    iid = np.array([int(i.removeprefix("item_")) for i in split_data.item_ids], np.int64)
    history: Split = history_before(split_data, split)
    masked = InteractionData(split_data.user_ids, split_data.item_ids, history, Split.empty())
    held_out = split_data.split_csr(split)
    onehot = np.eye(len(CATEGORIES))[latent.item_category]  # (items, categories)

    def score(key: str, label: str, scores: npt.NDArray[np.floating]) -> None:
        table = torch.from_numpy(np.ascontiguousarray(scores[:, iid], dtype=np.float32))
        metrics = evaluate_scorer(
            lambda u: table[u], split_data.n_items, masked.train_csr(), held_out, ks=(10,)
        )
        figures[f"{key}/ndcg@10"] = metrics["ndcg@10"]
        figures[f"{key}/recall@10"] = metrics["recall@10"]
        out(f"  {label:<52} NDCG@10 {metrics['ndcg@10']:.4f}  Recall@10 {metrics['recall@10']:.4f}")

    figures: dict[str, float] = {}
    n_items = len(latent.item_category)
    with_held_out = int(np.count_nonzero(np.diff(held_out[0])))
    out(f"{split} split: {len(held_out[1]):,} held-out pairs of {with_held_out:,} users")
    popularity = np.bincount(iid[history.items], minlength=n_items).astype(np.float64)
    score("popularity", "popularity", np.broadcast_to(popularity, (split_data.n_users, n_items)))
    known = latent.choice_probabilities(latent.user_style[uid])
    score("oracle", "oracle: true user styles and tastes", known * (latent.taste[uid] @ onehot.T))
    inferred = posterior_choice(
        latent, history.users, iid[history.items], split_data.n_users, samples=samples, seed=seed
    )
    score(
        "true_tastes",
        "items known, styles inferred, true tastes",
        inferred * (latent.taste[uid] @ onehot.T),
    )
    assert history.times is not None
    categories = category_weights(
        history.users, iid[history.items], history.times, latent.item_category, split_data.n_users
    )
    score(
        "ceiling", "items known, styles and categories inferred", inferred * (categories @ onehot.T)
    )
    return figures
