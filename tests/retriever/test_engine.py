from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retriever.engine import FallbackReason, TenantModelIndex, load_from_artifacts
from retriever.errors import ArtifactError, InvalidRequestError, UnknownItemError
from retriever.filters import Catalog, FilterSpec
from retriever.foldin import Interaction
from retriever.index import IndexPolicy
from retriever.popularity import Popularity
from tests.retriever.helpers import assert_exact_topk, random_catalog, random_vectors

N, D = 3000, 16


@pytest.fixture(scope="module")
def model() -> TenantModelIndex:
    rng = np.random.default_rng(11)
    cat = random_catalog(rng, N)
    items = random_vectors(rng, N, D)
    users = random_vectors(rng, 50, D)
    pop = Popularity(rng.random(N))
    return TenantModelIndex.build(
        "acme",
        "v1",
        cat,
        items,
        user_embeddings=users,
        user_ids=[f"u{i}" for i in range(50)],
        popularity=pop,
    )


def _positions(model: TenantModelIndex, items: list[tuple[str, float]]) -> np.ndarray:
    return np.array([model.catalog.positions[i] for i, _ in items], dtype=np.int64)


def test_known_user_uses_user_embedding(model: TenantModelIndex) -> None:
    spec = FilterSpec(categories_in=frozenset({"cat2"}), max_price=50.0)
    res = model.recommend("u3", 10, spec)
    assert not res.fallback and res.source == "user_embedding"
    assert model.item_embeddings is not None and model.user_embeddings is not None
    assert_exact_topk(
        model.item_embeddings,
        model.user_embeddings[3],
        model.catalog.mask(spec),
        10,
        _positions(model, res.items),
    )


def test_very_selective_filter_through_engine(model: TenantModelIndex) -> None:
    res = model.recommend("u1", 10, FilterSpec(categories_in=frozenset({"rare"})))
    assert len(res.items) == 3  # N // 1000 rare items exist
    assert all(model.catalog.category_of(int(p)) == "rare" for p in _positions(model, res.items))


def test_unknown_user_with_recent_items_folds_in(model: TenantModelIndex) -> None:
    recent = ["i5", Interaction("i9", "purchase"), "not-an-item"]
    res = model.recommend(
        "new-user", 5, FilterSpec(exclude_seen_ids=frozenset({"i5", "i9"})), recent_items=recent
    )
    assert not res.fallback and res.source == "fold_in" and len(res.items) == 5
    assert {"i5", "i9"}.isdisjoint(i for i, _ in res.items)


def test_no_history_falls_back_to_popular_per_category(model: TenantModelIndex) -> None:
    res = model.recommend("nobody", 5, FilterSpec(categories_in=frozenset({"cat1"})))
    assert res.fallback and res.fallback_reason == FallbackReason.NO_HISTORY
    assert res.source == "popularity"
    mask = model.catalog.mask(FilterSpec(categories_in=frozenset({"cat1"})))
    best = np.flatnonzero(mask)[np.argsort(-model.popularity.scores[mask])][:5]
    assert [i for i, _ in res.items] == [model.catalog.item_ids[p] for p in best]
    unknown = model.recommend("nobody", 5, recent_items=["zzz"])
    assert unknown.fallback and unknown.fallback_reason == "unknown_recent_items"


def test_model_unavailable_and_index_error_fall_back(model: TenantModelIndex) -> None:
    bare = TenantModelIndex(
        tenant_id="t", model_version="v", catalog=model.catalog, popularity=model.popularity
    )
    res = bare.recommend("u1", 4)
    assert res.fallback and res.fallback_reason == "model_unavailable" and len(res.items) == 4

    class Broken:
        ntotal = N
        is_exact = True
        on_gpu = False

        def __getattr__(self, name: str) -> object:
            raise RuntimeError("faiss exploded")

    broken = TenantModelIndex(
        tenant_id="t",
        model_version="v",
        catalog=model.catalog,
        popularity=model.popularity,
        item_embeddings=model.item_embeddings,
        user_embeddings=model.user_embeddings,
        user_positions=model.user_positions,
        index=Broken(),  # type: ignore[arg-type]
    )
    res = broken.recommend("u1", 4)
    assert res.fallback and res.fallback_reason == "index_error" and len(res.items) == 4


def test_similar_items_and_popular(model: TenantModelIndex) -> None:
    res = model.similar_items("i7", 8, FilterSpec(categories_not_in=frozenset({"cat0"})))
    ids = [i for i, _ in res.items]
    assert len(ids) == 8 and "i7" not in ids and res.source == "item_embedding"
    with pytest.raises(UnknownItemError):
        model.similar_items("nope", 3)
    pop = model.popular_items(3, category="cat3")
    assert not pop.fallback and all(
        model.catalog.category_of(model.catalog.positions[i]) == "cat3" for i, _ in pop.items
    )
    with pytest.raises(InvalidRequestError):
        model.recommend("u1", 0)


def test_nbytes_counts_arrays(model: TenantModelIndex) -> None:
    assert model.item_embeddings is not None
    assert model.nbytes > 2 * model.item_embeddings.nbytes


@pytest.mark.parametrize("shape", ["list", "id_to_row", "row_to_id"])
def test_load_from_artifacts_tolerant(tmp_path: Path, shape: str) -> None:
    rng = np.random.default_rng(2)
    trained = [f"i{i}" for i in range(120)]
    emb = random_vectors(rng, 120, 8)
    np.save(tmp_path / "item_embeddings.npy", emb)
    np.save(tmp_path / "user_emb.npy", random_vectors(rng, 3, 8))
    maps = {
        "list": trained,
        "id_to_row": {i: r for r, i in enumerate(trained)},
        "row_to_id": {str(r): i for r, i in enumerate(trained)},
    }
    (tmp_path / "item_ids.json").write_text(json.dumps(maps[shape]))
    (tmp_path / "user_ids.json").write_text(json.dumps({"ids": ["a", "b", "c"]}))
    (tmp_path / "popularity.json").write_text(json.dumps([["i3", 5.0], ["i4", 9.0]]))
    # Catalog: 110 items, x0..x9 have no embedding, i100..i119 are not in it; order
    # differs from training.
    ids = [f"x{i}" for i in range(10)] + [f"i{i}" for i in reversed(range(100))]
    cat = Catalog.from_columns(ids, ["c"] * 110, [1.0] * 110)
    m = load_from_artifacts(
        tmp_path, cat, tenant_id="acme", index_policy=IndexPolicy(flat_max_items=10_000)
    )
    assert m.model_version == tmp_path.name and len(m.catalog) == 100
    assert m.item_embeddings is not None
    np.testing.assert_array_equal(m.item_embeddings[m.catalog.positions["i42"]], emb[42])
    assert [i for i, _ in m.popular_items(2).items] == ["i4", "i3"]
    assert not m.recommend("b", 5).fallback


def test_load_from_artifacts_uses_saved_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    emb = random_vectors(rng, 30, 4)
    np.save(tmp_path / "item_embeddings.npy", emb)
    (tmp_path / "item_ids.json").write_text(json.dumps([f"i{i}" for i in range(30)]))
    from retriever.index import IndexSpec, ShardedIndex

    ShardedIndex.build(emb, IndexSpec("flat", 4, 30, 3)).save(tmp_path / "index")
    cat = Catalog.from_columns([f"i{i}" for i in range(30)], ["c"] * 30, [1.0] * 30)
    m = load_from_artifacts(tmp_path, cat, model_version="v9")
    assert m.index is not None and m.index.spec.n_shards == 3
    assert m.recommend("x", 3).fallback_reason == "no_history"


def test_load_from_artifacts_errors(tmp_path: Path) -> None:
    cat = Catalog.from_columns(["a"], ["c"], [1.0])
    with pytest.raises(ArtifactError):
        load_from_artifacts(tmp_path, cat)
    np.save(tmp_path / "item_embeddings.npy", np.ones((2, 3), np.float32))
    (tmp_path / "item_ids.json").write_text(json.dumps(["a"]))
    with pytest.raises(ArtifactError):
        load_from_artifacts(tmp_path, cat)


def test_load_trainer_written_artifacts_and_detect_tampering(tmp_path: Path) -> None:
    from trainer.artifacts import write_artifacts

    rng = np.random.default_rng(8)
    item_ids = [f"i{i}" for i in range(40)]
    out = write_artifacts(
        tmp_path,
        "2026-11-25T0900",
        user_embeddings=random_vectors(rng, 5, 8),
        item_embeddings=random_vectors(rng, 40, 8),
        user_ids=[f"u{i}" for i in range(5)],
        item_ids=item_ids,
        popularity=np.arange(40),
        metrics={},
        config={},
        data_hash="x",
    )
    cat = Catalog.from_columns(item_ids, ["c"] * 40, [1.0] * 40)
    m = load_from_artifacts(out, cat, tenant_id="acme")
    assert m.model_version == "2026-11-25T0900"
    assert [i for i, _ in m.popular_items(2).items] == ["i39", "i38"]
    assert not m.recommend("u1", 3).fallback
    emb = np.load(out / "item_embeddings.npy")
    emb[0, 0] += 1.0
    np.save(out / "item_embeddings.npy", emb)
    with pytest.raises(ArtifactError, match="sha256"):
        load_from_artifacts(out, cat)


def test_recent_category_boost_from_artifacts_is_exact_under_filters(tmp_path: Path) -> None:
    """scoring.json's boost: a known user's recent categories lift their items by
    weight x share, exactly (checked against brute force), with filters applied."""
    from trainer.artifacts import write_artifacts

    rng = np.random.default_rng(4)
    n = 600
    item_ids = [f"i{i}" for i in range(n)]
    categories = [f"c{i % 6}" if i % 50 else None for i in range(n)]
    items, users = random_vectors(rng, n, 8), random_vectors(rng, 3, 8)
    out = write_artifacts(
        tmp_path, "v1", user_embeddings=users, item_embeddings=items,
        user_ids=["u0", "u1", "u2"], item_ids=item_ids, popularity=np.arange(n),
        metrics={}, config={}, data_hash="x",
        scoring={"recent_category": {"weight": 0.8, "half_life": 1.0, "max_items": 50}},
    )  # fmt: skip
    prices = rng.uniform(1, 100, n).tolist()
    cat = Catalog.from_columns(item_ids, categories, prices)
    m = load_from_artifacts(out, cat)
    assert m.recent_category.active and m.recent_category.half_life == 1.0
    # Newest first: i1 (c1), i1 again, i2 (c2), i50 (no category), unknown id (skipped).
    recent = ["i1", Interaction("i1", "purchase"), "i2", "i50", "nope"]
    spec = FilterSpec(max_price=60.0, exclude_item_ids=frozenset({"i7"}))
    got = m.recommend("u1", 15, spec, recent)
    w = np.array([1.0, 0.5, 0.25])  # i1, i2, i50 by distinct rank
    share = {"c1": w[0] / w.sum(), "c2": w[1] / w.sum()}
    bonus = np.array([0.8 * share.get(c or "", 0.0) for c in categories])
    scores = items @ users[1] + bonus
    scores[~cat.mask(spec)] = -np.inf
    want = [item_ids[i] for i in np.argsort(-scores, kind="stable")[:15]]
    assert [i for i, _ in got.items] == want and got.strategy == "category_boost"
    assert [s for _, s in got.items] == pytest.approx(np.sort(scores)[::-1][:15], rel=1e-5)
    # Without recent items, or for an unknown user (fold-in), the plain paths serve.
    assert m.recommend("u1", 5).strategy != "category_boost"
    assert m.recommend("new", 5, None, recent).source == "fold_in"
