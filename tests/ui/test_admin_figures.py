"""The back office's figures from GetUsage: dashboard KPIs and charts, monitoring per
method, tenant health scores on the support page, a tenant's usage on its detail page."""

from __future__ import annotations

import asyncio
from typing import Any

from nicegui import ui
from nicegui.testing.user import User

from embrec.ingestion.v1 import ingestion_service_pb2 as ing_pb
from embrec.ingestion.v1 import ingestion_service_pb2_grpc as ing_grpc
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from tests.services.conftest import RunningStack
from tests.ui.support import eventually, has_rows, log_in, make_admin, see, table_rows
from tests.ui.test_portal import invited_tenant


async def list_tenants(stack: RunningStack, times: int) -> None:
    """Real API calls, as an admin's script would make them."""
    stub = tenant_grpc.TenantServiceStub(stack.channel)
    for _ in range(times):
        await stub.ListTenants(
            tenant_pb.ListTenantsRequest(page_size=1), metadata=stack.admin_metadata()
        )


def kpi(user: User, label: str) -> str:
    """The figure under a KPI card's label ('' while the page is still loading)."""
    try:
        labels = user.find(kind=ui.label, content=label).elements
    except AssertionError:  # not drawn yet
        return ""
    for element in labels:
        siblings = list(element.parent_slot.children) if element.parent_slot else []
        if element in siblings and siblings.index(element) + 1 < len(siblings):
            figure = siblings[siblings.index(element) + 1]
            if isinstance(figure, ui.label):
                return str(figure.text)
    return ""


def table_rows_if_any(user: User) -> list[dict[str, Any]]:
    try:
        return table_rows(user)
    except AssertionError:  # no table (yet)
        return []


def as_number(text: str) -> int:
    return int(text.replace(",", "")) if text.replace(",", "").isdigit() else -1


async def reopen_until(user: User, path: str, check: object, seconds: float = 10.0) -> None:
    """Figures lag the calls by one flush (0.1 s here): reload the page until they show."""
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        await user.open(path)
        try:
            await eventually(check, seconds=3)
            return
        except AssertionError:
            if loop.time() > deadline:
                raise


async def test_dashboard_shows_kpis_alerts_and_trends(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    await list_tenants(stack, 5)
    await log_in(user, await make_admin(stack))
    await see(user, "API calls (24 h)")
    await reopen_until(user, "/admin", lambda: as_number(kpi(user, "API calls (24 h)")) >= 5)
    assert kpi(user, "Recommendations served (24 h)") == "0"
    assert kpi(user, "Error rate (24 h)").endswith("%")
    assert kpi(user, "Active alerts") == "0"
    await see(user, "No active alerts.")
    await see(user, kind=ui.echart)
    toggle = user.find(ui.toggle).elements.pop()
    assert isinstance(toggle, ui.toggle)
    toggle.value = "month"  # the 30-day daily chart replaces the hourly one
    await see(user, kind=ui.echart)
    chart = user.find(ui.echart).elements.pop()
    assert isinstance(chart, ui.echart)
    assert len(chart.options["xAxis"]["data"]) >= 30


async def test_monitoring_lists_called_methods_with_their_figures(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    await list_tenants(stack, 3)
    await log_in(user, await make_admin(stack))
    await see(user, "API calls (24 h)")

    def listed() -> bool:
        return any(
            row.get("method") == "ListTenants" and int(row["calls"]) >= 3
            for row in table_rows_if_any(user)
        )

    await reopen_until(user, "/admin/monitoring", listed)
    await see(user, "Status: healthy")
    row = next(r for r in table_rows(user) if r.get("method") == "ListTenants")
    assert row["service"] == "TenantService"
    assert row["server_errors"] == 0
    assert row["error_rate"] == "0.0 %"
    assert str(row["p99"]).startswith(("≤ ", "> "))
    assert str(row["p99"]).endswith(" ms")
    assert has_rows(user, service="TenantService")  # the per-service table
    # The component table lists every service, healthy or not (GetPlatformStatus).
    assert has_rows(user, component="retrieval", state="serving")
    toggle = user.find(ui.toggle).elements.pop()
    assert isinstance(toggle, ui.toggle)
    toggle.value = 24
    await eventually(listed)


async def test_support_scores_each_tenant_and_detail_shows_its_usage(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    email, _ = await invited_tenant(stack)
    slug = email.split("@", 1)[1].removesuffix(".example")
    tenant = await tenant_grpc.TenantServiceStub(stack.channel).GetTenant(
        tenant_pb.GetTenantRequest(tenant_id=slug), metadata=stack.admin_metadata()
    )
    await log_in(user, await make_admin(stack))
    await see(user, "API calls (24 h)")

    # A tenant with no data and no model: low parts, each with its reason.
    await user.open("/admin/support")
    await see(user, "Tenant health")
    await eventually(lambda: has_rows(user, id=tenant.id), seconds=15)
    row = next(r for r in table_rows(user) if r["id"] == tenant.id)
    assert row["tenant"] == f"Shop ({slug})"
    assert row["score"] == 25
    assert row["freshness"].startswith("0 · No interactions yet")
    assert row["model_age"].startswith("0 · No model deployed")
    assert row["quality"].startswith("0 · ")
    assert row["errors"].startswith("100 · ")
    await see(user, "Impersonate a tenant")  # the rest of the page is still there

    # Calls acting on the tenant count as its usage.
    stub = ing_grpc.IngestionServiceStub(stack.channel)
    for _ in range(3):
        await stub.GetDataStats(
            ing_pb.GetDataStatsRequest(tenant_id=tenant.id), metadata=stack.admin_metadata()
        )
    await reopen_until(
        user, f"/admin/tenants/{tenant.id}", lambda: as_number(kpi(user, "API calls")) >= 3
    )
    await see(user, "Usage, last 30 days")
    assert kpi(user, "Recommendations served") == "0"
    assert kpi(user, "Cache hit rate") == "0.0 %"
    assert kpi(user, "Server errors") == "0"
    await see(user, kind=ui.echart)
