"""Servicer helpers shared by every service package.

``contract_servicer`` gives a servicer base whose every RPC answers UNIMPLEMENTED
with a message naming the missing feature and the issue that tracks it. A service
then overrides the methods it has built. This keeps the whole contract served from
day one (reflection lists every method, the gateway routes every path) without a
single fake success, and it replaces the generated base classes' behaviour, which
raises a bare NotImplementedError (an INTERNAL error at our boundary).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from services.errors import NotImplementedYet
from services.runtime.server import ServiceModuleSpec

__all__ = ["contract_servicer", "unbuilt_module"]

T = TypeVar("T")


def _unbuilt(full_name: str, tracked_in: str) -> Any:
    async def rpc(self: object, request: object, context: object) -> object:
        raise NotImplementedYet(full_name, tracked_in=tracked_in)

    rpc.__name__ = full_name.rsplit(".", 1)[-1]
    rpc.__doc__ = f"{full_name}: not built yet ({tracked_in})."
    return rpc


def contract_servicer(base: type[T], service: ServiceDescriptor, tracked_in: str) -> type[T]:
    """Subclass ``base`` (a generated ``*Servicer``) with every RPC answering UNIMPLEMENTED."""
    namespace = {m.name: _unbuilt(m.full_name, tracked_in) for m in service.methods}
    return type(f"Unbuilt{service.name}", (base,), namespace)


def unbuilt_module(
    name: str, pb2: ModuleType, pb2_grpc: ModuleType, services: Sequence[str], tracked_in: str
) -> ServiceModuleSpec:
    """A whole service package whose RPCs all answer UNIMPLEMENTED (nothing built yet)."""
    servicers = []
    for service in services:
        descriptor = pb2.DESCRIPTOR.services_by_name[service]
        base = getattr(pb2_grpc, f"{service}Servicer")
        adder = getattr(pb2_grpc, f"add_{service}Servicer_to_server")
        servicers.append((contract_servicer(base, descriptor, tracked_in)(), adder, descriptor))

    def register(server: grpc.aio.Server) -> None:
        for servicer, adder, _ in servicers:
            adder(servicer, server)

    return ServiceModuleSpec(
        name=name, names=[d.full_name for _, _, d in servicers], register=register
    )
