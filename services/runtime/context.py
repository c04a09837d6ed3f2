"""Per-request context carried in contextvars: the request id every log line names, and
what the usage meter should know about the call (its tenant, a cache hit), which only
the handler learns but the runtime interceptor records."""

from __future__ import annotations

import contextvars
import uuid
from dataclasses import dataclass

__all__ = [
    "REQUEST_ID_HEADER",
    "CallFacts",
    "call_facts_var",
    "current_request_id",
    "new_request_id",
    "note_cache_hit",
    "note_tenant",
    "request_id_var",
]

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


@dataclass
class CallFacts:
    """Facts about the current call that handlers note for the usage meter."""

    tenant_id: str = ""
    cache_hit: bool = False


#: Set by the runtime interceptor for each call. Handlers run in the interceptor's task,
#: so what they note here is visible to it when the call ends.
call_facts_var: contextvars.ContextVar[CallFacts | None] = contextvars.ContextVar(
    "embrec_call_facts", default=None
)


def note_tenant(tenant_id: str) -> None:
    """Attribute the current call to ``tenant_id`` (the last tenant noted wins)."""
    facts = call_facts_var.get()
    if facts is not None and tenant_id:
        facts.tenant_id = tenant_id


def note_cache_hit() -> None:
    """Record that the current call was answered from a cache."""
    facts = call_facts_var.get()
    if facts is not None:
        facts.cache_hit = True
