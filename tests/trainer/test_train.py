"""The training loop: quality smoke test, determinism, resume, NaN check, hooks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.config import LightGCNConfig
from trainer.data import InteractionData
from trainer.evaluate import evaluate_embeddings, popularity_baseline
from trainer.train import NonFiniteLossError, lr_factor, train


def test_beats_popularity_on_clustered_data(
    clustered: InteractionData, small_config: LightGCNConfig
) -> None:
    calls: list[tuple[int, int, float, dict[str, float], float]] = []
    res = train(clustered, small_config, on_progress=lambda *a: calls.append(a))
    pop = popularity_baseline(
        clustered.item_popularity(), clustered.train_csr(), clustered.split_csr("test")
    )
    assert res.metrics["ndcg@10"] > pop["ndcg@10"] + 0.05, (res.metrics, pop)
    assert res.user_embeddings.shape == (clustered.n_users, 32)
    assert res.item_embeddings.dtype == np.float32
    assert [c[0] for c in calls] == list(range(1, 13)) and calls[-1][1] == 12
    assert set(calls[3][3]) >= {"recall@20", "ndcg@20"} and calls[0][3] == {}
    assert res.peak_rss_mb > 0 and res.timings["seconds_per_epoch"] > 0


def test_deterministic_for_a_seed(clustered: InteractionData, small_config: LightGCNConfig) -> None:
    cfg = small_config.with_overrides(epochs=2, eval_every=2)
    a = train(clustered, cfg)
    b = train(clustered, cfg)
    np.testing.assert_array_equal(a.item_embeddings, b.item_embeddings)
    c = train(clustered, cfg.with_overrides(seed=8))
    assert not np.array_equal(a.item_embeddings, c.item_embeddings)


def test_resume_from_checkpoint_matches_uninterrupted_run(
    clustered: InteractionData, small_config: LightGCNConfig, tmp_path: Path
) -> None:
    cfg = small_config.with_overrides(epochs=4, eval_every=1)
    full = train(clustered, cfg)
    # First run "crashes" after 2 epochs (cancelled), the second resumes.
    seen: list[int] = []

    def cancel_after_two() -> bool:
        return len(seen) >= 2

    first = train(
        clustered,
        cfg,
        checkpoint_dir=tmp_path,
        should_cancel=cancel_after_two,
        on_progress=lambda e, *_: seen.append(e),
    )
    assert first.cancelled and seen == [1, 2]
    resumed = train(clustered, cfg, checkpoint_dir=tmp_path)
    np.testing.assert_allclose(resumed.item_embeddings, full.item_embeddings, rtol=0, atol=0)
    assert resumed.metrics == full.metrics
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]


def test_nan_loss_raises(clustered: InteractionData, small_config: LightGCNConfig) -> None:
    with pytest.raises(NonFiniteLossError, match="lower lr"):
        train(clustered, small_config.with_overrides(lr=math.inf, epochs=2))


def test_cancel_returns_promptly(clustered: InteractionData, small_config: LightGCNConfig) -> None:
    res = train(clustered, small_config, should_cancel=lambda: True)
    assert res.cancelled and res.epochs_run == 0


def test_lr_schedule_shape() -> None:
    c = LightGCNConfig(lr_schedule="cosine", warmup_fraction=0.1, min_lr_ratio=0.0)
    assert lr_factor(0.05, c) == pytest.approx(0.5)
    assert lr_factor(0.1, c) == pytest.approx(1.0)
    assert lr_factor(1.0, c) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0.55, c) == pytest.approx(0.5)


def test_validation_split_drives_early_stopping(small_config: LightGCNConfig) -> None:
    from tests.trainer.conftest import make_clustered

    d = make_clustered(n_users=150, n_items=100, n_clusters=5, seed=3)
    d_val = InteractionData.from_interactions(
        [d.user_ids[u] for u in np.concatenate([d.train.users, d.test.users])],
        [d.item_ids[i] for i in np.concatenate([d.train.items, d.test.items])],
        np.arange(len(d.train) + len(d.test), dtype=float),
        test_fraction=0.2,
        val_fraction=0.2,
    )
    assert len(d_val.valid) > 0
    res = train(d_val, small_config.with_overrides(epochs=4, eval_every=2, patience=1))
    assert res.eval_split == "valid"
    assert res.test_metrics.keys() == res.metrics.keys()
    assert res.test_metrics != res.metrics


def test_empty_training_data_is_rejected(small_config: LightGCNConfig) -> None:
    d = InteractionData.from_interactions(["a"], ["x"], [0.0], test_fraction=0.0)
    d.train = d.test  # empty
    with pytest.raises(ValueError, match="no training"):
        train(d, small_config)


def test_resume_refuses_other_recipe(
    clustered: InteractionData, small_config: LightGCNConfig, tmp_path: Path
) -> None:
    cfg = small_config.with_overrides(epochs=1, eval_every=1)
    train(clustered, cfg, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="lr"):
        train(clustered, cfg.with_overrides(lr=0.5), checkpoint_dir=tmp_path)
    more = train(clustered, cfg.with_overrides(epochs=2), checkpoint_dir=tmp_path)
    assert [h["epoch"] for h in more.history] == [1, 2]


def _drifting_tastes(n_users: int = 200, n_items: int = 100, seed: int = 0) -> InteractionData:
    """Users move from one item cluster to another: their first 6 of 20 items come from
    one cluster, the last 14 (6 in train, 4 validation, 4 test) from another."""
    rng = np.random.default_rng(seed)
    clusters = np.arange(n_items) % 5
    users: list[str] = []
    items: list[str] = []
    stamps: list[float] = []
    for u in range(n_users):
        old, new = rng.choice(5, 2, replace=False)
        early = rng.choice(np.flatnonzero(clusters == old), 6, replace=False)
        late = rng.choice(np.flatnonzero(clusters == new), 14, replace=False)
        for t, item in enumerate(np.concatenate([early, late])):
            users.append(f"u{u}")
            items.append(f"i{item}")
            stamps.append(float(t))
    return InteractionData.from_interactions(
        users, items, stamps, test_fraction=0.2, val_fraction=0.2
    )


def test_refit_serves_what_users_did_in_the_validation_period(
    small_config: LightGCNConfig,
) -> None:
    """With ``refit`` the model that is returned (and served) has also learned from the
    validation period, so a user whose taste moved gets the new taste's items."""
    data = _drifting_tastes()
    cfg = small_config.with_overrides(epochs=8, eval_every=2, patience=0)
    plain = train(data, cfg)
    progress: list[tuple[int, int, dict[str, float]]] = []
    refit = train(
        data,
        cfg.with_overrides(refit=True),
        on_progress=lambda e, t, _l, m, _eta: progress.append((e, t, m)),
    )
    assert not plain.refit and refit.refit
    assert refit.test_metrics["ndcg@10"] > plain.test_metrics["ndcg@10"] + 0.15, (
        plain.test_metrics,
        refit.test_metrics,
    )
    # Validation chose the epochs; the refit trained that many more, reporting no metrics.
    assert refit.metrics == plain.metrics and refit.best_epoch == plain.best_epoch
    assert refit.epochs_run == plain.epochs_run + plain.best_epoch
    tail = progress[plain.epochs_run :]
    assert [e for e, _, _ in tail] == list(range(plain.epochs_run + 1, refit.epochs_run + 1))
    assert all(t == refit.epochs_run and m == {} for _, t, m in tail)
    # Test metrics mask the train and the validation items (both are in the model).
    merged = data.with_valid_in_train()
    again = evaluate_embeddings(
        torch.from_numpy(refit.user_embeddings),
        torch.from_numpy(refit.item_embeddings),
        merged.train_csr(),
        merged.split_csr("test"),
    )
    assert again == pytest.approx(refit.test_metrics)


def test_softmax_loss_beats_popularity(
    clustered: InteractionData, small_config: LightGCNConfig
) -> None:
    res = train(clustered, small_config.with_overrides(loss="softmax", negatives=16))
    pop = popularity_baseline(
        clustered.item_popularity(), clustered.train_csr(), clustered.split_csr("test")
    )
    assert res.metrics["ndcg@10"] > pop["ndcg@10"] + 0.05, (res.metrics, pop)
