"""The rest of the back office and portal: impersonation, audit export, monitoring,
models per tenant, analytics, settings."""

from __future__ import annotations

from nicegui import ui
from nicegui.testing.user import User

from embrec.tenant.v1 import auth_service_pb2 as auth_pb
from embrec.tenant.v1 import auth_service_pb2_grpc as auth_grpc
from tests.services.conftest import RunningStack
from tests.ui.support import PASSWORD, eventually, log_in, make_admin, see
from tests.ui.test_portal import invited_tenant, sign_up


async def test_impersonation_shows_a_banner_until_it_ends(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    email, token = await invited_tenant(stack)
    await auth_grpc.AuthServiceStub(stack.channel).SignUp(
        auth_pb.SignUpRequest(email=email, password=PASSWORD, invitation_token=token)
    )
    admin = await make_admin(stack)
    await log_in(user, admin)
    await see(user, "API calls (24 h)")
    await user.open("/admin/support")
    await see(user, "Impersonate a tenant")
    picker = user.find(ui.select).elements.pop()
    assert isinstance(picker, ui.select)
    picker.value = next(iter(picker.options))
    user.find(kind=ui.button, content="Start impersonation").click()
    await see(user, "Pick a tenant and give a reason.")  # validated before sending
    user.find("Reason (required, audited)").type("customer asked for help")
    user.find(kind=ui.button, content="Start impersonation").click()
    await see(user, "every action is recorded in the audit trail")
    await see(user, "Recent uploads")  # the tenant's own dashboard
    await user.open("/app/keys")
    await see(user, "every action is recorded in the audit trail")  # on every page
    user.find(kind=ui.button, content="End impersonation").click()
    await see(user, "Impersonate a tenant")
    await user.should_not_see("every action is recorded in the audit trail")


async def test_audit_export_downloads_csv_and_monitoring_shows_health(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    admin = await make_admin(stack)
    await invited_tenant(stack)
    await log_in(user, admin)
    await see(user, "API calls (24 h)")
    await user.open("/admin/audit")
    await see(user, "Export CSV")
    user.find(kind=ui.button, content="Export CSV").click()
    download = await user.download.next(timeout=15)
    assert (
        download.content.splitlines()[0].startswith(b"sequence")
        or b"," in (download.content.splitlines()[0])
    )
    await user.open("/admin/monitoring")
    await see(user, "Status: healthy")
    await see(user, "API figures")  # per service and method, from GetUsage


async def test_admin_models_page_lists_per_tenant(console_user: User, stack: RunningStack) -> None:
    user = console_user
    admin = await make_admin(stack)
    await invited_tenant(stack)
    await log_in(user, admin)
    await see(user, "API calls (24 h)")
    await user.open("/admin/models")
    picker = user.find(ui.select).elements.pop()
    assert isinstance(picker, ui.select)
    picker.value = next(iter(picker.options))
    await see(user, "No training jobs yet.")
    await see(user, "Nothing deployed yet")


async def test_analytics_and_settings(console_user: User, stack: RunningStack) -> None:
    user = console_user
    await sign_up(user, stack)
    await user.open("/app/analytics")
    await see(user, "Recommendations served")
    await see(user, kind=ui.echart)  # the daily chart, for the picked range
    await user.open("/app/settings")
    await see(user, "Change password")
    name = user.find("Company name").elements.pop()
    assert isinstance(name, ui.input)
    name.value = "Renamed Shop"
    user.find(kind=ui.button, content="Save").click()
    await eventually(lambda: "Saved" in user.notify.messages)
    await user.open("/app/settings")
    await eventually(
        lambda: getattr(user.find("Company name").elements.pop(), "value", None) == "Renamed Shop"
    )
