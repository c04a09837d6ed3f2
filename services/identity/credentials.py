"""Credentials: access tokens (JWT), API keys, and the principal they stand for.

One module so the tenant service (which issues credentials) and the gateway's authz
service (which checks them on every request) cannot disagree on a format.

* Access tokens are HS256 JWTs that live 15 minutes, verified locally (no database):
  claims ``sub`` (user id), ``tid`` (tenant id, empty for platform staff), ``role``,
  ``scp`` (scopes), ``imp`` (impersonating admin's user id, if any), ``typ="access"``,
  ``iat``, ``exp``, ``jti``.
* API keys look like ``emb_live_<prefix>_<secret>``: the prefix (public, unique) finds
  the row; only SHA-256 of the secret is stored. A key carries ~190 bits of entropy, so
  a fast hash is the right tool (argon2 is for low-entropy passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt

from services.errors import Unauthenticated

__all__ = [
    "ACCESS_TOKEN_TTL",
    "API_KEY_PREFIX",
    "PRINCIPAL_HEADERS",
    "SCOPES",
    "SIGNATURE_HEADER",
    "GeneratedApiKey",
    "Principal",
    "api_key_matches",
    "check_api_key_usable",
    "format_utc",
    "generate_api_key",
    "hash_api_key_secret",
    "issue_access_token",
    "parse_api_key",
    "principal_from_headers",
    "principal_headers",
    "verify_access_token",
]

ACCESS_TOKEN_TTL = timedelta(minutes=15)
API_KEY_PREFIX = "emb_live_"
_ALGORITHM = "HS256"
_ISSUER = "embrec"

#: Every scope a credential may carry. Console users get all scopes of their role.
SCOPES = frozenset(
    {
        "recommend:read",
        "events:write",
        "data:read",
        "data:write",
        "models:read",
        "models:write",
        "keys:manage",
        "tenant:manage",
        "audit:read",
        "analytics:read",
    }
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: derived only from a verified credential, never from the request."""

    subject: str  # user id, or "apikey:<key id>"
    tenant_id: str  # "" for platform staff
    role: str  # platform_admin | tenant_admin | tenant_member | api_key | service
    scopes: frozenset[str] = field(default_factory=frozenset)
    impersonator: str = ""
    plan: str = "free"

    @property
    def is_platform_admin(self) -> bool:
        return self.role == "platform_admin" and not self.impersonator

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


def issue_access_token(
    principal: Principal,
    secret: str,
    *,
    now: datetime | None = None,
    ttl: timedelta = ACCESS_TOKEN_TTL,
) -> tuple[str, datetime]:
    """Sign an access token for ``principal``; returns (token, expiry)."""
    issued = now or datetime.now(UTC)
    expires = issued + ttl
    claims = {
        "iss": _ISSUER,
        "sub": principal.subject,
        "tid": principal.tenant_id,
        "role": principal.role,
        "scp": sorted(principal.scopes),
        "imp": principal.impersonator,
        "plan": principal.plan,
        "typ": "access",
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM), expires


def verify_access_token(token: str, secret: str) -> Principal:
    """Check signature, expiry and type; raise Unauthenticated with a reason otherwise."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            issuer=_ISSUER,
            options={"require": ["exp", "iat", "sub", "typ"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated(
            "The access token has expired; refresh it.", reason="TOKEN_EXPIRED"
        ) from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("The access token is invalid.", reason="TOKEN_INVALID") from None
    if claims.get("typ") != "access":
        raise Unauthenticated("Not an access token.", reason="TOKEN_INVALID")
    return Principal(
        subject=str(claims["sub"]),
        tenant_id=str(claims.get("tid", "")),
        role=str(claims.get("role", "")),
        scopes=frozenset(str(s) for s in claims.get("scp", [])),
        impersonator=str(claims.get("imp", "")),
        plan=str(claims.get("plan", "free")),
    )


@dataclass(frozen=True)
class GeneratedApiKey:
    full_key: str  # shown to the user once
    prefix: str  # stored, unique, visible in listings
    secret_hash: str  # stored


def hash_api_key_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_api_key() -> GeneratedApiKey:
    prefix = secrets.token_hex(6)  # 12 hex chars: visible, unique in practice
    secret = secrets.token_urlsafe(24)
    return GeneratedApiKey(
        full_key=f"{API_KEY_PREFIX}{prefix}_{secret}",
        prefix=prefix,
        secret_hash=hash_api_key_secret(secret),
    )


def parse_api_key(key: str) -> tuple[str, str]:
    """Split ``emb_live_<prefix>_<secret>`` into (prefix, secret); raise if malformed."""
    if not key.startswith(API_KEY_PREFIX):
        raise Unauthenticated("Malformed API key.", reason="API_KEY_INVALID")
    prefix, sep, secret = key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or len(prefix) != 12 or not secret:
        raise Unauthenticated("Malformed API key.", reason="API_KEY_INVALID")
    return prefix, secret


def api_key_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_key_secret(secret), stored_hash)


def format_utc(when: datetime) -> str:
    """``2026-11-25T10:00:00Z``: the form error messages and metadata use for a time."""
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def check_api_key_usable(
    *, revoked: bool, expires_at: datetime | None, now: datetime | None = None
) -> None:
    """Raise Unauthenticated for a revoked or expired key (its secret already matched).

    Called on every use with the current time rather than when the row is cached, so a
    key stops working at its expiry time whatever the caches hold. Revocation is named
    first: it is the more deliberate act.
    """
    if revoked:
        raise Unauthenticated("The API key has been revoked.", reason="API_KEY_REVOKED")
    if expires_at is not None and (now or datetime.now(UTC)) >= expires_at:
        when = format_utc(expires_at)
        raise Unauthenticated(
            f"The API key expired at {when}; create a new one.",
            reason="API_KEY_EXPIRED",
            metadata={"expire_time": when},
        )


# --- the principal as the gateway hands it to the services -----------------------------

#: Headers the gateway's authz sets (after removing any client-sent copies). The last one
#: is an HMAC over the others with the internal secret, so a service can tell headers set
#: by the gateway from headers a caller made up.
PRINCIPAL_HEADERS = (
    "x-tenant-id",
    "x-principal",
    "x-role",
    "x-scopes",
    "x-plan",
    "x-impersonator",
)
SIGNATURE_HEADER = "x-embrec-principal-sig"


def _signature(values: list[str], internal_secret: str) -> str:
    message = "\n".join(values).encode()
    return hmac.new(internal_secret.encode(), message, hashlib.sha256).hexdigest()


def principal_headers(principal: Principal, internal_secret: str) -> dict[str, str]:
    """The headers (signature included) that carry ``principal`` to the services."""
    values = [
        principal.tenant_id,
        principal.subject,
        principal.role,
        ",".join(sorted(principal.scopes)),
        principal.plan,
        principal.impersonator,
    ]
    headers = dict(zip(PRINCIPAL_HEADERS, values, strict=True))
    headers[SIGNATURE_HEADER] = _signature(values, internal_secret)
    return headers


def principal_from_headers(metadata: dict[str, str], internal_secret: str) -> Principal | None:
    """The principal the gateway vouched for, or None when absent or not signed by it."""
    signature = metadata.get(SIGNATURE_HEADER)
    if not signature:
        return None
    values = [metadata.get(name, "") for name in PRINCIPAL_HEADERS]
    if not hmac.compare_digest(signature, _signature(values, internal_secret)):
        return None
    tenant_id, subject, role, scopes, plan, impersonator = values
    return Principal(
        subject=subject,
        tenant_id=tenant_id,
        role=role,
        scopes=frozenset(s for s in scopes.split(",") if s),
        impersonator=impersonator,
        plan=plan or "free",
    )
