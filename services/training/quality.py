"""The data-quality check that runs before every training job.

Built on ingestion's data statistics (``Queries.data_stats``: counts, duplicates, cold
users and items) plus what only training cares about: interactions whose item is not
in the catalog (they train embeddings the retrievers cannot show) and stale data.
An ERROR finding stops StartTrainingJob (DATA_QUALITY_FAILED) and a scheduled job
alike, with the findings in the message so the tenant knows what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.ingestion.queries import Queries
from services.storage.models import Interaction, Item

__all__ = ["ERROR", "INFO", "WARNING", "Issue", "QualityReport", "check_data_quality"]

INFO, WARNING, ERROR = "info", "warning", "error"
_RANK = {ERROR: 0, WARNING: 1, INFO: 2}

MIN_INTERACTIONS = 100
MIN_USERS = 10
MIN_ITEMS = 10
ORPHAN_ERROR = 0.5
ORPHAN_WARNING = 0.05
STALE_DAYS = 30


@dataclass(frozen=True)
class Issue:
    check: str
    severity: str
    message: str
    observed: float = 0.0
    threshold: float = 0.0


@dataclass
class QualityReport:
    tenant_id: str
    interaction_count: int = 0
    user_count: int = 0
    item_count: int = 0
    issues: list[Issue] = field(default_factory=list)
    check_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def passed(self) -> bool:
        return not any(i.severity == ERROR for i in self.issues)

    def summary(self) -> str:
        """The ERROR findings in one line (what a failed job or refusal shows)."""
        errors = [i for i in self.issues if i.severity == ERROR]
        return " ".join(f"{i.check}: {i.message}" for i in errors)


async def check_data_quality(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, *, now: datetime | None = None
) -> QualityReport:
    stats = await Queries(sessions).data_stats(tenant_id)
    now = now or datetime.now(UTC)
    report = QualityReport(
        tenant_id=tenant_id,
        interaction_count=stats.interaction_count,
        user_count=stats.user_count,
        item_count=stats.item_count,
        check_time=now,
    )
    issues = report.issues
    n = stats.interaction_count
    if n < MIN_INTERACTIONS or stats.user_count < MIN_USERS:
        issues.append(
            Issue(
                "TOO_FEW_INTERACTIONS",
                ERROR,
                f"{n} interactions from {stats.user_count} users; training needs at least "
                f"{MIN_INTERACTIONS} interactions from {MIN_USERS} users. Import more "
                "interactions (POST /api/v1/interactions:import) or track events.",
                observed=float(n),
                threshold=float(MIN_INTERACTIONS),
            )
        )
    if stats.item_count == 0:
        issues.append(
            Issue(
                "EMPTY_CATALOG",
                ERROR,
                "The catalog is empty, so recommendations could not be shown or filtered. "
                "Import items first (POST /api/v1/items:import).",
            )
        )
    elif n:
        orphans = await _orphan_count(sessions, tenant_id)
        share = orphans / n
        if share > ORPHAN_WARNING:
            severity = ERROR if share > ORPHAN_ERROR else WARNING
            issues.append(
                Issue(
                    "ORPHAN_INTERACTIONS",
                    severity,
                    f"{orphans} of {n} interactions ({share:.0%}) name items missing from the "
                    "catalog; import those items or check the item ids of the interactions.",
                    observed=share,
                    threshold=ORPHAN_ERROR if severity == ERROR else ORPHAN_WARNING,
                )
            )
    distinct_items = stats.item_count - stats.cold_items if stats.item_count else 0
    if n >= MIN_INTERACTIONS and stats.item_count and distinct_items < MIN_ITEMS:
        issues.append(
            Issue(
                "TOO_FEW_ITEMS",
                ERROR,
                f"Only {distinct_items} catalog items have interactions; a model needs at "
                f"least {MIN_ITEMS} to rank.",
                observed=float(distinct_items),
                threshold=float(MIN_ITEMS),
            )
        )
    if stats.duplicate_interactions:
        share = stats.duplicate_interactions / max(n, 1)
        issues.append(
            Issue(
                "DUPLICATE_INTERACTIONS",
                WARNING if share > 0.1 else INFO,
                f"{stats.duplicate_interactions} duplicate interactions (same user, item, type "
                "and time); training counts each pair once.",
                observed=share,
                threshold=0.1,
            )
        )
    if stats.item_count and stats.cold_items:
        share = stats.cold_items / stats.item_count
        issues.append(
            Issue(
                "COLD_ITEMS",
                WARNING if share > 0.5 else INFO,
                f"{stats.cold_items} of {stats.item_count} items have no interactions; they "
                "are recommended only through filters and popularity.",
                observed=share,
                threshold=0.5,
            )
        )
    if stats.user_count and stats.cold_users / stats.user_count > 0.5:
        share = stats.cold_users / stats.user_count
        issues.append(
            Issue(
                "COLD_USERS",
                WARNING,
                f"{stats.cold_users} of {stats.user_count} users have fewer than 3 "
                "interactions; they cannot be evaluated and get weak recommendations.",
                observed=share,
                threshold=0.5,
            )
        )
    if stats.last_time is not None and now - stats.last_time > timedelta(days=STALE_DAYS):
        age = (now - stats.last_time).total_seconds() / 86400
        issues.append(
            Issue(
                "STALE_DATA",
                WARNING,
                f"The newest interaction is {age:.0f} days old; the model will reflect old "
                "behaviour. Track recent events before retraining.",
                observed=age,
                threshold=float(STALE_DAYS),
            )
        )
    issues.sort(key=lambda i: _RANK[i.severity])
    return report


async def _orphan_count(sessions: async_sessionmaker[AsyncSession], tenant_id: str) -> int:
    async with sessions() as session:
        value = await session.scalar(
            select(func.count())
            .select_from(Interaction)
            .outerjoin(
                Item,
                and_(Item.tenant_id == Interaction.tenant_id, Item.item_id == Interaction.item_id),
            )
            .where(Interaction.tenant_id == tenant_id, Item.item_id.is_(None))
        )
    return int(value or 0)
