"""A secured stack: every service plus the gateway module, real Envoy in front,
PostgreSQL and Redis; helpers to make tenants, tokens and API keys."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy import update

from services.app import build_runtime
from services.config import SERVICE_NAMES, load_settings
from services.embedded import bound_authz_http_port, render_gateway_config
from services.identity.credentials import SCOPES, Principal, generate_api_key, issue_access_token
from services.runtime.server import Runtime
from services.storage.models import ApiKey, Tenant
from tests.support.servers import EnvoyProcess, start_envoy

REPO_ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "j" * 40
INTERNAL_SECRET = "i" * 40


@dataclass
class SecuredStack:
    runtime: Runtime
    envoy: EnvoyProcess
    base_url: str
    grpc_target: str

    @property
    def sessions(self):  # type: ignore[no-untyped-def]
        module = next(m for m in self.runtime.modules if m.name == "gateway")
        return module.authorizer._sessions  # type: ignore[attr-defined]

    @property
    def authorizer(self):  # type: ignore[no-untyped-def]
        module = next(m for m in self.runtime.modules if m.name == "gateway")
        return module.authorizer  # type: ignore[attr-defined]

    async def tenant(self, plan: str = "free", **settings: object) -> Tenant:
        slug = f"t-{uuid.uuid4().hex[:10]}"
        async with self.sessions() as session, session.begin():
            row = Tenant(
                name=slug, slug=slug, email=f"a@{slug}.example", plan=plan, settings=dict(settings)
            )
            session.add(row)
        return row

    def token(
        self,
        tenant_id: str = "",
        role: str = "tenant_admin",
        scopes: frozenset[str] = SCOPES,
        ttl: timedelta = timedelta(minutes=15),
        now: datetime | None = None,
    ) -> str:
        principal = Principal(
            subject=f"user-{uuid.uuid4().hex[:6]}", tenant_id=tenant_id, role=role, scopes=scopes
        )
        return issue_access_token(principal, JWT_SECRET, ttl=ttl, now=now)[0]

    async def api_key(self, tenant_id: str, scopes: list[str] | None = None) -> tuple[str, str]:
        key = generate_api_key()
        async with self.sessions() as session, session.begin():
            row = ApiKey(
                tenant_id=tenant_id,
                name="test",
                prefix=key.prefix,
                secret_hash=key.secret_hash,
                scopes=scopes or sorted(SCOPES),
            )
            session.add(row)
        return key.full_key, row.id

    async def revoke(self, key_id: str, tenant_id: str) -> None:
        from services.audit.record import record_audit

        async with self.sessions() as session, session.begin():
            await session.execute(
                update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=datetime.now(UTC))
            )
            record_audit(
                session,
                tenant_id=tenant_id,
                actor="user:test",
                action="apikey.revoke",
                target=f"tenants/{tenant_id}/apiKeys/{key_id}",
            )

    async def suspend(self, tenant_id: str) -> None:
        from services.audit.record import record_audit

        async with self.sessions() as session, session.begin():
            await session.execute(
                update(Tenant).where(Tenant.id == tenant_id).values(status="suspended")
            )
            record_audit(
                session,
                tenant_id=tenant_id,
                actor="user:admin",
                action="tenant.suspend",
                target=f"tenants/{tenant_id}",
            )


async def start_secured(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    authz_transport: Literal["http", "grpc"] = "http",
) -> SecuredStack:
    """Every service plus the gateway module, real Envoy with security on in front,
    asking for authz decisions over ``authz_transport``."""
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=postgres_url,
        redis_url=redis_url,
        grpc_port=0,
        authz_http_port=0,
        metrics_port=0,
        jwt_secret=JWT_SECRET,
        internal_secret=INTERNAL_SECRET,
        health_poll_seconds=0.3,
        shutdown_grace_seconds=1.0,
    )
    runtime = await build_runtime(settings, [*SERVICE_NAMES, "gateway"], migrate=True)
    port = await runtime.start()
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    def configure(listen: int, admin: int) -> Path:
        ports = {"envoy_port": listen, "envoy_admin_port": admin}
        return render_gateway_config(
            settings.model_copy(update=ports),
            REPO_ROOT,
            port,
            security=True,
            authz_http_port=bound_authz_http_port(runtime),
            authz_transport=authz_transport,
        )

    try:
        envoy, listen = await asyncio.to_thread(start_envoy, configure, settings.data_dir)
    except BaseException:
        await runtime.stop()
        raise
    return SecuredStack(runtime, envoy, f"http://127.0.0.1:{listen}", f"127.0.0.1:{listen}")


async def stop_secured(stack: SecuredStack) -> None:
    stack.envoy.close()
    await stack.runtime.stop()


@pytest.fixture
async def secured(tmp_path: Path, postgres_url: str, redis_url: str) -> AsyncIterator[SecuredStack]:
    stack = await start_secured(tmp_path, postgres_url, redis_url)
    try:
        yield stack
    finally:
        await stop_secured(stack)


@pytest.fixture(params=["http", "grpc"])
async def secured_either_transport(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str, redis_url: str
) -> AsyncIterator[SecuredStack]:
    """The secured stack once per ext_authz transport (HTTP is what configs use)."""
    stack = await start_secured(tmp_path, postgres_url, redis_url, request.param)
    try:
        yield stack
    finally:
        await stop_secured(stack)
