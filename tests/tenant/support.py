"""Helpers for the tenant service's tests: onboarding through real calls, audit rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from embrec.audit.v1 import resources_pb2 as audit_pb
from embrec.events.v1 import events_pb2
from embrec.tenant.v1 import auth_service_pb2 as auth_pb
from embrec.tenant.v1 import auth_service_pb2_grpc as auth_grpc
from embrec.tenant.v1 import tenant_service_pb2 as tenant_pb
from embrec.tenant.v1 import tenant_service_pb2_grpc as tenant_grpc
from services.event_messages import open_envelope
from services.storage.db import create_engine, session_factory
from services.storage.models import OutboxEvent
from services.tenant.servicer import INVITATION_TOKEN_HEADER
from tests.services.conftest import RunningStack

PASSWORD = "correct horse battery staple"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type,unused-ignore]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo")


def slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class TenantUser:
    tenant: Any  # resources_pb2.Tenant
    email: str
    access_token: str
    refresh_token: str

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.access_token)


async def create_tenant(running: RunningStack, name: str = "Acme") -> tuple[Any, str]:
    """A tenant created by a platform admin, and its invitation token."""
    tenants = tenant_grpc.TenantServiceStub(running.channel)
    the_slug = slug()
    call = tenants.CreateTenant(
        tenant_pb.CreateTenantRequest(
            tenant={"name": name, "slug": the_slug, "email": f"admin@{the_slug}.example"}
        ),
        metadata=running.admin_metadata(),
    )
    tenant = await call
    token = dict(await call.trailing_metadata())[INVITATION_TOKEN_HEADER]
    return tenant, str(token)


async def onboard(running: RunningStack, name: str = "Acme") -> TenantUser:
    """Seed guide Phase 4 steps 1-2: admin creates the tenant, its admin signs up."""
    tenant, token = await create_tenant(running, name)
    auth = auth_grpc.AuthServiceStub(running.channel)
    signed = await auth.SignUp(
        auth_pb.SignUpRequest(email=tenant.email, password=PASSWORD, invitation_token=token)
    )
    return TenantUser(tenant, tenant.email, signed.access_token, signed.refresh_token)


async def audit_events(running: RunningStack) -> list[audit_pb.AuditEvent]:
    """Every audit event the stack wrote to its outbox, in order."""
    engine = create_engine(running.runtime.settings.effective_database_url)
    try:
        async with session_factory(engine)() as session:
            rows = (
                await session.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.event_type == "embrec.events.v1.AuditRecorded")
                    .order_by(OutboxEvent.seq)
                )
            ).all()
    finally:
        await engine.dispose()
    events = []
    for row in rows:
        recorded = events_pb2.AuditRecorded()
        open_envelope(row.payload).payload.Unpack(recorded)
        events.append(recorded.event)
    return events
