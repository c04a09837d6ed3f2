"""Recommend, SimilarItems and PopularItems as a tenant's API key sees them (real runtime)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from services.storage.models import ServedRecommendation
from tests.retrieval_service.conftest import CATEGORIES, Shop, make_shop, query
from tests.services.conftest import RunningStack, StackFactory


@pytest.fixture
async def stack(stack_factory: StackFactory) -> RunningStack:
    return await stack_factory()


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)
    if status is None:
        return []
    out = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [v.field for v in bad.field_violations]
    return out


async def test_known_user_gets_ranked_items_with_catalog_fields(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")

    response = await shop.recommend("u1", count=5)

    assert response.model_version == "v1"
    assert not response.fallback
    assert response.fallback_reason == pb.FALLBACK_REASON_UNSPECIFIED
    assert len(response.recommendation_id) == 32
    assert [i.category for i in response.items] == ["laptops"] * 5  # u1 likes category 1
    scores = [i.score for i in response.items]
    assert scores == sorted(scores, reverse=True)
    first = response.items[0]
    assert first.title == f"Product {first.item_id}"
    assert first.image_url.endswith(f"{first.item_id}.jpg")
    assert first.HasField("price")
    # Every response is its own impression, with its own id.
    again = await shop.recommend("u1", count=5)
    assert again.recommendation_id != response.recommendation_id
    assert [i.item_id for i in again.items] == [i.item_id for i in response.items]


async def test_filters_are_exact(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")

    # u1 prefers laptops; asking for smartphones must still give 10 smartphones.
    phones = await shop.recommend(
        "u1", count=10, filters=pb.RecommendationFilters(category="smartphones")
    )
    assert len(phones.items) == 10
    assert {i.category for i in phones.items} == {"smartphones"}

    cheap = await shop.recommend(
        "u1",
        count=20,
        filters=pb.RecommendationFilters(
            categories=["audio", "cameras"], min_price=50, max_price=120
        ),
    )
    assert len(cheap.items) == 20
    assert all(i.category in ("audio", "cameras") and 50 <= i.price <= 120 for i in cheap.items)

    none_of = await shop.recommend(
        "u1",
        count=30,
        filters=pb.RecommendationFilters(exclude_categories=["laptops"]),
    )
    assert "laptops" not in {i.category for i in none_of.items}

    allowed = [shop.item_ids[i] for i in (0, 1, 5, 9)]
    chosen = await shop.recommend(
        "u1", count=10, filters=pb.RecommendationFilters(item_ids=allowed)
    )
    assert sorted(i.item_id for i in chosen.items) == sorted(allowed)
    assert chosen.items[0].item_id in (shop.item_ids[1], shop.item_ids[5], shop.item_ids[9])

    top = [i.item_id for i in (await shop.recommend("u1", count=3)).items]
    without = await shop.recommend(
        "u1", count=3, filters=pb.RecommendationFilters(exclude_item_ids=top[:2])
    )
    assert not set(top[:2]) & {i.item_id for i in without.items}


async def test_items_already_seen_are_left_out_unless_asked(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u2", "v1")
    # u7 has u3's taste (same category); u3's history is read on its first request.
    top = [i.item_id for i in (await shop.recommend("u7", count=4)).items]
    await shop.interactions("u3", top[:2], kind="purchase")

    seen_out = await shop.recommend("u3", count=4)
    assert not set(top[:2]) & {i.item_id for i in seen_out.items}
    seen_in = await shop.recommend(
        "u3", count=4, filters=pb.RecommendationFilters(exclude_seen=False)
    )
    assert [i.item_id for i in seen_in.items] == top


async def test_recent_category_boost_follows_what_the_user_browses(stack: RunningStack) -> None:
    """A model whose training chose the recent-category boost (scoring.json): a known
    user who is browsing cameras gets cameras first, their seen items left out."""
    shop = await make_shop(stack)
    await shop.train(1, scoring={"recent_category": {"weight": 5.0, "half_life": 1.0}})
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    plain = await shop.recommend("u1", count=5)
    assert [i.category for i in plain.items] == ["laptops"] * 5  # no history yet: u1's taste

    browsed = [i for i in shop.item_ids if shop.category_of(i) == "cameras"][:2]
    await shop.interactions("u5", browsed)  # u5 also likes laptops; history read on first use
    boosted = await shop.recommend("u5", count=5)
    assert not boosted.fallback
    assert [i.category for i in boosted.items] == ["cameras"] * 5
    assert not set(browsed) & {i.item_id for i in boosted.items}
    scores = [i.score for i in boosted.items]
    assert scores == sorted(scores, reverse=True)


async def test_tenant_without_a_model_gets_popular_items(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    popular = shop.item_ids[7]
    await shop.interactions("someone", [popular] * 5)
    await shop.interactions("other", [shop.item_ids[12]] * 3)

    response = await shop.recommend("u1", count=5)
    assert response.fallback
    assert response.fallback_reason == pb.FALLBACK_REASON_NO_MODEL
    assert response.model_version == ""
    assert response.items[0].item_id == popular
    assert len(response.items) == 5

    # Per category when filtered: the most popular item of that category first.
    phones = await shop.recommend(
        "u1",
        count=3,
        filters=pb.RecommendationFilters(category=shop.category_of(shop.item_ids[12])),
    )
    assert phones.fallback
    assert phones.items[0].item_id == shop.item_ids[12]
    assert {i.category for i in phones.items} == {shop.category_of(shop.item_ids[12])}


async def test_unseen_user_gets_fold_in_or_popular_items(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")

    stranger = await shop.recommend("never-seen", count=5)
    assert stranger.fallback
    assert stranger.fallback_reason == pb.FALLBACK_REASON_UNKNOWN_USER
    assert len(stranger.items) == 5

    # History in the interactions table: a fold-in embedding, a personal answer.
    audio = [i for i in shop.item_ids if shop.category_of(i) == "audio"][:3]
    await shop.interactions("newcomer", audio, kind="purchase")
    folded = await shop.recommend("newcomer", count=5)
    assert not folded.fallback
    assert folded.model_version == "v1"
    assert {i.category for i in folded.items} == {"audio"}
    assert not set(audio) & {i.item_id for i in folded.items}

    # Session items sent with the request work the same way.
    cams = [i for i in shop.item_ids if shop.category_of(i) == "cameras"][:2]
    session = await shop.recommend("walk-in", count=3, recent_item_ids=cams)
    assert not session.fallback
    assert {i.category for i in session.items} == {"cameras"}


async def _first_model_answer(shop: Shop, user_id: str, what: str) -> pb.RecommendResponse:
    """Ask for ``user_id`` until the model answers (not a fallback); fails after 10 s."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        response = await shop.recommend(user_id, count=3)
        if not response.fallback:
            return response
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.1)


async def test_fold_in_follows_tracked_events_within_seconds(stack: RunningStack) -> None:
    from embrec.ingestion.v1 import ingestion_service_pb2 as ing
    from embrec.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
    from embrec.ingestion.v1 import resources_pb2 as ing_pb

    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    assert (await shop.recommend("fresh-user", count=3)).fallback

    cams = [i for i in shop.item_ids if shop.category_of(i) == "cameras"][:2]
    tracker = ing_grpc.IngestionServiceStub(stack.channel)
    await tracker.TrackEvents(
        ing.TrackEventsRequest(
            events=[
                ing_pb.Interaction(
                    user_id="fresh-user",
                    item_id=item,
                    interaction_type=ing_pb.INTERACTION_TYPE_CLICK,
                )
                for item in cams
            ]
        ),
        metadata=shop.metadata(["events:write"]),
    )
    response = await _first_model_answer(shop, "fresh-user", "fold-in never picked up the events")
    assert {i.category for i in response.items} == {"cameras"}
    assert not set(cams) & {i.item_id for i in response.items}


async def test_fold_in_follows_imported_interactions(stack: RunningStack) -> None:
    """A bulk import announces its rows in columns (InteractionColumns); the replica
    reads them like tracked events: the user's cached (empty) history gets them."""
    from embrec.ingestion.v1 import ingestion_service_pb2 as ing
    from embrec.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
    from embrec.ingestion.v1 import resources_pb2 as ing_pb

    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    assert (await shop.recommend("imported-user", count=3)).fallback  # history: none

    audio = [i for i in shop.item_ids if shop.category_of(i) == "audio"][:2]
    body = "user_id,item_id,interaction_type,timestamp,value\n" + "".join(
        f"imported-user,{item},purchase,2026-01-0{n + 1}T10:00:00Z,2\n"
        for n, item in enumerate(audio)
    )

    async def requests() -> Any:
        yield ing.ImportInteractionsRequest(
            options=ing_pb.ImportOptions(tenant_id=shop.tenant_id, file_name="x.csv")
        )
        yield ing.ImportInteractionsRequest(chunk=body.encode())

    importer = ing_grpc.IngestionServiceStub(stack.channel)
    upload = await importer.ImportInteractions(requests(), metadata=shop.metadata(["data:write"]))
    assert upload.rows_accepted == 2
    response = await _first_model_answer(shop, "imported-user", "fold-in never saw the import")
    assert {i.category for i in response.items} == {"audio"}
    assert not set(audio) & {i.item_id for i in response.items}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"user_id": "", "count": 5}, "user_id"),
        ({"user_id": "u1", "count": 501}, "count"),
        ({"user_id": "u1", "count": -1}, "count"),
        (
            {"user_id": "u1", "filters": pb.RecommendationFilters(min_price=10, max_price=5)},
            "filters.min_price",
        ),
    ],
)
async def test_bad_requests_name_the_field(
    stack: RunningStack, fields: dict[str, object], field: str
) -> None:
    shop = await make_shop(stack, n_items=8)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.stub.Recommend(
            pb.RecommendRequest(**fields),  # type: ignore[arg-type]
            metadata=shop.metadata(),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value)


async def test_count_up_to_500(stack: RunningStack) -> None:
    shop = await make_shop(stack, n_items=600)
    response = await shop.recommend("u1", count=500)
    assert len(response.items) == 500


async def test_pinned_version_must_exist(stack: RunningStack) -> None:
    shop = await make_shop(stack, n_items=8)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shop.recommend("u1", model_version="v9")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_tenant_never_receives_another_tenants_items(stack: RunningStack) -> None:
    first = await make_shop(stack, prefix="a-")
    second = await make_shop(stack, prefix="b-")
    for shop in (first, second):
        await shop.train(1)
        await shop.deploy([("v1", 100)])
    await first.wait_for_version("u1", "v1")
    await second.wait_for_version("u1", "v1")

    for shop, other in ((first, second), (second, first)):
        for user in ("u1", "u2", "nobody"):
            response = await shop.recommend(user, count=50)
            assert response.items
            assert all(i.item_id in shop.item_ids for i in response.items)
        similar = await shop.stub.SimilarItems(
            pb.SimilarItemsRequest(item_id=shop.item_ids[0], count=20), metadata=shop.metadata()
        )
        assert all(i.item_id in shop.item_ids for i in similar.items)
        # Another tenant's item is simply unknown here.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await shop.stub.SimilarItems(
                pb.SimilarItemsRequest(item_id=other.item_ids[0]), metadata=shop.metadata()
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        # Naming the other tenant is refused, whatever the credential.
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await shop.stub.Recommend(
                pb.RecommendRequest(tenant_id=other.tenant_id, user_id="u1"),
                metadata=shop.metadata(),
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_scope_and_credential_are_required(stack: RunningStack) -> None:
    shop = await make_shop(stack, n_items=8)
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await shop.stub.Recommend(pb.RecommendRequest(user_id="u1"))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as scoped:
        await shop.stub.Recommend(
            pb.RecommendRequest(user_id="u1"), metadata=shop.metadata(["events:write"])
        )
    assert scoped.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_similar_and_popular_items(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.interactions("x", [shop.item_ids[3]] * 4 + [shop.item_ids[10]] * 2)
    # Without a model: popular items of the item's category, never the item itself.
    before = await shop.stub.SimilarItems(
        pb.SimilarItemsRequest(item_id=shop.item_ids[3], count=5), metadata=shop.metadata()
    )
    assert before.fallback and before.fallback_reason == pb.FALLBACK_REASON_NO_MODEL
    assert shop.item_ids[3] not in {i.item_id for i in before.items}
    assert {i.category for i in before.items} == {shop.category_of(shop.item_ids[3])}

    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    similar = await shop.stub.SimilarItems(
        pb.SimilarItemsRequest(item_id=shop.item_ids[3], count=5), metadata=shop.metadata()
    )
    assert not similar.fallback and similar.model_version == "v1"
    assert len(similar.items) == 5
    assert shop.item_ids[3] not in {i.item_id for i in similar.items}
    assert {i.category for i in similar.items} == {shop.category_of(shop.item_ids[3])}

    popular = await shop.stub.PopularItems(
        pb.PopularItemsRequest(count=2), metadata=shop.metadata()
    )
    assert [i.item_id for i in popular.items] == [shop.item_ids[3], shop.item_ids[10]]
    per_category = await shop.stub.PopularItems(
        pb.PopularItemsRequest(count=3, category=CATEGORIES[2]), metadata=shop.metadata()
    )
    assert per_category.items[0].item_id == shop.item_ids[10]
    assert {i.category for i in per_category.items} == {CATEGORIES[2]}


async def test_every_response_is_an_impression(stack: RunningStack) -> None:
    shop = await make_shop(stack, n_items=20)
    response = await shop.recommend("u5", count=3)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        rows = await query(
            stack,
            select(ServedRecommendation.item_ids, ServedRecommendation.surface).where(
                ServedRecommendation.tenant_id == shop.tenant_id,
                ServedRecommendation.recommendation_id == response.recommendation_id,
            ),
        )
        if rows:
            break
        assert asyncio.get_running_loop().time() < deadline, "impression never stored"
        await asyncio.sleep(0.1)
    assert rows == [([i.item_id for i in response.items], "recommend")]


async def test_seed_rest_body_works_through_envoy(stack: RunningStack, envoy_for) -> None:  # type: ignore[no-untyped-def]
    import json
    import urllib.request

    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    _, port = await envoy_for(stack.runtime.port)
    token = dict(shop.metadata())["authorization"]
    body = json.dumps(
        {"user_id": "user_123", "count": 5, "filters": {"category": "smartphones"}}
    ).encode()

    def call() -> tuple[int, dict[str, object]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/recommendations",
            data=body,
            headers={"content-type": "application/json", "authorization": token},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())

    status, payload = await asyncio.to_thread(call)
    assert status == 200
    items = payload["items"]
    assert isinstance(items, list) and len(items) == 5
    assert {i["category"] for i in items} == {"smartphones"}
    assert payload["recommendation_id"]
    assert payload["fallback"] is True  # user_123 is unknown and has no history
    assert payload["fallback_reason"] == "FALLBACK_REASON_UNKNOWN_USER"
