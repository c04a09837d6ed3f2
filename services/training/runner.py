"""The training process: snapshot in, verified artifacts out.

The worker (``services.training.worker``) starts this in a separate process (the
``spawn`` start method) for every job. Why a process and not a thread: training is
CPU-bound for minutes and torch holds the GIL in parts of its Python loop, so in a
thread it would stall the event loop that serves gRPC and renews the job's lease;
a process also isolates torch's memory and threads, and can be killed outright.

It talks to the worker through a queue of plain dicts (``kind`` = progress, done,
error) and stops when the cancel event is set or the worker process is gone.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["TrainSpec", "run_training"]

TrainSpec = dict[str, Any]


def run_training(spec: TrainSpec, queue: Any, cancel: Any) -> None:
    """Process entry point; never raises (errors travel as a message)."""
    try:
        queue.put(_train(spec, queue, cancel))
    except Exception as exc:
        queue.put(
            {
                "kind": "error",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=8),
                "non_finite": type(exc).__name__ == "NonFiniteLossError",
            }
        )


def _train(spec: TrainSpec, queue: Any, cancel: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    from services.training.hyper import auto_batch_size
    from trainer.artifacts import write_artifacts
    from trainer.config import load_config, resolve_device
    from trainer.data import InteractionData
    from trainer.evaluate import popularity_baseline
    from trainer.train import train

    parent = multiprocessing.parent_process()

    def should_cancel() -> bool:
        # A worker killed with SIGKILL cannot tell us; its disappearance must stop us.
        return bool(cancel.is_set()) or (parent is not None and not parent.is_alive())

    def phase(message: str) -> None:
        queue.put({"kind": "progress", "message": message})

    phase("building the interaction graph")
    snapshot = np.load(spec["snapshot_path"], allow_pickle=False)
    overrides = dict(spec["overrides"])
    config = load_config(**overrides)
    categories = None
    if "catalog_items" in snapshot.files:  # older snapshots have no catalog
        categories = dict(
            zip(
                snapshot["catalog_items"].tolist(),
                snapshot["catalog_categories"].tolist(),
                strict=True,
            )
        )
    data = InteractionData.from_interactions(
        snapshot["users"],
        snapshot["items"],
        snapshot["timestamps"],
        test_fraction=config.test_fraction,
        val_fraction=config.val_fraction,
        item_categories=categories,
    )
    if "batch_size" not in overrides:
        config = config.with_overrides(batch_size=auto_batch_size(len(data.train)))
    device = resolve_device(config.device)
    device_name = str(device)
    if device.type == "cuda":
        device_name = f"{device} ({torch.cuda.get_device_name(device)})"

    def on_progress(
        epoch: int, total: int, loss: float, metrics: dict[str, float], eta: float | None
    ) -> None:
        queue.put(
            {
                "kind": "progress",
                "epoch": epoch,
                "total_epochs": total,
                "loss": float(loss),
                "metrics": {k: float(v) for k, v in metrics.items()},
                "eta_seconds": eta,
                "message": f"epoch {epoch}/{total}",
            }
        )

    started = time.monotonic()
    resumed = _checkpoint_epoch(Path(spec["checkpoint_dir"]))
    if resumed:
        # A retry of a job whose worker was lost: say where it picks up. The key stays
        # in the job's progress (later messages replace only ``message``).
        queue.put(
            {
                "kind": "progress",
                "resumed_from_epoch": resumed,
                "message": f"resuming from the checkpoint of epoch {resumed}",
            }
        )
    phase(f"training on {len(data.train)} interactions ({device_name})")
    result = train(
        data,
        config,
        on_progress=on_progress,
        should_cancel=should_cancel,
        checkpoint_dir=spec["checkpoint_dir"],
        resume=True,
        max_seconds=spec.get("max_seconds"),
    )
    if result.cancelled:
        return {"kind": "cancelled"}
    phase("evaluating")
    # With a refit the model was trained on train + validation: the baseline counts and
    # masks the same pairs, and the served popularity includes them.
    fitted = data.with_valid_in_train() if result.refit else data
    test_csr = fitted.split_csr("test")
    baseline = popularity_baseline(
        fitted.item_popularity(), fitted.train_csr(), test_csr, ks=(10, 20)
    )
    metrics: dict[str, float] = {k: float(v) for k, v in result.test_metrics.items()}
    metrics["train_seconds"] = float(time.monotonic() - started)
    metrics["coverage"] = _coverage(result.user_embeddings, result.item_embeddings)
    metrics["baseline_ndcg@10"] = float(baseline.get("ndcg@10", 0.0))
    metrics["baseline_recall@20"] = float(baseline.get("recall@20", 0.0))
    for name, value in result.plain_test_metrics.items():
        metrics[f"plain_{name}"] = float(value)  # the model without the category boost
    phase("writing artifacts")
    path = write_artifacts(
        spec["artifact_root"],
        spec["version"],
        user_embeddings=result.user_embeddings,
        item_embeddings=result.item_embeddings,
        user_ids=list(data.user_ids),
        item_ids=list(data.item_ids),
        popularity=fitted.item_popularity(),
        metrics=metrics,
        config=result.config or config.model_dump(mode="json"),
        data_hash=data.data_hash(),
        scoring={"recent_category": result.category_boost} if result.category_boost else None,
    )
    return {
        "kind": "done",
        "artifact_path": str(path),
        "metrics": metrics,
        "config": config.model_dump(mode="json"),
        "data_hash": data.data_hash(),
        "user_count": data.n_users,
        "item_count": data.n_items,
        "best_epoch": result.best_epoch,
        "refit": result.refit,
        "category_boost": dict(result.category_boost),
        "plain_valid_metrics": {k: float(v) for k, v in result.plain_metrics.items()},
        "valid_metrics": (
            {k: float(v) for k, v in result.metrics.items()} if result.eval_split == "valid" else {}
        ),
        "device": device_name,
    }


def _checkpoint_epoch(checkpoint_dir: Path) -> int:
    """The last completed epoch saved in ``checkpoint_dir``; 0 when there is none."""
    import torch

    from trainer.train import CHECKPOINT_NAME

    path = checkpoint_dir / CHECKPOINT_NAME
    if not path.exists():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:
        return 0  # unreadable: the trainer itself decides (and reports) what to do


def _coverage(users: Any, items: Any, sample: int = 2000, k: int = 10) -> float:
    """Share of the catalog that appears in someone's top-k (a sample of users)."""
    import numpy as np

    if len(users) == 0 or len(items) == 0:
        return 0.0
    rng = np.random.default_rng(0)
    chosen = users[rng.choice(len(users), size=min(sample, len(users)), replace=False)]
    scores = chosen @ items.T
    k = min(k, items.shape[0])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(len(np.unique(top)) / items.shape[0])


def snapshot_path(work_dir: Path) -> Path:
    return work_dir / "snapshot.npz"
