"""Tenant portal: sign up with an invitation, upload data, API keys, train, test."""

from __future__ import annotations

from nicegui import ui
from nicegui.elements.upload_files import SmallFileUpload
from nicegui.testing.user import User

from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from services.tenant.servicer import INVITATION_TOKEN_HEADER
from tests.services.conftest import RunningStack
from tests.ui.support import PASSWORD, eventually, has_rows, log_in, see, unique

ITEMS_CSV = (
    "item_id,title,category,price,image_url\n"
    + "".join(
        f"item_{i},Phone {i},smartphones,{100 + i}.00,https://img.example/{i}.png\n"
        for i in range(20)
    )
    + "bad_item,Broken,smartphones,not-a-price,\n"
).encode()
INTERACTIONS_CSV = (
    "user_id,item_id,interaction_type,timestamp\n"
    + "".join(
        f"user_{u},item_{(u * 7 + k) % 20},view,2026-11-0{1 + k}T10:00:00Z\n"
        for u in range(40)
        for k in range(4)
    )
).encode()


async def invited_tenant(stack: RunningStack) -> tuple[str, str]:
    """Phase 4 step 1 done over gRPC by an admin: the customer's e-mail and invitation."""
    the_slug = unique("shop")
    call = tenant_grpc.TenantServiceStub(stack.channel).CreateTenant(
        tenant_pb.CreateTenantRequest(
            tenant={"name": "Shop", "slug": the_slug, "email": f"owner@{the_slug}.example"}
        ),
        metadata=stack.admin_metadata(),
    )
    tenant = await call
    token = dict(await call.trailing_metadata())[INVITATION_TOKEN_HEADER]
    return tenant.email, str(token)


async def sign_up(user: User, stack: RunningStack) -> str:
    email, token = await invited_tenant(stack)
    await user.open(f"/signup?invitation={token}")
    user.find(marker="name").type("Owner")
    user.find(marker="email").type(email)
    user.find(marker="password").type(PASSWORD)
    user.find(kind=ui.button, content="Sign up").click()
    await see(user, "Recent uploads")  # the portal's dashboard
    return email


async def test_sign_up_validates_first_then_lands_on_the_dashboard(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    await user.open("/signup")
    user.find(kind=ui.button, content="Sign up").click()
    await see(user, "Enter an e-mail address.")
    await see(user, "The password needs at least 10 characters.")
    email = await sign_up(user, stack)
    await see(user, "No uploads yet")
    # Log out, then back in with the new password.
    await user.open("/logout")
    await see(user, "New here?")
    await log_in(user, email)
    await see(user, "Recent uploads")
    # A tenant user never gets the admin pages.
    await user.open("/admin/tenants")
    await see(user, "Recent uploads")


async def test_api_key_secret_is_shown_once_then_revoked(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    await sign_up(user, stack)
    await user.open("/app/keys")
    await see(user, "No API keys yet.")
    user.find(kind=ui.button, content="Create API key").click()
    name = user.find("Name").elements.pop()
    assert isinstance(name, ui.input)
    await eventually(lambda: name.error == "A name is required")  # nothing sent
    user.find("Name").type("Production - Website")
    user.find(kind=ui.button, content="Create API key").click()
    await see(user, "it is shown once")
    secret_box = user.find(marker="api-key-secret").elements.pop()
    assert isinstance(secret_box, ui.input)
    secret = str(secret_box.value)
    assert secret.startswith("emb_live_")
    await see(user, "Production - Website")
    # Leaving and coming back: the list shows the prefix, never the secret again.
    await user.open("/app/keys")
    await see(user, "Production - Website")
    await user.should_not_see(secret)
    user.find(kind=ui.button, content="Revoke").click()
    await see(user, "Applications using it stop working at once.")
    user.find(marker="revoke-confirm").click()
    await see(user, "No API keys yet.")


async def test_upload_shows_the_validation_report_and_history(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    await sign_up(user, stack)
    await user.open("/app/data")
    await see(user, "No uploads yet.")
    items = user.find(marker="upload-items").elements.pop()
    assert isinstance(items, ui.upload)
    await items.handle_uploads([SmallFileUpload("catalog.csv", "text/csv", ITEMS_CSV)])
    await see(user, "21 rows: 20 accepted, 1 rejected")
    await see(user, "catalog.csv: succeeded")
    await eventually(lambda: has_rows(user, file="catalog.csv", accepted=20, rejected=1))
    assert has_rows(user, column="price", value="not-a-price")  # the rejected row, named

    events = user.find(marker="upload-interactions").elements.pop()
    assert isinstance(events, ui.upload)
    await events.handle_uploads([SmallFileUpload("events.txt", "text/plain", b"x")])
    await see(user, "events.txt is not a .csv file.")
    await events.handle_uploads([SmallFileUpload("events.csv", "text/csv", INTERACTIONS_CSV)])
    await see(user, "160 rows: 160 accepted")

    # The test page answers (popular items: no model is trained yet), with titles.
    await user.open("/app/test")
    user.find(kind=ui.button, content="Get recommendations").click()
    await see(user, "fallback to popular items")
    await see(user, "Phone")

    # Models: train now queues a job that the page lists with its state.
    await user.open("/app/models")
    await see(user, "No training jobs yet.")
    user.find(kind=ui.button, content="Train now").click()
    await see(user, marker="training-job")
    assert any("queued" in note for note in user.notify.messages)
