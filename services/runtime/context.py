"""Per-request context carried in contextvars, so every log line can name its request."""

from __future__ import annotations

import contextvars
import uuid

__all__ = ["REQUEST_ID_HEADER", "current_request_id", "new_request_id", "request_id_var"]

#: Metadata key (lower-case, as gRPC requires) that carries the request id both ways.
REQUEST_ID_HEADER = "x-request-id"

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "embrec_request_id", default=None
)

_MAX_CALLER_ID_LENGTH = 128


def new_request_id(from_caller: str | None = None) -> str:
    """Accept a caller's id when it is sane (printable, bounded), else make one."""
    if from_caller and len(from_caller) <= _MAX_CALLER_ID_LENGTH and from_caller.isprintable():
        return from_caller
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()
