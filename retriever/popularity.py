"""Time-decayed item popularity: the fallback when personalisation is impossible.

Raw interaction counts favour items that were popular long ago; an exponential decay
with a configurable half-life (default 7 days) lets the fallback follow current
demand: an event of weight w at time t contributes ``w · 0.5 ** ((now - t) / half_life)``.
Scores are kept per item position, so "popular within a category" (or within any
filter) is the exact top-k of the scores restricted to a mask — no per-category lists
to keep in sync. Ties break by position, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["DAY_SECONDS", "Popularity"]

DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class Popularity:
    """Popularity score per item position (aligned with the catalog)."""

    scores: npt.NDArray[np.float64]

    @classmethod
    def from_events(
        cls,
        n_items: int,
        positions: npt.ArrayLike,
        timestamps: npt.ArrayLike,
        *,
        now: float,
        half_life_s: float = 7 * DAY_SECONDS,
        weights: npt.ArrayLike | None = None,
    ) -> Popularity:
        """Decayed sum of events (item position, unix time, optional weight)."""
        if half_life_s <= 0:
            raise ValueError("half_life_s must be positive")
        pos = np.asarray(positions, dtype=np.int64)
        ts = np.asarray(timestamps, dtype=np.float64)
        w = np.ones_like(ts) if weights is None else np.asarray(weights, dtype=np.float64)
        age = np.maximum(0.0, now - ts)  # future-dated events count as "now"
        contrib = w * np.exp2(-age / half_life_s)
        return cls(np.bincount(pos, weights=contrib, minlength=n_items).astype(np.float64))

    @classmethod
    def from_mapping(cls, scores: Mapping[str, float], positions: Mapping[str, int]) -> Popularity:
        """From {item_id: score}; items missing from the mapping score 0."""
        arr = np.zeros(len(positions), dtype=np.float64)
        for item, score in scores.items():
            pos = positions.get(item)
            if pos is not None:
                arr[pos] = float(score)
        return cls(arr)

    @classmethod
    def uniform(cls, n_items: int) -> Popularity:
        return cls(np.zeros(n_items, dtype=np.float64))

    def __len__(self) -> int:
        return int(self.scores.size)

    def top(
        self, count: int, mask: npt.NDArray[np.bool_] | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Exact top-``count`` positions (and scores) among ``mask`` (all if ``None``)."""
        if count <= 0:
            raise ValueError("count must be positive")
        cand = (
            np.arange(self.scores.size, dtype=np.int64)
            if mask is None
            else np.flatnonzero(mask).astype(np.int64)
        )
        if cand.size == 0:
            return cand, np.empty(0, dtype=np.float64)
        sc = self.scores[cand]
        if count < cand.size:
            part = np.argpartition(-sc, count - 1)[:count]
            # Include every candidate tied with the cut-off so the tie-break is by position.
            cut = sc[part].min()
            part = np.flatnonzero(sc >= cut)
            cand, sc = cand[part], sc[part]
        order = np.lexsort((cand, -sc))[:count]
        return cand[order], sc[order]
