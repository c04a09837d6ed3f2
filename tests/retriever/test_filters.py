from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retriever.filters import Catalog, FilterPolicy, FilterSpec, filtered_search
from retriever.index import IndexSpec, ShardedIndex
from tests.retriever.helpers import assert_exact_topk, random_catalog, random_vectors

CATEGORY_NAMES = [f"cat{c}" for c in range(8)] + ["rare", "no-such-category"]


@st.composite
def filter_specs(draw: st.DrawFn, n: int) -> FilterSpec:
    ids = st.integers(0, max(0, n - 1)).map(lambda i: f"i{i}")
    cats = st.frozensets(st.sampled_from(CATEGORY_NAMES), max_size=3)
    price = st.one_of(st.none(), st.floats(0, 110, allow_nan=False))
    include = draw(st.one_of(st.none(), st.frozensets(ids, max_size=60)))
    return FilterSpec(
        categories_in=draw(cats),
        categories_not_in=draw(cats),
        min_price=draw(price),
        max_price=draw(price),
        include_item_ids=include,
        exclude_item_ids=draw(st.frozensets(ids, max_size=20)),
        exclude_seen_ids=draw(st.frozensets(ids | st.just("unknown-id"), max_size=20)),
    )


def reference_mask(cat: Catalog, spec: FilterSpec) -> np.ndarray:
    """Row-by-row restatement of the filter semantics."""
    out = np.zeros(len(cat), bool)
    for i, item in enumerate(cat.item_ids):
        c = cat.category_of(i)
        p = float(cat.prices[i])
        ok = (not spec.categories_in or c in spec.categories_in) and not (
            c is not None and c in spec.categories_not_in
        )
        ok = ok and (spec.min_price is None or p >= spec.min_price)
        ok = ok and (spec.max_price is None or p <= spec.max_price)
        ok = ok and (spec.include_item_ids is None or item in spec.include_item_ids)
        ok = ok and item not in spec.exclude_item_ids and item not in spec.exclude_seen_ids
        out[i] = ok
    return out


@settings(max_examples=60, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3000))
def test_mask_matches_reference(data: st.DataObject, seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    cat = random_catalog(rng, n)
    spec = data.draw(filter_specs(n))
    np.testing.assert_array_equal(cat.mask(spec), reference_mask(cat, spec))


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    count=st.integers(1, 50),
    shards=st.integers(1, 4),
    strategy=st.sampled_from([None, "direct", "selector", "overfetch"]),
)
def test_filtered_search_equals_brute_force(
    data: st.DataObject, seed: int, n: int, count: int, shards: int, strategy: str | None
) -> None:
    rng = np.random.default_rng(seed)
    cat = random_catalog(rng, n)
    x = random_vectors(rng, n, 16)
    q = random_vectors(rng, 1, 16)[0]
    spec = data.draw(filter_specs(n))
    mask = cat.mask(spec)
    idx = ShardedIndex.build(x, IndexSpec("flat", 16, n, min(shards, n)))
    # Small thresholds so that every strategy is reached on small catalogs.
    policy = FilterPolicy(direct_max_items=20, direct_max_fraction=0.002, overfetch_max_k=256)
    res = filtered_search(idx, q, count, mask, policy=policy, strategy=strategy)  # type: ignore[arg-type]
    assert_exact_topk(x, q, mask, count, res.positions, res.scores)
    if strategy is not None and mask.any():
        assert res.strategy == strategy


@pytest.mark.parametrize("strategy", [None, "direct", "selector", "overfetch"])
def test_very_selective_filter_returns_exact_count(strategy: str | None) -> None:
    """0.1 % of a 10k catalog: 10 'rare' items exist, a request for 5 gets the best 5."""
    rng = np.random.default_rng(7)
    n = 10_000
    cat = random_catalog(rng, n)
    x = random_vectors(rng, n, 32)
    idx = ShardedIndex.build(x, IndexSpec("flat", 32, n, 3))
    mask = cat.mask(FilterSpec(categories_in=frozenset({"rare"})))
    assert mask.sum() == 10
    for q in random_vectors(rng, 3, 32):
        res = filtered_search(idx, q, 5, mask, strategy=strategy)  # type: ignore[arg-type]
        assert_exact_topk(x, q, mask, 5, res.positions, res.scores)
        more = filtered_search(idx, q, 50, mask, strategy=strategy)  # type: ignore[arg-type]
        assert len(more) == 10  # fewer matches than asked: all of them


def test_auto_strategy_by_selectivity() -> None:
    rng = np.random.default_rng(3)
    n = 12_000
    x = random_vectors(rng, n, 8)
    q = random_vectors(rng, 1, 8)
    flat = ShardedIndex.build(x, IndexSpec("flat", 8, n))
    hnsw = ShardedIndex.build(x, IndexSpec("hnsw", 8, n, hnsw_m=8, hnsw_ef_construction=20))
    tiny = np.zeros(n, bool)
    tiny[rng.choice(n, 50, replace=False)] = True
    broad = rng.random(n) < 0.6
    policy = FilterPolicy(direct_max_items=1000, direct_max_fraction=0.01)
    assert filtered_search(flat, q, 10, tiny, policy=policy).strategy == "direct"
    assert filtered_search(flat, q, 10, broad, policy=policy).strategy == "selector"
    res = filtered_search(hnsw, q, 10, broad, policy=policy)
    assert res.strategy == "overfetch"
    assert len(res) == 10 and broad[res.positions].all()


def test_overfetch_on_ann_retries_then_stays_exact_in_count() -> None:
    """A 3 % filter on HNSW: the count is exact whatever the ANN returns."""
    rng = np.random.default_rng(5)
    n = 8_000
    x = random_vectors(rng, n, 16)
    hnsw = ShardedIndex.build(x, IndexSpec("hnsw", 16, n, 2, hnsw_m=8, hnsw_ef_construction=20))
    mask = rng.random(n) < 0.03
    policy = FilterPolicy(direct_max_items=0, direct_max_fraction=0.0, overfetch_factor=0.5)
    for q in random_vectors(rng, 5, 16):
        res = filtered_search(hnsw, q, 100, mask, policy=policy)
        assert res.strategy == "overfetch" and res.rounds >= 2
        assert len(res) == 100 and mask[res.positions].all()
        assert len(set(res.positions.tolist())) == 100


def test_empty_match_and_bad_count() -> None:
    x = np.eye(4, dtype=np.float32)
    idx = ShardedIndex.build(x)
    assert len(filtered_search(idx, x[0], 3, np.zeros(4, bool))) == 0
    with pytest.raises(ValueError):
        filtered_search(idx, x[0], 0, None)
    assert filtered_search(idx, x[0], 10, None).positions.tolist()[0] == 0


def test_catalog_validation_and_take() -> None:
    cat = Catalog.from_columns(
        ["a", "b", "c"], ["x", None, "y"], [1.0, None, 3.0], titles=["A", "B", "C"]
    )
    sub = cat.take([2, 0])
    assert sub.item_ids == ("c", "a") and sub.category_of(0) == "y" and sub.titles == ("C", "A")
    with pytest.raises(ValueError):
        Catalog.from_columns(["a", "a"], ["x", "x"], [1.0, 1.0])


def test_unfiltered_ivf_with_too_few_probed_items_still_returns_count() -> None:
    rng = np.random.default_rng(9)
    x = random_vectors(rng, 2000, 8)
    ivf = ShardedIndex.build(x, IndexSpec("ivf", 8, 2000, ivf_nlist=400, ivf_nprobe=1))
    q = random_vectors(rng, 1, 8)[0]
    res = filtered_search(ivf, q, 200, None)
    assert len(res) == 200 and len(set(res.positions.tolist())) == 200
