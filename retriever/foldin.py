"""Fold-in embeddings for users unseen at training time.

A user who signed up after the last training run has no row in the user embedding
matrix, but usually has a few recent interactions. LightGCN's final user embedding is
(a layer-average of) propagated item embeddings: one propagation step gives a user
the normalised sum of the embeddings of the items they interacted with. The weighted
mean of those items' final embeddings is therefore a cheap, training-free
approximation that lives in the same space as the trained user vectors, and it is
what we use.

Weights, documented choice:

* recency: the i-th most recent interaction (i = 0 for the newest) weighs
  ``0.5 ** (i / recency_half_life)`` (default half-life 10 interactions), so the
  session's intent dominates without discarding older taste;
* interaction type: optional multipliers (default: purchase 3, add_to_cart 2, like
  1.5, view/click 1; unknown types 1).

Unknown item ids are ignored; with no known item there is no fold-in (``None``) and
the caller falls back to popular items. The vector is not normalised: ranking by
inner product is invariant to the query's scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_TYPE_WEIGHTS", "FoldIn", "Interaction", "fold_in"]

DEFAULT_TYPE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"purchase": 3.0, "add_to_cart": 2.0, "like": 1.5, "view": 1.0, "click": 1.0}
)


@dataclass(frozen=True)
class Interaction:
    """One recent interaction; a plain item id string also works where accepted."""

    item_id: str
    type: str = "view"


@dataclass(frozen=True)
class FoldIn:
    """Fold-in configuration."""

    recency_half_life: float = 10.0
    type_weights: Mapping[str, float] = field(default_factory=lambda: DEFAULT_TYPE_WEIGHTS)
    max_items: int = 200

    def embed(
        self,
        recent: Sequence[str | Interaction],
        item_embeddings: npt.NDArray[np.float32],
        positions: Mapping[str, int],
    ) -> npt.NDArray[np.float32] | None:
        """Weighted mean of the known recent items' embeddings, newest first."""
        rows: list[int] = []
        weights: list[float] = []
        for rank, entry in enumerate(recent[: self.max_items]):
            inter = entry if isinstance(entry, Interaction) else Interaction(entry)
            pos = positions.get(inter.item_id)
            if pos is None:
                continue
            w = 0.5 ** (rank / self.recency_half_life) * self.type_weights.get(inter.type, 1.0)
            if w <= 0:
                continue
            rows.append(pos)
            weights.append(w)
        if not rows:
            return None
        wv = np.asarray(weights, dtype=np.float64)
        vec: npt.NDArray[np.float32] = (
            (wv[:, None] * item_embeddings[np.asarray(rows)]).sum(axis=0) / wv.sum()
        ).astype(np.float32)
        return vec


def fold_in(
    recent: Sequence[str | Interaction],
    item_embeddings: npt.NDArray[np.float32],
    positions: Mapping[str, int],
    config: FoldIn | None = None,
) -> npt.NDArray[np.float32] | None:
    """Convenience wrapper around :meth:`FoldIn.embed` with the default config."""
    return (config or FoldIn()).embed(recent, item_embeddings, positions)
