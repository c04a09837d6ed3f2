"""What the sample store allows: the Bayes predictor with the generator's item parameters."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.sampledata import SampleData, generate
from services.sampledata.ceiling import posterior_choice, sample_store_ceiling

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def store() -> SampleData:
    return generate(users=1500, items=600, interactions=24_000, seed=4, now=NOW)


def test_inferred_styles_put_more_chance_on_what_users_do_next(store: SampleData) -> None:
    latent = store.latent
    assert latent is not None
    users = np.array([int(r[0].removeprefix("user_")) for r in store.interactions])
    items = np.array([int(r[1].removeprefix("item_")) for r in store.interactions])
    n_users = len(latent.user_style)
    # History: each user's first half of events; next: their last event (by time).
    order = np.argsort(users, kind="stable")
    users, items = users[order], items[order]
    starts = np.searchsorted(users, np.arange(n_users))
    ends = np.searchsorted(users, np.arange(n_users), side="right")
    seen = np.concatenate(
        [np.arange(s, s + (e - s) // 2) for s, e in zip(starts, ends, strict=True)]
    )
    last = items[ends - 1]
    inferred = posterior_choice(latent, users[seen], items[seen], n_users, samples=3000, seed=1)
    prior = posterior_choice(
        latent, np.zeros(0, np.int64), np.zeros(0, np.int64), n_users, samples=3000, seed=1
    )
    # Without a history every user gets the same (prior) prediction.
    np.testing.assert_allclose(prior[0], prior[-1], rtol=1e-5)
    everyone = np.arange(n_users)
    gain = np.log(inferred[everyone, last] + 1e-9) - np.log(prior[everyone, last] + 1e-9)
    assert gain.mean() > 0.5, gain.mean()
    # Knowing the true style is better still.
    known = latent.choice_probabilities(latent.user_style)
    assert (
        np.log(known[everyone, last] + 1e-9).mean() > np.log(inferred[everyone, last] + 1e-9).mean()
    )


def test_ceiling_orders_oracle_inference_and_popularity(store: SampleData) -> None:
    lines: list[str] = []
    figures = sample_store_ceiling(store, samples=3000, out=lines.append)
    oracle, ceiling = figures["oracle/ndcg@10"], figures["ceiling/ndcg@10"]
    popularity = figures["popularity/ndcg@10"]
    assert oracle > ceiling + 0.05, figures
    assert ceiling > 3 * popularity, figures
    assert any("items known, styles and categories inferred" in line for line in lines)
    # Validation split (history = train only) works the same way.
    valid = sample_store_ceiling(store, samples=1000, split="valid", out=lines.append)
    assert valid["oracle/ndcg@10"] > valid["ceiling/ndcg@10"] > valid["popularity/ndcg@10"]


def test_data_without_latent_parameters_is_refused(store: SampleData) -> None:
    with pytest.raises(ValueError, match="no latent parameters"):
        sample_store_ceiling(SampleData(items=store.items, interactions=store.interactions))
    with pytest.raises(ValueError, match="split"):
        sample_store_ceiling(store, split="train")
