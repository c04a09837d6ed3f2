"""GetAnalytics (read from the rollups) against a brute-force count over the raw rows.

Data arrives by every path that writes it: a CSV import (then retried, with and
without its upload id), TrackEvents (retried with the same event ids) and
RecommendationServed events through the outbox (one sent twice). The expected
numbers are computed here in Python from the ``interactions`` and
``served_recommendations`` rows, for several ranges and time zones.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import and_, func, insert, select

from embrec.events.v1 import events_pb2
from embrec.ingestion.v1 import ingestion_service_pb2 as svc
from embrec.ingestion.v1 import resources_pb2 as pb
from services.event_messages import envelope_row
from services.ingestion import queries as queries_module
from services.ingestion import sketches
from services.ingestion.queries import Queries
from services.ingestion.rollups import record_interactions
from services.storage.db import create_engine, session_factory
from services.storage.migrate import upgrade
from services.storage.models import (
    AnalyticsUserHourSketch,
    Interaction,
    Item,
    OutboxEvent,
    ServedRecommendation,
    Tenant,
)
from tests.ingestion.conftest import SECRET, Caller, caller_for, import_csv, make_tenant, sql
from tests.services.conftest import RunningStack, StackFactory
from tests.storage.fixtures import db_url, pg_scratch_url, sqlite_url

__all__ = ["db_url", "pg_scratch_url", "sqlite_url"]  # fixtures: a database per test

CATALOG = (
    b"item_id,title,category,price\n"
    b"sku-1,Phone X,smartphones,699\n"
    b"sku-2,Laptop,laptops,1299.5\n"
    b"sku-3,Case,accessories,19.99\n"
    b"sku-4,Charger,accessories,25\n"
    b"sku-5,Tablet,tablets,499\n"
    b"sku-6,Watch,wearables,\n"
)
ITEMS = [f"sku-{n}" for n in range(1, 7)]
TYPES = ["view", "view", "view", "click", "add_to_cart", "purchase"]


def _interactions_csv(now: datetime, rows: int, seed: int) -> bytes:
    """Rows over the last 40 days, hours near midnight included, some attributed."""
    rng = random.Random(seed)
    lines = ["user_id,item_id,interaction_type,timestamp,value,recommendation_id"]
    for n in range(rows):
        ts = now - timedelta(seconds=rng.randrange(60, 40 * 86400))
        kind = rng.choice(TYPES)
        value = f"{rng.choice([10, 49.5, 120])}" if kind == "purchase" and n % 3 == 0 else ""
        rec = f"rec-{rng.randrange(30)}" if rng.random() < 0.4 else ""
        lines.append(
            f"u{rng.randrange(25)},{rng.choice(ITEMS)},{kind},"
            f"{ts.isoformat().replace('+00:00', 'Z')},{value},{rec}"
        )
    return ("\n".join(lines) + "\n").encode()


def _tracked(now: datetime) -> list[pb.Interaction]:
    events = []
    for n in range(12):
        stamp = Timestamp()
        stamp.FromDatetime(now - timedelta(hours=7 * n + 1))
        events.append(
            pb.Interaction(
                user_id=f"u{n % 4}",  # also importers: their day rows merge
                item_id=ITEMS[n % 3],
                interaction_type=[
                    pb.INTERACTION_TYPE_CLICK,
                    pb.INTERACTION_TYPE_PURCHASE,
                    pb.INTERACTION_TYPE_VIEW,
                ][n % 3],
                recommendation_id=f"rec-{n}" if n % 2 == 0 else "",
                event_id=f"track-{n}",
                timestamp=stamp,
            )
        )
    return events


def _utc(stamp: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite gives them back naive)."""
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


async def _serve(stack: RunningStack, tenant_id: str, now: datetime) -> dict[str, datetime]:
    """Impressions through the outbox; returns when each distinct id was served.

    The first seven come as lone RecommendationServed events (the format before
    batches, timed by their envelope), the rest in two RecommendationsServed batches
    whose impressions carry their own served_time (the envelope's time is another).
    rec-0 comes again in the second batch, rec-9 twice within the first: the first
    one stored counts, nothing else does.
    """
    served_at: dict[str, datetime] = {}
    rows = []
    batches: list[list[events_pb2.RecommendationServed]] = [[], []]
    for n in range(16):
        number = 9 if n == 15 else n % 14
        impression = events_pb2.RecommendationServed(
            recommendation_id=f"rec-{number}",
            user_id=f"u{n}",
            items=[events_pb2.ServedItem(item_id=ITEMS[(n + k) % 6]) for k in range(1 + n % 3)],
        )
        occurred = now - timedelta(hours=61 * n + 3)
        served_at.setdefault(impression.recommendation_id, occurred)
        if n < 7:
            rows.append(envelope_row(impression, tenant_id=tenant_id, occurred=occurred))
            continue
        impression.served_time.FromDatetime(occurred)
        batches[n >= 12 and n != 15].append(impression)
    for batch in batches:
        event = events_pb2.RecommendationsServed(impressions=batch)
        rows.append(envelope_row(event, tenant_id=tenant_id, occurred=now))
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(OutboxEvent.__table__.insert(), rows)  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
    assert len(served_at) == 14
    return served_at


async def _wait_for(stack: RunningStack, model: Any, tenant_id: str, expected: int) -> None:
    for _ in range(200):
        rows = await sql(
            stack, select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
        )
        if rows[0][0] == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{model.__tablename__}: {rows[0][0]} rows, expected {expected}")


def _brute_force(
    interactions: list[tuple[Any, ...]],
    served: list[tuple[Any, ...]],
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    limit: int,
) -> dict[str, Any]:
    def day_of(ts: datetime) -> str:
        return ts.astimezone(zone).date().isoformat()

    daily: dict[str, Counter[str]] = defaultdict(Counter)
    day_users: dict[str, set[str]] = defaultdict(set)
    users: set[str] = set()
    items: Counter[str] = Counter()
    item_clicks: Counter[str] = Counter()
    revenue: dict[str, float] = defaultdict(float)
    for ts, user, item, kind, rec, worth in interactions:
        if not start <= ts < end:
            continue
        day = day_of(ts)
        daily[day]["interactions"] += 1
        users.add(user)
        day_users[day].add(user)
        items[item] += 1
        if rec is not None and kind == "click":
            daily[day]["clicks"] += 1
            item_clicks[item] += 1
        if rec is not None and kind == "purchase":
            daily[day]["conversions"] += 1
            revenue[day] += worth
    impressions: Counter[str] = Counter()
    for served_at, shown in served:
        if start <= served_at < end:
            daily[day_of(served_at)]["served"] += 1
            daily[day_of(served_at)]["impressions"] += len(shown)
            impressions.update(shown)
    popular = sorted(items.items(), key=lambda p: (-p[1], p[0]))[:limit]
    return {
        "served": sum(d["served"] for d in daily.values()),
        "impressions": sum(d["impressions"] for d in daily.values()),
        "clicks": sum(d["clicks"] for d in daily.values()),
        "conversions": sum(d["conversions"] for d in daily.values()),
        "revenue": sum(revenue.values()),
        "active_users": len(users),
        "popular": [(i, n, impressions[i], item_clicks[i]) for i, n in popular],
        "daily": {
            day: (
                c["interactions"],
                c["clicks"],
                c["conversions"],
                len(day_users[day]),
                c["served"],
                c["impressions"],
                round(revenue[day], 6),
            )
            for day, c in daily.items()
        },
    }


def _raw(tenant_id: str) -> Any:
    """The raw interactions with what an attributed purchase is worth (value, else price)."""
    return (
        select(
            Interaction.ts,
            Interaction.user_id,
            Interaction.item_id,
            Interaction.type,
            Interaction.recommendation_id,
            func.coalesce(Interaction.value, Item.price, 0.0),
        )
        .select_from(Interaction)
        .outerjoin(
            Item,
            and_(Item.tenant_id == Interaction.tenant_id, Item.item_id == Interaction.item_id),
        )
        .where(Interaction.tenant_id == tenant_id)
    )


async def _check(stack: RunningStack, c: Caller, start: datetime, end: datetime, zone: str) -> None:
    interactions = await sql(stack, _raw(c.tenant_id))
    served = await sql(
        stack,
        select(ServedRecommendation.served_at, ServedRecommendation.item_ids).where(
            ServedRecommendation.tenant_id == c.tenant_id
        ),
    )
    expected = _brute_force(interactions, served, start, end, ZoneInfo(zone), 4)
    request = svc.GetAnalyticsRequest(time_zone=zone, popular_items_limit=4)
    request.time_range.start_time.FromDatetime(start)
    request.time_range.end_time.FromDatetime(end)
    got = await c.stub.GetAnalytics(request, metadata=c.metadata)
    where = f"{zone} {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}"
    assert (
        got.recommendations_served,
        got.impressions,
        got.clicks,
        got.conversions,
        got.active_users,
    ) == (
        expected["served"],
        expected["impressions"],
        expected["clicks"],
        expected["conversions"],
        expected["active_users"],
    ), where
    assert got.attributed_revenue == pytest.approx(expected["revenue"]), where
    if expected["impressions"]:
        assert got.click_through_rate == pytest.approx(expected["clicks"] / expected["impressions"])
    assert [
        (p.item_id, p.interaction_count, p.impressions, p.clicks) for p in got.popular_items
    ] == expected["popular"], where
    daily = {
        d.date: (
            d.interactions,
            d.clicks,
            d.conversions,
            d.active_users,
            d.recommendations_served,
            d.impressions,
            round(d.attributed_revenue, 6),
        )
        for d in got.daily
        if d.interactions or d.recommendations_served
    }
    assert daily == expected["daily"], where


async def _scenario(stack: RunningStack) -> None:
    c = caller_for(stack, await make_tenant(stack))
    now = datetime.now(UTC).replace(microsecond=0)
    await import_csv(c, CATALOG)
    body = _interactions_csv(now, 600, seed=4)
    first = await import_csv(c, body, kind="interactions", upload_id="bulk-1")
    assert first.state == pb.UPLOAD_STATE_SUCCEEDED and first.rows_accepted == 600
    # Retries: the same upload id, then the same bytes without an id; neither imports.
    again = await import_csv(c, body, kind="interactions", upload_id="bulk-1")
    assert again.id == first.id
    await import_csv(c, body, kind="interactions")
    events = _tracked(now)
    for _ in range(2):  # the second call is a retry: the event ids are stored once
        sent = await c.stub.TrackEvents(svc.TrackEventsRequest(events=events), metadata=c.metadata)
        assert sent.accepted_count == len(events)
    served = await _serve(stack, c.tenant_id, now)
    await _wait_for(stack, Interaction, c.tenant_id, 600 + len(events))
    await _wait_for(stack, ServedRecommendation, c.tenant_id, len(served))
    await asyncio.sleep(0.3)  # a redelivered event would land now, and must not count
    stored = await sql(
        stack,
        select(ServedRecommendation.recommendation_id, ServedRecommendation.served_at).where(
            ServedRecommendation.tenant_id == c.tenant_id
        ),
    )
    assert {r: _utc(t) for r, t in stored} == served

    await _check(stack, c, now - timedelta(days=30), now, "UTC")
    await _check(stack, c, now - timedelta(days=41, hours=5, minutes=7), now, "UTC")
    await _check(stack, c, now - timedelta(days=38), now - timedelta(days=3), "America/New_York")
    await _check(stack, c, now - timedelta(days=35), now + timedelta(hours=1), "Asia/Tokyo")
    await _check(stack, c, now - timedelta(hours=30), now - timedelta(hours=2), "Europe/Paris")
    midnight = now.replace(hour=0, minute=0, second=0)
    await _check(stack, c, midnight - timedelta(days=20), midnight, "UTC")


async def test_analytics_equal_a_brute_force_count_on_sqlite(stack_factory: StackFactory) -> None:
    await _scenario(await stack_factory(internal_secret=SECRET))


@pytest.mark.integration
async def test_analytics_equal_a_brute_force_count_on_postgresql(
    stack_factory: StackFactory, postgres_url: str
) -> None:
    await _scenario(await stack_factory(postgres_url, internal_secret=SECRET))


async def test_the_migration_backfills_the_rollups_from_existing_rows(db_url: str) -> None:
    """Rows written before revision 0004 (no rollups yet) are counted after upgrading."""
    await upgrade(db_url, "0003")
    now = datetime.now(UTC).replace(microsecond=0)
    tenant_id = str(uuid.uuid4())
    rng = random.Random(7)
    engine = create_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(Tenant).values(
                    id=tenant_id,
                    name="Old shop",
                    slug=f"old-{tenant_id[:8]}",
                    email="a@shop.example",
                    status="active",
                    plan="free",
                    settings={},
                    created_at=now,
                    updated_at=now,
                )
            )
            await connection.execute(
                insert(Item),
                [
                    {"tenant_id": tenant_id, "item_id": item, "price": price, "attributes": {}}
                    for item, price in zip(ITEMS, [699, 1299.5, 19.99, 25, 499, None], strict=True)
                ],
            )
            await connection.execute(
                insert(Interaction),
                [
                    {
                        "tenant_id": tenant_id,
                        "user_id": f"u{rng.randrange(20)}",
                        "item_id": rng.choice(ITEMS),
                        "type": (kind := rng.choice(TYPES)),
                        "ts": now - timedelta(seconds=rng.randrange(60, 40 * 86400)),
                        "value": 30.0 if kind == "purchase" and n % 2 else None,
                        "recommendation_id": f"rec-{n % 9}" if n % 3 == 0 else None,
                    }
                    for n in range(400)
                ],
            )
            await connection.execute(
                insert(ServedRecommendation),
                [
                    {
                        "tenant_id": tenant_id,
                        "recommendation_id": f"rec-{n}",
                        "served_at": now - timedelta(hours=50 * n + 1),
                        "item_ids": ITEMS[: 1 + n % 4],
                        "item_count": 1 + n % 4,
                        "surface": "recommend",
                    }
                    for n in range(12)
                ],
            )
    finally:
        await engine.dispose()
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        await _assert_sketches_match(engine, tenant_id)
        queries = Queries(session_factory(engine))
        async with engine.connect() as connection:
            interactions = [tuple(r) for r in await connection.execute(_raw(tenant_id))]
            served = [
                tuple(r)
                for r in await connection.execute(
                    select(ServedRecommendation.served_at, ServedRecommendation.item_ids).where(
                        ServedRecommendation.tenant_id == tenant_id
                    )
                )
            ]
        for start, end, zone in (
            (now - timedelta(days=30), now, "UTC"),
            (now - timedelta(days=39, hours=3), now - timedelta(hours=5), "Asia/Tokyo"),
        ):
            got = await queries.analytics(
                tenant_id, start=start, end=end, time_zone=zone, popular_limit=4
            )
            expected = _brute_force(interactions, served, start, end, ZoneInfo(zone), 4)
            assert (got.served, got.impressions, got.clicks, got.conversions) == (
                expected["served"],
                expected["impressions"],
                expected["clicks"],
                expected["conversions"],
            )
            assert got.active_users == expected["active_users"]
            assert got.revenue == pytest.approx(expected["revenue"])
            assert [
                (p.item_id, p.interactions, p.impressions, p.clicks) for p in got.popular
            ] == expected["popular"]
            assert {
                day: (
                    m.interactions,
                    m.clicks,
                    m.conversions,
                    m.active_users,
                    m.served,
                    m.impressions,
                    round(m.revenue, 6),
                )
                for day, m in got.daily
                if m.interactions or m.served
            } == expected["daily"]
    finally:
        await engine.dispose()


async def _assert_sketches_match(engine: Any, tenant_id: str) -> None:
    """Every hour's stored sketch is the application's sketch of that hour's raw users."""
    async with engine.connect() as connection:
        raw = await connection.execute(
            select(Interaction.ts, Interaction.user_id).where(Interaction.tenant_id == tenant_id)
        )
        users: dict[int, set[str]] = defaultdict(set)
        for ts, user in raw:
            users[int(ts.timestamp() // 3600)].add(user)
        stored = {
            int(hour): sketches.decode(bytes(blob))
            for hour, blob in await connection.execute(
                select(AnalyticsUserHourSketch.hour, AnalyticsUserHourSketch.registers).where(
                    AnalyticsUserHourSketch.tenant_id == tenant_id
                )
            )
        }
    assert set(stored) == set(users)
    for hour, members in users.items():
        assert (stored[hour] == sketches.sketch(sketches.hash_users(members))).all(), hour


def _many_users_csv(now: datetime, rows: int, users: int, seed: int) -> bytes:
    rng = random.Random(seed)
    lines = ["user_id,item_id,interaction_type,timestamp"]
    for n in range(rows):
        ts = now - timedelta(seconds=rng.randrange(60, 25 * 86400))
        user = n if n < users else rng.randrange(users)  # every user at least once
        lines.append(
            f"shopper-{user},{rng.choice(ITEMS)},view,{ts.isoformat().replace('+00:00', 'Z')}"
        )
    return ("\n".join(lines) + "\n").encode()


async def _sketch_scenario(stack: RunningStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the limit: estimates, flagged, within the bound; below: exact.

    The timestamps depend on the clock, so the estimates vary between runs. With ~60
    per-day comparisons a 3-sigma bound would fail somewhere in a third of the runs:
    totals are held to 4 standard errors (6.5 %), each day to 5 (8.1 %), and the mean
    per-day error to 1.5 standard errors (expected ≈ 0.8).
    """
    c = caller_for(stack, await make_tenant(stack))
    now = datetime.now(UTC).replace(microsecond=0)
    await import_csv(c, CATALOG)
    for part in range(2):  # two imports: the second merges into existing sketches
        body = _many_users_csv(now, 4_000, 5_000, seed=part)
        done = await import_csv(c, body, kind="interactions")
        assert done.rows_accepted == 4_000
    interactions = await sql(stack, _raw(c.tenant_id))
    sigma = sketches.STANDARD_ERROR
    for start, end, zone in (
        (now - timedelta(days=30), now, "UTC"),
        (now - timedelta(days=20, hours=7), now - timedelta(hours=5), "Asia/Tokyo"),
        (now - timedelta(days=22), now - timedelta(days=1, hours=3), "America/New_York"),
    ):
        expected = _brute_force(interactions, [], start, end, ZoneInfo(zone), 4)
        request = svc.GetAnalyticsRequest(time_zone=zone, popular_items_limit=4)
        request.time_range.start_time.FromDatetime(start)
        request.time_range.end_time.FromDatetime(end)
        # The default limit (50,000) is above these 8,000 rows: exact, not flagged.
        exact = await c.stub.GetAnalytics(request, metadata=c.metadata)
        assert not exact.active_users_approximate
        assert exact.active_users == expected["active_users"]
        monkeypatch.setattr(queries_module, "EXACT_USERS_LIMIT", 1_000)
        try:
            got = await c.stub.GetAnalytics(request, metadata=c.metadata)
        finally:
            monkeypatch.undo()
        where = f"{zone} {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}"
        assert got.active_users_approximate, where
        want = expected["active_users"]
        assert abs(got.active_users - want) <= 4 * sigma * want, (where, got.active_users, want)
        per_day = {d.date: d.active_users for d in got.daily if d.interactions}
        assert set(per_day) == set(expected["daily"]), where
        errors = []
        for day, figures in expected["daily"].items():
            users = figures[3]
            assert abs(per_day[day] - users) <= max(5 * sigma * users, 1), (where, day, users)
            errors.append(abs(per_day[day] - users) / users)
        assert sum(errors) / len(errors) <= 1.5 * sigma, where
        # Everything else stays exact.
        assert {d.date: d.interactions for d in got.daily if d.interactions} == {
            day: figures[0] for day, figures in expected["daily"].items()
        }
        assert [(p.item_id, p.interaction_count) for p in got.popular_items] == [
            (i, n) for i, n, _, _ in expected["popular"]
        ]


async def test_large_ranges_estimate_active_users_on_sqlite(
    stack_factory: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _sketch_scenario(await stack_factory(internal_secret=SECRET), monkeypatch)


@pytest.mark.integration
async def test_large_ranges_estimate_active_users_on_postgresql(
    stack_factory: StackFactory, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _sketch_scenario(await stack_factory(postgres_url, internal_secret=SECRET), monkeypatch)


@pytest.mark.integration
async def test_concurrent_writers_lose_no_users_on_postgresql(pg_scratch_url: str) -> None:
    """Two transactions merging into the same hours: the second waits, then adds its users."""
    await upgrade(pg_scratch_url)
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    tenant_id = str(uuid.uuid4())
    engine = create_engine(pg_scratch_url)
    hours = [now - timedelta(hours=h) for h in range(5)]

    def rows(prefix: str) -> list[tuple[Any, ...]]:
        return [
            (f"{prefix}{n}", "sku-1", "view", ts, None, None)
            for n in range(3_000)
            for ts in hours[n % 5 :: 5]
        ]

    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(Tenant).values(
                    id=tenant_id,
                    name="Busy shop",
                    slug=f"busy-{tenant_id[:8]}",
                    email="a@shop.example",
                    status="active",
                    plan="free",
                    settings={},
                    created_at=now,
                    updated_at=now,
                )
            )
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            await record_interactions(first, tenant_id, rows("a-"))

            async def other() -> None:
                await second.begin()
                await record_interactions(second, tenant_id, rows("b-"))
                await second.commit()

            waiting = asyncio.create_task(other())
            await asyncio.sleep(0.5)
            assert not waiting.done()  # blocked on the first writer's rows
            await first.commit()
            await asyncio.wait_for(waiting, 30)
        async with engine.connect() as connection:
            stored = {
                int(hour): sketches.decode(bytes(blob))
                for hour, blob in await connection.execute(
                    select(AnalyticsUserHourSketch.hour, AnalyticsUserHourSketch.registers).where(
                        AnalyticsUserHourSketch.tenant_id == tenant_id
                    )
                )
            }
        assert len(stored) == 5
        for k, ts in enumerate(hours):
            users = [f"{p}{n}" for p in ("a-", "b-") for n in range(3_000) if n % 5 == k]
            want = sketches.sketch(sketches.hash_users(users))
            assert np.array_equal(stored[int(ts.timestamp() // 3600)], want), ts
    finally:
        await engine.dispose()
