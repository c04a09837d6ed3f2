from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retriever.foldin import FoldIn, Interaction, fold_in
from retriever.popularity import DAY_SECONDS, Popularity


def test_fold_in_single_item_is_that_item() -> None:
    emb = np.arange(12, dtype=np.float32).reshape(4, 3)
    vec = fold_in(["b"], emb, {"a": 0, "b": 1})
    assert vec is not None
    np.testing.assert_allclose(vec, emb[1])


def test_fold_in_weights_recency_and_type() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    pos = {"new": 0, "old": 1}
    vec = FoldIn(recency_half_life=1.0).embed(["new", "old"], emb, pos)
    assert vec is not None
    np.testing.assert_allclose(vec, [2 / 3, 1 / 3], rtol=1e-6)  # weights 1 and 0.5
    vec2 = FoldIn(recency_half_life=1e9).embed(
        [Interaction("new", "view"), Interaction("old", "purchase")], emb, pos
    )
    assert vec2 is not None
    np.testing.assert_allclose(vec2, [0.25, 0.75], rtol=1e-6)  # 1 vs 3


def test_fold_in_unknown_items_give_none() -> None:
    emb = np.ones((2, 2), dtype=np.float32)
    assert fold_in(["zzz"], emb, {"a": 0}) is None
    assert fold_in([], emb, {"a": 0}) is None


def test_popularity_decay_half_life() -> None:
    now = 100 * DAY_SECONDS
    pop = Popularity.from_events(
        3, [0, 1, 1, 2], [now, now - 7 * DAY_SECONDS, now - 7 * DAY_SECONDS, now + 5], now=now
    )
    np.testing.assert_allclose(pop.scores, [1.0, 1.0, 1.0])  # 2 × 0.5 == 1
    pop2 = Popularity.from_events(
        2, [0, 1], [now, now - DAY_SECONDS], now=now, half_life_s=DAY_SECONDS, weights=[1.0, 4.0]
    )
    np.testing.assert_allclose(pop2.scores, [1.0, 2.0])
    with pytest.raises(ValueError):
        Popularity.from_events(1, [0], [0.0], now=0.0, half_life_s=0)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 500),
    count=st.integers(1, 60),
    frac=st.sampled_from([0.01, 0.2, 1.0]),
)
def test_popularity_top_equals_sort(seed: int, n: int, count: int, frac: float) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, n).astype(np.float64)  # many ties on purpose
    mask = rng.random(n) < frac
    pos, sc = Popularity(scores).top(count, mask)
    cand = np.flatnonzero(mask)
    ref = cand[np.lexsort((cand, -scores[cand]))][:count]
    np.testing.assert_array_equal(pos, ref)
    np.testing.assert_array_equal(sc, scores[ref])


def test_popularity_from_mapping() -> None:
    pop = Popularity.from_mapping({"b": 2.0, "zzz": 9.0}, {"a": 0, "b": 1})
    assert pop.top(1)[0].tolist() == [1]
