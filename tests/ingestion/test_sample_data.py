"""`embrec sample-data`: every user active, realistic mix, and structure a model can learn."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from services.ingestion.parsing import InteractionValidator, ItemValidator
from services.sampledata import generate

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_every_user_has_interactions_and_the_mix_is_realistic() -> None:
    data = generate(users=2000, items=1000, interactions=20_000, seed=3, now=NOW)
    per_user = Counter(row[0] for row in data.interactions)
    assert len(data.interactions) == 20_000
    assert len(per_user) == 2000 and min(per_user.values()) >= 3
    assert max(per_user.values()) > 30  # heavy users exist
    kinds = Counter(row[2] for row in data.interactions)
    assert kinds["view"] > kinds["click"] > kinds["add_to_cart"] > kinds["purchase"] > 0
    assert kinds["rating"] > 0
    # Popularity skew: the top 1 % of items take a large share of the interactions.
    per_item = sorted(Counter(row[1] for row in data.interactions).values(), reverse=True)
    assert sum(per_item[:10]) > 0.05 * len(data.interactions)
    stamps = [row[3] for row in data.interactions]
    assert stamps == sorted(stamps) and stamps[-1] < "2026-11-25T12:00:00Z"
    assert stamps[0] >= "2026-08-27"  # the last 90 days


def test_files_pass_the_import_validation() -> None:
    data = generate(users=200, items=100, interactions=2000, seed=5, now=NOW)
    items = ItemValidator(list(data.items[0]))
    assert all(items.validate(n, row)[0] is not None for n, row in enumerate(data.items, 1))
    columns = ["user_id", "item_id", "interaction_type", "timestamp", "value"]
    validator = InteractionValidator(columns, now=NOW)
    assert all(validator.accept(list(row)) is not None for row in data.interactions)


def _ndcg_at_10(
    scores: npt.NDArray[np.float64], train: npt.NDArray[np.bool_], test: list[int]
) -> float:
    scores = np.where(train, -np.inf, scores)  # seen items are not recommended
    top = np.argsort(-scores, axis=1)[:, :10]
    hits = top == np.asarray(test)[:, None]
    gains = (hits / np.log2(np.arange(2, 12))[None, :]).sum(axis=1)
    return float(gains.mean())


def test_a_latent_baseline_clearly_beats_popularity() -> None:
    data = generate(users=1500, items=600, interactions=30_000, seed=11, now=NOW)
    users = sorted({row[0] for row in data.interactions})
    user_index = {u: n for n, u in enumerate(users)}
    items = {row["item_id"]: n for n, row in enumerate(data.items)}
    # Held out: the last new item of each user (distinct items in first-seen order),
    # as a recommender's leave-last-out split does; everything before it is training.
    history: dict[int, dict[int, None]] = {}
    for user, item, *_ in data.interactions:  # sorted by time
        history.setdefault(user_index[user], {})[items[item]] = None
    train = np.zeros((len(users), len(items)), dtype=bool)
    evaluated, held_out = [], []
    for u, seen in history.items():
        sequence = list(seen)
        train[u, sequence[:-1]] = True
        if len(sequence) >= 2:
            evaluated.append(u)
            held_out.append(sequence[-1])
    assert len(evaluated) > 0.9 * len(users)
    x = train.astype(np.float64)
    popularity = np.broadcast_to(x.sum(axis=0), x.shape)
    co_occurrence = x.T @ x
    np.fill_diagonal(co_occurrence, 0.0)
    # Item-item co-occurrence, normalised by item popularity (cosine-like).
    norm = np.sqrt(np.maximum(np.diag(x.T @ x), 1.0))
    similar = x @ (co_occurrence / norm[:, None] / norm[None, :])
    pop_ndcg = _ndcg_at_10(popularity[evaluated], train[evaluated], held_out)
    latent_ndcg = _ndcg_at_10(similar[evaluated], train[evaluated], held_out)
    assert latent_ndcg > 2 * pop_ndcg, (latent_ndcg, pop_ndcg)
    assert latent_ndcg > 0.15, latent_ndcg


def test_the_latent_parameters_are_the_ones_the_interactions_came_from() -> None:
    data = generate(users=400, items=300, interactions=6000, seed=9, now=NOW)
    latent = data.latent
    assert latent is not None
    users = np.array([int(row[0].removeprefix("user_")) for row in data.interactions])
    items = np.array([int(row[1].removeprefix("item_")) for row in data.interactions])
    # Every interaction is with an item its user's style considers, in a liked category.
    chance = latent.choice_probabilities(latent.user_style)
    assert (chance[users, items] > 0).all()
    assert (latent.taste[users, latent.item_category[items]] > 0).all()
    # Each category's part of a row is a distribution over that category's items.
    for c in np.unique(latent.item_category):
        np.testing.assert_allclose(chance[:, latent.item_category == c].sum(1), 1.0, rtol=1e-5)
    # And the same seed draws the same store.
    again = generate(users=400, items=300, interactions=6000, seed=9, now=NOW)
    assert again.interactions == data.interactions
    assert again.latent is not None
    np.testing.assert_array_equal(again.latent.user_style, latent.user_style)
