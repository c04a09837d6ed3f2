"""The LightGCN training loop: epochs, evaluation, early stopping, checkpoints.

Why this module exists: the trainer worker and the bench both need one loop that is
deterministic for a seed, can be cancelled between any two steps, reports progress
with an ETA, survives restarts through checkpoints (model + optimizer + epoch + config
+ RNG state), fails loudly on a diverging loss, and hands back plain numpy embeddings
plus the figures an operator wants (metrics, timings, peak memory).

Learning-rate schedules are defined over *progress* in [0, 1]: by default steps done
out of ``epochs * steps_per_epoch``; with ``max_seconds`` the share of the time budget
used, so a cosine decay ends when the budget does (the bench uses this; such runs are
not bit-reproducible because progress depends on the clock).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from retriever.recency import RecentCategoryBoost
from trainer.config import LightGCNConfig, resolve_device
from trainer.data import InteractionData, NegativeSampler, sample_same_category
from trainer.evaluate import evaluate_embeddings
from trainer.model import LightGCN
from trainer.recency import choose_boost, evaluate_boosted, history_before, share_matrix

__all__ = [
    "CHECKPOINT_NAME",
    "NonFiniteLossError",
    "ProgressCallback",
    "TrainResult",
    "lr_factor",
    "train",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


ProgressCallback = Callable[[int, int, float, dict[str, float], float], None]
"""``on_progress(epoch, total_epochs, loss, metrics, eta_seconds)``; metrics is empty
on epochs without evaluation."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: lower the learning rate or check the data."""


@dataclass
class TrainResult:
    """What a finished (or cancelled) run hands back."""

    user_embeddings: npt.NDArray[np.float32]
    item_embeddings: npt.NDArray[np.float32]
    metrics: dict[str, float]  # the returned embeddings on the eval split (early stopping)
    test_metrics: dict[str, float]  # the returned embeddings on the test split
    eval_split: str
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float = 0.0
    cancelled: bool = False
    stopped_early: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    #: The embeddings are a refit on train + validation (``config.refit``); the test
    #: metrics then mask both splits' items.
    refit: bool = False
    #: ``config.category_boost``: the boost chosen on validation (``weight`` 0 = none,
    #: ``retriever.recency.RecentCategoryBoost.to_json``); ``metrics`` and
    #: ``test_metrics`` then score with it, the ``plain_`` ones without.
    category_boost: dict[str, Any] = field(default_factory=dict)
    plain_metrics: dict[str, float] = field(default_factory=dict)
    plain_test_metrics: dict[str, float] = field(default_factory=dict)


def lr_factor(progress: float, config: LightGCNConfig) -> float:
    """Multiplier of ``config.lr`` at ``progress`` in [0, 1] (warm-up, then schedule)."""
    p = min(max(progress, 0.0), 1.0)
    w = config.warmup_fraction
    if w > 0 and p < w:
        return max(p / w, 1e-3)
    if config.lr_schedule == "constant":
        return 1.0
    q = (p - w) / (1.0 - w) if w < 1 else 1.0
    floor = config.min_lr_ratio
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * q))


# Fields that may change between a run and its resume without changing the model.
# (The refit and the category boost come after the first phase: they do not change it.)
_RESUMABLE_CHANGES = frozenset(
    {"epochs", "patience", "eval_every", "device", "num_threads", "refit", "category_boost"}
)


def _check_compatible(state: dict[str, Any], config: LightGCNConfig, data_hash: str) -> None:
    """Refuse to resume a checkpoint written for other data or another recipe."""
    if state.get("data_hash") != data_hash:
        raise ValueError("checkpoint was written for different training data; use a new dir")
    saved, now = dict(state["config"]), config.model_dump()
    keys = (now.keys() | saved.keys()) - _RESUMABLE_CHANGES
    diff = sorted(k for k in keys if saved.get(k) != now.get(k))
    if diff:
        raise ValueError(f"checkpoint config differs in {diff}; use a new checkpoint dir")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train(
    data: InteractionData,
    config: LightGCNConfig,
    *,
    on_progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    max_seconds: float | None = None,
    eval_split: str = "auto",
) -> TrainResult:
    """Train LightGCN on ``data.train``; evaluate on ``eval_split``.

    ``eval_split``: ``"valid"``, ``"test"``, or ``"auto"`` (valid when non-empty, else
    test — the Gowalla protocol of the paper). Early stopping watches
    ``config.early_stop_metric`` on that split and the best embeddings are returned.
    With ``checkpoint_dir`` a checkpoint is written after every epoch, and if one is
    there already (and ``resume``) training continues from it. ``should_cancel`` is
    polled every step; on True the run returns at once with ``cancelled`` (the
    checkpoint of the last completed epoch stays, so a resume replays the partial one).
    """
    threads_before = torch.get_num_threads()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        result = _train(
            data,
            config,
            on_progress=on_progress,
            should_cancel=should_cancel,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            max_seconds=max_seconds,
            eval_split=eval_split,
        )
        if result.cancelled or result.eval_split != "valid":
            return result
        boost = RecentCategoryBoost()
        if config.category_boost:
            boost, chosen = choose_boost(
                data,
                torch.from_numpy(result.user_embeddings),
                torch.from_numpy(result.item_embeddings),
                config.early_stop_metric,
                ks=config.eval_ks,
                batch_users=config.eval_batch_users,
                plain=result.metrics,
            )
            result = dataclasses.replace(
                result,
                metrics=chosen,
                plain_metrics=result.metrics,
                category_boost=boost.to_json(),
            )
        # A time-budgeted run has no second budget for the refit (its schedule follows
        # the clock, so the chosen epoch count would not mean the same run again).
        if config.refit and max_seconds is None:
            result = _refit(
                data,
                config,
                result,
                on_progress=on_progress,
                should_cancel=should_cancel,
                checkpoint_dir=checkpoint_dir,
                resume=resume,
            )
        if boost.active and not result.cancelled and len(data.test) > 0:
            fitted = data.with_valid_in_train() if result.refit else data
            codes, n_cat = data.category_codes()
            shares = share_matrix(history_before(data, "test"), codes, data.n_users, n_cat, boost)
            boosted = evaluate_boosted(
                torch.from_numpy(result.user_embeddings),
                torch.from_numpy(result.item_embeddings),
                shares,
                codes,
                boost.weight,
                fitted.train_csr(),
                data.split_csr("test"),
                ks=config.eval_ks,
                batch_users=config.eval_batch_users,
            )
            result = dataclasses.replace(
                result, test_metrics=boosted, plain_test_metrics=result.test_metrics
            )
        return result
    finally:
        torch.set_num_threads(threads_before)


def _refit(
    data: InteractionData,
    config: LightGCNConfig,
    chosen: TrainResult,
    *,
    on_progress: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
    checkpoint_dir: str | Path | None,
    resume: bool,
) -> TrainResult:
    """Train again from scratch on train + validation for the chosen run's best epochs.

    Same recipe and seed, same learning-rate horizon (``config.epochs``; only the stop is
    earlier), no evaluation until the end: what validation chose is the epoch count, and
    the returned embeddings are the refitted model's final ones, scored on the test split
    with the train and validation items masked. Progress continues the epoch count of
    the first phase and carries no metrics (the refit has no validation split).
    """
    merged = data.with_valid_in_train()
    offset, total = chosen.epochs_run, chosen.epochs_run + chosen.best_epoch

    def progress(epoch: int, _total: int, loss: float, _m: dict[str, float], eta: float) -> None:
        if on_progress is not None:
            on_progress(offset + epoch, total, loss, {}, eta)

    refit = _train(
        merged,
        config.with_overrides(eval_every=max(chosen.best_epoch, 1), patience=0),
        on_progress=progress,
        should_cancel=should_cancel,
        checkpoint_dir=Path(checkpoint_dir) / "refit" if checkpoint_dir is not None else None,
        resume=resume,
        max_seconds=None,
        eval_split="test",
        stop_after=max(chosen.best_epoch, 1),
    )
    if refit.cancelled:
        return dataclasses.replace(refit, metrics={}, test_metrics={})
    history = chosen.history + [
        {**h, "epoch": offset + h["epoch"], "refit": 1.0} for h in refit.history
    ]
    timings = {k: chosen.timings.get(k, 0.0) + v for k, v in refit.timings.items()}
    timings["refit_seconds"] = refit.timings.get("total_seconds", 0.0)
    return dataclasses.replace(
        refit,
        metrics=chosen.metrics,
        eval_split=chosen.eval_split,
        best_epoch=chosen.best_epoch,
        epochs_run=chosen.epochs_run + refit.epochs_run,
        history=history,
        timings=timings,
        stopped_early=chosen.stopped_early,
        config=config.model_dump(),
        refit=True,
        category_boost=chosen.category_boost,
        plain_metrics=chosen.plain_metrics,
    )


def _train(
    data: InteractionData,
    config: LightGCNConfig,
    *,
    on_progress: ProgressCallback | None,
    should_cancel: Callable[[], bool] | None,
    checkpoint_dir: str | Path | None,
    resume: bool,
    max_seconds: float | None,
    eval_split: str,
    stop_after: int | None = None,
) -> TrainResult:
    t_start = time.perf_counter()
    if len(data.train) == 0:
        raise ValueError("no training interactions: nothing to train on")
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    split = eval_split
    if split == "auto":
        split = "valid" if len(data.valid) > 0 else "test"
    train_csr = data.train_csr()
    eval_csr = data.split_csr(split)

    gen = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = LightGCN(
        data.n_users,
        data.n_items,
        data.adjacency(),
        embedding_dim=config.embedding_dim,
        n_layers=config.n_layers,
        init=config.init,
        init_std=config.init_std,
        generator=gen,
    ).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, eps=config.adam_eps)
    sampler = NegativeSampler(data.train.users, data.train.items, data.n_items)
    item_codes, n_categories = data.category_codes()
    n_same = round(config.negatives * config.category_negatives) if n_categories else 0

    n_train = len(data.train)
    steps_per_epoch = max(1, math.ceil(n_train / config.batch_size))
    total_steps = steps_per_epoch * config.epochs

    start_epoch, step = 0, 0
    history: list[dict[str, float]] = []
    best_value, best_epoch, bad_evals = -math.inf, -1, 0
    best_state: torch.Tensor | None = None
    best_metrics: dict[str, float] = {}
    elapsed_before = 0.0  # train seconds spent before a resume (time-budget runs)

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir else None
    data_hash = data.data_hash() if ckpt_path is not None else ""
    if ckpt_path is not None and resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=True)
        _check_compatible(state, config, data_hash)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["numpy_rng"]
        start_epoch, step = int(state["epoch"]), int(state["step"])
        history = list(state["history"])
        best_value, best_epoch = float(state["best_value"]), int(state["best_epoch"])
        bad_evals = int(state["bad_evals"])
        best_state = state["best_state"]
        best_metrics = dict(state["best_metrics"])
        elapsed_before = float(state.get("elapsed", 0.0))
        log.info("resumed from %s at epoch %d", ckpt_path, start_epoch)
    # The last epoch this run trains: the schedule still spans ``config.epochs``.
    end_epoch = min(config.epochs, stop_after) if stop_after is not None else config.epochs
    if config.patience > 0 and bad_evals >= config.patience:
        end_epoch = start_epoch  # the checkpoint is of a run that stopped early

    def save_checkpoint(epoch_done: int, elapsed: float) -> None:
        if ckpt_path is None:
            return
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch_done,
                "step": step,
                "config": config.model_dump(),
                "numpy_rng": rng.bit_generator.state,
                "history": history,
                "best_value": best_value,
                "best_epoch": best_epoch,
                "bad_evals": bad_evals,
                "best_state": best_state,
                "best_metrics": best_metrics,
                "elapsed": elapsed,
                "data_hash": data_hash,
            },
            tmp,
        )
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, ckpt_path)

    def evaluate() -> dict[str, float]:
        model.eval()
        u, i = model.final_embeddings()
        model.train()
        return evaluate_embeddings(
            u, i, train_csr, eval_csr, ks=config.eval_ks, batch_users=config.eval_batch_users
        )

    t_train = 0.0
    t_eval = 0.0
    cancelled = stopped_early = False
    epoch = start_epoch
    loop_start = time.perf_counter()
    users_all = data.train.users
    items_all = data.train.items
    for epoch in range(start_epoch, end_epoch):
        t_ep = time.perf_counter()
        perm = rng.permutation(n_train)
        loss_sum, n_batches = 0.0, 0
        out_of_time = False
        for b in range(steps_per_epoch):
            if should_cancel is not None and should_cancel():
                cancelled = True
                break
            elapsed = elapsed_before + time.perf_counter() - loop_start - t_eval
            if max_seconds is not None:
                if elapsed >= max_seconds:
                    out_of_time = True
                    break
                progress = elapsed / max_seconds
            else:
                progress = step / total_steps
            for g in opt.param_groups:
                g["lr"] = config.lr * lr_factor(progress, config)
            idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
            users = users_all[idx]
            neg = sampler.sample(users, config.negatives, rng)
            if n_same > 0:
                neg[:, :n_same] = sample_same_category(
                    sampler, users, items_all[idx], item_codes, n_same, rng
                )
            u_t = torch.from_numpy(users).to(device)
            p_t = torch.from_numpy(items_all[idx]).to(device)
            n_t = torch.from_numpy(neg).to(device)
            loss, _, _ = model.loss(
                u_t,
                p_t,
                n_t,
                config.l2,
                hardest=config.negative_selection == "hardest",
                softmax=config.loss == "softmax",
                temperature=config.temperature,
            )
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError(
                    f"loss is {value} at epoch {epoch} step {b} (lr {opt.param_groups[0]['lr']:g})"
                    "; lower lr or check the input data"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            step += 1
            loss_sum += value
            n_batches += 1
        t_train += time.perf_counter() - t_ep
        if cancelled or (out_of_time and n_batches == 0):
            break
        if max_seconds is not None and (
            elapsed_before + time.perf_counter() - loop_start - t_eval >= max_seconds
        ):
            out_of_time = True  # budget used up: evaluate this epoch as the last one
        epoch_loss = loss_sum / max(n_batches, 1)
        metrics: dict[str, float] = {}
        last_epoch = epoch + 1 == end_epoch or out_of_time
        if (epoch + 1) % config.eval_every == 0 or last_epoch:
            t_ev = time.perf_counter()
            metrics = evaluate()
            t_eval += time.perf_counter() - t_ev
            value_m = metrics.get(config.early_stop_metric, math.nan)
            if value_m > best_value:
                best_value, best_epoch, bad_evals = value_m, epoch + 1, 0
                best_state = model.embedding.detach().clone()
                best_metrics = metrics
            else:
                bad_evals += 1
        history.append(
            {
                "epoch": epoch + 1,
                "loss": epoch_loss,
                "seconds": time.perf_counter() - t_start,
                **metrics,
            }
        )
        done = epoch + 1 - start_epoch
        elapsed_all = elapsed_before + time.perf_counter() - loop_start
        if max_seconds is not None:
            eta = max(0.0, max_seconds - (elapsed_all - t_eval))
        else:
            eta = elapsed_all / max(done, 1) * (end_epoch - epoch - 1)
        save_checkpoint(epoch + 1, elapsed_before + time.perf_counter() - loop_start - t_eval)
        if on_progress is not None:
            on_progress(epoch + 1, end_epoch, epoch_loss, metrics, eta)
        if out_of_time:
            break
        if config.patience > 0 and bad_evals >= config.patience:
            stopped_early = True
            log.info("early stop at epoch %d (best %d)", epoch + 1, best_epoch)
            break

    if best_state is not None and not cancelled:
        with torch.no_grad():
            model.embedding.copy_(best_state)
        metrics_out = best_metrics
    else:
        metrics_out = {} if cancelled else evaluate()
        best_epoch = epoch
    u_fin, i_fin = model.final_embeddings()
    test_metrics = metrics_out
    if split != "test" and len(data.test) > 0 and not cancelled:
        test_metrics = evaluate_embeddings(
            u_fin,
            i_fin,
            train_csr,
            data.split_csr("test"),
            ks=config.eval_ks,
            batch_users=config.eval_batch_users,
        )
    epochs_run = len(history)
    result = TrainResult(
        user_embeddings=u_fin.cpu().numpy().astype(np.float32),
        item_embeddings=i_fin.cpu().numpy().astype(np.float32),
        metrics=metrics_out,
        test_metrics=test_metrics,
        eval_split=split,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        history=history,
        timings={
            "total_seconds": time.perf_counter() - t_start,
            "train_seconds": t_train,
            "eval_seconds": t_eval,
            "seconds_per_epoch": t_train / max(epochs_run - start_epoch, 1),
        },
        peak_rss_mb=_peak_rss_mb(),
        peak_cuda_mb=(
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
        ),
        cancelled=cancelled,
        stopped_early=stopped_early,
        config=config.model_dump(),
    )
    return result
