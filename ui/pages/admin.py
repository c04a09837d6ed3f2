"""Admin back office: dashboard, tenants, models, support, monitoring, audit logs.

Only platform admins see these pages; every call carries the admin's own token, so
the services decide (and audit) what each action may do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from nicegui import ui

from embrec.audit.v1 import audit_service_pb2 as audit_pb
from embrec.audit.v1 import resources_pb2 as audit_res
from embrec.platform.v1 import platform_service_pb2 as platform_pb
from embrec.tenant.v1 import auth_service_pb2 as auth_pb
from embrec.tenant.v1 import resources_pb2 as tenant_res
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb

from .. import session
from ..client import ApiError
from ..formatting import when
from ..layout import (
    empty_state,
    error_banner,
    floating_dialog,
    frame,
    guarded,
    not_built,
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


def register() -> None:
    @ui.page("/admin")
    async def dashboard() -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Dashboard", who):
            api = session.api()
            with ui.row().classes("w-full gap-4"):
                with ui.card().classes("min-w-[12rem]"):
                    ui.label("Tenants").classes("text-subtitle2 text-grey-8")
                    try:
                        reply = await api.call(
                            api.tenants.ListTenants, tenant_pb.ListTenantsRequest(page_size=1)
                        )
                        ui.label(str(reply.total_size)).classes("text-h4")
                    except ApiError as error:
                        error_banner(error)
                with ui.card().classes("min-w-[12rem]"):
                    ui.label("Platform health").classes("text-subtitle2 text-grey-8")
                    try:
                        health = await api.call(
                            api.platform.GetHealth, platform_pb.GetHealthRequest()
                        )
                        ui.label(health.status).classes("text-h4 text-positive")
                    except ApiError as error:
                        ui.label("unhealthy").classes("text-h4 text-negative")
                        ui.label(error.message).classes("text-caption")
            not_built(
                "Platform KPIs (API calls, recommendations served, error rate, active alerts) "
                "and trend charts"
            )

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
                    not_built("Usage charts for this tenant")

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
            not_built("Tenant health scores (data freshness, error rate, model age, quality)")
            with ui.card().classes("w-full"):
                ui.label("Impersonate a tenant").classes("text-h6")
                ui.label(
                    "Act as the tenant's admin to see what they see. A banner stays on every "
                    "page while it lasts, and it is recorded in the audit trail."
                )
                options = await _tenant_options()
                if options is None:
                    return
                picked = ui.select(options, label="Tenant", with_input=True).classes(
                    "min-w-[16rem]"
                )
                reason = ui.input("Reason (required, audited)")

                async def start() -> None:
                    if not picked.value or not (reason.value or "").strip():
                        ui.notify("Pick a tenant and give a reason.", type="warning")
                        return
                    api = session.api()
                    reply = await api.call(
                        api.auth.Impersonate,
                        auth_pb.ImpersonateRequest(
                            tenant_id=str(picked.value), reason=reason.value.strip()
                        ),
                    )
                    session.start_impersonation(
                        reply.user, reply.access_token, options.get(str(picked.value), "")
                    )
                    ui.navigate.to("/app")

                ui.button("Start impersonation", on_click=guarded(start))

    @ui.page("/admin/monitoring")
    async def monitoring() -> None:
        who = require(admin=True)
        if who is None:
            return
        with frame("Monitoring", who):
            with ui.card().classes("w-full"):
                ui.label("Platform health").classes("text-h6")
                api = session.api()
                try:
                    reply = await api.call(api.platform.GetHealth, platform_pb.GetHealthRequest())
                    ui.label(f"Status: {reply.status}").classes("text-positive")
                    ui.label(
                        "Every service the console reaches answers; the gateway's own health "
                        "is GET /health on Envoy."
                    ).classes("text-caption")
                except ApiError as error:
                    ui.label("Status: unhealthy").classes("text-negative")
                    ui.label(error.message)
            not_built("Per-service latency and error figures from the metrics")

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
