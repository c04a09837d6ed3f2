"""Read side of ingestion: uploads and their reports, the catalog, data stats, analytics.

Analytics is plain SQL over indexed tables rather than pre-aggregated counters: every
query is bounded by ``(tenant_id, ts)`` (interactions) or ``(tenant_id, served_at)``
(served recommendations), so its cost follows the range asked for, and the numbers are
always consistent with the data (no second copy to drift). ``embrec bench ingest``
measures it on millions of rows. Daily buckets are computed in Python from per-hour
SQL groups, which keeps the SQL portable (PostgreSQL and SQLite) and lets any whole-
hour time zone shift the buckets correctly.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Integer, and_, case, cast, distinct, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import defer

from services.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from services.pagination import next_token, parse_page
from services.storage.models import Interaction, Item, ServedRecommendation, Upload

__all__ = ["AnalyticsResult", "DataStatsResult", "Queries"]

MAX_RANGE = timedelta(days=366)
DEFAULT_RANGE = timedelta(days=30)
MAX_RETURNED_ERRORS = 1000
REPORT_COLUMNS = ("row", "column", "reason", "message", "value")


@dataclass
class DataStatsResult:
    item_count: int = 0
    user_count: int = 0
    interaction_count: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    category_count: int = 0
    top_categories: list[tuple[str, int]] = field(default_factory=list)
    density: float = 0.0
    first_time: datetime | None = None
    last_time: datetime | None = None
    cold_users: int = 0
    cold_items: int = 0
    duplicate_interactions: int = 0
    problems: list[str] = field(default_factory=list)
    compute_time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``uploads.details`` (the snapshot taken after an import)."""
        data = dataclasses.asdict(self)
        for key in ("first_time", "last_time", "compute_time"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        data["top_categories"] = [list(pair) for pair in self.top_categories]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataStatsResult:
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        for key in ("first_time", "last_time", "compute_time"):
            if values.get(key):
                values[key] = datetime.fromisoformat(values[key])
        values["top_categories"] = [(str(c), int(n)) for c, n in values.get("top_categories", [])]
        return cls(**values)


@dataclass
class DayMetrics:
    served: int = 0
    impressions: int = 0
    clicks: int = 0
    conversions: int = 0
    interactions: int = 0
    active_users: int = 0
    revenue: float = 0.0


@dataclass
class PopularItem:
    item_id: str
    title: str
    category: str
    interactions: int
    impressions: int = 0
    clicks: int = 0


@dataclass
class AnalyticsResult:
    start: datetime
    end: datetime
    time_zone: str
    served: int
    impressions: int
    clicks: int
    conversions: int
    revenue: float
    active_users: int
    popular: list[PopularItem]
    daily: list[tuple[str, DayMetrics]]

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.served if self.served else 0.0


class Queries:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # ------------------------------------------------------------------ uploads

    async def upload(self, tenant_id: str, upload_id: str) -> Upload:
        if not upload_id:
            raise InvalidArgument(
                "upload_id is required.", violations=[FieldViolation("upload_id", "required")]
            )
        async with self._sessions() as session:
            upload = await session.scalar(
                select(Upload).where(
                    Upload.tenant_id == tenant_id,
                    or_(Upload.id == upload_id, Upload.client_upload_id == upload_id),
                )
            )
        if upload is None:
            raise NotFound("upload", upload_id)
        return upload

    async def uploads(
        self, tenant_id: str, *, page_size: int, page_token: str, kind: str, state: str
    ) -> tuple[list[Upload], str]:
        page = parse_page(page_size, page_token, (tenant_id, kind, state))
        query = select(Upload).options(defer(Upload.errors)).where(Upload.tenant_id == tenant_id)
        if kind:
            query = query.where(Upload.kind == kind)
        if state:
            query = query.where(Upload.status == state)
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    query.order_by(Upload.created_at.desc(), Upload.id)
                    .offset(page.offset)
                    .limit(page.size + 1)
                )
            )
        has_more = len(rows) > page.size
        rows = rows[: page.size]
        return rows, next_token(page, len(rows), has_more)

    async def report_csv(self, tenant_id: str, upload_id: str) -> bytes:
        upload = await self.upload(tenant_id, upload_id)
        if upload.status == "processing":
            raise FailedPrecondition(
                "The upload is still processing; fetch the report when it has finished.",
                reason="INVALID_STATE",
                metadata={"upload_id": upload_id, "state": "PROCESSING"},
            )
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(REPORT_COLUMNS)
        for error in upload.errors:
            writer.writerow([error.get(c, "") for c in REPORT_COLUMNS])
        return out.getvalue().encode()

    # ------------------------------------------------------------------ catalog

    async def item(self, tenant_id: str, item_id: str) -> Item:
        async with self._sessions() as session:
            item = await session.get(Item, (tenant_id, item_id))
        if item is None:
            raise NotFound("item", item_id)
        return item

    async def items(
        self, tenant_id: str, *, page_size: int, page_token: str, category: str, query: str
    ) -> tuple[list[Item], str, int]:
        page = parse_page(page_size, page_token, (tenant_id, category, query))
        condition = Item.tenant_id == tenant_id
        if category:
            condition = and_(condition, Item.category == category)
        if query:
            pattern = f"%{query.lower()}%"
            condition = and_(
                condition,
                or_(func.lower(Item.item_id).like(pattern), func.lower(Item.title).like(pattern)),
            )
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(Item)
                    .where(condition)
                    .order_by(Item.item_id)
                    .offset(page.offset)
                    .limit(page.size + 1)
                )
            )
            total = await session.scalar(select(func.count()).select_from(Item).where(condition))
        has_more = len(rows) > page.size
        rows = rows[: page.size]
        return rows, next_token(page, len(rows), has_more), int(total or 0)

    # ------------------------------------------------------------------ data stats

    async def data_stats(self, tenant_id: str) -> DataStatsResult:
        """Counts, sparsity, duplicates, cold users/items, type mix, time range, problems."""
        result = DataStatsResult()
        async with self._sessions() as session:
            result.item_count = int(
                await session.scalar(
                    select(func.count()).select_from(Item).where(Item.tenant_id == tenant_id)
                )
                or 0
            )
            row = (
                await session.execute(
                    select(
                        func.count(),
                        func.count(distinct(Interaction.user_id)),
                        func.min(Interaction.ts),
                        func.max(Interaction.ts),
                        func.count(distinct(Interaction.item_id)),
                    ).where(Interaction.tenant_id == tenant_id)
                )
            ).one()
            result.interaction_count = int(row[0])
            result.user_count = int(row[1])
            result.first_time, result.last_time = row[2], row[3]
            items_interacted = int(row[4])
            for kind, count in await session.execute(
                select(Interaction.type, func.count())
                .where(Interaction.tenant_id == tenant_id)
                .group_by(Interaction.type)
            ):
                result.by_type[str(kind)] = int(count)
            categories = list(
                await session.execute(
                    select(Item.category, func.count())
                    .where(Item.tenant_id == tenant_id, Item.category.is_not(None))
                    .group_by(Item.category)
                    .order_by(func.count().desc(), Item.category)
                )
            )
            result.category_count = len(categories)
            result.top_categories = [(str(c), int(n)) for c, n in categories[:20]]
            # Users with fewer than 3 interactions cannot be evaluated on a held-out split.
            per_user = (
                select(Interaction.user_id, func.count().label("n"))
                .where(Interaction.tenant_id == tenant_id)
                .group_by(Interaction.user_id)
                .subquery()
            )
            result.cold_users = int(
                await session.scalar(select(func.count()).where(per_user.c.n < 3)) or 0
            )
            duplicates = (
                select(func.count().label("n"))
                .where(Interaction.tenant_id == tenant_id)
                .group_by(
                    Interaction.user_id, Interaction.item_id, Interaction.type, Interaction.ts
                )
                .having(func.count() > 1)
                .subquery()
            )
            result.duplicate_interactions = int(
                await session.scalar(select(func.coalesce(func.sum(duplicates.c.n - 1), 0))) or 0
            )
        result.cold_items = max(result.item_count - items_interacted, 0)
        if result.user_count and result.item_count:
            result.density = result.interaction_count / (result.user_count * result.item_count)
        result.problems = _problems(result)
        return result

    # ------------------------------------------------------------------ analytics

    async def analytics(
        self,
        tenant_id: str,
        *,
        start: datetime | None,
        end: datetime | None,
        time_zone: str,
        popular_limit: int,
    ) -> AnalyticsResult:
        zone_name = time_zone or "UTC"
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(
                f"Unknown time zone {zone_name!r}; use an IANA name such as Europe/Paris.",
                violations=[FieldViolation("time_zone", "unknown IANA time zone")],
            ) from None
        end = end or datetime.now(UTC)
        start = start or end - DEFAULT_RANGE
        if end < start:
            raise InvalidArgument(
                "time_range.end_time is before start_time.",
                violations=[FieldViolation("time_range", "end_time before start_time")],
            )
        if end - start > MAX_RANGE:
            raise InvalidArgument(
                "time_range is longer than 366 days; ask for a shorter range.",
                violations=[FieldViolation("time_range", "at most 366 days")],
            )
        if popular_limit < 0:
            raise InvalidArgument(
                "popular_items_limit must not be negative.",
                violations=[FieldViolation("popular_items_limit", "must be >= 0")],
            )
        limit = min(popular_limit or 10, 100)
        in_range = and_(
            Interaction.tenant_id == tenant_id, Interaction.ts >= start, Interaction.ts < end
        )
        served_in_range = and_(
            ServedRecommendation.tenant_id == tenant_id,
            ServedRecommendation.served_at >= start,
            ServedRecommendation.served_at < end,
        )
        attributed = Interaction.recommendation_id.is_not(None)
        is_click = and_(attributed, Interaction.type == "click")
        is_purchase = and_(attributed, Interaction.type == "purchase")
        hour = _hour_bucket(Interaction.ts)
        days: dict[str, DayMetrics] = defaultdict(DayMetrics)
        async with self._sessions() as session:
            dialect = session.get_bind().dialect.name
            hour = _hour_bucket(Interaction.ts, dialect)
            revenue_value = func.coalesce(Interaction.value, Item.price, 0.0)
            hourly = await session.execute(
                select(
                    hour,
                    func.count(),
                    func.sum(cast(case((is_click, 1), else_=0), Integer)),
                    func.sum(cast(case((is_purchase, 1), else_=0), Integer)),
                    func.sum(case((is_purchase, revenue_value), else_=0.0)),
                )
                .select_from(Interaction)
                .outerjoin(
                    Item,
                    and_(
                        Item.tenant_id == Interaction.tenant_id, Item.item_id == Interaction.item_id
                    ),
                )
                .where(in_range)
                .group_by(hour)
            )
            totals = DayMetrics()
            for bucket, count, clicks, purchases, revenue in hourly:
                day = days[_day(bucket, zone)]
                day.interactions += int(count)
                day.clicks += int(clicks or 0)
                day.conversions += int(purchases or 0)
                day.revenue += float(revenue or 0.0)
                totals.clicks += int(clicks or 0)
                totals.conversions += int(purchases or 0)
                totals.revenue += float(revenue or 0.0)
            served_hour = _hour_bucket(ServedRecommendation.served_at, dialect)
            for bucket, count, shown in await session.execute(
                select(served_hour, func.count(), func.sum(ServedRecommendation.item_count))
                .where(served_in_range)
                .group_by(served_hour)
            ):
                day = days[_day(bucket, zone)]
                day.served += int(count)
                day.impressions += int(shown or 0)
                totals.served += int(count)
                totals.impressions += int(shown or 0)
            active_users = int(
                await session.scalar(
                    select(func.count(distinct(Interaction.user_id))).where(in_range)
                )
                or 0
            )
            # Distinct users per local day: one pass over (day, user) pairs in the range.
            local_day = _local_day(Interaction.ts, dialect, zone)
            for day_key, users in await session.execute(
                select(local_day, func.count(distinct(Interaction.user_id)))
                .where(in_range)
                .group_by(local_day)
            ):
                days[str(day_key)[:10]].active_users = int(users)
            popular_rows = list(
                await session.execute(
                    select(
                        Interaction.item_id,
                        func.count().label("n"),
                        func.sum(cast(case((is_click, 1), else_=0), Integer)),
                    )
                    .where(in_range)
                    .group_by(Interaction.item_id)
                    .order_by(func.count().desc(), Interaction.item_id)
                    .limit(limit)
                )
            )
            popular_ids = [str(r[0]) for r in popular_rows]
            catalog = {
                item.item_id: item
                for item in await session.scalars(
                    select(Item).where(Item.tenant_id == tenant_id, Item.item_id.in_(popular_ids))
                )
            }
            impressions = await _item_impressions(session, served_in_range, set(popular_ids))
        popular = [
            PopularItem(
                item_id=item_id,
                title=(catalog[item_id].title or "") if item_id in catalog else "",
                category=(catalog[item_id].category or "") if item_id in catalog else "",
                interactions=int(count),
                impressions=impressions.get(item_id, 0),
                clicks=int(clicks or 0),
            )
            for item_id, count, clicks in popular_rows
        ]
        daily = []
        cursor = start.astimezone(zone).date()
        last = (end - timedelta(microseconds=1)).astimezone(zone).date()
        while cursor <= last:
            key = cursor.isoformat()
            daily.append((key, days.get(key, DayMetrics())))
            cursor += timedelta(days=1)
        return AnalyticsResult(
            start=start,
            end=end,
            time_zone=zone_name,
            served=totals.served,
            impressions=totals.impressions,
            clicks=totals.clicks,
            conversions=totals.conversions,
            revenue=totals.revenue,
            active_users=active_users,
            popular=popular,
            daily=daily,
        )


def _hour_bucket(column: Any, dialect: str = "postgresql") -> Any:
    if dialect == "sqlite":
        return func.strftime("%Y-%m-%dT%H:00:00", column)
    return func.date_trunc("hour", column)


def _local_day(column: Any, dialect: str, zone: ZoneInfo) -> Any:
    if dialect == "sqlite":
        # SQLite has no time zones: shift by the zone's current offset (exact for UTC and
        # for ranges that do not cross a daylight-saving change).
        offset = datetime.now(zone).utcoffset() or timedelta()
        return func.strftime("%Y-%m-%d", column, f"{int(offset.total_seconds())} seconds")
    return func.to_char(func.timezone(zone.key, column), "YYYY-MM-DD")


def _day(bucket: Any, zone: ZoneInfo) -> str:
    if isinstance(bucket, str):
        bucket = datetime.fromisoformat(bucket).replace(tzinfo=UTC)
    if bucket.tzinfo is None:
        bucket = bucket.replace(tzinfo=UTC)
    return str(bucket.astimezone(zone).date().isoformat())


async def _item_impressions(
    session: AsyncSession, served_in_range: Any, item_ids: set[str]
) -> dict[str, int]:
    """Impressions of the given items, counted from the served lists in the range."""
    if not item_ids:
        return {}
    counts: Counter[str] = Counter()
    result = await session.stream(select(ServedRecommendation.item_ids).where(served_in_range))
    async for (shown,) in result:
        counts.update(i for i in shown if i in item_ids)
    return dict(counts)


def _problems(stats: DataStatsResult) -> list[str]:
    """Data-quality findings, worst first, each telling what to do."""
    problems: list[str] = []
    if stats.item_count == 0:
        problems.append("ERROR: the catalog is empty; import items first.")
    if stats.interaction_count == 0:
        problems.append("ERROR: there are no interactions; import or track some.")
    elif stats.user_count < 10 or stats.interaction_count < 100:
        problems.append("ERROR: too little data to train (need ≥10 users and ≥100 interactions).")
    if stats.duplicate_interactions:
        problems.append(
            f"WARNING: {stats.duplicate_interactions} duplicate interactions "
            "(same user, item, type and time)."
        )
    if stats.user_count and stats.cold_users / stats.user_count > 0.5:
        problems.append(
            f"WARNING: {stats.cold_users} of {stats.user_count} users have fewer than 3 "
            "interactions; they get popular items."
        )
    if stats.item_count and stats.cold_items / stats.item_count > 0.5:
        problems.append(
            f"WARNING: {stats.cold_items} of {stats.item_count} items have no interactions."
        )
    if stats.density > 0.5:
        problems.append("WARNING: the interaction matrix is unusually dense; check for bulk data.")
    return problems
