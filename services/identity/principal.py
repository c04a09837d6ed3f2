"""Who is calling, and may they do this? The one authorisation helper every service uses.

Every servicer method starts with one call::

    from services.identity.principal import authenticator_for

    class RetrievalServicer(...):
        def __init__(self, ctx: ServiceContext) -> None:
            self._auth = authenticator_for(ctx)   # raises ConfigError without secrets

        async def Recommend(self, request, context):
            principal = await self._auth.require(context, scope="recommend:read")
            tenant = await self._auth.resolve_tenant(principal, request.tenant_id)
            ...  # query with tenant.id, never with anything else from the request
            record_audit(session, tenant_id=tenant.id, actor=principal.subject,
                         impersonator=principal.impersonator, ...)

``require`` authenticates and checks the role, the scope and the tenant's state;
``resolve_tenant`` turns the request's optional ``tenant_id`` ("id or slug", honoured
only for platform admins) into the tenant the call acts on. Both raise domain errors
(Unauthenticated → 401, PermissionDenied → 403), which the runtime maps.

How a credential becomes a :class:`Principal` (``authenticate``), in order:

1. gateway headers (``x-tenant-id`` …, signed with ``EMBREC_INTERNAL_SECRET``): Envoy's
   authz already checked the credential; a bad signature is refused, never ignored;
2. ``authorization: Bearer <JWT>``: verified locally (signature, expiry);
3. ``authorization: Bearer emb_live_…``: the API key's row, found by its public prefix,
   cached for at most a second so a revocation anywhere is effective within a second
   (at once in the process that revoked it); an expiry is checked against the clock on
   every use, so it is effective at its instant; ``last_used_at`` written at most once a
   minute per key;
4. anything else: Unauthenticated.

Tenant state, also cached for at most a second: a deleted tenant's credentials are
refused (TENANT_INACTIVE); a suspended tenant's are refused with TENANT_SUSPENDED, except
console users' read-only calls (``allow_suspended=True``), so its people can still see
their data and the reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from services.config import Settings
from services.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from services.identity.credentials import (
    API_KEY_PREFIX,
    SCOPES,
    SIGNATURE_HEADER,
    Principal,
    api_key_matches,
    check_api_key_usable,
    parse_api_key,
    principal_from_headers,
    verify_access_token,
)
from services.runtime.context import note_tenant

if TYPE_CHECKING:
    import grpc

    from services.app import ServiceContext

__all__ = [
    "API_KEY_SCOPES",
    "DEFAULT_API_KEY_SCOPES",
    "PLATFORM_ADMIN",
    "ROLE_SCOPES",
    "TENANT_ADMIN",
    "TENANT_MEMBER",
    "ApiKeyRecord",
    "Authenticator",
    "Directory",
    "TenantRecord",
    "authenticate",
    "authenticator_for",
    "metadata_of",
    "source_ip",
]

logger = logging.getLogger(__name__)

PLATFORM_ADMIN = "platform_admin"
TENANT_ADMIN = "tenant_admin"
TENANT_MEMBER = "tenant_member"
API_KEY_ROLE = "api_key"

#: What a console role may do. Members use a tenant; admins also manage keys and settings.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    PLATFORM_ADMIN: SCOPES,
    TENANT_ADMIN: SCOPES,
    TENANT_MEMBER: SCOPES - {"keys:manage", "tenant:manage"},
}
#: Scopes an API key may carry: data-plane work, never key or tenant management.
API_KEY_SCOPES = frozenset(
    {
        "recommend:read",
        "events:write",
        "data:read",
        "data:write",
        "models:read",
        "models:write",
        "analytics:read",
    }
)
DEFAULT_API_KEY_SCOPES = ("recommend:read", "events:write")

#: How long a cached API key or tenant state may be used: the revocation/suspension delay.
CACHE_SECONDS = 1.0
#: last_used_at is a hint for people ("used 3 minutes ago"), not a log of every call.
LAST_USED_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    tenant_id: str
    secret_hash: str
    scopes: frozenset[str]
    revoked: bool
    plan: str
    last_used_at: datetime | None
    #: Compared with the wall clock on every use, never only when the row is loaded.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class TenantRecord:
    id: str
    slug: str
    status: str  # active | suspended | deleted
    plan: str


class Directory(Protocol):
    """Where credentials and tenant states are looked up (SQL in production)."""

    async def api_key(self, prefix: str) -> ApiKeyRecord | None: ...

    async def tenant(self, id_or_slug: str) -> TenantRecord | None: ...

    async def touch_api_key(self, key_id: str, when: datetime) -> None: ...


ApiKeyLookup = Callable[[str], Awaitable[ApiKeyRecord | None]]


def metadata_of(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """The call's text metadata, keys lower-cased (binary headers are skipped)."""
    return {
        str(key).lower(): value
        for key, value in (context.invocation_metadata() or ())
        if isinstance(value, str)
    }


def source_ip(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The client's address: Envoy's x-forwarded-for first hop, else the gRPC peer."""
    forwarded = metadata_of(context).get("x-forwarded-for", "")
    if forwarded:
        return forwarded.split(",")[0].strip()[:64]
    peer = context.peer() or ""
    # "ipv4:127.0.0.1:5555" / "ipv6:[::1]:5555"
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        host = rest.rsplit(":", 1)[0]
        return host.strip("[]")[:64]
    return peer[:64]


async def authenticate(
    metadata: dict[str, str],
    *,
    settings: Settings,
    api_keys_lookup: ApiKeyLookup,
) -> Principal:
    """The principal behind a call's metadata, or Unauthenticated (see module docstring)."""
    jwt_secret, internal_secret = settings.require_identity_secrets()
    if metadata.get(SIGNATURE_HEADER):
        vouched = principal_from_headers(metadata, internal_secret)
        if vouched is None:
            raise Unauthenticated(
                "The principal headers are not signed by the gateway.",
                reason="PRINCIPAL_SIGNATURE_INVALID",
            )
        return vouched
    header = metadata.get("authorization", "").strip()
    if not header:
        raise Unauthenticated(
            "This call needs a credential: send 'Authorization: Bearer <access token or API "
            "key>' (POST /api/v1/auth/login gives an access token).",
            reason="CREDENTIAL_MISSING",
        )
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthenticated(
            "The Authorization header must be 'Bearer <access token or API key>'.",
            reason="CREDENTIAL_INVALID",
        )
    if credential.startswith(API_KEY_PREFIX):
        prefix, secret = parse_api_key(credential)
        record = await api_keys_lookup(prefix)
        if record is None or not api_key_matches(secret, record.secret_hash):
            raise Unauthenticated("The API key is not valid.", reason="API_KEY_INVALID")
        check_api_key_usable(revoked=record.revoked, expires_at=record.expires_at)
        return Principal(
            subject=f"apikey:{record.id}",
            tenant_id=record.tenant_id,
            role=API_KEY_ROLE,
            scopes=record.scopes,
            plan=record.plan,
        )
    return verify_access_token(credential, jwt_secret)


class _TtlCache:
    """A tiny time-bounded cache; entries older than ``ttl`` seconds are refetched.

    Loads are single-flight: when an entry expires under load, the requests that miss
    it together share one lookup instead of each sending the same query (with a 1 s
    TTL and 50 requests in flight, every expiry used to cost 50 queries).
    """

    def __init__(self, ttl: float, clock: Callable[[], float], max_entries: int = 10_000) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max = max_entries
        self._entries: dict[str, tuple[float, Any]] = {}
        self._loading: dict[str, asyncio.Task[Any]] = {}
        # Bumped by forget/clear: a lookup that started before must not store what it
        # read (it may predate the suspension or revocation that caused the forget).
        self._generation = 0

    def get(self, key: str) -> tuple[bool, Any]:
        hit = self._entries.get(key)
        if hit is None or self._clock() - hit[0] > self._ttl:
            return False, None
        return True, hit[1]

    async def get_or_load(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        hit, value = self.get(key)
        if hit:
            return value
        task = self._loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key, load))
            self._loading[key] = task
        # shield: one caller cancelled (client gone) must not cancel the others' lookup.
        return await asyncio.shield(task)

    async def _load(self, key: str, load: Callable[[], Awaitable[Any]]) -> Any:
        generation = self._generation
        try:
            value = await load()
            if generation == self._generation:
                self.put(key, value)
            return value
        finally:
            if self._loading.get(key) is asyncio.current_task():
                del self._loading[key]

    def put(self, key: str, value: Any) -> None:
        if len(self._entries) >= self._max:
            self._entries.clear()  # crude, but bounded; a miss only costs one query
        self._entries[key] = (self._clock(), value)

    def forget(self, key: str) -> None:
        self._generation += 1
        self._entries.pop(key, None)
        self._loading.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._loading.clear()


class Authenticator:
    """Authentication plus the authorisation checks every servicer needs."""

    def __init__(
        self,
        settings: Settings,
        directory: Directory,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings.require_identity_secrets()
        self.settings = settings
        self._directory = directory
        self._keys = _TtlCache(cache_seconds, clock)
        self._tenants = _TtlCache(cache_seconds, clock)
        self._touched: dict[str, datetime] = {}

    # -- lookups, cached ----------------------------------------------------------------

    async def _api_key(self, prefix: str) -> ApiKeyRecord | None:
        return await self._keys.get_or_load(  # type: ignore[no-any-return]
            prefix, lambda: self._directory.api_key(prefix)
        )

    async def tenant_state(self, tenant_id: str) -> TenantRecord | None:
        return await self._tenants.get_or_load(  # type: ignore[no-any-return]
            tenant_id, lambda: self._directory.tenant(tenant_id)
        )

    def forget_api_key(self, prefix: str) -> None:
        """Drop a cached key at once (called by RevokeApiKey in this process)."""
        self._keys.forget(prefix)

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop a cached tenant state at once (suspend, reactivate, delete)."""
        self._tenants.forget(tenant_id)

    async def _touch(self, principal: Principal) -> None:
        key_id = principal.subject.removeprefix("apikey:")
        now = datetime.now(UTC)
        last = self._touched.get(key_id)
        if last is not None and now - last < LAST_USED_INTERVAL:
            return
        self._touched[key_id] = now
        try:
            await self._directory.touch_api_key(key_id, now)
        except Exception as exc:  # a hint for people must never fail the call
            logger.warning("could not record API key use: %s", exc)

    # -- the public checks -------------------------------------------------------------

    async def authenticate(self, metadata: dict[str, str]) -> Principal:
        principal = await authenticate(
            metadata, settings=self.settings, api_keys_lookup=self._api_key
        )
        if principal.role == API_KEY_ROLE and not metadata.get(SIGNATURE_HEADER):
            await self._touch(principal)
        return principal

    async def require(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        scope: str | None = None,
        roles: Collection[str] | None = None,
        allow_suspended: bool = False,
    ) -> Principal:
        """Authenticate the call and check role, scope and tenant state.

        ``roles``: the call is for these roles only (``{PLATFORM_ADMIN}`` for admin
        methods; an admin impersonating a user has the user's role, not this one).
        ``allow_suspended``: a read-only console call a suspended tenant's users may
        still make; API keys of a suspended tenant are refused regardless.
        """
        principal = await self.authenticate(metadata_of(context))
        return await self.check(
            principal, scope=scope, roles=roles, allow_suspended=allow_suspended
        )

    async def check(
        self,
        principal: Principal,
        *,
        scope: str | None = None,
        roles: Collection[str] | None = None,
        allow_suspended: bool = False,
    ) -> Principal:
        if roles is not None and not _has_role(principal, roles):
            raise PermissionDenied(
                f"This call is for {' or '.join(sorted(roles))} only.",
                reason="ROLE_REQUIRED",
                metadata={"required": ",".join(sorted(roles)), "role": principal.role},
            )
        if scope is not None and not principal.has_scope(scope):
            raise PermissionDenied(
                f"The credential lacks the scope {scope!r}.",
                reason="SCOPE_MISSING",
                metadata={"scope": scope},
            )
        if principal.tenant_id:
            tenant = await self.tenant_state(principal.tenant_id)
            _check_tenant_state(tenant, principal, allow_suspended)
            note_tenant(principal.tenant_id)
        return principal

    async def resolve_tenant(self, principal: Principal, requested: str = "") -> TenantRecord:
        """The tenant a tenant-scoped call acts on.

        Platform admins name it (id or slug; required). Everyone else acts on their own
        tenant: an empty value or their own id/slug is fine; any other tenant, existing
        or not, is PermissionDenied (no probing for other tenants' slugs).
        """
        requested = requested.strip()
        if principal.is_platform_admin:
            if not requested:
                raise InvalidArgument(
                    "Platform admins must name the tenant (tenant_id: an id or a slug).",
                    violations=[FieldViolation("tenant_id", "required for platform admins")],
                )
            tenant = await self._directory.tenant(requested)
            if tenant is None:
                raise NotFound("tenant", requested)
            note_tenant(tenant.id)
            return tenant
        if not principal.tenant_id:
            raise PermissionDenied(
                "This credential belongs to no tenant.", reason="TENANT_REQUIRED"
            )
        own = await self.tenant_state(principal.tenant_id)
        if own is None:
            raise PermissionDenied("The tenant no longer exists.", reason="TENANT_INACTIVE")
        if requested and requested not in (own.id, own.slug):
            raise PermissionDenied(
                "Credentials of one tenant cannot act on another tenant.",
                reason="TENANT_MISMATCH",
                metadata={"tenant_id": requested},
            )
        return own


def _has_role(principal: Principal, roles: Collection[str]) -> bool:
    if PLATFORM_ADMIN in roles and principal.is_platform_admin:
        return True
    return principal.role in roles and principal.role != PLATFORM_ADMIN


def _check_tenant_state(
    tenant: TenantRecord | None, principal: Principal, allow_suspended: bool
) -> None:
    if tenant is None or tenant.status == "deleted":
        raise PermissionDenied(
            "The tenant has been deleted; its credentials no longer work.",
            reason="TENANT_INACTIVE",
            metadata={"tenant_id": principal.tenant_id},
        )
    if tenant.status == "suspended" and (principal.role == API_KEY_ROLE or not allow_suspended):
        raise PermissionDenied(
            "The tenant is suspended: the console is read-only and API calls are refused. "
            "Contact the platform's support.",
            reason="TENANT_SUSPENDED",
            metadata={"tenant_id": principal.tenant_id},
        )


# -- one Authenticator per process's session factory --------------------------------------

_BY_SESSIONS: weakref.WeakKeyDictionary[Any, Authenticator] = weakref.WeakKeyDictionary()


def authenticator_for(ctx: ServiceContext) -> Authenticator:
    """The process's Authenticator (shared caches across services); ConfigError if no secrets."""
    found = _BY_SESSIONS.get(ctx.sessions)
    if found is None:
        from services.identity.directory import SqlDirectory

        found = Authenticator(ctx.settings, SqlDirectory(ctx.sessions))
        _BY_SESSIONS[ctx.sessions] = found
    return found
