"""Tenant portal: dashboard, data uploads, API keys, analytics, models, test, settings.

Every request leaves ``tenant_id`` empty: the services take the tenant from the
caller's token, so nothing on these pages can name (or see) another tenant.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from google.api import httpbody_pb2  # type: ignore[import-untyped]
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from nicegui import events, ui

from embrec.ingestion.v1 import ingestion_service_pb2 as ing_pb
from embrec.ingestion.v1 import resources_pb2 as ing_res
from embrec.platform.v1 import platform_service_pb2 as platform_pb
from embrec.retrieval.v1 import retrieval_service_pb2 as ret_pb
from embrec.tenant.v1 import api_key_service_pb2 as key_pb
from embrec.tenant.v1 import resources_pb2 as tenant_res
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb

from .. import session
from ..client import UPLOAD_TIMEOUT_SECONDS, Api, ApiError
from ..formatting import enum_label, percent, when
from ..layout import empty_state, error_banner, floating_dialog, frame, guarded, require
from . import account, models_view

__all__ = ["MAX_UPLOAD_BYTES", "register"]

#: The services accept 64 MiB per message; a CSV above that needs the streaming API.
MAX_UPLOAD_BYTES = 60 * 1024 * 1024

_KINDS = {
    "items": ("Catalog (items)", "item_id, title, category, price, image_url"),
    "interactions": ("Interactions", "user_id, item_id, interaction_type, timestamp"),
}


def _stamp(moment: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(moment)
    return out


def _kpi(label: str, value: str) -> None:
    with ui.card().classes("min-w-[10rem] grow"):
        ui.label(label).classes("text-subtitle2 text-grey-8")
        ui.label(value).classes("text-h5 kpi-value")


async def _usage_panel(api: Api) -> None:
    """API calls, errors and the cache hit rate of the last 30 days, with a daily chart."""
    now = datetime.now(UTC)
    try:
        usage = await api.call(
            api.platform.GetUsage,
            platform_pb.GetUsageRequest(
                time_range={
                    "start_time": _stamp(now - timedelta(days=30)),
                    "end_time": _stamp(now),
                },
                granularity=platform_pb.USAGE_GRANULARITY_DAY,
            ),
        )
    except ApiError as error:
        error_banner(error, what="API usage")
        return
    totals = usage.totals
    with ui.row().classes("w-full gap-4"):
        _kpi("API calls (30 d)", f"{totals.api_calls:,}")
        _kpi(
            "Cache hit rate (30 d)",
            percent(totals.cache_hit_rate) if totals.recommendations else "no requests yet",
        )
        _kpi("Server error rate (30 d)", percent(totals.error_rate))
    if not totals.api_calls:
        empty_state("No API calls yet: create an API key and call the recommendations API.")
        return
    ui.echart(
        {
            "tooltip": {"trigger": "axis"},
            "legend": {},
            "xAxis": {
                "type": "category",
                "data": [b.start_time.ToDatetime().date().isoformat() for b in usage.series],
            },
            "yAxis": {"type": "value"},
            "series": [
                {
                    "name": name,
                    "type": "bar" if field == "api_calls" else "line",
                    "data": [getattr(b.counts, field) for b in usage.series],
                }
                for name, field in (
                    ("API calls", "api_calls"),
                    ("Recommendations", "recommendations"),
                    ("Server errors", "server_errors"),
                )
            ],
        }
    ).classes("w-full h-64 usage-chart").mark("usage-chart")


def _upload_report(upload: ing_res.Upload) -> None:
    """The validation report of one upload: counts and the first rejected rows."""
    state = enum_label(ing_res.UploadState.Name(upload.state), "UPLOAD_STATE_")
    with ui.card().classes("w-full upload-report"):
        ui.label(f"{upload.file_name or upload.id}: {state}").classes("text-subtitle1")
        ui.label(
            f"{upload.rows_total} rows: {upload.rows_accepted} accepted, "
            f"{upload.rows_rejected} rejected, {upload.rows_skipped} skipped"
        )
        if upload.errors:
            ui.table(
                columns=[
                    {"name": k, "label": k.capitalize(), "field": k, "align": "left"}
                    for k in ("row", "column", "message", "value")
                ],
                rows=[
                    {"row": e.row, "column": e.column, "message": e.message, "value": e.value}
                    for e in upload.errors
                ],
                pagination=10,
            ).classes("w-full")
            if upload.errors_truncated:
                ui.label("More rows were rejected than shown here.").classes("text-caption")
        quality = upload.data_quality
        for problem in quality.problems:
            ui.label(f"Data quality: {problem}").classes("text-warning")


def register() -> None:
    @ui.page("/app")
    async def dashboard() -> None:
        who = require(tenant=True)
        if who is None:
            return
        with frame("Dashboard", who):
            api = session.api()
            with ui.row().classes("w-full gap-4"):
                try:
                    stats = await api.call(api.ingestion.GetDataStats, ing_pb.GetDataStatsRequest())
                    _kpi("Items", f"{stats.item_count:,}")
                    _kpi("Users", f"{stats.user_count:,}")
                    _kpi("Interactions", f"{stats.interaction_count:,}")
                except ApiError as error:
                    error_banner(error, what="Data figures")
                try:
                    now = datetime.now(UTC)
                    analytics = await api.call(
                        api.ingestion.GetAnalytics,
                        ing_pb.GetAnalyticsRequest(
                            time_range={
                                "start_time": _stamp(now - timedelta(days=30)),
                                "end_time": _stamp(now),
                            }
                        ),
                    )
                    _kpi("Recommendations served (30 d)", f"{analytics.recommendations_served:,}")
                    _kpi("Click-through rate (30 d)", percent(analytics.click_through_rate))
                except ApiError as error:
                    error_banner(error, what="Analytics")
            await _usage_panel(api)
            with ui.card().classes("w-full"):
                ui.label("Recent uploads").classes("text-h6")
                try:
                    uploads = await api.call(
                        api.ingestion.ListUploads, ing_pb.ListUploadsRequest(page_size=5)
                    )
                except ApiError as error:
                    error_banner(error)
                else:
                    if not uploads.uploads:
                        empty_state("No uploads yet: start on the Data page.")
                    for upload in uploads.uploads:
                        state = enum_label(ing_res.UploadState.Name(upload.state), "UPLOAD_STATE_")
                        ui.label(
                            f"{when(upload.create_time)} · {upload.file_name} · {state} · "
                            f"{upload.rows_accepted} rows"
                        )

    @ui.page("/app/data")
    async def data() -> None:
        who = require(tenant=True)
        if who is None:
            return
        with frame("Data", who):
            history = ui.column().classes("w-full")

            async def show_history() -> None:
                history.clear()
                api = session.api()
                with history:
                    ui.label("Upload history").classes("text-h6")
                    try:
                        reply = await api.call(
                            api.ingestion.ListUploads, ing_pb.ListUploadsRequest(page_size=20)
                        )
                    except ApiError as error:
                        error_banner(error, what="Could not list uploads")
                        return
                    if not reply.uploads:
                        empty_state("No uploads yet.")
                        return
                    ui.table(
                        columns=[
                            {"name": k, "label": k.capitalize(), "field": k, "align": "left"}
                            for k in ("time", "kind", "file", "state", "accepted", "rejected")
                        ],
                        rows=[
                            {
                                "id": u.id,
                                "time": when(u.create_time),
                                "kind": enum_label(ing_res.UploadKind.Name(u.kind), "UPLOAD_KIND_"),
                                "file": u.file_name,
                                "state": enum_label(
                                    ing_res.UploadState.Name(u.state), "UPLOAD_STATE_"
                                ),
                                "accepted": u.rows_accepted,
                                "rejected": u.rows_rejected,
                            }
                            for u in reply.uploads
                        ],
                        row_key="id",
                    ).classes("w-full")

            with ui.row().classes("w-full gap-4 items-stretch"):
                for kind, (title, columns) in _KINDS.items():
                    with ui.card().classes("grow min-w-[18rem]"):
                        ui.label(title).classes("text-h6")
                        ui.label(f"CSV columns: {columns}").classes("text-caption")
                        report = ui.column().classes("w-full")
                        busy = ui.row().classes("items-center")
                        busy.set_visibility(False)
                        with busy:
                            ui.spinner()
                            ui.label("Validating and importing…")

                        async def received(
                            event: events.UploadEventArguments,
                            kind: str = kind,
                            report: ui.column = report,
                            busy: ui.row = busy,
                        ) -> None:
                            report.clear()
                            name = event.file.name
                            if not name.lower().endswith(".csv"):
                                with report:
                                    ui.label(f"{name} is not a .csv file.").classes("text-negative")
                                return
                            content = await event.file.read()
                            busy.set_visibility(True)
                            try:
                                upload = await _import_csv(kind, name, content)
                            except ApiError as error:
                                with report:
                                    error_banner(error, what=f"{name} was not imported")
                                return
                            finally:
                                busy.set_visibility(False)
                            with report:
                                _upload_report(upload)
                            await show_history()

                        ui.upload(
                            label=f"Drop a {kind} CSV here or click",
                            auto_upload=True,
                            max_file_size=MAX_UPLOAD_BYTES,
                            on_upload=received,
                            on_rejected=lambda: ui.notify(
                                "That file is too large for the console (60 MiB); use the "
                                "streaming import API.",
                                type="negative",
                            ),
                        ).props(f"accept=.csv,text/csv data-kind={kind}").classes(
                            f"w-full upload-{kind}"
                        ).mark(f"upload-{kind}")
            await show_history()

    @ui.page("/app/keys")
    async def keys() -> None:
        who = require(tenant=True)
        if who is None:
            return
        with frame("API keys", who):
            with ui.card().classes("w-full"):
                ui.label("Create an API key").classes("text-h6")
                with ui.row().classes("items-end gap-2 w-full"):
                    name = ui.input(
                        "Name", validation={"A name is required": lambda v: bool(v.strip())}
                    ).classes("min-w-[16rem]")
                    # Days ahead; the service accepts up to 730.
                    choices = {
                        "never": "Never",
                        "30": "In 30 days",
                        "90": "In 90 days",
                        "365": "In 1 year",
                    }
                    expiry = (
                        ui.select(choices, value="never", label="Expires")
                        .classes("min-w-[10rem]")
                        .mark("key-expiry")
                    )
                    ui.button("Create API key", on_click=guarded(lambda: create()))
                secret_box = ui.column().classes("w-full")
            listing = ui.column().classes("w-full")
            show_revoked = ui.checkbox("Show revoked and expired keys", on_change=lambda: load())

            async def create() -> None:
                if not name.validate():
                    return
                api = session.api()
                wanted = tenant_res.ApiKey(name=name.value.strip())
                if expiry.value != "never":
                    wanted.expire_time.CopyFrom(
                        _stamp(datetime.now(UTC) + timedelta(days=int(expiry.value)))
                    )
                reply = await api.call(
                    api.api_keys.CreateApiKey, key_pb.CreateApiKeyRequest(api_key=wanted)
                )
                secret = reply.secret
                name.value = ""
                expiry.value = "never"
                name.error = None  # emptied on purpose: not a mistake to flag
                secret_box.clear()
                with secret_box, ui.card().classes("w-full bg-green-1"):
                    ui.label(
                        "Copy this key now: it is shown once and cannot be retrieved later."
                    ).classes("text-weight-bold")
                    if reply.api_key.HasField("expire_time"):
                        ui.label(
                            f"It stops working at {when(reply.api_key.expire_time)}; "
                            "create a new key before then."
                        )
                    with ui.row().classes("items-center no-wrap w-full"):
                        ui.input(value=secret).props("readonly").classes(
                            "api-key-secret grow"
                        ).mark("api-key-secret")
                        ui.button("Copy", icon="content_copy", on_click=lambda: _copy(secret))
                    ui.button("Done", on_click=secret_box.clear).props("flat")
                await load()

            async def revoke(key_id: str, label: str) -> None:
                with floating_dialog() as dialog, ui.card():
                    ui.label(f"Revoke '{label}'?").classes("text-h6")
                    ui.label("Applications using it stop working at once.")

                    async def confirm() -> None:
                        api = session.api()
                        await api.call(
                            api.api_keys.RevokeApiKey,
                            key_pb.RevokeApiKeyRequest(
                                api_key_id=key_id, reason="revoked in the console"
                            ),
                        )
                        dialog.close()
                        ui.notify(f"Revoked {label}", type="positive")
                        await load()

                    with ui.row():
                        ui.button("Revoke", color="negative", on_click=guarded(confirm)).mark(
                            "revoke-confirm"
                        )
                        ui.button("Cancel", on_click=dialog.close).props("flat")
                dialog.open()

            async def load() -> None:
                listing.clear()
                api = session.api()
                try:
                    reply = await api.call(
                        api.api_keys.ListApiKeys,
                        key_pb.ListApiKeysRequest(
                            page_size=100, show_revoked=bool(show_revoked.value)
                        ),
                    )
                except ApiError as error:
                    with listing:
                        error_banner(error, what="Could not list API keys")
                    return
                with listing:
                    if not reply.api_keys:
                        empty_state("No API keys yet.", "key")
                    now = datetime.now(UTC)
                    for key in reply.api_keys:
                        expires = (
                            key.expire_time.ToDatetime(tzinfo=UTC)
                            if key.HasField("expire_time")
                            else None
                        )
                        expired = expires is not None and expires <= now
                        with (
                            ui.card().classes("w-full api-key-row"),
                            ui.row().classes("items-center gap-4 w-full"),
                        ):
                            ui.label(key.name).classes("text-weight-bold")
                            ui.label(f"{key.prefix}…").classes("text-mono")
                            ui.label(f"created {when(key.create_time)}").classes("text-caption")
                            used = when(key.last_used_time) or "never"
                            ui.label(f"last used {used}").classes("text-caption")
                            if expires is not None and not expired:
                                ui.label(f"expires {when(key.expire_time)}").classes(
                                    "text-caption"
                                ).mark("key-expires")
                            ui.space()
                            if key.revoke_time.seconds:
                                ui.badge("revoked", color="grey")
                            elif expired:
                                ui.badge(f"expired {when(key.expire_time)}", color="grey").mark(
                                    "key-expired"
                                )
                            else:
                                ui.button(
                                    "Revoke",
                                    on_click=lambda k=key: revoke(k.id, k.name),
                                ).props("flat color=negative")

            await load()

    @ui.page("/app/analytics")
    async def analytics() -> None:
        who = require(tenant=True)
        if who is None:
            return
        with frame("Analytics", who):
            today = date.today()
            picked = {"from": (today - timedelta(days=29)).isoformat(), "to": today.isoformat()}
            with ui.row().classes("items-center gap-2"):
                ui.label("Period:")
                range_input = ui.input(value=f"{picked['from']} – {picked['to']}").props("readonly")
                with ui.menu() as menu:
                    ui.date(value=dict(picked), on_change=lambda e: changed(e.value)).props("range")
                range_input.on("click", menu.open)
            body = ui.column().classes("w-full")

            async def changed(value: object) -> None:
                if isinstance(value, dict) and value.get("from") and value.get("to"):
                    picked["from"] = str(value["from"]).replace("/", "-")
                    picked["to"] = str(value["to"]).replace("/", "-")
                    range_input.value = f"{picked['from']} – {picked['to']}"
                    await show()

            async def show() -> None:
                body.clear()
                start = datetime.fromisoformat(picked["from"]).replace(tzinfo=UTC)
                end = datetime.fromisoformat(picked["to"]).replace(tzinfo=UTC) + timedelta(days=1)
                api = session.api()
                try:
                    reply = await api.call(
                        api.ingestion.GetAnalytics,
                        ing_pb.GetAnalyticsRequest(
                            time_range={"start_time": _stamp(start), "end_time": _stamp(end)},
                            popular_items_limit=10,
                        ),
                    )
                except ApiError as error:
                    with body:
                        error_banner(error, what="Could not load analytics")
                    return
                with body:
                    with ui.row().classes("w-full gap-4"):
                        _kpi("Recommendations served", f"{reply.recommendations_served:,}")
                        _kpi("Click-through rate", percent(reply.click_through_rate))
                        _kpi("Conversion rate", percent(reply.conversion_rate))
                        _kpi("Active users", f"{reply.active_users:,}")
                    if reply.daily:
                        ui.echart(
                            {
                                "tooltip": {"trigger": "axis"},
                                "legend": {},
                                "xAxis": {
                                    "type": "category",
                                    "data": [d.date for d in reply.daily],
                                },
                                "yAxis": {"type": "value"},
                                "series": [
                                    {
                                        "name": name,
                                        "type": "line",
                                        "data": [getattr(d, field) for d in reply.daily],
                                    }
                                    for name, field in (
                                        ("Recommendations", "recommendations_served"),
                                        ("Clicks", "clicks"),
                                        ("Conversions", "conversions"),
                                    )
                                ],
                            }
                        ).classes("w-full h-72")
                    else:
                        empty_state("No activity in this period.", "insights")
                    ui.label("Popular items").classes("text-h6")
                    if not reply.popular_items:
                        empty_state("No item interactions in this period.")
                    else:
                        ui.table(
                            columns=[
                                {
                                    "name": k,
                                    "label": k.replace("_", " ").capitalize(),
                                    "field": k,
                                    "align": "left",
                                }
                                for k in ("item_id", "title", "category", "interactions", "clicks")
                            ],
                            rows=[
                                {
                                    "item_id": p.item_id,
                                    "title": p.title,
                                    "category": p.category,
                                    "interactions": p.interaction_count,
                                    "clicks": p.clicks,
                                }
                                for p in reply.popular_items
                            ],
                            row_key="item_id",
                        ).classes("w-full")

            await show()

    @ui.page("/app/models")
    async def models() -> None:
        who = require(tenant=True)
        if who is None:
            return
        with frame("Models", who):
            await models_view.models_panel(tenant_id="")

    @ui.page("/app/test")
    async def test_page() -> None:
        who = require(tenant=True)
        if who is None:
            return
        with frame("Test recommendations", who):
            with ui.card().classes("w-full"):
                with ui.row().classes("items-end gap-2 w-full"):
                    user_id = ui.input(
                        "User id",
                        value="user_123",
                        validation={"A user id is required": lambda v: bool(v.strip())},
                    )
                    count = ui.number("Count", value=10, min=1, max=100, precision=0)
                    category = ui.input("Category (optional)")
                    min_price = ui.number("Min price", min=0)
                    max_price = ui.number("Max price", min=0)
                    exclude_seen = ui.checkbox("Exclude seen", value=True)
                ui.button("Get recommendations", icon="auto_awesome", on_click=lambda: recommend())
            results = ui.column().classes("w-full")

            async def recommend() -> None:
                results.clear()
                if not user_id.validate():
                    return
                if (
                    min_price.value is not None
                    and max_price.value is not None
                    and min_price.value > max_price.value
                ):
                    ui.notify("Min price is above max price.", type="warning")
                    return
                filters = ret_pb.RecommendationFilters(
                    category=(category.value or "").strip(),
                    exclude_seen=bool(exclude_seen.value),
                )
                if min_price.value is not None:
                    filters.min_price = float(min_price.value)
                if max_price.value is not None:
                    filters.max_price = float(max_price.value)
                with results:
                    spinner = ui.spinner()
                api = session.api()
                try:
                    reply = await api.call(
                        api.retrieval.Recommend,
                        ret_pb.RecommendRequest(
                            user_id=user_id.value.strip(),
                            count=int(count.value or 10),
                            filters=filters,
                        ),
                    )
                except ApiError as error:
                    results.clear()
                    with results:
                        error_banner(error, what="No recommendations")
                    return
                spinner.delete()
                with results:
                    caption = f"model {reply.model_version or '—'}"
                    if reply.fallback:
                        reason = enum_label(
                            ret_pb.FallbackReason.Name(reply.fallback_reason), "FALLBACK_REASON_"
                        )
                        caption += f" · fallback to popular items ({reason})"
                    ui.label(caption).classes("text-caption recommendation-caption")
                    if not reply.items:
                        empty_state("No items match these filters.")
                    with ui.grid().classes("w-full grid-cols-1 sm:grid-cols-2 lg:grid-cols-4"):
                        for item in reply.items:
                            with ui.card().classes("recommended-item"):
                                if item.image_url:
                                    image = ui.image(item.image_url).classes("h-32 w-full")
                                    image.props("fit=contain")
                                    # An unreachable image (a catalog's stale URL, the
                                    # sample data's example.com) reads as such, not blank.
                                    image.add_slot(
                                        "error",
                                        '<div class="absolute-full flex flex-center '
                                        'bg-grey-2 text-grey-7">Image unavailable</div>',
                                    )
                                ui.label(item.title or item.item_id).classes("text-weight-bold")
                                ui.label(f"{item.item_id} · {item.category}").classes(
                                    "text-caption"
                                )
                                price = f" · {item.price:.2f}" if item.HasField("price") else ""
                                ui.label(f"score {item.score:.4f}{price}")

    @ui.page("/app/settings")
    async def settings() -> None:
        who = require(tenant=True)
        if who is None:
            return
        with frame("Settings", who):
            with ui.card().classes("w-full"):
                ui.label("Profile").classes("text-h6")
                ui.label(f"E-mail: {who.email}")
                ui.label(f"Name: {who.name or '—'}")
                ui.label(f"Role: {who.role.replace('_', ' ')}")
            account.password_form(who)
            with ui.card().classes("w-full"):
                ui.label("Tenant").classes("text-h6")
                api = session.api()
                try:
                    tenant = await api.call(api.tenants.GetTenant, tenant_pb.GetTenantRequest())
                except ApiError as error:
                    error_banner(error, what="Could not load the tenant")
                    return
                ui.label(f"Slug: {tenant.slug} · plan: {tenant.plan}")
                name = ui.input(
                    "Company name",
                    value=tenant.name,
                    validation={"Required": lambda v: bool(v.strip())},
                )
                email = ui.input(
                    "Contact e-mail",
                    value=tenant.email,
                    validation={"An e-mail": lambda v: "@" in v},
                )

                async def save() -> None:
                    if not (name.validate() and email.validate()):
                        return
                    api = session.api()
                    await api.call(
                        api.tenants.UpdateTenant,
                        tenant_pb.UpdateTenantRequest(
                            tenant=tenant_res.Tenant(
                                id=tenant.id, name=name.value.strip(), email=email.value.strip()
                            ),
                            update_mask=FieldMask(paths=["name", "email"]),
                        ),
                    )
                    ui.notify("Saved", type="positive")

                ui.button("Save", on_click=guarded(save))


def _copy(secret: str) -> None:
    ui.clipboard.write(secret)
    ui.notify("Copied to the clipboard")


async def _import_csv(kind: str, name: str, content: bytes) -> ing_res.Upload:
    api = session.api()
    body = httpbody_pb2.HttpBody(content_type="text/csv", data=content)
    if kind == "items":
        return await api.call(
            api.ingestion.ImportItemsCsv,
            ing_pb.ImportItemsCsvRequest(
                body=body, file_name=name, mode=ing_res.IMPORT_MODE_LENIENT
            ),
            timeout=UPLOAD_TIMEOUT_SECONDS,
        )
    return await api.call(
        api.ingestion.ImportInteractionsCsv,
        ing_pb.ImportInteractionsCsvRequest(
            body=body, file_name=name, mode=ing_res.IMPORT_MODE_LENIENT
        ),
        timeout=UPLOAD_TIMEOUT_SECONDS,
    )
