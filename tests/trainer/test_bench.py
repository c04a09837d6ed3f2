"""The bench runs end to end on a tiny Gowalla-format dataset and reports a summary."""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.trainer.conftest import make_clustered
from trainer.bench import bench_train


def _write(path: Path, users: list[int], items: list[int]) -> None:
    rows: dict[int, list[int]] = {}
    for u, i in zip(users, items, strict=True):
        rows.setdefault(u, []).append(i)
    with gzip.open(path, "wt") as fh:
        for u in sorted(rows):
            fh.write(" ".join(map(str, [u, *rows[u]])) + "\n")


def test_bench_reports_summary(tmp_path: Path) -> None:
    d = make_clustered(n_users=120, n_items=80, n_clusters=4)
    _write(tmp_path / "train.txt.gz", d.train.users.tolist(), d.train.items.tolist())
    _write(tmp_path / "test.txt.gz", d.test.users.tolist(), d.test.items.tolist())
    lines: list[str] = []
    s = bench_train(
        tmp_path / "train.txt.gz",
        tmp_path / "test.txt.gz",
        minutes=0.02,
        out=lines.append,
        batch_size=256,
        embedding_dim=16,
        eval_every=2,
    )
    assert s["epochs"] >= 1 and s["best"]["recall@20"] > 0
    assert s["popularity"]["recall@20"] > 0 and s["peak_rss_mb"] > 0
    assert any(line.startswith("summary:") for line in lines)
    assert any("recall@20" in line for line in lines if line.startswith("epoch"))
