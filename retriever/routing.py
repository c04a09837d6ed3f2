"""Traffic split between model versions (A/B tests, canaries).

Each user must always see the same variant, across processes, restarts and hosts,
so the bucket comes from a keyed cryptographic hash (BLAKE2b of tenant and user id),
never Python's ``hash()`` (salted per process). A user lands in one of 10,000
buckets; a split ``[("v1", 90), ("v2", 10)]`` gives buckets 0-8999 to v1 and the rest
to v2, so percentages have 0.01 % resolution, and growing the last-listed variant
from 10 % to 20 % keeps every user it already had.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from retriever.errors import InvalidRequestError

__all__ = ["BUCKETS", "bucket_of", "choose_version"]

BUCKETS = 10_000
_PERSON = b"embrec-split"  # BLAKE2b personalisation: domain separation for this use


def bucket_of(tenant_id: str, user_id: str) -> int:
    """Stable bucket in [0, BUCKETS) for a (tenant, user)."""
    h = hashlib.blake2b(digest_size=8, person=_PERSON)
    h.update(tenant_id.encode())
    h.update(b"\x1f")
    h.update(user_id.encode())
    return int.from_bytes(h.digest(), "big") % BUCKETS


def choose_version(tenant_id: str, user_id: str, split: Sequence[tuple[str, float]]) -> str:
    """The version serving this user under ``split`` [(version, percent)], summing to 100."""
    if not split:
        raise InvalidRequestError("traffic split is empty")
    if any(p < 0 for _, p in split):
        raise InvalidRequestError("traffic split percentages must be non-negative")
    total = sum(p for _, p in split)
    if abs(total - 100.0) > 1e-6:
        raise InvalidRequestError(f"traffic split percentages sum to {total}, expected 100")
    b = bucket_of(tenant_id, user_id)
    edge = 0.0
    for version, pct in split:
        edge += pct * BUCKETS / 100.0
        if b < round(edge):
            return version
    return next(v for v, p in reversed(split) if p > 0)
