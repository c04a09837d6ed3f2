"""The seed guide's identity calls as written, over JSON through a real Envoy (SQLite)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.services.conftest import RunningStack
from tests.support.servers import EnvoyProcess
from tests.tenant.support import PASSWORD, slug

pytestmark = pytest.mark.integration

EnvoyFor = Callable[[int], Awaitable[tuple[EnvoyProcess, int]]]


@pytest.fixture
async def client(stack: RunningStack, envoy_for: EnvoyFor) -> httpx.AsyncClient:
    _, port = await envoy_for(stack.runtime.port)
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_seed_onboarding_login_and_api_key_over_json(
    stack: RunningStack, client: httpx.AsyncClient
) -> None:
    async with client:
        the_slug = slug("techgadgets")
        body = {"name": "TechGadgets", "slug": the_slug, "email": "admin@techgadgets.com"}
        anonymous = await client.post("/api/admin/tenants", json=body)
        assert anonymous.status_code == 401
        created = await client.post("/api/admin/tenants", json=body, headers=stack.admin_headers())
        assert created.status_code == 200, created.text
        tenant_id = created.json()["id"]
        # The contact email's invitation (no mail is sent): the console asks for its token.
        invited = await client.post(
            f"/api/v1/invitations?tenant_id={the_slug}",
            json={"email": "admin@techgadgets.com", "role": "ROLE_TENANT_ADMIN"},
            headers=stack.admin_headers(),
        )
        assert invited.status_code == 200, invited.text
        token = invited.json()["token"]

        signup = await client.post(
            "/api/v1/auth/signup",
            json={
                "email": "admin@techgadgets.com",
                "password": PASSWORD,
                "invitation_token": token,
            },
        )
        assert signup.status_code == 200, signup.text

        # `POST /api/v1/auth/login {"email","password"}` → access_token, as in the seed guide.
        login = await client.post(
            "/api/v1/auth/login", json={"email": "admin@techgadgets.com", "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        access = login.json()["access_token"]
        assert login.json()["refresh_token"] and login.json()["expires_in"] == 900

        for email in ("admin@techgadgets.com", "nobody@techgadgets.com"):
            wrong = await client.post(
                "/api/v1/auth/login", json={"email": email, "password": "not-the-password"}
            )
            assert wrong.status_code == 401
            assert wrong.json()["details"][0]["reason"] == "LOGIN_FAILED"

        own = await client.get("/api/v1/tenant", headers=auth(access))
        assert own.status_code == 200 and own.json()["id"] == tenant_id

        key = await client.post(
            "/api/v1/apiKeys", json={"name": "Production - Website"}, headers=auth(access)
        )
        assert key.status_code == 200, key.text
        secret = key.json()["secret"]
        listed = await client.get("/api/v1/apiKeys", headers=auth(access))
        assert secret not in listed.text and listed.json()["api_keys"][0]["prefix"]

        # `Authorization: Bearer <api-key>` works through the gateway too.
        with_key = await client.get("/api/v1/tenant", headers=auth(secret))
        assert with_key.status_code == 200

        other = await client.post(
            "/api/admin/tenants",
            json={"name": "Other", "slug": slug("other"), "email": "o@other.example"},
            headers=stack.admin_headers(),
        )
        across = await client.get(f"/api/admin/tenants/{other.json()['id']}", headers=auth(secret))
        assert across.status_code == 403

        suspend = await client.post(
            f"/api/admin/tenants/{the_slug}:suspend",
            json={"reason": "fraud review"},
            headers=stack.admin_headers(),
        )
        assert suspend.status_code == 200, suspend.text
        blocked = await client.get("/api/v1/tenant", headers=auth(secret))
        assert blocked.status_code == 403
        assert blocked.json()["details"][0]["reason"] == "TENANT_SUSPENDED"
        console = await client.get("/api/v1/tenant", headers=auth(access))
        assert console.status_code == 200 and console.json()["status"] == "TENANT_STATUS_SUSPENDED"

        tampered = await client.get("/api/v1/tenant", headers=auth(access[:-4] + "AAAA"))
        assert tampered.status_code == 401


async def test_change_password_over_json(stack: RunningStack, client: httpx.AsyncClient) -> None:
    async with client:
        the_slug = slug("pwd")
        email = f"admin@{the_slug}.example"
        created = await client.post(
            "/api/admin/tenants",
            json={"name": "Pwd", "slug": the_slug, "email": email},
            headers=stack.admin_headers(),
        )
        assert created.status_code == 200, created.text
        invited = await client.post(
            f"/api/v1/invitations?tenant_id={the_slug}",
            json={"email": email, "role": "ROLE_TENANT_ADMIN"},
            headers=stack.admin_headers(),
        )
        signup = await client.post(
            "/api/v1/auth/signup",
            json={
                "email": email,
                "password": PASSWORD,
                "invitation_token": invited.json()["token"],
            },
        )
        assert signup.status_code == 200, signup.text
        access = signup.json()["access_token"]
        new_password = "another passphrase, longer"

        anonymous = await client.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": new_password},
        )
        assert anonymous.status_code == 401
        short = await client.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": "short"},
            headers=auth(access),
        )
        assert short.status_code == 400
        wrong = await client.post(
            "/api/v1/auth/password",
            json={"current_password": "not the password", "new_password": new_password},
            headers=auth(access),
        )
        assert wrong.status_code == 400  # FAILED_PRECONDITION, as Envoy maps it
        assert wrong.json()["details"][0]["reason"] == "CURRENT_PASSWORD_WRONG"
        key = await client.post("/api/v1/apiKeys", json={"name": "k"}, headers=auth(access))
        with_key = await client.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": new_password},
            headers=auth(key.json()["secret"]),
        )
        assert with_key.status_code == 403
        assert with_key.json()["details"][0]["reason"] == "NOT_A_USER"

        changed = await client.post(
            "/api/v1/auth/password",
            json={"current_password": PASSWORD, "new_password": new_password},
            headers=auth(access),
        )
        assert changed.status_code == 200, changed.text
        assert changed.json()["refresh_token"] and changed.json()["expires_in"] == 900
        old = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert old.status_code == 401
        new = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": new_password}
        )
        assert new.status_code == 200
