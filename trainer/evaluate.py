"""Full-ranking evaluation: Recall, NDCG, Precision and HitRate at K.

Why this module exists: quality claims (docs/trainer.md, the bench, the metrics.json
shipped with every artifact) must all mean the same thing — the LightGCN/NGCF
convention: rank *every* item for every user with held-out items, remove the user's
train items, take the top K, average per user. Users are processed in batches with
``topk`` so memory stays bounded (a batch of 2048 users x 41k items is ~330 MB).

Definitions, per user with test set T (|T| > 0) and top-K list L:
  Recall@K = |L ∩ T| / |T|              Precision@K = |L ∩ T| / K
  HitRate@K = 1 if L ∩ T else 0
  NDCG@K = sum_{r: L[r] in T} 1/log2(r+2) / sum_{r < min(|T|, K)} 1/log2(r+2)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["evaluate_embeddings", "evaluate_scorer", "popularity_baseline"]

Scorer = Callable[[torch.Tensor], torch.Tensor]
CSR = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]


def evaluate_scorer(
    scorer: Scorer,
    n_items: int,
    train: CSR,
    test: CSR,
    *,
    ks: Sequence[int] = (10, 20),
    batch_users: int = 2048,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Evaluate ``scorer(user_indices) -> (B, n_items)`` scores.

    ``train`` and ``test`` are (indptr, indices) CSR pairs over the same users; items
    in ``train`` are excluded from ranking. Users without test items are skipped.
    """
    tr_ptr, tr_idx = train
    te_ptr, te_idx = test
    n_test = np.diff(te_ptr)
    users = np.flatnonzero(n_test > 0)
    kmax = max(ks)
    sums = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "precision", "hit_rate")}
    discount = 1.0 / np.log2(np.arange(2, kmax + 2))
    ideal_cum = np.concatenate([[0.0], np.cumsum(discount)])
    for start in range(0, len(users), batch_users):
        ub = users[start : start + batch_users]
        scores = scorer(torch.from_numpy(ub).to(device)).float()
        # Mask train items.
        rows, cols = _expand(tr_ptr, tr_idx, ub)
        scores[torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)] = -torch.inf
        top = torch.topk(scores, min(kmax, n_items), dim=1).indices.cpu().numpy()
        del scores
        # Hits: is top[r, j] in the user's test set? One searchsorted over sorted keys.
        trows, tcols = _expand(te_ptr, te_idx, ub)
        truth = np.sort(trows * n_items + tcols)
        keys = np.arange(len(ub), dtype=np.int64)[:, None] * n_items + top
        pos = np.minimum(np.searchsorted(truth, keys), max(len(truth) - 1, 0))
        hits = (truth[pos] == keys).astype(np.float64) if len(truth) else np.zeros(keys.shape)
        nt = n_test[ub]
        for k in ks:
            h = hits[:, :k]
            nh = h.sum(1)
            dcg = (h * discount[: h.shape[1]]).sum(1)
            idcg = ideal_cum[np.minimum(nt, k)]
            sums[f"recall@{k}"] += float((nh / nt).sum())
            sums[f"precision@{k}"] += float((nh / k).sum())
            sums[f"hit_rate@{k}"] += float((nh > 0).sum())
            sums[f"ndcg@{k}"] += float((dcg / idcg).sum())
    n = max(len(users), 1)
    return {name: v / n for name, v in sums.items()}


def evaluate_embeddings(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    train: CSR,
    test: CSR,
    *,
    ks: Sequence[int] = (10, 20),
    batch_users: int = 2048,
) -> dict[str, float]:
    """Evaluate dot-product scores of final user/item embeddings."""
    item_t = item_emb.T.contiguous()
    return evaluate_scorer(
        lambda u: user_emb[u] @ item_t,
        item_emb.shape[0],
        train,
        test,
        ks=ks,
        batch_users=batch_users,
        device=user_emb.device,
    )


def popularity_baseline(
    popularity: npt.NDArray[np.int64],
    train: CSR,
    test: CSR,
    *,
    ks: Sequence[int] = (10, 20),
    batch_users: int = 2048,
) -> dict[str, float]:
    """Rank every user's unseen items by train popularity (ties: lower index first)."""
    n = len(popularity)
    # Strictly decreasing in rank so ties break deterministically.
    order = np.lexsort((np.arange(n), -popularity))
    score = np.empty(n, np.float32)
    score[order] = np.arange(n, 0, -1, dtype=np.float32)
    s = torch.from_numpy(score)
    return evaluate_scorer(
        lambda u: s.expand(len(u), n).clone(), n, train, test, ks=ks, batch_users=batch_users
    )


def _expand(
    indptr: npt.NDArray[np.int64], indices: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(batch_row, col) coordinates of the CSR rows ``rows``, vectorised."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lens = ends - starts
    total = int(lens.sum())
    batch_row = np.repeat(np.arange(len(rows), dtype=np.int64), lens)
    offs = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    return batch_row, indices[np.repeat(starts, lens) + offs]
