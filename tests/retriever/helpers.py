"""Shared helpers for retriever tests: random catalogs and a brute-force reference."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from retriever.filters import Catalog


def random_vectors(rng: np.random.Generator, n: int, d: int) -> npt.NDArray[np.float32]:
    return rng.standard_normal((n, d)).astype(np.float32)


def random_catalog(rng: np.random.Generator, n: int, n_categories: int = 8) -> Catalog:
    """Skewed category sizes, some unknown prices/categories, one rare category."""
    names = [f"cat{c}" for c in range(n_categories)]
    p = 1.0 / (np.arange(n_categories) + 1.0)
    p /= p.sum()
    cats: list[str | None] = [names[c] for c in rng.choice(n_categories, size=n, p=p)]
    rare = rng.choice(n, size=max(1, n // 1000), replace=False)  # 0.1 % of the catalog
    for r in rare:
        cats[int(r)] = "rare"
    for r in rng.choice(n, size=n // 50, replace=False):
        if cats[int(r)] != "rare":
            cats[int(r)] = None
    prices: list[float | None] = [
        None if rng.random() < 0.02 else round(float(rng.uniform(1, 100)), 2) for _ in range(n)
    ]
    return Catalog.from_columns([f"i{i}" for i in range(n)], cats, prices)


def assert_exact_topk(
    vectors: npt.NDArray[np.float32],
    query: npt.NDArray[np.float32],
    mask: npt.NDArray[np.bool_] | None,
    count: int,
    positions: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32] | None = None,
    *,
    atol: float = 1e-4,
) -> None:
    """``positions`` is a correct top-``count`` among ``mask`` (robust to ties)."""
    n = vectors.shape[0]
    match = np.ones(n, bool) if mask is None else mask
    m = int(match.sum())
    assert len(positions) == min(count, m)
    assert len(set(positions.tolist())) == len(positions)
    assert match[positions].all()
    v64 = vectors.astype(np.float64)
    q64 = np.asarray(query, np.float64).ravel()
    got = v64[positions] @ q64
    ref = np.sort(v64[match] @ q64)[::-1][:count]
    np.testing.assert_allclose(got, ref, atol=atol)
    if scores is not None:
        np.testing.assert_allclose(scores, got, atol=atol)
