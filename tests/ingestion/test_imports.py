"""Imports through the real runtime (SQLite here; PostgreSQL and Envoy in test_stack.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from embrec.ingestion.v1 import ingestion_service_pb2 as svc
from embrec.ingestion.v1 import resources_pb2 as pb
from services.storage.models import Interaction, Item
from tests.ingestion.conftest import (
    SECRET,
    caller_for,
    import_csv,
    make_tenant,
    rpc_error_reason,
    sql,
)
from tests.services.conftest import RunningStack, StackFactory

DATA = Path(__file__).parent / "data"

CATALOG = (
    b"item_id,title,category,price,image_url\n"
    b"sku-1,Phone X,smartphones,699,https://img.example/1.jpg\n"
    b"sku-2,Laptop,laptops,1299.5,\n"
)


@pytest.fixture
async def stack(stack_factory: StackFactory) -> RunningStack:
    return await stack_factory(internal_secret=SECRET)


async def count(stack: RunningStack, model: type, tenant_id: str) -> int:
    rows = await sql(
        stack, select(func.count()).select_from(model).where(model.tenant_id == tenant_id)
    )
    return int(rows[0][0])  # type: ignore[call-overload]


async def test_csv_items_then_interactions_with_a_report(stack: RunningStack) -> None:
    c = caller_for(stack, await make_tenant(stack))
    items = await import_csv(c, CATALOG, upload_id="cat-1", file_name="catalog.csv")
    assert (items.id, items.state, items.rows_total, items.rows_accepted) == (
        "cat-1",
        pb.UPLOAD_STATE_SUCCEEDED,
        2,
        2,
    )
    assert items.file_name == "catalog.csv" and len(items.content_sha256) == 64

    upload = await import_csv(
        c, (DATA / "interactions_bad.csv").read_bytes(), kind="interactions", chunk=17
    )
    assert upload.state == pb.UPLOAD_STATE_SUCCEEDED
    assert (upload.rows_total, upload.rows_accepted, upload.rows_rejected, upload.rows_skipped) == (
        10,
        2,
        7,
        1,
    )
    assert [(e.row, e.column, e.reason) for e in upload.errors] == [
        (0, "session", "UNKNOWN_COLUMN"),
        (3, "interaction_type", "UNKNOWN_INTERACTION_TYPE"),
        (4, "timestamp", "INVALID_TIMESTAMP"),
        (5, "timestamp", "FUTURE_TIMESTAMP"),
        (6, "item_id", "UNKNOWN_ITEM"),
        (7, "user_id", "MISSING_VALUE"),
        (8, "value", "MISSING_VALUE"),
        (9, "value", "INVALID_NUMBER"),
    ]
    assert all(e.message for e in upload.errors)
    assert await count(stack, Interaction, c.tenant_id) == 2
    # The data statistics after the import come with it, with what to fix.
    quality = upload.data_quality
    assert (quality.item_count, quality.interaction_count) == (2, 2)
    assert any(p.startswith("ERROR: too little data") for p in quality.problems)
    again = await c.stub.GetUpload(svc.GetUploadRequest(upload_id=upload.id), metadata=c.metadata)
    assert again.data_quality == quality

    report = await c.stub.GetUploadReport(
        svc.GetUploadReportRequest(upload_id=upload.id), metadata=c.metadata
    )
    lines = report.data.decode().splitlines()
    assert report.content_type.startswith("text/csv")
    assert lines[0] == "row,column,reason,message,value" and len(lines) == 9
    assert lines[5].startswith("6,item_id,UNKNOWN_ITEM,") and lines[5].endswith(",sku-404")


async def test_strict_mode_is_all_or_nothing(stack: RunningStack) -> None:
    c = caller_for(stack, await make_tenant(stack))
    upload = await import_csv(c, (DATA / "items_bad.csv").read_bytes(), mode=pb.IMPORT_MODE_STRICT)
    assert upload.state == pb.UPLOAD_STATE_FAILED
    assert not upload.HasField("data_quality")  # nothing was committed
    assert upload.rows_accepted == 0 and upload.rows_rejected == 6
    assert await count(stack, Item, c.tenant_id) == 0
    lenient = await import_csv(c, (DATA / "items_bad.csv").read_bytes())
    assert lenient.state == pb.UPLOAD_STATE_SUCCEEDED and lenient.rows_accepted == 2
    assert await count(stack, Item, c.tenant_id) == 2


async def test_retried_upload_is_a_no_op(stack: RunningStack) -> None:
    c = caller_for(stack, await make_tenant(stack))
    await import_csv(c, CATALOG)
    data = b"user_id,item_id,interaction_type,timestamp\nu1,sku-1,view,2026-01-01T00:00:00Z\n"
    first = await import_csv(c, data, kind="interactions", upload_id="int-1")
    by_id = await import_csv(c, data, kind="interactions", upload_id="int-1")
    by_hash = await import_csv(c, data, kind="interactions")
    assert first.id == by_id.id == by_hash.id == "int-1"
    assert await count(stack, Interaction, c.tenant_id) == 1
    listed = await c.stub.ListUploads(svc.ListUploadsRequest(), metadata=c.metadata)
    assert [u.id for u in listed.uploads].count("int-1") == 1
    # Items are upserted: a changed price replaces the old one.
    await import_csv(c, b"item_id,price\nsku-1,599\n")
    item = await c.stub.GetItem(svc.GetItemRequest(item_id="sku-1"), metadata=c.metadata)
    assert (item.price, item.title) == (599, "Phone X")


async def test_unknown_item_policies(stack: RunningStack) -> None:
    c = caller_for(stack, await make_tenant(stack, settings={"unknown_item_policy": "create"}))
    data = b"user_id,item_id,interaction_type\nu1,new-1,view\nu1,new-2,click\n"
    created = await import_csv(c, data, kind="interactions")
    assert created.rows_accepted == 2 and not created.errors
    assert await count(stack, Item, c.tenant_id) == 2
    skipped = await import_csv(
        c,
        b"user_id,item_id,interaction_type\nu1,new-1,view\nu2,gone,view\n",
        kind="interactions",
        unknown_item_policy=pb.UNKNOWN_ITEM_POLICY_SKIP,
    )
    assert (skipped.rows_accepted, skipped.rows_skipped, skipped.rows_rejected) == (1, 1, 0)


async def test_bad_files_are_clear_errors(stack: RunningStack) -> None:
    c = caller_for(stack, await make_tenant(stack))
    for data in (b"sku,title\nx,y\n", b"", b"\xff\xfe\n"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await import_csv(c, data)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, data
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.ImportItems(
            iter([svc.ImportItemsRequest(chunk=b"item_id\n")]), metadata=c.metadata
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # Nothing half-made is left behind.
    listed = await c.stub.ListUploads(svc.ListUploadsRequest(), metadata=c.metadata)
    assert list(listed.uploads) == []


async def test_typed_batches_and_csv_body(stack: RunningStack) -> None:
    c = caller_for(stack, await make_tenant(stack))
    upload = await c.stub.ImportItems(
        iter(
            [
                svc.ImportItemsRequest(options=pb.ImportOptions()),
                svc.ImportItemsRequest(
                    items=pb.ItemBatch(
                        items=[
                            pb.Item(item_id="a", title="A", price=3, attributes={"brand": "X"}),
                            pb.Item(item_id="b", price=-1),
                        ]
                    )
                ),
            ]
        ),
        metadata=c.metadata,
    )
    assert (upload.rows_accepted, [(e.row, e.reason) for e in upload.errors]) == (
        1,
        [(2, "NEGATIVE_PRICE")],
    )
    from google.api import httpbody_pb2

    body = await c.stub.ImportItemsCsv(
        svc.ImportItemsCsvRequest(
            body=httpbody_pb2.HttpBody(content_type="text/csv", data=CATALOG),
            mode=pb.IMPORT_MODE_STRICT,
        ),
        metadata=c.metadata,
    )
    assert body.state == pb.UPLOAD_STATE_SUCCEEDED and body.rows_accepted == 2
    listed = await c.stub.ListItems(svc.ListItemsRequest(query="phone"), metadata=c.metadata)
    assert [i.item_id for i in listed.items] == ["sku-1"] and listed.total_size == 1


async def test_tenants_cannot_see_each_other(stack: RunningStack) -> None:
    a = caller_for(stack, await make_tenant(stack))
    b = caller_for(stack, await make_tenant(stack))
    upload = await import_csv(a, CATALOG, upload_id="shared-name")
    for call in (
        b.stub.GetUpload(svc.GetUploadRequest(upload_id=upload.id), metadata=b.metadata),
        b.stub.GetItem(svc.GetItemRequest(item_id="sku-1"), metadata=b.metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    for call in (
        b.stub.GetUpload(
            svc.GetUploadRequest(tenant_id=a.tenant_id, upload_id=upload.id), metadata=b.metadata
        ),
        b.stub.GetAnalytics(svc.GetAnalyticsRequest(tenant_id=a.tenant_id), metadata=b.metadata),
        b.stub.GetDataStats(svc.GetDataStatsRequest(tenant_id=a.tenant_id), metadata=b.metadata),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert rpc_error_reason(caught.value) == "TENANT_MISMATCH"
    stats = await b.stub.GetDataStats(svc.GetDataStatsRequest(), metadata=b.metadata)
    assert stats.item_count == 0
    # The same client upload id in another tenant is another upload.
    mine = await import_csv(b, CATALOG, upload_id="shared-name")
    assert mine.tenant_id == b.tenant_id


async def test_scopes_and_credentials(stack: RunningStack) -> None:
    tenant = await make_tenant(stack)
    reader = caller_for(stack, tenant, scopes={"data:read"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await import_csv(reader, CATALOG)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert rpc_error_reason(caught.value) == "SCOPE_MISSING"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reader.stub.GetDataStats(svc.GetDataStatsRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_track_events_are_stored_once_and_feed_analytics(stack: RunningStack) -> None:
    c = caller_for(stack, await make_tenant(stack))
    await import_csv(c, CATALOG)
    events = [
        pb.Interaction(
            user_id="u1",
            item_id="sku-1",
            interaction_type=pb.INTERACTION_TYPE_CLICK,
            recommendation_id="rec-1",
            event_id="e1",
        ),
        pb.Interaction(
            user_id="u1",
            item_id="sku-1",
            interaction_type=pb.INTERACTION_TYPE_PURCHASE,
            recommendation_id="rec-1",
            event_id="e2",
        ),
        pb.Interaction(user_id="u2", item_id="sku-2", interaction_type=pb.INTERACTION_TYPE_VIEW),
        pb.Interaction(user_id="", item_id="sku-2", interaction_type=pb.INTERACTION_TYPE_VIEW),
    ]
    response = await c.stub.TrackEvents(svc.TrackEventsRequest(events=events), metadata=c.metadata)
    assert response.accepted_count == 3
    assert [(e.index, e.field, e.reason) for e in response.errors] == [
        (3, "user_id", "MISSING_VALUE")
    ]
    retry = await c.stub.TrackEvents(svc.TrackEventsRequest(events=events[:2]), metadata=c.metadata)
    assert retry.accepted_count == 2
    for _ in range(100):
        if await count(stack, Interaction, c.tenant_id) >= 3:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    assert await count(stack, Interaction, c.tenant_id) == 3
    analytics = await c.stub.GetAnalytics(svc.GetAnalyticsRequest(), metadata=c.metadata)
    assert (analytics.clicks, analytics.conversions, analytics.active_users) == (1, 1, 2)
    assert analytics.attributed_revenue == 699
    assert len(analytics.daily) in (30, 31) and sum(d.interactions for d in analytics.daily) == 3
    assert analytics.popular_items[0].item_id == "sku-1"
    assert analytics.popular_items[0].title == "Phone X"
    stats = await c.stub.GetDataStats(svc.GetDataStatsRequest(), metadata=c.metadata)
    assert (stats.item_count, stats.user_count, stats.interaction_count) == (2, 2, 3)
    assert any(p.startswith("ERROR") for p in stats.problems)  # far too little data to train
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.GetAnalytics(
            svc.GetAnalyticsRequest(time_zone="Mars/Base"), metadata=c.metadata
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_interaction_rows_are_stored_exactly_and_in_file_order(stack: RunningStack) -> None:
    """Rows without a value go to SQLite as one JSON array per run, rows with one are
    bound one by one; either way every stored field equals the file's, in file order."""
    from datetime import UTC, datetime

    c = caller_for(stack, await make_tenant(stack))
    await import_csv(c, CATALOG)
    data = (
        "user_id,item_id,interaction_type,timestamp,value,recommendation_id\n"
        "u-1,sku-1,view,2026-01-01T10:00:00Z,,\n"
        "ü-2 😀,sku-2,click,2026-01-01T10:00:00.5+01:00,,rec-1\n"
        "u-3,sku-1,rating,2026-01-02T00:00:00Z,4.1,\n"
        "u-4,sku-2,purchase,1767225600,0.30000000000000004,rec-2\n"
        'u-5 "quoted",sku-1,view,2026-01-03T00:00:00Z,,\n'
        '"u,6",sku-1,view,2026-01-03T00:00:01Z,,\n'
        "u-7\x00nul,sku-2,view,2026-01-03T00:00:02Z,,\n"
        "u-8,sku-2,add_to_cart,2026-01-03T00:00:03Z,,\n"
    ).encode()
    for chunk in (7, 64 * 1024):  # partial lines and quotes split over chunks, or not
        tenant = await make_tenant(stack)
        c = caller_for(stack, tenant)
        await import_csv(c, CATALOG)
        upload = await import_csv(c, data, kind="interactions", chunk=chunk)
        assert (upload.rows_accepted, upload.rows_rejected) == (8, 0), upload.errors
        rows = await sql(
            stack,
            select(
                Interaction.user_id,
                Interaction.item_id,
                Interaction.type,
                Interaction.ts,
                Interaction.value,
                Interaction.recommendation_id,
            )
            .where(Interaction.tenant_id == tenant)
            .order_by(Interaction.id),
        )
        assert rows == [
            ("u-1", "sku-1", "view", datetime(2026, 1, 1, 10, tzinfo=UTC), None, None),
            (
                "ü-2 😀",
                "sku-2",
                "click",
                datetime(2026, 1, 1, 9, 0, 0, 500_000, tzinfo=UTC),
                None,
                "rec-1",
            ),
            ("u-3", "sku-1", "rating", datetime(2026, 1, 2, tzinfo=UTC), 4.1, None),
            (
                "u-4",
                "sku-2",
                "purchase",
                datetime(2026, 1, 1, tzinfo=UTC),
                0.30000000000000004,
                "rec-2",
            ),
            ('u-5 "quoted"', "sku-1", "view", datetime(2026, 1, 3, tzinfo=UTC), None, None),
            ("u,6", "sku-1", "view", datetime(2026, 1, 3, 0, 0, 1, tzinfo=UTC), None, None),
            ("u-7\x00nul", "sku-2", "view", datetime(2026, 1, 3, 0, 0, 2, tzinfo=UTC), None, None),
            (
                "u-8",
                "sku-2",
                "add_to_cart",
                datetime(2026, 1, 3, 0, 0, 3, tzinfo=UTC),
                None,
                None,
            ),
        ]


async def test_a_stream_broken_off_mid_import_leaves_nothing(stack: RunningStack) -> None:
    """The client goes away while the server waits for its next chunk, with batches
    written (and one possibly still being written): all is rolled back, the upload id
    is free again, and the retry imports the whole file once."""
    tenant = await make_tenant(stack)
    c = caller_for(stack, tenant)
    await import_csv(c, CATALOG)
    rows = 50_000  # more than two write batches
    data = (
        "user_id,item_id,interaction_type\n"
        + "".join(f"u{n},sku-{1 + n % 2},view\n" for n in range(rows))
    ).encode()
    cut = data.rfind(b"\n", 0, len(data) - 100) + 1  # all but the last rows
    sent, never = asyncio.Event(), asyncio.Event()

    async def stream() -> AsyncIterator[svc.ImportInteractionsRequest]:
        yield svc.ImportInteractionsRequest(
            options=pb.ImportOptions(tenant_id=tenant, upload_id="broken-off")
        )
        for start in range(0, cut, 64 * 1024):
            yield svc.ImportInteractionsRequest(chunk=data[start : min(start + 64 * 1024, cut)])
        sent.set()
        await never.wait()  # the client hangs, then gives up

    call = c.stub.ImportInteractions(stream(), metadata=c.metadata)
    await sent.wait()
    deadline = asyncio.get_running_loop().time() + 30
    while True:  # until the server has validated what was sent (progress is live)
        try:
            progress = await c.stub.GetUpload(
                svc.GetUploadRequest(upload_id="broken-off"), metadata=c.metadata
            )
        except grpc.aio.AioRpcError as error:
            # The client's stream buffers run ahead of the server: on a busy machine
            # the server may not have read the options (and claimed the id) yet.
            assert error.code() == grpc.StatusCode.NOT_FOUND, error
            progress = None
        if progress is not None and progress.rows_total >= rows - 10:
            break
        assert asyncio.get_running_loop().time() < deadline, progress
        await asyncio.sleep(0.05)
    call.cancel()
    while True:  # the claim on the upload id goes with the rollback
        try:
            await c.stub.GetUpload(
                svc.GetUploadRequest(upload_id="broken-off"), metadata=c.metadata
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            break
        assert asyncio.get_running_loop().time() < deadline, "the claim was never removed"
        await asyncio.sleep(0.05)
    assert await count(stack, Interaction, tenant) == 0

    upload = await import_csv(c, data, kind="interactions", upload_id="broken-off")
    assert (upload.state, upload.rows_accepted) == (pb.UPLOAD_STATE_SUCCEEDED, rows)
    assert await count(stack, Interaction, tenant) == rows


async def test_data_stats_count_repeated_interactions_across_uploads(stack: RunningStack) -> None:
    """Rows equal in user, item, type and time, from different files, are counted."""
    tenant = await make_tenant(stack)
    c = caller_for(stack, tenant)
    await import_csv(c, CATALOG)
    head = "user_id,item_id,interaction_type,timestamp\n"
    same = "u1,sku-1,view,2026-01-01T10:00:00Z\nu2,sku-2,click,2026-01-01T11:00:00Z\n"
    await import_csv(
        c, (head + same + "u3,sku-1,view,2026-01-02T00:00:00Z\n").encode(), kind="interactions"
    )
    await import_csv(
        c, (head + same + "u4,sku-1,view,2026-01-02T00:00:00Z\n").encode(), kind="interactions"
    )
    await import_csv(c, (head + same[: same.index("\n") + 1]).encode(), kind="interactions")
    stats = await c.stub.GetDataStats(svc.GetDataStatsRequest(), metadata=c.metadata)
    assert stats.interaction_count == 7
    # u1's row three times (2 repeats), u2's twice (1); the same time for u3 and u4
    # is not a repeat.
    assert stats.duplicate_interaction_count == 3


async def test_plan_item_limit_refuses_the_import_and_keeps_nothing(stack: RunningStack) -> None:
    from gateway.plans import load_plans

    limit = load_plans().get("free").max_items
    assert limit > 0, "the free plan must limit items for this test to mean anything"
    c = caller_for(stack, await make_tenant(stack, settings={"unknown_item_policy": "create"}))

    def catalog(first: int, last: int) -> bytes:
        rows = "".join(f"sku-{n},Item {n}\n" for n in range(first, last))
        return f"item_id,title\n{rows}".encode()

    # Up to the limit is fine, re-importing (upserting) known items too.
    full = await import_csv(c, catalog(0, limit))
    assert full.rows_accepted == limit and not full.errors
    again = await import_csv(c, catalog(0, 10), upload_id="again")
    assert again.rows_accepted == 10

    # One item past it: refused, nothing of the upload kept, not even its first items.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await import_csv(c, catalog(limit - 5, limit + 1), upload_id="too-many")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rpc_error_reason(caught.value) == "QUOTA_EXCEEDED"
    assert await count(stack, Item, c.tenant_id) == limit

    # Placeholders for unknown items count as catalog items too.
    with pytest.raises(grpc.aio.AioRpcError) as placeholder:
        await import_csv(
            c,
            b"user_id,item_id,interaction_type\nu1,sku-1,view\nu1,brand-new,view\n",
            kind="interactions",
        )
    assert rpc_error_reason(placeholder.value) == "QUOTA_EXCEEDED"
    assert await count(stack, Item, c.tenant_id) == limit
    assert await count(stack, Interaction, c.tenant_id) == 0
