"""TenantService adapter: protobuf ↔ TenantStore. Auth, API keys, sessions come with
the identity issue (#3); until then those RPCs answer UNIMPLEMENTED."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from embrec.tenant.v1 import (
    api_key_service_pb2,
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    resources_pb2,
    tenant_service_pb2,
    tenant_service_pb2_grpc,
)
from services.app import ServiceContext
from services.runtime.server import ServiceModuleSpec
from services.runtime.servicers import contract_servicer
from services.storage.models import Tenant
from services.tenant.domain import TenantStore

__all__ = ["build_module"]

_TRACKED_IN = "issue #3 (identity and tenancy)"

_STATUS_TO_PROTO = {
    "active": resources_pb2.TENANT_STATUS_ACTIVE,
    "suspended": resources_pb2.TENANT_STATUS_SUSPENDED,
    "deleted": resources_pb2.TENANT_STATUS_DELETED,
}
_STATUS_FROM_PROTO = {v: k for k, v in _STATUS_TO_PROTO.items()}


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def tenant_to_proto(tenant: Tenant) -> resources_pb2.Tenant:
    message = resources_pb2.Tenant(
        id=tenant.id,
        name=tenant.name,
        slug=tenant.slug,
        email=tenant.email,
        plan=tenant.plan,
        status=_STATUS_TO_PROTO.get(tenant.status, resources_pb2.TENANT_STATUS_UNSPECIFIED),
        suspend_reason=tenant.suspend_reason or "",
    )
    for field, value in (
        ("create_time", tenant.created_at),
        ("update_time", tenant.updated_at),
        ("delete_time", tenant.deleted_at),
    ):
        stamp = _timestamp(value)
        if stamp is not None:
            getattr(message, field).CopyFrom(stamp)
    return message


_TenantBase: Any = contract_servicer(
    tenant_service_pb2_grpc.TenantServiceServicer,
    tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"],
    _TRACKED_IN,
)


class TenantServicer(_TenantBase):  # type: ignore[misc]
    def __init__(self, store: TenantStore) -> None:
        self._store = store

    async def CreateTenant(
        self,
        request: tenant_service_pb2.CreateTenantRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> resources_pb2.Tenant:
        tenant = await self._store.create(
            name=request.tenant.name,
            slug=request.tenant.slug,
            email=request.tenant.email,
            plan=request.tenant.plan,
        )
        return tenant_to_proto(tenant)

    async def GetTenant(
        self,
        request: tenant_service_pb2.GetTenantRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> resources_pb2.Tenant:
        return tenant_to_proto(await self._store.get(request.tenant_id))

    async def ListTenants(
        self,
        request: tenant_service_pb2.ListTenantsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> tenant_service_pb2.ListTenantsResponse:
        page = await self._store.list(
            page_size=request.page_size,
            page_token=request.page_token,
            status=_STATUS_FROM_PROTO.get(request.status, ""),
            query=request.query,
        )
        return tenant_service_pb2.ListTenantsResponse(
            tenants=[tenant_to_proto(t) for t in page.tenants],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )


AuthServicer: Any = contract_servicer(
    auth_service_pb2_grpc.AuthServiceServicer,
    auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"],
    _TRACKED_IN,
)
ApiKeyServicer: Any = contract_servicer(
    api_key_service_pb2_grpc.ApiKeyServiceServicer,
    api_key_service_pb2.DESCRIPTOR.services_by_name["ApiKeyService"],
    _TRACKED_IN,
)


def build_module(ctx: ServiceContext) -> ServiceModuleSpec:
    tenants = TenantServicer(TenantStore(ctx.sessions))
    auth = AuthServicer()
    api_keys = ApiKeyServicer()

    def register(server: grpc.aio.Server) -> None:
        tenant_service_pb2_grpc.add_TenantServiceServicer_to_server(tenants, server)
        auth_service_pb2_grpc.add_AuthServiceServicer_to_server(auth, server)
        api_key_service_pb2_grpc.add_ApiKeyServiceServicer_to_server(api_keys, server)

    return ServiceModuleSpec(
        name="tenant",
        names=[
            tenant_service_pb2.DESCRIPTOR.services_by_name["TenantService"].full_name,
            auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name,
            api_key_service_pb2.DESCRIPTOR.services_by_name["ApiKeyService"].full_name,
        ],
        register=register,
    )
