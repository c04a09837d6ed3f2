"""Deployments as the retrieval service follows them: swaps, splits, stats, status, metrics."""

from __future__ import annotations

import asyncio
from collections import Counter

import grpc
import pytest
from prometheus_client import generate_latest

from embrec.ingestion.v1 import ingestion_service_pb2 as ing
from embrec.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from embrec.ingestion.v1 import resources_pb2 as ing_pb
from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from retriever.routing import choose_version
from tests.retrieval_service.conftest import make_shop
from tests.services.conftest import RunningStack, StackFactory


@pytest.fixture
async def stack(stack_factory: StackFactory) -> RunningStack:
    return await stack_factory()


async def test_deploy_swaps_under_load_without_a_failed_request(stack: RunningStack) -> None:
    shop = await make_shop(stack, n_items=2000)
    await shop.train(1)
    await shop.train(2, flip=True)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")

    outcomes: Counter[str] = Counter()
    errors: list[BaseException] = []
    stop = asyncio.Event()

    async def client(user: str) -> None:
        while not stop.is_set():
            try:
                response = await shop.recommend(user, count=10)
            except grpc.aio.AioRpcError as exc:
                errors.append(exc)
                continue
            key = response.model_version if not response.fallback else "fallback"
            outcomes[key] += 1

    clients = [asyncio.create_task(client(f"u{k}")) for k in range(6)]
    await asyncio.sleep(0.5)
    await shop.deploy([("v2", 100)])  # ModelDeployed on the bus → background reload
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        response = await shop.recommend("u0", count=3)
        if response.model_version == "v2":
            break
        assert asyncio.get_running_loop().time() < deadline, "v2 never swapped in"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)

    assert errors == []
    assert outcomes["fallback"] == 0, outcomes  # the old version served until the swap
    assert outcomes["v1"] > 0 and outcomes["v2"] > 0, outcomes
    # v2 is really another model: u0 now gets category 1, not 0.
    assert {i.category for i in (await shop.recommend("u0", count=5)).items} == {"laptops"}

    # The version no split uses any more is unloaded.
    status = await shop.internal.GetIndexStatus(
        pb.GetIndexStatusRequest(tenant_id=shop.tenant_id), metadata=stack.admin_metadata()
    )
    assert [(s.model_version, s.state) for s in status.indexes] == [("v2", pb.INDEX_STATE_READY)]
    ready = status.indexes[0]
    assert ready.item_count == 2000 and ready.dimension == 8
    assert ready.index_type == "IndexFlatIP" and ready.memory_bytes > 0


async def test_split_routes_each_user_to_one_variant_and_reports_ctr(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.train(2, flip=True)
    await shop.deploy([("v1", 50), ("v2", 50)])
    split = [("v1", 50), ("v2", 50)]
    waiter = "u35"  # its successful call counts too; fallbacks while loading have no version
    await shop.wait_for_version(waiter, choose_version(shop.tenant_id, waiter, split))

    seen: dict[str, set[str]] = {}
    served_ids: dict[str, str] = {}
    for k in range(30):
        user = f"u{k}"
        for _ in range(2):
            response = await shop.recommend(user, count=3)
            seen.setdefault(user, set()).add(response.model_version)
            served_ids[user] = response.recommendation_id
    assert all(len(versions) == 1 for versions in seen.values())  # one variant per user
    assert {v for versions in seen.values() for v in versions} == {"v1", "v2"}
    for user, versions in seen.items():
        assert versions == {choose_version(shop.tenant_id, user, split)}

    # One attributed click for a v2 user.
    clicker = next(u for u, v in seen.items() if v == {"v2"})
    await ing_grpc.IngestionServiceStub(stack.channel).TrackEvents(
        ing.TrackEventsRequest(
            events=[
                ing_pb.Interaction(
                    user_id=clicker,
                    item_id=shop.item_ids[0],
                    interaction_type=ing_pb.INTERACTION_TYPE_CLICK,
                    recommendation_id=served_ids[clicker],
                )
            ]
        ),
        metadata=shop.metadata(["events:write"]),
    )
    expected = {v: 2 * sum(1 for vs in seen.values() if vs == {v}) for v in ("v1", "v2")}
    expected[choose_version(shop.tenant_id, waiter, split)] += 1
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        stats = await shop.internal.GetTrafficStats(
            pb.GetTrafficStatsRequest(), metadata=shop.metadata()
        )
        by_version = {s.model_version: s for s in stats.variants}
        done = {
            v: by_version[v].served_count for v in ("v1", "v2") if v in by_version
        } == expected and by_version["v2"].clicked_count == 1
        if done:
            break
        assert asyncio.get_running_loop().time() < deadline, stats
        await asyncio.sleep(0.2)
    assert by_version["v1"].traffic_percent == 50 and by_version["v2"].traffic_percent == 50
    assert by_version["v1"].clicked_count == 0
    assert by_version["v2"].click_through_rate == pytest.approx(1 / expected["v2"])


async def test_broken_artifacts_keep_the_old_version_serving(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.train(2, flip=True)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    # Corrupt v2 on disk: its checksum no longer matches the manifest.
    root = stack.runtime.settings.effective_artifact_dir / shop.tenant_id / "v2"
    (root / "item_embeddings.npy").write_bytes(b"garbage")

    await shop.deploy([("v2", 100)])
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        status = await shop.internal.GetIndexStatus(
            pb.GetIndexStatusRequest(tenant_id=shop.tenant_id), metadata=stack.admin_metadata()
        )
        states = {s.model_version: s for s in status.indexes}
        if "v2" in states and states["v2"].state == pb.INDEX_STATE_FAILED:
            break
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.1)
    assert "sha256" in states["v2"].error_message
    # The new split names only a broken version: popular items, flagged, no error.
    response = await shop.recommend("u1", count=4)
    assert response.fallback
    assert response.fallback_reason == pb.FALLBACK_REASON_INDEX_UNAVAILABLE
    assert len(response.items) == 4


async def test_reload_is_for_platform_admins_and_reports_indexes(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)], announce=False)
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await shop.internal.ReloadIndexes(
            pb.ReloadIndexesRequest(tenant_id=shop.tenant_id), metadata=shop.metadata()
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reloaded = await shop.internal.ReloadIndexes(
        pb.ReloadIndexesRequest(tenant_id=shop.tenant_id), metadata=stack.admin_metadata()
    )
    assert [(s.model_version, s.state) for s in reloaded.indexes] == [("v1", pb.INDEX_STATE_READY)]
    assert not (await shop.recommend("u1")).fallback


async def test_memory_per_tenant_is_exported(stack: RunningStack) -> None:
    shop = await make_shop(stack)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    text = generate_latest(stack.runtime.metrics.registry).decode()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("embrec_retrieval_index_memory_bytes{") and shop.tenant_id in ln
    )
    assert float(line.rsplit(" ", 1)[1]) > 0
    assert "embrec_retrieval_served_total" in text


async def test_popular_only_responder_never_loads_a_model(stack_factory: StackFactory) -> None:
    # What the gateway's fallback cluster would run (docs/retrieval-service.md).
    responder = await stack_factory(retrieval_popular_only=True)
    shop = await make_shop(responder)
    await shop.interactions("x", [shop.item_ids[4]] * 3)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    # The deployment reaches the responder through the bus: wait until it knows of it
    # (before that it honestly says there is no model), then it must stay popular-only.
    deadline = asyncio.get_running_loop().time() + 30
    while (await shop.recommend("u1", count=3)).fallback_reason != (
        pb.FALLBACK_REASON_INDEX_UNAVAILABLE
    ):
        assert asyncio.get_running_loop().time() < deadline, "deployment never seen"
        await asyncio.sleep(0.2)
    for _ in range(3):
        response = await shop.recommend("u1", count=3)
        assert response.fallback
        assert response.fallback_reason == pb.FALLBACK_REASON_INDEX_UNAVAILABLE
        assert response.items[0].item_id == shop.item_ids[4]
        await asyncio.sleep(0.3)
    status = await shop.internal.GetIndexStatus(
        pb.GetIndexStatusRequest(), metadata=responder.admin_metadata()
    )
    assert list(status.indexes) == []


async def test_memory_cap_evicts_the_coldest_tenant_and_it_comes_back(
    stack_factory: StackFactory,
) -> None:
    # Each 6,000-item bundle is ~1.5 MB (ids, titles, URLs, vectors, index): two do not fit.
    stack = await stack_factory(retrieval_memory_cap_mb=2)
    first = await make_shop(stack, n_items=6000, prefix="a-")
    second = await make_shop(stack, n_items=6000, prefix="b-")
    for shop in (first, second):
        await shop.train(1)
        await shop.deploy([("v1", 100)])
    await first.wait_for_version("u1", "v1")
    await second.wait_for_version("u1", "v1")  # loading it evicts the first tenant

    status = await first.internal.GetIndexStatus(
        pb.GetIndexStatusRequest(), metadata=stack.admin_metadata()
    )
    ready = {s.tenant_id for s in status.indexes if s.memory_bytes > 0}
    assert ready == {second.tenant_id}
    evicted = await first.recommend("u1", count=3)
    assert evicted.fallback
    assert evicted.fallback_reason == pb.FALLBACK_REASON_INDEX_UNAVAILABLE
    # Its next requests reload it (evicting the now colder second tenant).
    await first.wait_for_version("u1", "v1")
