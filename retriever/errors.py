"""Domain exceptions of the retrieval core (no grpc here; services map them).

::

    RetrieverError
    ├── InvalidRequestError      bad argument (count ≤ 0, malformed split)  → INVALID_ARGUMENT
    ├── UnknownItemError         item id not in the tenant's catalog        → NOT_FOUND
    ├── ModelNotLoadedError      (tenant, version) not in the registry       → UNAVAILABLE
    └── ArtifactError            model artifacts missing or inconsistent     → FAILED_PRECONDITION
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "InvalidRequestError",
    "ModelNotLoadedError",
    "RetrieverError",
    "UnknownItemError",
]


class RetrieverError(Exception):
    """Base of every error raised on purpose by ``retriever``."""


class InvalidRequestError(RetrieverError, ValueError):
    """An argument is out of range or malformed."""


class UnknownItemError(RetrieverError, KeyError):
    """The item id is not in the tenant's catalog (or has no embedding)."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id

    def __str__(self) -> str:
        return f"unknown item {self.item_id!r}"


class ModelNotLoadedError(RetrieverError, LookupError):
    """No index is loaded for the (tenant, model version)."""

    def __init__(self, tenant_id: str, model_version: str) -> None:
        super().__init__(tenant_id, model_version)
        self.tenant_id = tenant_id
        self.model_version = model_version

    def __str__(self) -> str:
        return f"model {self.model_version!r} of tenant {self.tenant_id!r} is not loaded"


class ArtifactError(RetrieverError):
    """Model artifacts are missing or inconsistent."""
