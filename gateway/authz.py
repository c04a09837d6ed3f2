"""The gateway's authorization decision (Envoy ext_authz, v3 gRPC ``Check``).

For every request Envoy asks: who is calling, may they call this RPC, for this tenant?

* Credentials: ``Authorization: Bearer <access token | API key>`` or ``X-Api-Key``.
  Access tokens (JWT, HS256) are verified locally — no database — and the verified
  principal is kept in a bounded LRU (keyed by SHA-256 of the token) until the token's
  own ``exp``, never beyond: a client sends the same token for up to 15 minutes, and
  PyJWT's decode is the costliest step of a decision. API keys are found by
  their public prefix and compared by SHA-256 of the secret; the row is cached for
  ``cache_ttl`` seconds and dropped at once when the bus announces a key change.
* The tenant behind a credential must exist and be active (suspended → 403); tenant
  rows are cached the same way and dropped on ``tenant.*`` audit events.
* The RPC (resolved from the gRPC path or the REST binding, see gateway/policy.py)
  decides: public, any tenant principal with a scope, or platform admins only.
* A tenant principal may name only its own tenant (id or slug), wherever the request
  names one (path, query, JSON or protobuf body): anything else is 403.

On success the upstream gets the principal as signed headers (x-tenant-id, x-principal,
x-role, x-scopes, x-plan, x-impersonator, x-embrec-principal-sig) plus the rate-limit
key and limit, every client-sent copy of them being replaced or removed first. On
failure the client gets 401 (no, malformed, invalid, expired or revoked credential; an
API key's expiry is compared with the clock on every request, cached row or not) or
403 (scope, admin-only, other tenant, suspended) and a JSON body; gRPC callers see
UNAUTHENTICATED / PERMISSION_DENIED.

This module is the domain side (no grpc import); gateway/service.py adapts it to Envoy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.plans import PlanTable
from gateway.policy import Access, MethodPolicy, ResolvedCall
from services.errors import EmbrecError, PermissionDenied, Unauthenticated
from services.identity.credentials import (
    API_KEY_PREFIX,
    PRINCIPAL_HEADERS,
    SIGNATURE_HEADER,
    Principal,
    api_key_matches,
    check_api_key_usable,
    parse_api_key,
    principal_headers,
    verify_access_token,
)
from services.storage.models import ApiKey, Tenant

__all__ = [
    "RATE_LIMIT_KEY_HEADER",
    "RATE_LIMIT_LIMIT_HEADER",
    "AnswerMemo",
    "Authorizer",
    "AuthzRequest",
    "Decision",
    "TenantInfo",
    "VerifiedTokenCache",
    "upstream_changes",
]

logger = logging.getLogger(__name__)

#: Set by authz for Envoy's rate-limit filters: whose bucket, and its effective limit.
RATE_LIMIT_KEY_HEADER = "x-embrec-rl-key"
RATE_LIMIT_LIMIT_HEADER = "x-embrec-rl-limit"
#: Every header only the gateway may set; client copies never reach a service.
GATEWAY_HEADERS = (
    *PRINCIPAL_HEADERS,
    SIGNATURE_HEADER,
    RATE_LIMIT_KEY_HEADER,
    RATE_LIMIT_LIMIT_HEADER,
)
_STAFF_ROLES = frozenset({"platform_admin", "service"})


@dataclass(frozen=True)
class AuthzRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""
    source_ip: str = ""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    http_status: int = 200
    reason: str = ""
    message: str = ""
    set_headers: Mapping[str, str] = field(default_factory=dict)
    remove_headers: tuple[str, ...] = ()
    principal: Principal | None = None
    method: str = ""

    def json_body(self) -> str:
        return json.dumps(
            {"code": self.http_status, "reason": self.reason, "message": self.message}
        )


@dataclass(frozen=True)
class TenantInfo:
    id: str
    slug: str
    status: str
    plan: str
    settings: Mapping[str, Any]


@dataclass(frozen=True)
class _KeyRecord:
    id: str
    tenant_id: str
    secret_hash: str
    scopes: frozenset[str]
    revoked: bool
    expires_at: datetime | None


K = TypeVar("K")
V = TypeVar("V")


class _TtlCache(Generic[K, V]):
    """A dict whose entries expire; small and per process, so no eviction policy."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._data: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._data.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: K, value: V) -> None:
        self._data[key] = (time.monotonic() + self.ttl, value)

    def drop_where(self, predicate: Any) -> int:
        doomed = [k for k, (_, v) in self._data.items() if predicate(k, v)]
        for key in doomed:
            del self._data[key]
        return len(doomed)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class VerifiedTokenCache:
    """Principals of verified access tokens, LRU-bounded, each until its token expires.

    Keyed by SHA-256 of the token (the cache never holds a bearer credential), so a
    token that differs in one byte is a miss and goes through full verification. An
    entry is used only while ``now < exp``; after that the token is verified again,
    which reports it expired.
    """

    def __init__(self, max_entries: int = 10_000, clock: Any = time.time) -> None:
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[bytes, tuple[float, Principal]] = OrderedDict()

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, key: bytes) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, principal = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return principal

    def get_with_expiry(self, key: bytes) -> tuple[float, Principal] | None:
        """(expiry, principal), like :meth:`get`."""
        principal = self.get(key)
        if principal is None:
            return None
        return self._entries[key][0], principal

    def put(self, key: bytes, expires: float, principal: Principal) -> None:
        if self._clock() >= expires:
            return
        self._entries[key] = (expires, principal)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class _DecisionCache:
    """Allowed decisions per (credential hash, RPC, rule, tenants named), for ``ttl``
    seconds and never past the credential's own expiry: the same caller calling the
    same RPC gets the decision (and its signed headers) already made.

    Everything a decision rests on is either in the key (the credential, the RPC and the
    tenants the request names), bounded by the expiry (token ``exp``, API key
    ``expires_at``), or behind the invalidation that clears the whole cache (key and
    tenant changes from the bus). A decision computed across an invalidation is not
    stored (``generation``). Denials are never cached.
    """

    def __init__(self, ttl: float, max_entries: int, clock: Any = time.time) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: dict[tuple[Any, ...], tuple[float, Decision]] = {}
        self.generation = 0

    def get(self, key: tuple[Any, ...]) -> Decision | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            del self._entries[key]
            return None
        return entry[1]

    def put(
        self, key: tuple[Any, ...], decision: Decision, generation: int, valid_until: float
    ) -> None:
        if self.ttl <= 0 or generation != self.generation:
            return
        expires = min(self._clock() + self.ttl, valid_until)
        if expires <= self._clock():
            return
        if len(self._entries) >= self._max:
            self._entries.clear()  # short-lived entries: starting over costs one miss each
        self._entries[key] = (expires, decision)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


A = TypeVar("A")


class AnswerMemo(Generic[A]):
    """A transport's answer per allowed decision, built once while the authorizer keeps
    handing back the same cached :class:`Decision` object.

    Keyed by the decision's identity; the entry holds the decision, so its id cannot be
    reused by another object while the entry exists. Cleared when full.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._entries: dict[int, tuple[Decision, A]] = {}

    def get(self, decision: Decision) -> A | None:
        entry = self._entries.get(id(decision))
        return entry[1] if entry is not None and entry[0] is decision else None

    def put(self, decision: Decision, answer: A) -> None:
        if not decision.allowed or decision.principal is None:
            return  # denials and public decisions are never cached by the authorizer
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[id(decision)] = (decision, answer)


def _token_expiry(token: str) -> float | None:
    """``exp`` of a token whose signature was just verified (so its payload is ours)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error):
        return None


class Authorizer:
    """Decides one request at a time; safe to share across concurrent calls."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        jwt_secret: str,
        internal_secret: str,
        policy: MethodPolicy,
        plans: PlanTable,
        cache_ttl: float = 30.0,
        token_cache_size: int = 10_000,
        decision_ttl: float = 1.0,
    ) -> None:
        self._sessions = sessions
        self._jwt_secret = jwt_secret
        self._internal_secret = internal_secret
        self.policy = policy
        self.plans = plans
        self._keys: _TtlCache[str, _KeyRecord | None] = _TtlCache(cache_ttl)
        self._tenants: _TtlCache[str, TenantInfo | None] = _TtlCache(cache_ttl)
        self._tokens = VerifiedTokenCache(token_cache_size)
        self._decisions = _DecisionCache(decision_ttl, max_entries=token_cache_size)
        #: Database lookups made (for benchmarks and tests of the caches).
        self.lookups = 0

    # --- cache invalidation (called by the bus watcher in gateway/service.py) ----------

    def invalidate_tenant(self, tenant_id: str) -> None:
        self._tenants.drop_where(lambda k, _: k == tenant_id)
        self._decisions.clear()

    def invalidate_keys_of(self, tenant_id: str) -> None:
        self._keys.drop_where(lambda _, v: v is None or v.tenant_id == tenant_id)
        self._decisions.clear()

    def clear_caches(self) -> None:
        self._keys.clear()
        self._tenants.clear()
        self._tokens.clear()
        self._decisions.clear()

    # --- the decision ------------------------------------------------------------------

    async def check(self, request: AuthzRequest) -> Decision:
        call = self.policy.resolve(
            request.method, request.path, request.headers.get("content-type", ""), request.body
        )
        key = None
        if call.rule.access is not Access.PUBLIC:  # public decisions name the client's address
            credential = _raw_credential(request.headers)
            if credential:
                key = (
                    hashlib.sha256(credential.encode()).digest(),
                    call.method,
                    call.rule,
                    call.named_tenants,
                )
                cached = self._decisions.get(key)
                if cached is not None:
                    return cached
        generation = self._decisions.generation
        try:
            decision, valid_until = await self._decide(request, call)
        except (Unauthenticated, PermissionDenied) as exc:
            return _deny(exc, call.method)
        if key is not None and decision.allowed:
            self._decisions.put(key, decision, generation, valid_until)
        return decision

    async def _decide(self, request: AuthzRequest, call: ResolvedCall) -> tuple[Decision, float]:
        """The decision, and until when (wall clock) its credential is valid."""
        credential = _credential(request.headers)
        if call.rule.access is Access.PUBLIC:
            # Public calls are limited per client address under the anonymous plan.
            plan = self.plans.get("anonymous")
            return Decision(
                allowed=True,
                set_headers={
                    RATE_LIMIT_KEY_HEADER: f"ip:{request.source_ip or 'unknown'}",
                    RATE_LIMIT_LIMIT_HEADER: str(plan.requests_per_second),
                    "x-plan": plan.name,
                },
                remove_headers=tuple(h for h in GATEWAY_HEADERS if h != "x-plan"),
                method=call.method,
            ), 0.0
        if credential is None:
            raise Unauthenticated(
                "This call needs a credential: send 'Authorization: Bearer <token or API key>'.",
                reason="CREDENTIAL_MISSING",
            )
        principal, valid_until = await self._authenticate(credential)
        tenant: TenantInfo | None = None
        if principal.tenant_id:
            tenant = await self._tenant(principal.tenant_id)
            if tenant is None or tenant.status == "deleted":
                raise Unauthenticated(
                    "The credential's tenant no longer exists.", reason="TENANT_UNKNOWN"
                )
            if tenant.status != "active":
                raise PermissionDenied(
                    f"Tenant {tenant.slug} is {tenant.status}; contact support.",
                    reason="TENANT_SUSPENDED",
                    metadata={"tenant_id": tenant.id},
                )
            principal = replace(principal, plan=tenant.plan)
        staff = principal.role in _STAFF_ROLES and not principal.impersonator
        if call.rule.access is Access.ADMIN and not staff:
            raise PermissionDenied(
                "Only platform administrators may call this method.",
                reason="ADMIN_ONLY",
                metadata={"method": call.method},
            )
        if not staff:
            if call.rule.scope and not principal.has_scope(call.rule.scope):
                raise PermissionDenied(
                    f"The credential lacks the scope {call.rule.scope!r} this method needs.",
                    reason="SCOPE_MISSING",
                    metadata={"scope": call.rule.scope, "method": call.method},
                )
            own = {principal.tenant_id, tenant.slug if tenant else ""} - {""}
            others = [t for t in call.named_tenants if t and t not in own]
            if others or not principal.tenant_id:
                raise PermissionDenied(
                    "A credential may only act on its own tenant.",
                    reason="CROSS_TENANT",
                    metadata={"method": call.method},
                )
        return self._allow(principal, tenant, call.method), valid_until

    def _allow(self, principal: Principal, tenant: TenantInfo | None, method: str) -> Decision:
        if tenant is not None:
            plan = self.plans.effective(tenant.plan, tenant.settings)
            key = tenant.id
        else:
            plan = self.plans.get("internal")
            key = principal.subject
        if tenant is None:
            principal = replace(principal, plan="internal")
        headers = principal_headers(principal, self._internal_secret)
        headers[RATE_LIMIT_KEY_HEADER] = key
        headers[RATE_LIMIT_LIMIT_HEADER] = str(plan.requests_per_second)
        return Decision(allowed=True, set_headers=headers, principal=principal, method=method)

    # --- credentials -------------------------------------------------------------------

    async def _authenticate(self, credential: str) -> tuple[Principal, float]:
        """The principal, and the wall-clock time its credential stops being valid."""
        if credential.startswith(API_KEY_PREFIX):
            return await self._api_key_principal(credential)
        key = self._tokens.key(credential)
        cached = self._tokens.get_with_expiry(key)
        if cached is not None:
            return cached[1], cached[0]
        principal = verify_access_token(credential, self._jwt_secret)  # raises if bad
        expires = _token_expiry(credential)
        if expires is not None:
            self._tokens.put(key, expires, principal)
        return principal, expires if expires is not None else 0.0

    async def _api_key_principal(self, key: str) -> tuple[Principal, float]:
        prefix, secret = parse_api_key(key)
        record = self._keys.get(prefix)
        if record is None:
            record = await self._load_key(prefix)
            self._keys.put(prefix, record)
        if record is None or not api_key_matches(secret, record.secret_hash):
            raise Unauthenticated("The API key is invalid.", reason="API_KEY_INVALID")
        # Against the clock on every request: the row may sit in the cache past its expiry.
        check_api_key_usable(revoked=record.revoked, expires_at=record.expires_at)
        principal = Principal(
            subject=f"apikey:{record.id}",
            tenant_id=record.tenant_id,
            role="api_key",
            scopes=record.scopes,
        )
        return principal, record.expires_at.timestamp() if record.expires_at else float("inf")

    async def _load_key(self, prefix: str) -> _KeyRecord | None:
        self.lookups += 1
        async with self._sessions() as session:
            row = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if row is None:
            return None
        return _KeyRecord(
            id=row.id,
            tenant_id=row.tenant_id,
            secret_hash=row.secret_hash,
            scopes=frozenset(str(s) for s in row.scopes or ()),
            revoked=row.revoked_at is not None,
            expires_at=row.expires_at,
        )

    async def _tenant(self, tenant_id: str) -> TenantInfo | None:
        cached = self._tenants.get(tenant_id)
        if cached is not None:
            return cached
        self.lookups += 1
        async with self._sessions() as session:
            row = await session.get(Tenant, tenant_id)
        info = (
            None
            if row is None
            else TenantInfo(
                id=row.id,
                slug=row.slug,
                status="deleted" if row.deleted_at is not None else row.status,
                plan=row.plan,
                settings=dict(row.settings or {}),
            )
        )
        self._tenants.put(tenant_id, info)
        return info


def _raw_credential(headers: Mapping[str, str]) -> str:
    """What identifies the caller, as sent (the decision cache's key; never parsed)."""
    authorization = headers.get("authorization", "")
    api_key = headers.get("x-api-key", "")
    if not authorization and not api_key:
        return ""
    return f"{authorization}\n{api_key}"


def _credential(headers: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization", "").strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated(
                "Malformed Authorization header; use 'Bearer <token or API key>'.",
                reason="CREDENTIAL_MALFORMED",
            )
        return value.strip()
    api_key = headers.get("x-api-key", "").strip()
    return api_key or None


def upstream_changes(decision: Decision) -> tuple[dict[str, str], list[str]]:
    """(headers to set, headers to remove) on the request an allowed decision lets through.

    Empty values are not set (Envoy drops empty headers): such a header is removed, as is
    every gateway header the decision does not set, so no client-sent copy survives.
    """
    kept = {k: v for k, v in decision.set_headers.items() if v}
    removed = sorted({*decision.remove_headers, *(h for h in GATEWAY_HEADERS if h not in kept)})
    return kept, removed


def _deny(exc: EmbrecError, method: str) -> Decision:
    status = 401 if isinstance(exc, Unauthenticated) else 403
    return Decision(
        allowed=False, http_status=status, reason=exc.reason, message=exc.message, method=method
    )
