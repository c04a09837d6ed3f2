"""Admin back office: dashboard, tenants, models, support, monitoring, audit logs.

Only platform admins see these pages; every call carries the admin's own token, so
the services decide (and audit) what each action may do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from nicegui import ui

from embrec.audit.v1 import audit_service_pb2 as audit_pb
from embrec.audit.v1 import resources_pb2 as audit_res
from embrec.common.v1 import common_pb2
from embrec.ingestion.v1 import ingestion_service_pb2 as ing_pb
from embrec.platform.v1 import platform_service_pb2 as platform_pb
from embrec.tenant.v1 import auth_service_pb2 as auth_pb
from embrec.tenant.v1 import resources_pb2 as tenant_res
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.training.v1 import resources_pb2 as train_res
from embrec.training.v1 import training_service_pb2 as train_pb

from .. import session
from ..client import Api, ApiError
from ..formatting import percent, when
from ..health import TenantFacts, health_report, platform_alerts, score_tenant
from ..layout import (
    empty_state,
    error_banner,
    floating_dialog,
    frame,
    guarded,
    require,
    show_error,
)
from . import models_view

__all__ = ["register"]

PAGE_SIZE = 20
_STATUS = {
    "Any status": tenant_res.TENANT_STATUS_UNSPECIFIED,
    "Active": tenant_res.TENANT_STATUS_ACTIVE,
    "Suspended": tenant_res.TENANT_STATUS_SUSPENDED,
    "Deleted": tenant_res.TENANT_STATUS_DELETED,
}
_STATUS_LABEL = {value: label for label, value in _STATUS.items()}
_OUTCOMES = {
    "Any outcome": audit_res.AUDIT_OUTCOME_UNSPECIFIED,
    "Success": audit_res.AUDIT_OUTCOME_SUCCESS,
    "Failure": audit_res.AUDIT_OUTCOME_FAILURE,
}


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


T = TypeVar("T")

_HOURLY = platform_pb.USAGE_GRANULARITY_HOUR
_DAILY = platform_pb.USAGE_GRANULARITY_DAY
#: Per-tenant scoring makes up to four calls per tenant; a page of tenants at once
#: would queue dozens of calls on the services, so a few tenants are fetched at a time.
_SCORING_CONCURRENCY = 5
NO_CALLS = "No API calls in this period yet"


async def _try(call: Awaitable[T]) -> T | ApiError:
    """The reply, or the ApiError as a value: one failed figure must not sink the page."""
    try:
        return await call
    except ApiError as error:
        return error


def _usage_request(
    tenant_id: str,
    *,
    hours: int = 0,
    days: int = 0,
    granularity: platform_pb.UsageGranularity = _HOURLY,
) -> platform_pb.GetUsageRequest:
    """Usage up to now; the service rounds the range out to whole UTC hours."""
    now = datetime.now(UTC)
    return platform_pb.GetUsageRequest(
        tenant_id=tenant_id,
        time_range=common_pb2.TimeRange(
            start_time=_timestamp(now - timedelta(hours=hours, days=days)),
            end_time=_timestamp(now),
        ),
        granularity=granularity,
    )


def _kpi(label: str, value: str, caption: str = "") -> None:
    with ui.card().classes("min-w-[10rem] grow"):
        ui.label(label).classes("text-subtitle2 text-grey-8")
        ui.label(value).classes("text-h5 kpi-value")
        if caption:
            ui.label(caption).classes("text-caption")


def _kpi_from(label: str, reply: T | ApiError, value: Callable[[T], str]) -> None:
    """A KPI card, or the same card saying why its figure is missing."""
    if isinstance(reply, ApiError):
        with ui.card().classes("min-w-[10rem] grow"):
            ui.label(label).classes("text-subtitle2 text-grey-8")
            error_banner(reply)
        return
    _kpi(label, value(reply))


def _usage_chart(usage: platform_pb.Usage, series: Sequence[tuple[str, str]]) -> None:
    """A line per counter of the usage series, one point per hour or day."""
    pattern = "%H:00" if usage.granularity == _HOURLY else "%d %b"
    labels = [b.start_time.ToDatetime().strftime(pattern) for b in usage.series]
    ui.echart(
        {
            "tooltip": {"trigger": "axis"},
            "legend": {},
            "grid": {"left": 48, "right": 16},
            "xAxis": {"type": "category", "data": labels},
            "yAxis": {"type": "value", "minInterval": 1},
            "series": [
                {
                    "name": name,
                    "type": "line",
                    "data": [getattr(b.counts, field) for b in usage.series],
                }
                for name, field in series
            ],
        }
    ).classes("w-full h-72")


def _latency(ms: float, over: bool = False) -> str:
    """A percentile as what it is: the upper bound of a histogram bucket."""
    if over:
        return f"> {ms:.0f} ms"
    return f"≤ {ms:.0f} ms" if ms else "—"


def _short_service(name: str) -> str:
    """'embrec.retrieval.v1.RetrievalService' → 'RetrievalService'."""
    return name.rsplit(".", 1)[-1]


def _columns(*names: tuple[str, str]) -> list[dict[str, object]]:
    return [
        {"name": key, "label": label, "field": key, "align": "left", "sortable": True}
        for key, label in names
    ]


def _service_rows(usage: platform_pb.Usage) -> list[dict[str, object]]:
    totals: dict[str, list[float]] = {}
    for m in usage.methods:
        row = totals.setdefault(m.service, [0, 0, 0, 0.0])
        row[0] += m.counts.api_calls
        row[1] += m.counts.client_errors
        row[2] += m.counts.server_errors
        row[3] += m.counts.mean_latency_ms * m.counts.api_calls
    busiest = sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
    return [
        {
            "service": _short_service(service),
            "calls": int(calls),
            "client_errors": int(client),
            "server_errors": int(server),
            "error_rate": percent(server / calls if calls else 0.0),
            "mean_latency": f"{weighted / calls:.1f} ms" if calls else "—",
        }
        for service, (calls, client, server, weighted) in busiest
    ]


def _method_rows(usage: platform_pb.Usage) -> list[dict[str, object]]:
    methods = sorted(usage.methods, key=lambda m: (-m.counts.api_calls, m.service, m.method))
    return [
        {
            "id": f"{m.service}/{m.method}",
            "service": _short_service(m.service),
            "method": m.method,
            "calls": m.counts.api_calls,
            "client_errors": m.counts.client_errors,
            "server_errors": m.counts.server_errors,
            "error_rate": percent(m.counts.error_rate),
            "p50": _latency(m.p50_latency_ms),
            "p95": _latency(m.p95_latency_ms),
            "p99": _latency(m.p99_latency_ms, m.latency_over_last_bound),
        }
        for m in methods
    ]


def _health_parts(
    reply: platform_pb.GetHealthResponse | ApiError,
) -> tuple[str, str, list[platform_pb.ComponentHealth]]:
    """(status or "", error message, components reported) from GetHealth's answer."""
    if not isinstance(reply, ApiError):
        return reply.status, "", []
    report = health_report(reply.details)
    return "", reply.message, list(report.components) if report else []


async def _tenant_facts(api: Api, tenant_id: str, now: datetime) -> TenantFacts | ApiError:
    """What the health score needs about one tenant; the first failed call otherwise."""
    stats, usage, deployments = await asyncio.gather(
        _try(api.call(api.ingestion.GetDataStats, ing_pb.GetDataStatsRequest(tenant_id=tenant_id))),
        _try(api.call(api.platform.GetUsage, _usage_request(tenant_id, hours=24))),
        _try(
            api.call(
                api.training.ListDeployments,
                train_pb.ListDeploymentsRequest(tenant_id=tenant_id, page_size=20),
            )
        ),
    )
    if isinstance(stats, ApiError):
        return stats
    if isinstance(usage, ApiError):
        return usage
    if isinstance(deployments, ApiError):
        return deployments
    last = (
        stats.last_interaction_time.ToDatetime(UTC)
        if stats.HasField("last_interaction_time")
        else None
    )
    facts = TenantFacts(
        last_interaction=last,
        api_calls=usage.totals.api_calls,
        server_errors=usage.totals.server_errors,
    )
    active = next(
        (
            d
            for d in deployments.deployments
            if d.state == train_res.DEPLOYMENT_STATE_ACTIVE and d.traffic_split
        ),
        None,
    )
    if active is None:
        return facts
    # The version with the most traffic is the one the tenant's users mostly see.
    version = max(active.traffic_split, key=lambda split: split.percent).model_version
    model = await _try(
        api.call(
            api.training.GetModel,
            train_pb.GetModelRequest(tenant_id=tenant_id, model_version=version),
        )
    )
    if isinstance(model, ApiError):
        return model
    return TenantFacts(
        last_interaction=last,
        api_calls=facts.api_calls,
        server_errors=facts.server_errors,
        model_version=model.version,
        model_created=model.create_time.ToDatetime(UTC),
        ndcg_at_10=model.metrics.get("ndcg@10"),
    )


async def _health_row(
    api: Api, tenant: tenant_res.Tenant, limit: asyncio.Semaphore
) -> dict[str, object]:
    row: dict[str, object] = {"id": tenant.id, "tenant": f"{tenant.name} ({tenant.slug})"}
    async with limit:
        now = datetime.now(UTC)
        facts = await _tenant_facts(api, tenant.id, now)
    if isinstance(facts, ApiError):
        return {**row, "score": "—", "problem": f"Could not score: {facts.message}"}
    health = score_tenant(facts, now)
    row["score"] = health.score
    for part in health.parts:
        row[part.name] = f"{part.score} · {part.reason}"
    return row


def register() -> None:
    @ui.page("/admin")
    async def dashboard() -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Dashboard", who):
            kpis = ui.row().classes("w-full gap-4")
            with kpis:
                ui.spinner()
                ui.label("Loading the platform's figures…")
            alerts_box = ui.column().classes("w-full")
            with ui.card().classes("w-full"):
                with ui.row().classes("w-full items-center justify-between"):
                    ui.label("API calls and server errors").classes("text-h6")
                    period = ui.toggle(
                        {"day": "Last 24 hours", "month": "Last 30 days"}, value="day"
                    )
                trend = ui.column().classes("w-full")
            await ui.context.client.connected()
            api = session.api()
            tenants, health, day, hour, month = await asyncio.gather(
                _try(api.call(api.tenants.ListTenants, tenant_pb.ListTenantsRequest(page_size=1))),
                _try(api.call(api.platform.GetHealth, platform_pb.GetHealthRequest())),
                _try(api.call(api.platform.GetUsage, _usage_request("", hours=24))),
                _try(api.call(api.platform.GetUsage, _usage_request("", hours=1))),
                _try(
                    api.call(
                        api.platform.GetUsage,
                        _usage_request("", days=30, granularity=_DAILY),
                    )
                ),
            )
            status, health_error, components = _health_parts(health)
            alerts = platform_alerts(
                health_status=status,
                health_error=health_error,
                components=components,
                last_hour=None if isinstance(hour, ApiError) else hour,
            )
            kpis.clear()
            with kpis:
                _kpi_from("Tenants", tenants, lambda r: f"{r.total_size:,}")
                _kpi_from("API calls (24 h)", day, lambda u: f"{u.totals.api_calls:,}")
                _kpi_from(
                    "Recommendations served (24 h)", day, lambda u: f"{u.totals.recommendations:,}"
                )
                _kpi_from("Error rate (24 h)", day, lambda u: percent(u.totals.error_rate))
                _kpi("Active alerts", str(len(alerts)))
                _kpi("Platform health", status or "unhealthy")
            with alerts_box:
                if isinstance(hour, ApiError):
                    error_banner(hour, what="Could not check the last hour's usage alerts")
                if not alerts and not isinstance(hour, ApiError):
                    with ui.row().classes("items-center gap-2 text-positive"):
                        ui.icon("check_circle")
                        ui.label("No active alerts.")
                for alert in alerts:
                    critical = alert.severity == "critical"
                    with (
                        ui.card().classes("w-full alert-row"),
                        ui.row().classes("items-center gap-3 no-wrap"),
                    ):
                        ui.icon("error" if critical else "warning").classes(
                            "text-negative" if critical else "text-warning"
                        )
                        with ui.column().classes("gap-0"):
                            ui.label(alert.title).classes("text-weight-bold")
                            ui.label(alert.detail).classes("text-caption")

            def draw() -> None:
                trend.clear()
                usage = day if period.value == "day" else month
                with trend:
                    if isinstance(usage, ApiError):
                        error_banner(usage, what="Could not load API usage")
                    elif not usage.totals.api_calls:
                        empty_state(NO_CALLS, "insights")
                    else:
                        _usage_chart(
                            usage,
                            (("API calls", "api_calls"), ("Server errors", "server_errors")),
                        )

            period.on_value_change(draw)
            draw()

    @ui.page("/admin/tenants")
    async def tenants() -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Tenants", who):
            state: dict[str, object] = {"tokens": [""], "index": 0}
            with ui.row().classes("w-full items-end gap-2"):
                query = (
                    ui.input("Search name, slug or e-mail")
                    .mark("tenant-search")
                    .classes("min-w-[16rem]")
                )
                status = ui.select(list(_STATUS), value="Any status", label="Status")
                ui.button("Search", on_click=lambda: load(reset=True))
                ui.space()
                ui.button("Create tenant", icon="add", on_click=lambda: open_create())
            listing = ui.column().classes("w-full")
            with ui.row().classes("items-center"):
                previous = ui.button("Previous", on_click=lambda: page(-1)).props("flat")
                page_label = ui.label("")
                following = ui.button("Next", on_click=lambda: page(1)).props("flat")

            async def load(reset: bool = False) -> None:
                tokens: list[str] = state["tokens"]  # type: ignore[assignment]
                if reset:
                    tokens[:] = [""]
                    state["index"] = 0
                index = int(state["index"])  # type: ignore[call-overload]
                listing.clear()
                with listing:
                    ui.spinner()
                api = session.api()
                try:
                    reply = await api.call(
                        api.tenants.ListTenants,
                        tenant_pb.ListTenantsRequest(
                            page_size=PAGE_SIZE,
                            page_token=tokens[index],
                            query=(query.value or "").strip(),
                            status=_STATUS[status.value],
                        ),
                    )
                except ApiError as error:
                    listing.clear()
                    with listing:
                        error_banner(error, what="Could not list tenants")
                    return
                if len(tokens) == index + 1 and reply.next_page_token:
                    tokens.append(reply.next_page_token)
                listing.clear()
                with listing:
                    if not reply.tenants:
                        empty_state("No tenants match. Create one with 'Create tenant'.")
                    rows = [
                        {
                            "id": t.id,
                            "name": t.name,
                            "slug": t.slug,
                            "email": t.email,
                            "plan": t.plan,
                            "status": _STATUS_LABEL.get(t.status, "?"),
                            "created": when(t.create_time),
                        }
                        for t in reply.tenants
                    ]
                    if rows:
                        table = ui.table(
                            columns=[
                                {"name": k, "label": k.capitalize(), "field": k, "align": "left"}
                                for k in ("name", "slug", "email", "plan", "status", "created")
                            ],
                            rows=rows,
                            row_key="id",
                        ).classes("w-full")
                        table.on(
                            "rowClick",
                            lambda e: ui.navigate.to(f"/admin/tenants/{e.args[1]['id']}"),
                        )
                page_label.text = f"Page {index + 1} · {reply.total_size} tenants"
                previous.set_enabled(index > 0)
                following.set_enabled(bool(reply.next_page_token))

            async def page(step: int) -> None:
                state["index"] = max(0, int(state["index"]) + step)  # type: ignore[call-overload]
                await load()

            def open_create() -> None:
                create_dialog.open()

            with ui.dialog() as create_dialog, ui.card().classes("w-full max-w-lg"):
                ui.label("Create tenant").classes("text-h6")
                name = ui.input("Name", validation={"Required": lambda v: bool(v.strip())}).mark(
                    "tenant-name"
                )
                slug = (
                    ui.input(
                        "Slug",
                        validation={
                            "Lowercase letters, digits and dashes": lambda v: (
                                bool(v)
                                and v == v.lower()
                                and all(c.isalnum() or c == "-" for c in v)
                            )
                        },
                    )
                    .classes("w-full")
                    .mark("tenant-slug")
                )
                email = ui.input("Admin e-mail", validation={"An e-mail": lambda v: "@" in v}).mark(
                    "tenant-email"
                )
                result = ui.column().classes("w-full")

                async def create() -> None:
                    result.clear()
                    if not all([name.validate(), slug.validate(), email.validate()]):
                        return
                    api = session.api()
                    try:
                        tenant, trailers = await api.call_with_trailers(
                            api.tenants.CreateTenant,
                            tenant_pb.CreateTenantRequest(
                                tenant=tenant_res.Tenant(
                                    name=name.value.strip(),
                                    slug=slug.value.strip(),
                                    email=email.value.strip(),
                                )
                            ),
                        )
                    except ApiError as error:
                        with result:
                            error_banner(error)
                        return
                    token = trailers.get("x-embrec-invitation-token", "")
                    with result:
                        ui.label(f"Created {tenant.name} ({tenant.slug}).").classes("text-positive")
                        if token:
                            ui.label(
                                f"Give {tenant.email} this invitation token to sign up "
                                "(shown once):"
                            )
                            with ui.row().classes("items-center no-wrap w-full"):
                                ui.input(value=token).props("readonly").classes(
                                    "invitation-token grow"
                                )
                                ui.button(
                                    icon="content_copy",
                                    on_click=lambda: ui.clipboard.write(token),
                                ).props("flat")
                            ui.label(f"Sign-up page: /signup?invitation={token}").classes(
                                "text-caption"
                            )
                    await load(reset=True)

                with ui.row():
                    ui.button("Create", on_click=create).mark("create-submit")
                    ui.button("Close", on_click=create_dialog.close).props("flat")

            await load()

    @ui.page("/admin/tenants/{tenant_id}")
    async def tenant_detail(tenant_id: str) -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Tenant", who):
            body = ui.column().classes("w-full")

            async def show() -> None:
                body.clear()
                api = session.api()
                try:
                    tenant = await api.call(
                        api.tenants.GetTenant, tenant_pb.GetTenantRequest(tenant_id=tenant_id)
                    )
                except ApiError as error:
                    with body:
                        error_banner(error, what="Could not load the tenant")
                    return
                with body:
                    ui.link("← All tenants", "/admin/tenants")
                    with ui.card().classes("w-full"):
                        ui.label(tenant.name).classes("text-h5")
                        status_text = _STATUS_LABEL.get(tenant.status, "?")
                        ui.label(f"Status: {status_text}").classes("tenant-status")
                        if tenant.suspend_reason:
                            ui.label(f"Suspended because: {tenant.suspend_reason}")
                        for label, value in (
                            ("Slug", tenant.slug),
                            ("E-mail", tenant.email),
                            ("Plan", tenant.plan),
                            ("Created", when(tenant.create_time)),
                            ("Id", tenant.id),
                        ):
                            ui.label(f"{label}: {value}")
                        with ui.row():
                            if tenant.status == tenant_res.TENANT_STATUS_ACTIVE:
                                ui.button(
                                    "Suspend", color="negative", on_click=lambda: ask("suspend")
                                )
                            elif tenant.status == tenant_res.TENANT_STATUS_SUSPENDED:
                                ui.button("Reactivate", on_click=lambda: ask("reactivate"))
                            ui.button(
                                "Models",
                                on_click=lambda: ui.navigate.to(
                                    f"/admin/models?tenant={tenant.id}"
                                ),
                            ).props("flat")
                    usage_box = ui.column().classes("w-full")
                with usage_box:
                    ui.spinner()
                usage = await _try(
                    api.call(
                        api.platform.GetUsage,
                        _usage_request(tenant.id, days=30, granularity=_DAILY),
                    )
                )
                usage_box.clear()
                with usage_box, ui.card().classes("w-full"):
                    ui.label("Usage, last 30 days").classes("text-h6")
                    if isinstance(usage, ApiError):
                        error_banner(usage, what="Could not load this tenant's usage")
                        return
                    totals = usage.totals
                    with ui.row().classes("w-full gap-4"):
                        _kpi("API calls", f"{totals.api_calls:,}")
                        _kpi("Recommendations served", f"{totals.recommendations:,}")
                        _kpi("Server errors", f"{totals.server_errors:,}")
                        _kpi("Error rate", percent(totals.error_rate))
                        _kpi("Cache hit rate", percent(totals.cache_hit_rate))
                    if not totals.api_calls:
                        empty_state(NO_CALLS, "insights")
                    else:
                        _usage_chart(
                            usage,
                            (
                                ("API calls", "api_calls"),
                                ("Recommendations", "recommendations"),
                                ("Server errors", "server_errors"),
                            ),
                        )

            def ask(action: str) -> None:
                with floating_dialog() as dialog, ui.card():
                    ui.label(f"{action.capitalize()} this tenant?").classes("text-h6")
                    if action == "suspend":
                        ui.label("Its users and API keys stop working until it is reactivated.")
                    reason = ui.input(
                        "Reason (recorded in the audit trail)",
                        validation={"A reason is required": lambda v: bool(v.strip())},
                    ).mark("reason")

                    async def confirm() -> None:
                        if not reason.validate():
                            return
                        api = session.api()
                        try:
                            if action == "suspend":
                                await api.call(
                                    api.tenants.SuspendTenant,
                                    tenant_pb.SuspendTenantRequest(
                                        tenant_id=tenant_id, reason=reason.value.strip()
                                    ),
                                )
                            else:
                                await api.call(
                                    api.tenants.ReactivateTenant,
                                    tenant_pb.ReactivateTenantRequest(
                                        tenant_id=tenant_id, reason=reason.value.strip()
                                    ),
                                )
                        except ApiError as error:
                            show_error(error)
                            return
                        dialog.close()
                        ui.notify(f"Tenant {action}d", type="positive")
                        await show()

                    with ui.row():
                        ui.button(f"Confirm {action}", on_click=confirm)
                        ui.button("Cancel", on_click=dialog.close).props("flat")
                dialog.open()

            await show()

    @ui.page("/admin/models")
    async def admin_models(tenant: str = "") -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Models", who):
            options = await _tenant_options()
            if options is None:
                return
            if not options:
                empty_state("No tenants yet: create one first.")
                return
            picked = ui.select(
                options,
                value=tenant if tenant in options else None,
                label="Tenant",
                with_input=True,
            ).classes("min-w-[16rem]")
            panel = ui.column().classes("w-full")

            async def show() -> None:
                panel.clear()
                if picked.value:
                    with panel:
                        await models_view.models_panel(tenant_id=str(picked.value))

            picked.on_value_change(show)
            await show()

    @ui.page("/admin/support")
    async def support() -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Support", who):
            with ui.card().classes("w-full"):
                ui.label("Tenant health").classes("text-h6")
                ui.label(
                    "0-100, the mean of four parts, each 0-100: data freshness (full within "
                    "a day of the newest interaction, none after 30 days), server-error rate "
                    "over 24 h (full at 0 %, none from 5 %), age of the serving model (full "
                    "within 7 days, none after 60 or without one) and its NDCG@10 (full from "
                    "0.30)."
                ).classes("text-caption")
                scores = ui.column().classes("w-full")
                with scores:
                    ui.spinner()
                with ui.row().classes("items-center"):
                    previous = ui.button("Previous", on_click=lambda: page(-1)).props("flat")
                    page_label = ui.label("")
                    following = ui.button("Next", on_click=lambda: page(1)).props("flat")
            tokens = [""]
            position = {"index": 0}

            async def load() -> None:
                index = position["index"]
                scores.clear()
                with scores:
                    ui.spinner()
                api = session.api()
                try:
                    reply = await api.call(
                        api.tenants.ListTenants,
                        tenant_pb.ListTenantsRequest(page_size=PAGE_SIZE, page_token=tokens[index]),
                    )
                except ApiError as error:
                    scores.clear()
                    with scores:
                        error_banner(error, what="Could not list tenants")
                    return
                if len(tokens) == index + 1 and reply.next_page_token:
                    tokens.append(reply.next_page_token)
                limit = asyncio.Semaphore(_SCORING_CONCURRENCY)
                rows = await asyncio.gather(*(_health_row(api, t, limit) for t in reply.tenants))
                scores.clear()
                with scores:
                    if not rows:
                        empty_state("No tenants yet: create one on the Tenants page.")
                    else:
                        columns = [
                            ("tenant", "Tenant"),
                            ("score", "Score"),
                            ("freshness", "Data freshness"),
                            ("errors", "Error rate"),
                            ("model_age", "Model age"),
                            ("quality", "Offline quality"),
                        ]
                        if any("problem" in row for row in rows):
                            columns.append(("problem", "Problem"))
                        ui.table(columns=_columns(*columns), rows=rows, row_key="id").classes(
                            "w-full health-scores"
                        ).props("wrap-cells")
                page_label.text = f"Page {index + 1} · {reply.total_size} tenants"
                previous.set_enabled(index > 0)
                following.set_enabled(bool(reply.next_page_token))

            async def page(step: int) -> None:
                position["index"] = max(0, position["index"] + step)
                await load()

            with ui.card().classes("w-full"):
                ui.label("Impersonate a tenant").classes("text-h6")
                ui.label(
                    "Act as the tenant's admin to see what they see. A banner stays on every "
                    "page while it lasts, and it is recorded in the audit trail."
                )
                options = await _tenant_options()
                if options is not None:
                    _impersonation_form(options)
            await ui.context.client.connected()
            await load()

    @ui.page("/admin/monitoring")
    async def monitoring() -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Monitoring", who):
            with ui.card().classes("w-full"):
                ui.label("Platform health").classes("text-h6")
                health_box = ui.column().classes("w-full")
                with health_box:
                    ui.spinner()
            with ui.card().classes("w-full"):
                with ui.row().classes("w-full items-center justify-between"):
                    ui.label("API figures").classes("text-h6")
                    period = ui.toggle({1: "Last hour", 24: "Last 24 hours"}, value=1)
                ui.label(
                    "Periods are rounded out to whole UTC hours. Latencies are the upper "
                    "bounds of histogram buckets (1, 5, 25, 100, 500, 2500 ms): '≤ 25 ms' "
                    "means between 5 and 25 ms. Figures lag the calls by up to the "
                    "metering flush interval (10 s by default)."
                ).classes("text-caption")
                figures = ui.column().classes("w-full")
            await ui.context.client.connected()
            api = session.api()

            async def show_health() -> None:
                report = await _try(
                    api.call(api.platform.GetPlatformStatus, platform_pb.GetPlatformStatusRequest())
                )
                if isinstance(report, ApiError):
                    # The report failed (a timeout, say): GetHealth still tells up or down.
                    health = await _try(
                        api.call(api.platform.GetHealth, platform_pb.GetHealthRequest())
                    )
                    status, message, components = _health_parts(health)
                else:
                    status, message = report.status, ""
                    components = list(report.components)
                health_box.clear()
                with health_box:
                    if status in ("healthy", "degraded"):
                        ui.label(f"Status: {status}").classes(
                            "text-positive" if status == "healthy" else "text-warning"
                        )
                    else:
                        ui.label("Status: unhealthy").classes("text-negative")
                        if message:
                            ui.label(message)
                    ui.label(
                        "Each service and dependency as the platform checks it; 'envoy' is "
                        "Envoy's readiness, when its admin address is configured (embrec up)."
                    ).classes("text-caption")
                    if components:
                        ui.table(
                            columns=_columns(
                                ("component", "Component"),
                                ("state", "State"),
                                ("optional", "Optional"),
                                ("latency", "Check time"),
                                ("message", "Message"),
                            ),
                            rows=[
                                {
                                    "component": c.component,
                                    "state": (
                                        "serving"
                                        if c.state == platform_pb.COMPONENT_STATE_SERVING
                                        else "NOT SERVING"
                                    ),
                                    "optional": "yes" if c.optional else "no",
                                    "latency": f"{c.latency_ms:.0f} ms",
                                    "message": c.message,
                                }
                                for c in components
                            ],
                            row_key="component",
                        ).classes("w-full")

            async def show_figures() -> None:
                hours = int(period.value)
                figures.clear()
                with figures:
                    ui.spinner()
                usage = await _try(api.call(api.platform.GetUsage, _usage_request("", hours=hours)))
                figures.clear()
                with figures:
                    if isinstance(usage, ApiError):
                        error_banner(usage, what="Could not load API usage")
                        return
                    if not usage.methods:
                        empty_state(NO_CALLS, "insights")
                        return
                    totals = usage.totals
                    with ui.row().classes("w-full gap-4"):
                        _kpi("Calls", f"{totals.api_calls:,}")
                        _kpi("Client errors", f"{totals.client_errors:,}")
                        _kpi("Server errors", f"{totals.server_errors:,}")
                        _kpi("Error rate", percent(totals.error_rate))
                    ui.label("Per service").classes("text-subtitle1")
                    counters = (
                        ("calls", "Calls"),
                        ("client_errors", "Client errors"),
                        ("server_errors", "Server errors"),
                        ("error_rate", "Error rate"),
                    )
                    ui.table(
                        columns=_columns(
                            ("service", "Service"), *counters, ("mean_latency", "Mean latency")
                        ),
                        rows=_service_rows(usage),
                        row_key="service",
                    ).classes("w-full service-figures")
                    ui.label("Per method").classes("text-subtitle1")
                    ui.table(
                        columns=_columns(
                            ("service", "Service"),
                            ("method", "Method"),
                            *counters,
                            ("p50", "p50"),
                            ("p95", "p95"),
                            ("p99", "p99"),
                        ),
                        rows=_method_rows(usage),
                        row_key="id",
                        pagination=25,
                    ).classes("w-full method-figures")

            period.on_value_change(show_figures)
            await asyncio.gather(show_health(), show_figures())

    @ui.page("/admin/audit")
    async def audit() -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Audit logs", who):
            with ui.row().classes("w-full items-end gap-2"):
                tenant = ui.input("Tenant (id or slug)")
                actor = ui.input("Actor")
                action = ui.input("Action")
                outcome = ui.select(list(_OUTCOMES), value="Any outcome", label="Outcome")
                text = ui.input("Text")
                days = ui.select(
                    {1: "Last day", 7: "Last 7 days", 30: "Last 30 days", 0: "All time"},
                    value=7,
                    label="Period",
                )
            with ui.row():
                ui.button("Search", icon="search", on_click=lambda: search(reset=True))
                ui.button("Export CSV", icon="download", on_click=lambda: guarded(export)()).props(
                    "outline"
                )
            ui.label(
                "The trail is fed from the event bus: an action may take a few seconds to "
                "appear here."
            ).classes("text-caption")
            results = ui.column().classes("w-full")
            more = ui.button("Load more", on_click=lambda: search(reset=False)).props("flat")
            more.set_visibility(False)
            state = {"token": ""}
            rows: list[dict[str, str]] = []

            def filters() -> dict[str, object]:
                values: dict[str, object] = {
                    "tenant_id": (tenant.value or "").strip(),
                    "actor": (actor.value or "").strip(),
                    "action": (action.value or "").strip(),
                    "outcome": _OUTCOMES[outcome.value],
                    "query": (text.value or "").strip(),
                }
                if days.value:
                    now = datetime.now(UTC)
                    values["time_range"] = {
                        "start_time": _timestamp(now - timedelta(days=int(days.value))),
                        "end_time": _timestamp(now + timedelta(minutes=1)),
                    }
                return values

            async def search(reset: bool) -> None:
                if reset:
                    state["token"] = ""
                    rows.clear()
                api = session.api()
                try:
                    reply = await api.call(
                        api.audit.SearchAuditEvents,
                        audit_pb.SearchAuditEventsRequest(
                            page_size=50,
                            page_token=state["token"],
                            **filters(),  # type: ignore[arg-type]
                        ),
                    )
                except ApiError as error:
                    results.clear()
                    with results:
                        error_banner(error, what="Could not search the audit trail")
                    return
                state["token"] = reply.next_page_token
                rows.extend(
                    {
                        "id": e.id,
                        "time": when(e.time),
                        "tenant": e.tenant_id,
                        "actor": e.actor + (f" (as {e.impersonator})" if e.impersonator else ""),
                        "action": e.action,
                        "target": e.target,
                        "outcome": audit_res.AuditOutcome.Name(e.outcome)
                        .removeprefix("AUDIT_OUTCOME_")
                        .lower(),
                    }
                    for e in reply.audit_events
                )
                results.clear()
                with results:
                    if not rows:
                        empty_state("No audit events match these filters.")
                    else:
                        ui.table(
                            columns=[
                                {"name": k, "label": k.capitalize(), "field": k, "align": "left"}
                                for k in ("time", "tenant", "actor", "action", "target", "outcome")
                            ],
                            rows=rows,
                            row_key="id",
                            pagination=25,
                        ).classes("w-full")
                more.set_visibility(bool(reply.next_page_token))

            async def export() -> None:
                api = session.api()
                chunks: list[bytes] = []
                async for body in api.stream(
                    api.audit.ExportAuditEvents,
                    audit_pb.ExportAuditEventsRequest(**filters()),  # type: ignore[arg-type]
                    timeout=120,
                ):
                    chunks.append(body.data)
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
                ui.download.content(b"".join(chunks), f"audit-{stamp}.csv", "text/csv")
                ui.notify("Audit CSV exported", type="positive")

            await search(reset=True)


async def _tenant_options() -> dict[str, str] | None:
    """Tenant id → "Name (slug)" for pickers; None (with an error shown) on failure."""
    api = session.api()
    options: dict[str, str] = {}
    token = ""
    try:
        for _ in range(20):  # up to 2,000 tenants in a picker; search beyond that
            reply = await api.call(
                api.tenants.ListTenants,
                tenant_pb.ListTenantsRequest(page_size=100, page_token=token),
            )
            options.update({t.id: f"{t.name} ({t.slug})" for t in reply.tenants})
            token = reply.next_page_token
            if not token:
                break
    except ApiError as error:
        error_banner(error, what="Could not list tenants")
        return None
    return options


def _impersonation_form(options: dict[str, str]) -> None:
    """Pick a tenant and a reason, then act as its admin (the services audit it)."""
    picked = ui.select(options, label="Tenant", with_input=True).classes("min-w-[16rem]")
    reason = ui.input("Reason (required, audited)")

    async def start() -> None:
        if not picked.value or not (reason.value or "").strip():
            ui.notify("Pick a tenant and give a reason.", type="warning")
            return
        api = session.api()
        reply = await api.call(
            api.auth.Impersonate,
            auth_pb.ImpersonateRequest(tenant_id=str(picked.value), reason=reason.value.strip()),
        )
        session.start_impersonation(
            reply.user, reply.access_token, options.get(str(picked.value), "")
        )
        ui.navigate.to("/app")

    ui.button("Start impersonation", on_click=guarded(start))
