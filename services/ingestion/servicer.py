"""IngestionService adapter: protobuf ↔ the ingestion domain (imports, tracking, queries)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from google.api import httpbody_pb2  # type: ignore[import-untyped]

from embrec.ingestion.v1 import (
    ingestion_service_pb2 as svc,
)
from embrec.ingestion.v1 import (
    ingestion_service_pb2_grpc,
)
from embrec.ingestion.v1 import (
    resources_pb2 as pb,
)
from services.app import ServiceContext, WorkingModule
from services.errors import FieldViolation, InvalidArgument
from services.identity.credentials import Principal
from services.ingestion.auth import caller, resolve_tenant
from services.ingestion.imports import Importer, ImportOptions, ImportRun, timestamp
from services.ingestion.queries import MAX_RETURNED_ERRORS, DataStatsResult, Queries
from services.ingestion.tracking import consumers, track_events
from services.runtime.servicers import contract_servicer
from services.storage.models import Item, Tenant, Upload

__all__ = ["build_module"]

_TRACKED_IN = "issue #4 (ingestion)"
Context = grpc.aio.ServicerContext[Any, Any]

_MODES = {
    pb.IMPORT_MODE_UNSPECIFIED: "lenient",
    pb.IMPORT_MODE_LENIENT: "lenient",
    pb.IMPORT_MODE_STRICT: "strict",
}
_MODE_TO_PROTO = {"lenient": pb.IMPORT_MODE_LENIENT, "strict": pb.IMPORT_MODE_STRICT}
_FORMATS = {
    pb.IMPORT_FORMAT_UNSPECIFIED: "csv",
    pb.IMPORT_FORMAT_CSV: "csv",
    pb.IMPORT_FORMAT_JSON: "json",
}
_FORMAT_TO_PROTO = {"csv": pb.IMPORT_FORMAT_CSV, "json": pb.IMPORT_FORMAT_JSON}
_POLICIES: dict[int, str] = {
    pb.UNKNOWN_ITEM_POLICY_UNSPECIFIED: "",
    pb.UNKNOWN_ITEM_POLICY_REJECT: "reject",
    pb.UNKNOWN_ITEM_POLICY_SKIP: "skip",
    pb.UNKNOWN_ITEM_POLICY_CREATE_PLACEHOLDER: "create",
}
_STATES = {
    "processing": pb.UPLOAD_STATE_PROCESSING,
    "succeeded": pb.UPLOAD_STATE_SUCCEEDED,
    "failed": pb.UPLOAD_STATE_FAILED,
}
_STATE_FILTER = {v: k for k, v in _STATES.items()}
_KINDS = {"items": pb.UPLOAD_KIND_ITEMS, "interactions": pb.UPLOAD_KIND_INTERACTIONS}
_KIND_FILTER = {v: k for k, v in _KINDS.items()}
_TYPE_NAMES = {
    pb.INTERACTION_TYPE_VIEW: "view",
    pb.INTERACTION_TYPE_CLICK: "click",
    pb.INTERACTION_TYPE_ADD_TO_CART: "add_to_cart",
    pb.INTERACTION_TYPE_PURCHASE: "purchase",
    pb.INTERACTION_TYPE_RATING: "rating",
}
_TYPE_TO_PROTO = {v: k for k, v in _TYPE_NAMES.items()}


def data_stats_proto(tenant_id: str, stats: DataStatsResult) -> pb.DataStats:
    message = pb.DataStats(
        tenant_id=tenant_id,
        item_count=stats.item_count,
        user_count=stats.user_count,
        interaction_count=stats.interaction_count,
        interactions_by_type=[
            pb.InteractionTypeCount(
                interaction_type=_TYPE_TO_PROTO.get(k, pb.INTERACTION_TYPE_UNSPECIFIED),
                count=v,
            )
            for k, v in sorted(stats.by_type.items())
        ],
        category_count=stats.category_count,
        top_categories=[pb.CategoryCount(category=c, count=n) for c, n in stats.top_categories],
        density=stats.density,
        compute_time=timestamp(stats.compute_time),
        duplicate_interaction_count=stats.duplicate_interactions,
        cold_user_count=stats.cold_users,
        cold_item_count=stats.cold_items,
        problems=stats.problems,
    )
    if stats.first_time is not None:
        message.first_interaction_time.CopyFrom(timestamp(stats.first_time))
    if stats.last_time is not None:
        message.last_interaction_time.CopyFrom(timestamp(stats.last_time))
    return message


def upload_to_proto(
    upload: Upload, run: ImportRun | None = None, *, with_errors: bool = True
) -> pb.Upload:
    details = upload.details or {}
    message = pb.Upload(
        id=upload.client_upload_id or upload.id,
        tenant_id=upload.tenant_id,
        kind=_KINDS.get(upload.kind, pb.UPLOAD_KIND_UNSPECIFIED),
        state=_STATES.get(upload.status, pb.UPLOAD_STATE_UNSPECIFIED),
        format=_FORMAT_TO_PROTO.get(str(details.get("format", "")), pb.IMPORT_FORMAT_UNSPECIFIED),
        mode=_MODE_TO_PROTO.get(str(details.get("mode", "")), pb.IMPORT_MODE_UNSPECIFIED),
        validate_only=bool(details.get("validate_only", False)),
        file_name=str(details.get("file_name", "")),
        rows_total=upload.total_rows,
        rows_accepted=upload.accepted_rows,
        rows_rejected=upload.rejected_rows,
        rows_skipped=int(details.get("skipped_rows", 0)),
        content_sha256=upload.content_hash or "",
        creator=str(details.get("creator", "")),
        create_time=timestamp(upload.created_at),
    )
    if run is not None and upload.status == "processing":
        message.rows_total = run.snapshot.total
        message.rows_accepted = run.snapshot.accepted
        message.rows_rejected = run.snapshot.rejected
        message.rows_skipped = run.snapshot.skipped
    if upload.completed_at is not None:
        message.complete_time.CopyFrom(timestamp(upload.completed_at))
    quality = details.get("data_quality")
    if isinstance(quality, dict):
        message.data_quality.CopyFrom(
            data_stats_proto(upload.tenant_id, DataStatsResult.from_dict(quality))
        )
    if with_errors and "errors" in upload.__dict__:
        errors = upload.errors or []
        for error in errors[:MAX_RETURNED_ERRORS]:
            message.errors.add(
                row=int(error.get("row", 0)),
                column=str(error.get("column", "")),
                reason=str(error.get("reason", "")),
                message=str(error.get("message", "")),
                value=str(error.get("value", "")),
            )
        message.errors_truncated = int(details.get("error_count", len(errors))) > min(
            len(errors), MAX_RETURNED_ERRORS
        )
    return message


def item_to_proto(item: Item) -> pb.Item:
    message = pb.Item(
        item_id=item.item_id,
        title=item.title or "",
        category=item.category or "",
        image_url=item.image_url or "",
        attributes={str(k): str(v) for k, v in (item.attributes or {}).items()},
        update_time=timestamp(item.updated_at),
    )
    if item.price is not None:
        message.price = item.price
    return message


def _item_fields(item: pb.Item) -> dict[str, str]:
    fields = {
        **{str(k): str(v) for k, v in item.attributes.items()},
        "item_id": item.item_id,
        "title": item.title,
        "category": item.category,
        "image_url": item.image_url,
    }
    if item.HasField("price"):
        fields["price"] = repr(item.price)
    return fields


def _interaction_fields(event: pb.Interaction) -> dict[str, str]:
    fields = {
        "user_id": event.user_id,
        "item_id": event.item_id,
        "interaction_type": _TYPE_NAMES.get(event.interaction_type, ""),
        "recommendation_id": event.recommendation_id,
        "event_id": event.event_id,
    }
    if event.interaction_type not in _TYPE_NAMES:
        fields["interaction_type"] = (
            pb.InteractionType.Name(event.interaction_type)
            if (event.interaction_type in pb.InteractionType.values())
            else str(event.interaction_type)
        )
    if event.HasField("timestamp"):
        fields["timestamp"] = event.timestamp.ToDatetime(tzinfo=UTC).isoformat()
    if event.HasField("value"):
        fields["value"] = repr(event.value)
    return fields


def _options(kind: str, message: pb.ImportOptions, fmt: str | None = None) -> ImportOptions:
    return ImportOptions(
        kind=kind,  # type: ignore[arg-type]
        format=fmt or _FORMATS.get(message.format, "csv"),  # type: ignore[arg-type]
        mode=_MODES.get(message.mode, "lenient"),  # type: ignore[arg-type]
        client_upload_id=message.upload_id,
        file_name=message.file_name,
        validate_only=message.validate_only,
        unknown_item_policy=_POLICIES.get(message.unknown_item_policy, ""),  # type: ignore[arg-type]
    )


_Base: Any = contract_servicer(
    ingestion_service_pb2_grpc.IngestionServiceServicer,
    svc.DESCRIPTOR.services_by_name["IngestionService"],
    _TRACKED_IN,
)


class IngestionServicer(_Base):  # type: ignore[misc]
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._queries = Queries(ctx.sessions)
        self._importer = Importer(ctx.sessions, self._queries.data_stats)

    async def _tenant(
        self, context: Context, requested: str, scope: str, *, write: bool = False
    ) -> tuple[Principal, Tenant]:
        principal = await caller(context, self._ctx)
        tenant = await resolve_tenant(self._ctx.sessions, principal, requested, scope, write=write)
        return principal, tenant

    async def close(self) -> None:
        await self._importer.close()

    # ------------------------------------------------------------------ imports

    async def _stream_import(
        self, kind: str, requests: AsyncIterator[Any], context: Context, batch_field: str
    ) -> pb.Upload:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("payload") != "options":
            raise InvalidArgument(
                "The first message of an import stream must carry options.",
                violations=[FieldViolation("options", "must come first")],
            )
        options_message = first.options
        principal, tenant = await self._tenant(
            context, options_message.tenant_id, "data:write", write=True
        )
        payload_kind: str | None = None
        run: ImportRun | None = None
        try:
            async for request in requests:
                which = request.WhichOneof("payload")
                if which is None:
                    continue
                if which == "options":
                    raise InvalidArgument(
                        "Options may only be sent once, in the first message.",
                        violations=[FieldViolation("options", "sent twice")],
                    )
                if payload_kind is None:
                    payload_kind = which
                    fmt = None if which == "chunk" else "typed"
                    run, existing = await self._importer.start(
                        tenant, principal, _options(kind, options_message, fmt)
                    )
                    if run is None:
                        assert existing is not None
                        return upload_to_proto(existing)
                elif which != payload_kind:
                    raise InvalidArgument(
                        "Byte chunks and typed batches cannot be mixed in one import.",
                        violations=[FieldViolation(which, "mixed with " + payload_kind)],
                    )
                assert run is not None
                if which == "chunk":
                    await run.feed_bytes(request.chunk)
                elif batch_field == "items":
                    await run.feed_rows((_item_fields(i) for i in request.items.items), ["item_id"])
                else:
                    await run.feed_rows(
                        (_interaction_fields(i) for i in request.interactions.interactions),
                        ["user_id", "item_id", "interaction_type"],
                    )
        except BaseException:
            # A bad message, an error while a chunk was handled, or the stream broken
            # off while the server waited for the client's next message (client gone,
            # server stopping): roll back and free the upload id, stopping a batch
            # write still in flight.
            await _abort(run)
            raise
        if run is None:
            # Options without data: an empty file. Same answer as an empty CSV body.
            raise InvalidArgument(
                "The import has no data: send the file's bytes or row batches after options.",
                reason="INVALID_FILE",
                violations=[FieldViolation("file", "empty")],
            )
        upload = await run.finish()
        return upload_to_proto(upload)

    async def ImportItems(
        self, request_iterator: AsyncIterator[svc.ImportItemsRequest], context: Context
    ) -> pb.Upload:
        return await self._stream_import("items", request_iterator, context, "items")

    async def ImportInteractions(
        self, request_iterator: AsyncIterator[svc.ImportInteractionsRequest], context: Context
    ) -> pb.Upload:
        return await self._stream_import("interactions", request_iterator, context, "interactions")

    async def _csv_import(self, kind: str, request: Any, context: Context) -> pb.Upload:
        principal, tenant = await self._tenant(context, request.tenant_id, "data:write", write=True)
        content_type = request.body.content_type.split(";")[0].strip().lower()
        if content_type and content_type not in (
            "text/csv",
            "text/plain",
            "application/csv",
            "application/octet-stream",
            "application/vnd.ms-excel",
        ):
            raise InvalidArgument(
                f"The body must be a CSV file (Content-Type text/csv), not {content_type}.",
                reason="INVALID_FILE",
                violations=[FieldViolation("body", "Content-Type must be text/csv")],
            )
        if not request.body.data:
            raise InvalidArgument(
                "The body is empty: send the CSV file as the request body.",
                reason="INVALID_FILE",
                violations=[FieldViolation("body", "empty")],
            )
        options = ImportOptions(
            kind=kind,  # type: ignore[arg-type]
            format="csv",
            mode=_MODES.get(request.mode, "lenient"),  # type: ignore[arg-type]
            client_upload_id=request.upload_id,
            file_name=request.file_name,
            validate_only=request.validate_only,
            unknown_item_policy=_POLICIES.get(  # type: ignore[arg-type]
                int(getattr(request, "unknown_item_policy", 0)), ""
            ),
        )
        run, existing = await self._importer.start(tenant, principal, options)
        if run is None:
            assert existing is not None
            return upload_to_proto(existing)
        data = request.body.data
        step = 1 << 20
        try:
            for start in range(0, len(data), step):
                await run.feed_bytes(data[start : start + step])
        except BaseException:
            await _abort(run)
            raise
        return upload_to_proto(await run.finish())

    async def ImportItemsCsv(
        self, request: svc.ImportItemsCsvRequest, context: Context
    ) -> pb.Upload:
        return await self._csv_import("items", request, context)

    async def ImportInteractionsCsv(
        self, request: svc.ImportInteractionsCsvRequest, context: Context
    ) -> pb.Upload:
        return await self._csv_import("interactions", request, context)

    # ------------------------------------------------------------------ uploads

    async def GetUpload(self, request: svc.GetUploadRequest, context: Context) -> pb.Upload:
        _, tenant = await self._tenant(context, request.tenant_id, "data:read")
        upload = await self._queries.upload(tenant.id, request.upload_id)
        return upload_to_proto(upload, self._importer.live.get(upload.id))

    async def ListUploads(
        self, request: svc.ListUploadsRequest, context: Context
    ) -> svc.ListUploadsResponse:
        _, tenant = await self._tenant(context, request.tenant_id, "data:read")
        rows, token = await self._queries.uploads(
            tenant.id,
            page_size=request.page_size,
            page_token=request.page_token,
            kind=_KIND_FILTER.get(request.kind, ""),
            state=_STATE_FILTER.get(request.state, ""),
        )
        return svc.ListUploadsResponse(
            uploads=[
                upload_to_proto(u, self._importer.live.get(u.id), with_errors=False) for u in rows
            ],
            next_page_token=token,
        )

    async def GetUploadReport(
        self, request: svc.GetUploadReportRequest, context: Context
    ) -> httpbody_pb2.HttpBody:
        _, tenant = await self._tenant(context, request.tenant_id, "data:read")
        data = await self._queries.report_csv(tenant.id, request.upload_id)
        return httpbody_pb2.HttpBody(content_type="text/csv; charset=utf-8", data=data)

    # ------------------------------------------------------------------ events

    async def TrackEvents(
        self, request: svc.TrackEventsRequest, context: Context
    ) -> svc.TrackEventsResponse:
        _, tenant = await self._tenant(context, request.tenant_id, "events:write", write=True)
        result = await track_events(self._ctx.sessions, tenant.id, request.events)
        return svc.TrackEventsResponse(
            accepted_count=result.accepted,
            errors=[
                svc.EventError(index=e.index, field=e.field, reason=e.reason, message=e.message)
                for e in result.errors
            ],
        )

    # ------------------------------------------------------------------ reports

    async def GetDataStats(
        self, request: svc.GetDataStatsRequest, context: Context
    ) -> pb.DataStats:
        _, tenant = await self._tenant(context, request.tenant_id, "data:read")
        stats = await self._queries.data_stats(tenant.id)
        return data_stats_proto(tenant.id, stats)

    async def GetAnalytics(
        self, request: svc.GetAnalyticsRequest, context: Context
    ) -> pb.Analytics:
        _, tenant = await self._tenant(context, request.tenant_id, "data:read")
        time_range = request.time_range
        result = await self._queries.analytics(
            tenant.id,
            start=time_range.start_time.ToDatetime(tzinfo=UTC)
            if time_range.HasField("start_time")
            else None,
            end=time_range.end_time.ToDatetime(tzinfo=UTC)
            if time_range.HasField("end_time")
            else None,
            time_zone=request.time_zone,
            popular_limit=request.popular_items_limit,
        )
        message = pb.Analytics(
            tenant_id=tenant.id,
            time_zone=result.time_zone,
            recommendations_served=result.served,
            impressions=result.impressions,
            clicks=result.clicks,
            click_through_rate=result.ctr,
            conversions=result.conversions,
            conversion_rate=result.conversion_rate,
            attributed_revenue=result.revenue,
            active_users=result.active_users,
            active_users_approximate=result.active_users_approximate,
            popular_items=[
                pb.PopularItemStat(
                    item_id=p.item_id,
                    title=p.title,
                    category=p.category,
                    interaction_count=p.interactions,
                    impressions=p.impressions,
                    clicks=p.clicks,
                )
                for p in result.popular
            ],
            daily=[
                pb.DailyMetrics(
                    date=day,
                    recommendations_served=m.served,
                    impressions=m.impressions,
                    clicks=m.clicks,
                    conversions=m.conversions,
                    interactions=m.interactions,
                    active_users=m.active_users,
                    attributed_revenue=m.revenue,
                )
                for day, m in result.daily
            ],
        )
        message.time_range.start_time.CopyFrom(timestamp(result.start))
        message.time_range.end_time.CopyFrom(timestamp(result.end))
        return message

    # ------------------------------------------------------------------ catalog

    async def GetItem(self, request: svc.GetItemRequest, context: Context) -> pb.Item:
        _, tenant = await self._tenant(context, request.tenant_id, "data:read")
        return item_to_proto(await self._queries.item(tenant.id, request.item_id))

    async def ListItems(
        self, request: svc.ListItemsRequest, context: Context
    ) -> svc.ListItemsResponse:
        _, tenant = await self._tenant(context, request.tenant_id, "data:read")
        rows, token, total = await self._queries.items(
            tenant.id,
            page_size=request.page_size,
            page_token=request.page_token,
            category=request.category,
            query=request.query,
        )
        return svc.ListItemsResponse(
            items=[item_to_proto(i) for i in rows], next_page_token=token, total_size=total
        )


async def _abort(run: ImportRun | None) -> None:
    if run is not None:
        await asyncio.shield(run.abort())


def build_module(ctx: ServiceContext) -> WorkingModule:
    """The service, with the bus consumers that store tracked events and impressions."""
    servicer = IngestionServicer(ctx)

    def register(server: grpc.aio.Server) -> None:
        ingestion_service_pb2_grpc.add_IngestionServiceServicer_to_server(servicer, server)

    return WorkingModule(
        name="ingestion",
        names=[svc.DESCRIPTOR.services_by_name["IngestionService"].full_name],
        register=register,
        background=consumers(ctx.settings, ctx.sessions),
        on_stop=[servicer.close],
    )


def _now() -> datetime:
    return datetime.now(UTC)
