"""Catalog changes reach the loaded model versions within seconds (issue #6)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc
import numpy as np
import pytest
from google.api import httpbody_pb2  # type: ignore[import-untyped]
from sqlalchemy import update

from embrec.ingestion.v1 import ingestion_service_pb2 as ing
from embrec.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from embrec.ingestion.v1 import resources_pb2 as ing_pb
from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from retriever.engine import TenantModelIndex
from retriever.filters import Catalog, FilterSpec
from services.storage.models import Item, utcnow
from tests.retrieval_service.conftest import Shop, make_shop, sql
from tests.services.conftest import RunningStack, StackFactory


@pytest.fixture
async def stack(stack_factory: StackFactory) -> RunningStack:
    return await stack_factory()


async def import_items(shop: Shop, rows: list[tuple[str, str, float]]) -> None:
    """A real catalog import (ingestion RPC), which emits CatalogChanged."""
    lines = ["item_id,title,category,price"]
    lines += [f"{item},Product {item},{category},{price}" for item, category, price in rows]
    upload = await ing_grpc.IngestionServiceStub(shop.stack.channel).ImportItemsCsv(
        ing.ImportItemsCsvRequest(
            body=httpbody_pb2.HttpBody(content_type="text/csv", data="\n".join(lines).encode())
        ),
        metadata=shop.metadata(["data:write"]),
    )
    assert upload.state == ing_pb.UPLOAD_STATE_SUCCEEDED, upload


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.1)


def test_with_catalog_realigns_attributes_and_shares_the_index() -> None:
    ids = ["a", "b", "c"]
    vectors = np.eye(3, dtype=np.float32)
    old = Catalog.from_columns(ids, ["x", "x", "y"], [1.0, 2.0, 3.0])
    model = TenantModelIndex.build("t", "v1", old, vectors, user_embeddings=vectors, user_ids=ids)
    # Reordered, one attribute changed each, one new item the model never saw.
    new = Catalog.from_columns(["new", "c", "b", "a"], ["x", "x", "y", "x"], [0.5, 3.0, 9.0, 1.0])
    aligned = model.with_catalog(new, "4@t")
    assert aligned is not None and aligned.index is model.index
    assert aligned.catalog.item_ids == ("a", "b", "c") and aligned.catalog_tag == "4@t"
    assert [aligned.catalog.category_of(p) for p in range(3)] == ["x", "y", "x"]
    # b (now 9.0) is user b's best item, but not under 5.0 any more; c moved to "x".
    cheap = aligned.recommend("b", 3, FilterSpec(max_price=5.0))
    assert sorted(i for i, _ in cheap.items) == ["a", "c"]
    in_x = aligned.recommend("c", 1, FilterSpec(categories_in=frozenset({"x"})))
    assert [i for i, _ in in_x.items] == ["c"]
    # An item the model ranks left the catalog: only a reload can drop its row.
    assert model.with_catalog(Catalog.from_columns(["a", "b"], ["x", "x"], [1.0, 2.0])) is None


async def test_price_and_category_changes_reach_model_answers(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    # u1 likes laptops (items 1, 5, 9, ...); item 1 is its best, at price 11.
    first, fifth = shop.item_ids[1], shop.item_ids[5]
    cheap = pb.RecommendationFilters(max_price=1000)
    before = await shop.recommend("u1", count=3, filters=cheap)
    assert before.items[0].item_id == first and not before.fallback

    newcomer = f"{shop.prefix}new"
    await shop.interactions("fan", [newcomer] * 5, kind="purchase")
    await import_items(
        shop, [(first, "laptops", 5000.0), (fifth, "audio", 15.0), (newcomer, "laptops", 1.0)]
    )

    async def repriced() -> bool:
        response = await shop.recommend("u1", count=3, filters=cheap)
        return first not in [i.item_id for i in response.items]

    await eventually(repriced, "the new price never reached the model's filter")
    # Model answers (not popular fallbacks), with the new values, for both attributes.
    dear = await shop.recommend("u1", count=3, filters=pb.RecommendationFilters(min_price=4000))
    assert (dear.model_version, dear.fallback) == ("v1", False)
    assert [(i.item_id, i.price) for i in dear.items] == [(first, 5000.0)]
    audio = await shop.recommend("u1", count=1, filters=pb.RecommendationFilters(category="audio"))
    assert not audio.fallback
    assert [(i.item_id, i.category) for i in audio.items] == [(fifth, "audio")]
    laptops = await shop.recommend(
        "u1", count=50, filters=pb.RecommendationFilters(category="laptops")
    )
    assert fifth not in {i.item_id for i in laptops.items}
    assert newcomer not in {i.item_id for i in laptops.items}  # the model never saw it

    # The new item is in the popular answers: PopularItems and an unknown user's fallback.
    popular = await shop.stub.PopularItems(
        pb.PopularItemsRequest(count=3, category="laptops"), metadata=shop.metadata()
    )
    assert popular.items[0].item_id == newcomer
    stranger = await shop.recommend("stranger", count=3)
    assert stranger.fallback_reason == pb.FALLBACK_REASON_UNKNOWN_USER
    assert stranger.model_version == "v1" and stranger.items[0].item_id == newcomer


async def test_no_request_fails_while_the_catalog_swaps(stack: RunningStack) -> None:
    shop = await make_shop(stack, n_items=2000)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    limit = pb.RecommendationFilters(max_price=1000)
    outcomes: Counter[str] = Counter()
    errors: list[BaseException] = []
    wrong: list[str] = []
    stop = asyncio.Event()

    async def client(user: str) -> None:
        while not stop.is_set():
            try:
                response = await shop.recommend(user, count=10, filters=limit)
            except grpc.aio.AioRpcError as exc:
                errors.append(exc)
                continue
            outcomes["fallback" if response.fallback else response.model_version] += 1
            # Whatever catalog an answer came from, it is consistent with itself.
            wrong.extend(i.item_id for i in response.items if i.price > 1000)

    clients = [asyncio.create_task(client(f"u{k}")) for k in range(6)]
    await asyncio.sleep(0.3)
    # u0..u5's favourites become too dear, one import after another.
    for batch in range(3):
        dear = shop.item_ids[batch * 8 : batch * 8 + 8]
        await import_items(shop, [(i, shop.category_of(i), 2000.0 + batch) for i in dear])
        await asyncio.sleep(0.2)
    gone = set(shop.item_ids[:24])

    async def converged() -> bool:
        answers = [await shop.recommend(f"u{k}", count=10, filters=limit) for k in range(4)]
        return not any(i.item_id in gone for a in answers for i in a.items)

    await eventually(converged, "the dear items are still offered")
    stop.set()
    await asyncio.gather(*clients)
    assert errors == []
    assert wrong == []
    assert outcomes["fallback"] == 0 and outcomes["v1"] > 0, outcomes


async def test_periodic_refresh_converges_without_the_event(
    stack_factory: StackFactory,
) -> None:
    stack = await stack_factory(retrieval_catalog_refresh_seconds=0.5)
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    first = shop.item_ids[1]
    # Straight into the table: no CatalogChanged, as if the event were lost.
    await sql(
        stack,
        update(Item)
        .where(Item.tenant_id == shop.tenant_id, Item.item_id == first)
        .values(price=5000.0, updated_at=utcnow() + timedelta(seconds=1)),
    )

    dear = pb.RecommendationFilters(min_price=4000)

    async def repriced() -> bool:
        response = await shop.recommend("u1", count=1, filters=dear)
        found = [(i.item_id, i.price) for i in response.items]
        return found == [(first, 5000.0)] and not response.fallback

    await eventually(repriced, "the periodic refresh never re-aligned the model")
