"""Time-boxed LightGCN benchmark on a LightGCN-format dataset (Gowalla).

Why this module exists: "does the trainer reach the paper's quality on this machine,
and how fast" must be answerable with one command (``embrec bench train --dataset
gowalla``). It trains under a wall-clock budget with the schedule stretched to that
budget, prints each epoch (wall time, loss, and Recall@20 / NDCG@20 when evaluated),
then a summary with time per epoch, peak memory, the best metrics and the popularity
baseline on the same split.

Gowalla has no validation split, so, as in the paper and its reference code, the best
test figures over the run are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.config import DEFAULT_CONFIG_PATH, load_config
from trainer.data import InteractionData
from trainer.evaluate import popularity_baseline
from trainer.train import train

__all__ = ["bench_train"]


def bench_train(
    train_path: str | Path,
    test_path: str | Path,
    *,
    minutes: float,
    config_path: str | Path | None = DEFAULT_CONFIG_PATH,
    out: Callable[[str], object] = print,
    **overrides: Any,
) -> dict[str, Any]:
    """Train for ``minutes`` of training time (evaluation excluded) and report.

    ``overrides`` are config fields (``lr=0.02``, ``negatives=8``, ...). Returns a
    summary dict (also printed): config, epochs, seconds per epoch, peak RSS, best
    and final metrics, the history and the popularity baseline.
    """
    t0 = time.perf_counter()
    config = load_config(config_path, **overrides)
    data = InteractionData.from_gowalla(train_path, test_path)
    out(
        f"data: {data.n_users} users, {data.n_items} items, {len(data.train)} train, "
        f"{len(data.test)} test pairs (load {time.perf_counter() - t0:.1f}s)"
    )
    out(f"config: {config.model_dump_json()}")
    pop = popularity_baseline(data.item_popularity(), data.train_csr(), data.split_csr("test"))
    out(f"popularity: recall@20 {pop['recall@20']:.4f} ndcg@20 {pop['ndcg@20']:.4f}")

    def progress(
        epoch: int, total: int, loss: float, metrics: dict[str, float], eta: float
    ) -> None:
        line = f"epoch {epoch:4d}  wall {time.perf_counter() - t0:7.1f}s  loss {loss:.5f}"
        if metrics:
            line += f"  recall@20 {metrics['recall@20']:.4f}  ndcg@20 {metrics['ndcg@20']:.4f}"
        out(line + f"  eta {eta:5.0f}s")

    result = train(
        data,
        config.with_overrides(epochs=10**6) if minutes > 0 else config,
        on_progress=progress,
        max_seconds=minutes * 60 if minutes > 0 else None,
        eval_split="test",
    )
    best = result.metrics
    summary: dict[str, Any] = {
        "config": result.config,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds_per_epoch": result.timings["seconds_per_epoch"],
        "train_seconds": result.timings["train_seconds"],
        "eval_seconds": result.timings["eval_seconds"],
        "total_seconds": time.perf_counter() - t0,
        "peak_rss_mb": result.peak_rss_mb,
        "peak_cuda_mb": result.peak_cuda_mb,
        "best": best,
        "popularity": pop,
        "history": result.history,
    }
    out(
        f"summary: {result.epochs_run} epochs, {summary['seconds_per_epoch']:.2f} s/epoch, "
        f"train {summary['train_seconds'] / 60:.1f} min + eval {summary['eval_seconds']:.0f} s, "
        f"peak RSS {result.peak_rss_mb:.0f} MB"
    )
    out(
        f"best (epoch {result.best_epoch}): recall@20 {best.get('recall@20', float('nan')):.4f} "
        f"ndcg@20 {best.get('ndcg@20', float('nan')):.4f} | popularity recall@20 "
        f"{pop['recall@20']:.4f} ndcg@20 {pop['ndcg@20']:.4f}"
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    """``python -m trainer.bench DATASET_DIR --minutes 40 [--set key=value ...]``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("dataset_dir", type=Path, help="folder with train.txt.gz, test.txt.gz")
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_PATH)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override; VALUE parsed as JSON when possible",
    )
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            overrides[key] = json.loads(raw)
        except ValueError:
            overrides[key] = raw
    d: Path = args.dataset_dir
    bench_train(
        d / "train.txt.gz",
        d / "test.txt.gz",
        minutes=args.minutes,
        config_path=args.config,
        out=lambda s: print(s, flush=True),
        **overrides,
    )


if __name__ == "__main__":
    main()
