"""Recent-category boost: the categories a user is browsing now lift their items.

Shoppers browse in sessions of one category, so what a user looks at next is usually
in the category of what they looked at last (on the sample store 85 % of held-out
items share the category of the user's newest training item). The user embedding
knows the user's overall tastes, not which of them is active now. The boost adds it:

    score(u, i) = <user_u, item_i> + weight * share_u(category(i))

``share_u(c)``: the user's most recent distinct items (newest first, at most
``max_items``, only items the model knows), item ``r`` weighing
``0.5 ** (r / half_life)``; the weight of those in category ``c`` over the total
(items without a category count in the total, in no category). ``weight`` and
``half_life`` are chosen on the validation split by the trainer (``scoring.json`` in
the artifacts); a weight of 0 is the plain model.

This module is the serving side (one user, pure numpy). The trainer scores its
evaluation with the vectorised twin in ``trainer.recency``; a test holds the two to
the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["RecentCategoryBoost", "category_shares"]


@dataclass(frozen=True)
class RecentCategoryBoost:
    """``weight`` 0 = off; ``half_life`` in items (newest first)."""

    weight: float = 0.0
    half_life: float = 1.0
    max_items: int = 50

    @property
    def active(self) -> bool:
        return self.weight > 0

    def to_json(self) -> dict[str, Any]:
        return {"weight": self.weight, "half_life": self.half_life, "max_items": self.max_items}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> RecentCategoryBoost:
        if not raw:
            return cls()
        return cls(
            weight=float(raw.get("weight", 0.0)),
            half_life=float(raw.get("half_life", 1.0)),
            max_items=int(raw.get("max_items", 50)),
        )


def category_shares(
    recent_item_ids: Iterable[str],
    category_of: Callable[[str], int | None],
    boost: RecentCategoryBoost,
) -> dict[int, float]:
    """``{category code: share}`` of the user's recent items, newest first.

    ``category_of(item_id)``: the item's category code, -1 for none, None when the
    model does not know the item (skipped, as if it were not in the history).
    Repeated items count once, at their newest position.
    """
    seen: set[str] = set()
    codes: list[int] = []
    for item_id in recent_item_ids:
        if item_id in seen:
            continue
        seen.add(item_id)
        code = category_of(item_id)
        if code is None:
            continue
        codes.append(code)
        if len(codes) >= boost.max_items:
            break
    if not codes:
        return {}
    weights: npt.NDArray[np.float64] = 0.5 ** (np.arange(len(codes)) / boost.half_life)
    total = float(weights.sum())
    shares: dict[int, float] = {}
    for code, w in zip(codes, weights.tolist(), strict=True):
        if code >= 0:
            shares[code] = shares.get(code, 0.0) + w
    return {code: w / total for code, w in shares.items()}
