from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retriever.index import IndexPolicy, IndexSpec, ShardedIndex, merge_topk
from tests.retriever.helpers import assert_exact_topk, random_vectors


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 600),
    d=st.sampled_from([4, 16, 33]),
    shards=st.integers(2, 7),
    k=st.integers(1, 40),
    nq=st.sampled_from([1, 3, 25]),
)
def test_sharded_equals_unsharded(seed: int, n: int, d: int, shards: int, k: int, nq: int) -> None:
    rng = np.random.default_rng(seed)
    x = random_vectors(rng, n, d)
    q = random_vectors(rng, nq, d)
    one = ShardedIndex.build(x, IndexSpec("flat", d, n, 1))
    many = ShardedIndex.build(x, IndexSpec("flat", d, n, min(shards, n)))
    s1, i1 = one.search(q, k)
    s2, i2 = many.search(q, k)
    assert i1.shape == i2.shape == (nq, k)
    np.testing.assert_allclose(s1, s2, atol=1e-4)
    # Ids agree wherever the score is not tied within float noise.
    finite = np.where(np.isfinite(s1), s1, -1e30)
    gaps = np.abs(np.diff(finite, axis=1, prepend=1e30, append=-1e31))
    clear = (gaps[:, :-1] > 1e-4) & (gaps[:, 1:] > 1e-4)
    assert (i1[clear] == i2[clear]).all()
    for r in range(nq):
        valid = i2[r] >= 0
        assert valid.sum() == min(k, n)
        assert_exact_topk(x, q[r], None, k, i2[r][valid], s2[r][valid])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 800),
    shards=st.integers(1, 5),
    frac=st.sampled_from([0.0, 0.001, 0.01, 0.3, 1.0]),
    k=st.integers(1, 30),
)
def test_allowed_is_exact_on_flat(seed: int, n: int, shards: int, frac: float, k: int) -> None:
    rng = np.random.default_rng(seed)
    x = random_vectors(rng, n, 8)
    q = random_vectors(rng, 1, 8)
    mask = rng.random(n) < frac
    idx = ShardedIndex.build(x, IndexSpec("flat", 8, n, min(shards, n)))
    s, i = idx.search(q, k, allowed=mask)
    valid = i[0] >= 0
    assert_exact_topk(x, q[0], mask, k, i[0][valid], s[0][valid])
    # Same result when allowed is given as positions.
    _, i_pos = idx.search(q, k, allowed=np.flatnonzero(mask))
    np.testing.assert_array_equal(i_pos[0][valid], i[0][valid])


def test_policy_picks_kind_by_size() -> None:
    p = IndexPolicy(flat_max_items=100, n_shards=2)
    assert p.spec_for(100, 8).kind == "flat"
    big = p.spec_for(101, 8)
    assert big.kind == "ivf" and big.n_shards == 2
    assert IndexPolicy(flat_max_items=0).spec_for(10_000, 8).ivf_nlist == 384
    assert IndexPolicy(flat_max_items=0, ann_kind="hnsw").spec_for(10, 8).kind == "hnsw"


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_ann_kinds_build_search_tune_and_save(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = random_vectors(rng, 2000, 16)
    spec = IndexSpec(kind, 16, 2000, n_shards=2, ivf_nlist=16, ivf_nprobe=16)  # type: ignore[arg-type]
    idx = ShardedIndex.build(x, spec)
    idx.tune(ef_search=128, nprobe=16)
    q = random_vectors(rng, 5, 16)
    exact = ShardedIndex.build(x, IndexSpec("flat", 16, 2000))
    _, truth = exact.search(q, 10)
    _, got = idx.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth, strict=True)])
    assert recall >= 0.9
    assert idx.nbytes > x.nbytes
    idx.save(tmp_path)
    loaded = ShardedIndex.load(tmp_path)
    assert loaded.spec == idx.spec
    np.testing.assert_array_equal(loaded.search(q, 10)[1], got)


def test_merge_pads_missing() -> None:
    s, i = merge_topk(
        [np.array([[3.0, 1.0]], np.float32), np.array([[2.0, -3e38]], np.float32)],
        [np.array([[0, 1]]), np.array([[5, -1]])],
        5,
    )
    assert i.tolist() == [[0, 5, 1, -1, -1]]
    assert np.isneginf(s[0, 3:]).all()


def test_rejects_bad_input() -> None:
    idx = ShardedIndex.build(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError):
        idx.search(np.ones((1, 3)), 1)
    with pytest.raises(IndexError):
        idx.search(np.ones((1, 4)), 1, allowed=np.array([7]))
