"""Domain errors: the one exception tree every service raises.

Domain code never imports grpc. It raises one of these, and the runtime's error
boundary (``services.runtime.errors``) turns it into a ``google.rpc.Status`` with an
``ErrorInfo`` (and ``BadRequest`` field violations where there are some). Anything
that is not an ``EmbrecError`` becomes INTERNAL, carrying only the request id.

    EmbrecError
    ├── InvalidArgument        bad input; carries field violations (field, row, reason)
    ├── NotFound               the named resource does not exist (for this tenant)
    ├── AlreadyExists          a unique key is taken
    ├── FailedPrecondition     the resource is in the wrong state for the call
    ├── Unauthenticated        no, malformed, expired or revoked credential
    ├── PermissionDenied       authenticated, but not allowed (scope, tenant, role)
    ├── ResourceExhausted      over a quota or rate limit
    │   └── QuotaExceeded      over a plan's limit (gateway/plans.toml)
    ├── Unavailable            a dependency (database, broker, index) is down: retry
    └── NotImplementedYet      the contract exists, the behaviour is not built yet
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ERROR_DOMAIN",
    "AlreadyExists",
    "EmbrecError",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "NotFound",
    "NotImplementedYet",
    "PermissionDenied",
    "QuotaExceeded",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]

#: ErrorInfo.domain for every error embrec raises (AIP-193).
ERROR_DOMAIN = "embrec.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field. ``field`` is a path such as ``items[12].price`` or ``slug``."""

    field: str
    description: str


class EmbrecError(Exception):
    """Base of every error a caller may see.

    ``reason`` is the UPPER_SNAKE_CASE ErrorInfo reason; ``metadata`` holds every
    dynamic value of the message so clients never parse prose.
    """

    reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        details: Sequence[object] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})
        #: Extra protobuf messages packed into google.rpc.Status.details as they are.
        self.details: tuple[object, ...] = tuple(details)


class InvalidArgument(EmbrecError):
    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        violations: list[FieldViolation] | None = None,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations: list[FieldViolation] = list(violations or [])


class NotFound(EmbrecError):
    reason = "NOT_FOUND"

    def __init__(self, resource: str, identifier: str, *, reason: str | None = None) -> None:
        super().__init__(
            f"{resource} {identifier!r} was not found",
            reason=reason or f"{resource.upper().replace(' ', '_')}_NOT_FOUND",
            metadata={"resource": resource, "id": identifier},
        )


class AlreadyExists(EmbrecError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(EmbrecError):
    reason = "FAILED_PRECONDITION"


class Unauthenticated(EmbrecError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(EmbrecError):
    reason = "PERMISSION_DENIED"


class ResourceExhausted(EmbrecError):
    reason = "RESOURCE_EXHAUSTED"


class QuotaExceeded(ResourceExhausted):
    """A plan's limit (``gateway/plans.toml``) would be passed; ``metadata`` says which
    plan and limit, plus the caller's figures."""

    reason = "QUOTA_EXCEEDED"

    def __init__(
        self, message: str, *, plan: str, limit: int, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, metadata={"plan": plan, "limit": str(limit), **(metadata or {})})


class Unavailable(EmbrecError):
    reason = "UNAVAILABLE"


class NotImplementedYet(EmbrecError):
    """The method is part of the contract but its behaviour is not built yet."""

    reason = "NOT_IMPLEMENTED"

    def __init__(self, what: str, *, tracked_in: str = "") -> None:
        hint = f" (tracked in {tracked_in})" if tracked_in else ""
        super().__init__(
            f"{what} is not implemented yet{hint}",
            metadata={"feature": what, **({"tracked_in": tracked_in} if tracked_in else {})},
        )
