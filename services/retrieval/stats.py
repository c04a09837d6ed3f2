"""Per-variant served counts and click-through rate, from attribution (for the console).

Served = rows of ``served_recommendations`` (the ingestion service stores our
impression events there). Clicked = served responses with at least one attributed
interaction (click, add to cart or purchase carrying their recommendation_id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.storage.models import Interaction, ServedRecommendation

__all__ = ["VariantCounts", "variant_counts"]

_ENGAGEMENT = ("click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class VariantCounts:
    model_version: str
    served: int
    fallback: int
    clicked: int

    @property
    def ctr(self) -> float:
        return self.clicked / self.served if self.served else 0.0


async def variant_counts(
    session: AsyncSession, tenant_id: str, start: datetime, end: datetime
) -> list[VariantCounts]:
    sr = ServedRecommendation
    in_range = (sr.tenant_id == tenant_id, sr.served_at >= start, sr.served_at < end)
    served_rows = (
        await session.execute(
            select(
                sr.model_version,
                func.count(),
                func.sum(case((sr.fallback.is_(True), 1), else_=0).cast(Integer)),
            )
            .where(*in_range)
            .group_by(sr.model_version)
        )
    ).all()
    clicked_rows = (
        await session.execute(
            select(sr.model_version, func.count(func.distinct(sr.recommendation_id)))
            .join(
                Interaction,
                (Interaction.tenant_id == sr.tenant_id)
                & (Interaction.recommendation_id == sr.recommendation_id),
            )
            # IS NOT NULL is implied by the join; stated so that every planner sees
            # it may use the partial (tenant_id, recommendation_id) index (0008).
            .where(
                *in_range,
                Interaction.type.in_(_ENGAGEMENT),
                Interaction.recommendation_id.is_not(None),
            )
            .group_by(sr.model_version)
        )
    ).all()
    clicked = {version or "": int(n) for version, n in clicked_rows}
    return [
        VariantCounts(
            model_version=version or "",
            served=int(n),
            fallback=int(fb or 0),
            clicked=clicked.get(version or "", 0),
        )
        for version, n, fb in served_rows
    ]
