"""The portal's API keys page: an optional expiry at creation, and what the list shows."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from nicegui import ui
from nicegui.testing.user import User

from embrec.tenant.v1 import api_key_service_pb2 as keys_pb
from embrec.tenant.v1 import api_key_service_pb2_grpc as keys_grpc
from tests.services.conftest import RunningStack
from tests.tenant.support import onboard
from tests.ui.support import log_in, see


async def test_key_created_with_an_expiry_shows_it_and_expired_keys_are_marked(
    console_user: User, stack: RunningStack
) -> None:
    user = console_user
    owner = await onboard(stack, "Shop")
    await log_in(user, owner.email)
    await see(user, "Recent uploads")
    await user.open("/app/keys")
    await see(user, "No API keys yet.")

    expiry = user.find(marker="key-expiry").elements.pop()
    assert isinstance(expiry, ui.select)
    assert expiry.value == "never"
    expiry.value = "90"
    user.find("Name").type("Staging")
    user.find(kind=ui.button, content="Create API key").click()
    await see(user, "it is shown once")
    expected = (datetime.now(UTC) + timedelta(days=90)).strftime("%Y-%m-%d")
    await see(user, "create a new key before then")
    shown = user.find(marker="key-expires").elements.pop()
    assert isinstance(shown, ui.label)
    assert shown.text.startswith(f"expires {expected}")
    assert expiry.value == "never"  # back to the default for the next key

    keys = keys_grpc.ApiKeyServiceStub(stack.channel)
    listed = await keys.ListApiKeys(keys_pb.ListApiKeysRequest(), metadata=owner.metadata)
    made = next(k for k in listed.api_keys if k.name == "Staging")
    lifetime = made.expire_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(days=89, hours=23) < lifetime <= timedelta(days=90)

    # The console offers days, not seconds: a short-lived key is made over gRPC.
    soon = Timestamp()
    soon.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
    await keys.CreateApiKey(
        keys_pb.CreateApiKeyRequest(api_key={"name": "Old CI key", "expire_time": soon}),
        metadata=owner.metadata,
    )
    await asyncio.sleep(1.2)
    await user.open("/app/keys")
    await see(user, "Staging")
    await user.should_not_see("Old CI key")
    user.find("Show revoked and expired keys").click()
    await see(user, "Old CI key")
    badge = user.find(marker="key-expired").elements.pop()
    assert isinstance(badge, ui.badge)
    assert str(badge.text).startswith("expired ")
