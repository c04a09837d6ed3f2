"""AIP-158 pagination: page_size defaults and limits, opaque page tokens.

A token encodes the offset and a fingerprint of the filters it was issued for, so a
token replayed with other filters is rejected (INVALID_ARGUMENT) instead of silently
returning a page of a different list.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from services.errors import FieldViolation, InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "Page", "next_token", "parse_page"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page:
    offset: int
    size: int
    fingerprint: str


def _fingerprint(filters: tuple[object, ...]) -> str:
    return hashlib.sha256(repr(filters).encode()).hexdigest()[:16]


def parse_page(page_size: int, page_token: str, filters: tuple[object, ...] = ()) -> Page:
    """Validate page_size (0 → default, capped at the maximum) and decode the token."""
    if page_size < 0:
        raise InvalidArgument(
            "page_size must not be negative",
            violations=[FieldViolation("page_size", "must be >= 0")],
        )
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    fingerprint = _fingerprint(filters)
    if not page_token:
        return Page(0, size, fingerprint)
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded))
        offset = int(data["o"])
        token_fingerprint = str(data["f"])
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(
            "page_token is not a token this list issued",
            violations=[FieldViolation("page_token", "malformed")],
        ) from None
    if token_fingerprint != fingerprint or offset < 0:
        raise InvalidArgument(
            "page_token was issued for other filters; start again without a token",
            violations=[FieldViolation("page_token", "does not match the request's filters")],
        )
    return Page(offset, size, fingerprint)


def next_token(page: Page, returned: int, has_more: bool) -> str:
    """The token for the page after this one, or "" at the end of the list."""
    if not has_more:
        return ""
    raw = json.dumps({"o": page.offset + returned, "f": page.fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
