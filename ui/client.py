"""The console's only way to the platform: the services' gRPC stubs, with the
logged-in person's credential.

The console never opens the database. Each page asks :func:`api` for an :class:`Api`
bound to the browser's session (its access token lives in ``app.storage.user``), and
every failure of a call becomes an :class:`ApiError` whose ``message`` a person can act
on: the server's own message (written to tell the caller how to fix it), the fields it
rejected, or a plain sentence for transport failures. Pages show it with
:func:`show_error`; nothing below this module ever shows a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from embrec.audit.v1 import audit_service_pb2_grpc
from embrec.ingestion.v1 import ingestion_service_pb2_grpc
from embrec.platform.v1 import platform_service_pb2_grpc
from embrec.retrieval.v1 import retrieval_service_pb2_grpc
from embrec.tenant.v1 import (
    api_key_service_pb2_grpc,
    auth_service_pb2,
    auth_service_pb2_grpc,
    tenant_service_pb2_grpc,
)
from embrec.training.v1 import training_service_pb2_grpc

__all__ = ["Api", "ApiError", "Channels", "describe_error"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Console calls are interactive: a person is waiting, so fail readably instead of hanging.
DEFAULT_TIMEOUT_SECONDS = 30.0
#: Uploads carry whole CSV files; give the server time to validate them.
UPLOAD_TIMEOUT_SECONDS = 300.0

_PLAIN = {
    grpc.StatusCode.UNAVAILABLE: "The platform is not reachable right now; try again shortly.",
    grpc.StatusCode.DEADLINE_EXCEEDED: "The platform took too long to answer; try again.",
    grpc.StatusCode.INTERNAL: "The platform hit an internal error; the request id below "
    "helps the operators find it.",
}


@dataclass(frozen=True)
class ApiError(Exception):
    """A failed call, said for a person: ``message`` is what the page shows."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    #: The status's packed details as sent (google.protobuf.Any), for pages that
    #: read a service-specific one, e.g. GetHealth's HealthReport.
    details: tuple[Any, ...] = ()

    def __str__(self) -> str:
        return self.message

    @property
    def not_built(self) -> bool:
        return self.code == grpc.StatusCode.UNIMPLEMENTED


def describe_error(error: grpc.aio.AioRpcError) -> ApiError:
    """Turn a gRPC failure into an :class:`ApiError` (reason, field violations, request id)."""
    code = error.code()
    reason, request_id = "", ""
    fields: dict[str, str] = {}
    details: tuple[Any, ...] = ()
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type,unused-ignore]
    except ValueError:
        status = None
    if status is not None:
        details = tuple(status.details)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
                request_id = info.metadata.get("request_id", "")
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                for violation in bad.field_violations:
                    fields[violation.field] = violation.description
    server_message = (error.details() or "").strip()
    if code in _PLAIN:
        message = _PLAIN[code]
    elif code == grpc.StatusCode.UNIMPLEMENTED:
        message = f"Not built yet on the server. {server_message}".strip()
    else:
        message = server_message or code.name.replace("_", " ").capitalize()
    if fields and code == grpc.StatusCode.INVALID_ARGUMENT:
        listed = "; ".join(f"{name}: {text}" for name, text in fields.items())
        if listed not in message:
            message = f"{message} ({listed})"
    if request_id and code == grpc.StatusCode.INTERNAL:
        message = f"{message} (request id {request_id})"
    return ApiError(code, message, reason, fields, request_id, details)


class Channels:
    """One gRPC channel per event loop (grpc.aio channels belong to the loop that made them).

    The console server has one loop; tests start a loop per test, so keying by loop
    keeps a stale channel from an earlier test out of the way.
    """

    def __init__(self, target: str) -> None:
        self.target = target
        self._channels: dict[int, grpc.aio.Channel] = {}

    def get(self) -> grpc.aio.Channel:
        loop = asyncio.get_running_loop()
        channel = self._channels.get(id(loop))
        if channel is None:
            channel = grpc.aio.insecure_channel(self.target)
            self._channels[id(loop)] = channel
        return channel

    async def close(self) -> None:
        loop_id = id(asyncio.get_running_loop())
        channel = self._channels.pop(loop_id, None)
        if channel is not None:
            await channel.close()


@dataclass
class Credentials:
    """What the browser session holds: the access token and the refresh token."""

    access_token: str
    refresh_token: str = ""
    #: Called with (access, refresh) after a refresh, so the session keeps the new pair.
    on_refresh: Callable[[str, str], None] | None = None


class Api:
    """Typed stubs for one person: every call carries their bearer token.

    ``await api.call(api.tenants.ListTenants, request)`` returns the reply or raises
    :class:`ApiError`. An expired access token is refreshed once with the refresh
    token and the call retried, so a person is not logged out every 15 minutes.
    """

    def __init__(self, channel: grpc.aio.Channel, credentials: Credentials | None) -> None:
        self.credentials = credentials
        self.auth = auth_service_pb2_grpc.AuthServiceStub(channel)
        self.tenants = tenant_service_pb2_grpc.TenantServiceStub(channel)
        self.api_keys = api_key_service_pb2_grpc.ApiKeyServiceStub(channel)
        self.ingestion = ingestion_service_pb2_grpc.IngestionServiceStub(channel)
        self.training = training_service_pb2_grpc.TrainingServiceStub(channel)
        self.retrieval = retrieval_service_pb2_grpc.RetrievalServiceStub(channel)
        self.audit = audit_service_pb2_grpc.AuditServiceStub(channel)
        self.platform = platform_service_pb2_grpc.PlatformServiceStub(channel)

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        if self.credentials is None or not self.credentials.access_token:
            return ()
        return (("authorization", f"Bearer {self.credentials.access_token}"),)

    async def _refresh(self) -> bool:
        creds = self.credentials
        if creds is None or not creds.refresh_token:
            return False
        try:
            reply = await self.auth.RefreshToken(
                auth_service_pb2.RefreshTokenRequest(refresh_token=creds.refresh_token),
                timeout=DEFAULT_TIMEOUT_SECONDS,
            )
        except grpc.aio.AioRpcError:
            return False
        creds.access_token = reply.access_token
        creds.refresh_token = reply.refresh_token or creds.refresh_token
        if creds.on_refresh is not None:
            creds.on_refresh(creds.access_token, creds.refresh_token)
        return True

    async def call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> T:
        """One unary call with the person's credential; failures raise ApiError."""
        result, _ = await self.call_with_trailers(method, request, timeout=timeout)
        return result  # type: ignore[no-any-return]

    async def call_with_trailers(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> tuple[Any, dict[str, str]]:
        """Like :meth:`call`, plus the trailing metadata (CreateTenant's invitation token)."""
        for attempt in (1, 2):
            call = method(request, metadata=self._metadata(), timeout=timeout)
            try:
                reply = await call
                trailers = {k: str(v) for k, v in (await call.trailing_metadata() or ())}
                return reply, trailers
            except grpc.aio.AioRpcError as error:
                if (
                    attempt == 1
                    and error.code() == grpc.StatusCode.UNAUTHENTICATED
                    and await self._refresh()
                ):
                    continue
                raise describe_error(error) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[Any]:
        """A server-streaming call (training progress, audit export), as an async iterator."""
        call = method(request, metadata=self._metadata(), timeout=timeout)
        try:
            async for message in call:
                yield message
        except grpc.aio.AioRpcError as error:
            raise describe_error(error) from None
