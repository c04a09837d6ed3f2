"""The error boundary: domain exceptions → gRPC status with google.rpc details.

This is the only place that knows both the domain tree (``services.errors``) and gRPC
status codes. Infrastructure failures that are the caller's business only as "retry
later" (database or broker unreachable) map to UNAVAILABLE with a plain message;
everything unexpected maps to INTERNAL carrying the request id, never the trace.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services import errors as domain

__all__ = ["classify", "to_grpc_status"]

logger = logging.getLogger(__name__)

_CODES: dict[type[domain.EmbrecError], grpc.StatusCode] = {
    domain.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    domain.NotFound: grpc.StatusCode.NOT_FOUND,
    domain.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    domain.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    domain.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    domain.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    domain.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    domain.Unavailable: grpc.StatusCode.UNAVAILABLE,
    domain.NotImplementedYet: grpc.StatusCode.UNIMPLEMENTED,
}


# Which dependency an unreachable-server error came from, by the library it surfaced in.
_DEPENDENCY_BY_MODULE = (
    ("sqlalchemy", "database"),
    ("asyncpg", "database"),
    ("aiosqlite", "database"),
    ("redis", "cache"),
    ("confluent_kafka", "event bus"),
)


def _dependency_from_traceback(exc: BaseException) -> str | None:
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        for prefix, dependency in _DEPENDENCY_BY_MODULE:
            if module.startswith(prefix):
                return dependency
        tb = tb.tb_next
    return None


def _is_dependency_outage(exc: BaseException) -> str | None:
    """Name the dependency when ``exc`` means 'a backing server is unreachable'."""
    # Imported lazily: the runtime must not drag SQLAlchemy into processes without a DB.
    from sqlalchemy import exc as sa_exc

    if isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError,
    ):
        return "database"
    if isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError):
        # Raw socket errors carry no name; the library they surfaced in does.
        return _dependency_from_traceback(exc) or "backing service"
    module = type(exc).__module__
    if module.startswith("asyncpg") and (
        "Connection" in type(exc).__name__ or "CannotConnect" in type(exc).__name__
    ):
        return "database"
    return None


def classify(exc: BaseException) -> domain.EmbrecError | None:
    """Return the domain error an exception stands for, or None if it is a bug."""
    if isinstance(exc, domain.EmbrecError):
        return exc
    dependency = _is_dependency_outage(exc)
    if dependency is not None:
        return domain.Unavailable(
            f"The {dependency} is temporarily unavailable; retry with backoff.",
            reason="DEPENDENCY_UNAVAILABLE",
            metadata={"dependency": dependency},
        )
    return None


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_grpc_status(exc: BaseException, request_id: str | None) -> grpc.Status:
    """Build the grpc.Status (code, message, grpc-status-details-bin) for ``exc``."""
    error = classify(exc)
    rid = request_id or ""
    if error is None:
        code = grpc.StatusCode.INTERNAL
        message = f"Internal error; quote request id {rid} when reporting it."
        info = error_details_pb2.ErrorInfo(
            reason="INTERNAL", domain=domain.ERROR_DOMAIN, metadata={"request_id": rid}
        )
        details = [_pack(info)]
    else:
        code = _CODES.get(type(error)) or next(
            (c for cls, c in _CODES.items() if isinstance(error, cls)), grpc.StatusCode.UNKNOWN
        )
        message = error.message
        metadata = dict(error.metadata)
        if rid:
            metadata.setdefault("request_id", rid)
        info = error_details_pb2.ErrorInfo(
            reason=error.reason, domain=domain.ERROR_DOMAIN, metadata=metadata
        )
        details = [_pack(info)]
        if isinstance(error, domain.InvalidArgument) and error.violations:
            bad_request = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in error.violations
                ]
            )
            details.append(_pack(bad_request))
        details.extend(_pack(d) for d in error.details if isinstance(d, Message))
        if rid:
            details.append(_pack(error_details_pb2.RequestInfo(request_id=rid)))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    result: grpc.Status = rpc_status.to_status(status)
    return result
