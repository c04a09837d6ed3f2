"""Console identities: sign-up, login, token refresh, logout, impersonation, platform admins.

Security decisions, each for a reason:

* Passwords are Argon2id hashes (``services.identity.passwords``), verified in a worker
  thread outside any database transaction.
* A wrong password and an unknown email get the same answer (UNAUTHENTICATED,
  LOGIN_FAILED), take the same time (a dummy verification), and count towards the same
  lockout: unknown emails are throttled in memory exactly like known ones, so neither
  the message, the timing nor the lockout tells an attacker which emails exist.
* Lockout: after ``login_max_failures`` consecutive failures, sign-in for that email is
  refused (RESOURCE_EXHAUSTED, with the seconds to wait) for ``login_lockout_seconds``,
  doubling with each further failure, capped at an hour. A success resets it.
* Access tokens are 15-minute JWTs; refresh tokens are opaque, stored as SHA-256,
  single-use and rotated on every refresh. All tokens of one login share a family;
  presenting an already rotated token means it was copied, so the whole family is
  revoked (the thief's and the owner's sessions both end) and the event is audited.
* Impersonation tokens carry the admin as ``impersonator`` and are not refreshable.
* Changing a password needs the current one, and a wrong one counts towards the same
  lockout as Login (a stolen access token must not buy a second guessing budget). The
  answer is FAILED_PRECONDITION (CURRENT_PASSWORD_WRONG), not UNAUTHENTICATED: the
  caller's credential is fine, and clients treat UNAUTHENTICATED as "refresh the token
  and retry", which would spend a second guess. On success every refresh token of the
  user is revoked (whoever held a copy of a session loses it) and the caller gets a
  fresh session. Access tokens are stateless JWTs and live out their 15 minutes. API
  keys have no password, and an admin impersonating a user must not take over the
  user's account, so both are refused.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config import Settings
from services.errors import (
    EmbrecError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from services.identity.credentials import ACCESS_TOKEN_TTL, Principal, issue_access_token
from services.identity.passwords import (
    hash_password,
    needs_rehash,
    password_violations,
    spend_verification,
    verify_password,
)
from services.identity.principal import API_KEY_ROLE, ROLE_SCOPES, TENANT_ADMIN
from services.storage.models import Invitation, RefreshToken, Tenant, User, new_id
from services.tenant.domain import (
    Actor,
    email_violations,
    hash_token,
    name_violations,
    new_token,
    normalise_email,
    slug_violations,
)
from services.tenant.invitations import email_taken, email_taken_error
from services.tenant.tenants import TenantStore

__all__ = ["AuthStore", "SignedIn", "TokenPair"]

REFRESH_TOKEN_TTL = timedelta(days=30)
REFRESH_TOKEN_PREFIX = "ert_"  # noqa: S105 - a public marker, not a secret
MAX_LOCKOUT = timedelta(hours=1)
_UNKNOWN_EMAILS_TRACKED = 10_000


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str  # "" for impersonation
    expires_in: int


@dataclass(frozen=True)
class SignedIn:
    user: User
    tenant: Tenant | None
    tokens: TokenPair


@dataclass
class _Failures:
    count: int = 0
    locked_until: datetime | None = None


def _login_failed() -> Unauthenticated:
    return Unauthenticated("The email or password is wrong.", reason="LOGIN_FAILED")


def _locked(until: datetime, now: datetime) -> ResourceExhausted:
    seconds = max(1, int((until - now).total_seconds() + 0.999))
    return ResourceExhausted(
        f"Too many failed sign-in attempts; try again in {seconds} seconds.",
        reason="LOGIN_LOCKED",
        metadata={"retry_after_seconds": str(seconds)},
    )


def _tenant_inactive(tenant_id: str) -> PermissionDenied:
    return PermissionDenied(
        "The tenant has been deleted; its users cannot sign in.",
        reason="TENANT_INACTIVE",
        metadata={"tenant_id": tenant_id},
    )


class AuthStore:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], settings: Settings, tenants: TenantStore
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._jwt_secret, _ = settings.require_identity_secrets()
        self._tenants = tenants
        # Failure counts for emails with no user, so lockout behaves the same for them.
        self._unknown: OrderedDict[str, _Failures] = OrderedDict()

    # -- helpers ------------------------------------------------------------------------

    def principal_of(self, user: User, tenant: Tenant | None, impersonator: str = "") -> Principal:
        return Principal(
            subject=user.id,
            tenant_id=user.tenant_id or "",
            role=user.role,
            scopes=ROLE_SCOPES.get(user.role, frozenset()),
            impersonator=impersonator,
            plan=tenant.plan if tenant is not None else "free",
        )

    def _access_token(self, principal: Principal, now: datetime) -> str:
        token, _ = issue_access_token(principal, self._jwt_secret, now=now)
        return token

    def _open_session(
        self,
        session: AsyncSession,
        user: User,
        tenant: Tenant | None,
        now: datetime,
        family_id: str | None = None,
    ) -> TokenPair:
        refresh = new_token(REFRESH_TOKEN_PREFIX)
        session.add(
            RefreshToken(
                user_id=user.id,
                family_id=family_id or new_id(),
                token_hash=hash_token(refresh),
                created_at=now,
                expires_at=now + REFRESH_TOKEN_TTL,
            )
        )
        return TokenPair(
            access_token=self._access_token(self.principal_of(user, tenant), now),
            refresh_token=refresh,
            expires_in=int(ACCESS_TOKEN_TTL.total_seconds()),
        )

    def _lock_after(self, failures: int, now: datetime) -> datetime | None:
        excess = failures - self._settings.login_max_failures
        if excess < 0:
            return None
        seconds = self._settings.login_lockout_seconds * (2 ** min(excess, 16))
        return now + min(timedelta(seconds=seconds), MAX_LOCKOUT)

    def _unknown_failures(self, email: str) -> _Failures:
        state = self._unknown.get(email)
        if state is None:
            state = _Failures()
            self._unknown[email] = state
            while len(self._unknown) > _UNKNOWN_EMAILS_TRACKED:
                self._unknown.popitem(last=False)
        return state

    # -- login --------------------------------------------------------------------------

    async def login(self, email: str, password: str, *, source_ip: str = "") -> SignedIn:
        email = normalise_email(email)
        violations = []
        if not email:
            violations.append(FieldViolation("email", "required"))
        if not password:
            violations.append(FieldViolation("password", "required"))
        if violations:
            raise InvalidArgument("Send an email and a password.", violations=violations)
        now = datetime.now(UTC)
        async with self._sessions() as session:
            user = await session.scalar(select(User).where(User.email == email))
        if user is None:
            return await self._unknown_login(email, password, now, source_ip)
        if user.locked_until is not None and user.locked_until > now:
            raise _locked(user.locked_until, now)
        if not await verify_password(user.password_hash, password):
            await self._failed_login(user, now, source_ip)
            raise _login_failed()
        new_hash = await hash_password(password) if needs_rehash(user.password_hash) else None
        async with self._sessions() as session, session.begin():
            user = await session.get_one(User, user.id)
            tenant = await session.get(Tenant, user.tenant_id) if user.tenant_id else None
            if user.tenant_id and (tenant is None or tenant.status == "deleted"):
                raise _tenant_inactive(user.tenant_id)
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = now
            if new_hash is not None:
                user.password_hash = new_hash
            tokens = self._open_session(session, user, tenant, now)
            Actor(user.id, source_ip=source_ip).audit(
                session,
                tenant_id=user.tenant_id or "",
                action="auth.login",
                target=f"users/{user.id}",
            )
        return SignedIn(user, tenant, tokens)

    async def _failed_login(
        self, user: User, now: datetime, source_ip: str, action: str = "auth.login"
    ) -> None:
        async with self._sessions() as session, session.begin():
            # An atomic increment: concurrent guesses each count.
            await session.execute(
                update(User).where(User.id == user.id).values(failed_logins=User.failed_logins + 1)
            )
            fresh = await session.get_one(User, user.id, populate_existing=True)
            fresh.locked_until = self._lock_after(fresh.failed_logins, now)
            Actor(user.id, source_ip=source_ip).audit(
                session,
                tenant_id=user.tenant_id or "",
                action=action,
                target=f"users/{user.id}",
                outcome="failure",
                metadata={"email": user.email, "failed_attempts": str(fresh.failed_logins)},
            )

    async def _unknown_login(
        self, email: str, password: str, now: datetime, source_ip: str
    ) -> SignedIn:
        state = self._unknown_failures(email)
        if state.locked_until is not None and state.locked_until > now:
            raise _locked(state.locked_until, now)
        await spend_verification(password)
        state.count += 1
        state.locked_until = self._lock_after(state.count, now)
        async with self._sessions() as session, session.begin():
            Actor("anonymous", source_ip=source_ip).audit(
                session,
                tenant_id="",
                action="auth.login",
                outcome="failure",
                metadata={"email": email, "failed_attempts": str(state.count)},
            )
        raise _login_failed()

    # -- refresh and logout --------------------------------------------------------------

    async def refresh(self, refresh_token: str, *, source_ip: str = "") -> TokenPair:
        if not refresh_token:
            raise InvalidArgument(
                "refresh_token is required.",
                violations=[FieldViolation("refresh_token", "required")],
            )
        now = datetime.now(UTC)
        error: EmbrecError | None = None
        tokens: TokenPair | None = None
        async with self._sessions() as session, session.begin():
            row = await session.scalar(
                select(RefreshToken).where(RefreshToken.token_hash == hash_token(refresh_token))
            )
            if row is None:
                raise Unauthenticated(
                    "The refresh token is not valid; sign in again.", reason="REFRESH_TOKEN_INVALID"
                )
            # Rotate with a conditional update, so two concurrent uses cannot both win.
            rotated = await session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == row.id, RefreshToken.revoked.is_(False))
                .values(revoked=True)
            )
            user = await session.get(User, row.user_id)
            if rotated.rowcount == 0 or user is None:  # type: ignore[attr-defined]
                await session.execute(
                    update(RefreshToken)
                    .where(RefreshToken.family_id == row.family_id)
                    .values(revoked=True)
                )
                Actor(row.user_id, source_ip=source_ip).audit(
                    session,
                    tenant_id=(user.tenant_id or "") if user else "",
                    action="auth.refresh_reuse",
                    target=f"users/{row.user_id}",
                    outcome="denied",
                    metadata={"family_id": row.family_id},
                )
                error = Unauthenticated(
                    "This refresh token was already used; every session of this sign-in "
                    "has been ended. Sign in again.",
                    reason="REFRESH_TOKEN_REUSED",
                )
            elif row.expires_at <= now:
                error = Unauthenticated(
                    "The refresh token has expired; sign in again.",
                    reason="REFRESH_TOKEN_EXPIRED",
                )
            else:
                tenant = await session.get(Tenant, user.tenant_id) if user.tenant_id else None
                if user.tenant_id and (tenant is None or tenant.status == "deleted"):
                    error = _tenant_inactive(user.tenant_id)
                else:
                    tokens = self._open_session(session, user, tenant, now, row.family_id)
        # Raised after the commit: the family revocation and its audit must persist.
        if error is not None:
            raise error
        assert tokens is not None
        return tokens

    async def logout(
        self, principal: Principal, *, refresh_token: str, all_sessions: bool, actor: Actor
    ) -> None:
        if not refresh_token and not all_sessions:
            raise InvalidArgument(
                "Send the session's refresh_token, or all_sessions=true.",
                violations=[FieldViolation("refresh_token", "required unless all_sessions")],
            )
        if principal.role == "api_key":
            raise PermissionDenied(
                "API keys have no sessions; revoke the key instead.", reason="NOT_A_USER"
            )
        async with self._sessions() as session, session.begin():
            condition = RefreshToken.user_id == principal.subject
            if not all_sessions:
                row = await session.scalar(
                    select(RefreshToken).where(
                        RefreshToken.token_hash == hash_token(refresh_token), condition
                    )
                )
                # Someone else's or an unknown token: nothing of the caller's to end.
                if row is None:
                    return
                condition = RefreshToken.family_id == row.family_id
            await session.execute(update(RefreshToken).where(condition).values(revoked=True))
            actor.audit(
                session,
                tenant_id=principal.tenant_id,
                action="auth.logout",
                target=f"users/{principal.subject}",
                metadata={"all_sessions": str(all_sessions).lower()},
            )

    # -- password change -----------------------------------------------------------------

    async def change_password(
        self, principal: Principal, *, current_password: str, new_password: str, actor: Actor
    ) -> TokenPair:
        if principal.role == API_KEY_ROLE:
            raise PermissionDenied(
                "API keys have no password; only a signed-in user can change theirs.",
                reason="NOT_A_USER",
            )
        if principal.impersonator:
            raise PermissionDenied(
                "An impersonation cannot change the user's password; ask the user to.",
                reason="IMPERSONATION_NOT_ALLOWED",
            )
        violations = []
        if not current_password:
            violations.append(FieldViolation("current_password", "required"))
        violations += password_violations(new_password, "new_password")
        if not violations and new_password == current_password:
            violations.append(
                FieldViolation("new_password", "must differ from the current password")
            )
        if violations:
            raise InvalidArgument(
                "The password change is invalid; fix the fields named.", violations=violations
            )
        now = datetime.now(UTC)
        async with self._sessions() as session:
            user = await session.get(User, principal.subject)
        if user is None:
            raise Unauthenticated(
                "The signed-in user no longer exists; sign in again.", reason="USER_UNKNOWN"
            )
        if user.locked_until is not None and user.locked_until > now:
            raise _locked(user.locked_until, now)
        if not await verify_password(user.password_hash, current_password):
            await self._failed_login(user, now, actor.source_ip, action="auth.change_password")
            raise FailedPrecondition(
                "The current password is wrong.", reason="CURRENT_PASSWORD_WRONG"
            )
        old_hash = user.password_hash
        new_hash = await hash_password(new_password)
        async with self._sessions() as session, session.begin():
            # Conditional on the hash just verified: of two concurrent changes, one wins.
            changed = await session.execute(
                update(User)
                .where(User.id == user.id, User.password_hash == old_hash)
                .values(password_hash=new_hash, failed_logins=0, locked_until=None)
            )
            if changed.rowcount == 0:  # type: ignore[attr-defined]
                raise FailedPrecondition(
                    "The password was changed by another request meanwhile; sign in again.",
                    reason="PASSWORD_CHANGED_CONCURRENTLY",
                )
            user = await session.get_one(User, user.id, populate_existing=True)
            tenant = await session.get(Tenant, user.tenant_id) if user.tenant_id else None
            if user.tenant_id and (tenant is None or tenant.status == "deleted"):
                raise _tenant_inactive(user.tenant_id)
            ended = await session.execute(
                update(RefreshToken)
                .where(RefreshToken.user_id == user.id, RefreshToken.revoked.is_(False))
                .values(revoked=True)
            )
            tokens = self._open_session(session, user, tenant, now)
            actor.audit(
                session,
                tenant_id=user.tenant_id or "",
                action="auth.change_password",
                target=f"users/{user.id}",
                metadata={"sessions_ended": str(ended.rowcount)},  # type: ignore[attr-defined]
            )
        return tokens

    # -- sign-up ---------------------------------------------------------------------------

    async def sign_up(
        self,
        *,
        email: str,
        password: str,
        name: str,
        invitation_token: str | None,
        new_tenant: tuple[str, str] | None,
        source_ip: str = "",
    ) -> SignedIn:
        email = normalise_email(email)
        name = name.strip()
        violations = email_violations(email) + password_violations(password)
        if len(name) > 200:
            violations.append(FieldViolation("name", "at most 200 characters"))
        if (invitation_token is None) == (new_tenant is None):
            violations.append(
                FieldViolation("join", "set exactly one of invitation_token or new_tenant")
            )
        if new_tenant is not None:
            tenant_name, tenant_slug = new_tenant[0].strip(), new_tenant[1].strip()
            violations += name_violations(tenant_name, "new_tenant.name")
            violations += slug_violations(tenant_slug, "new_tenant.slug")
        if violations:
            raise InvalidArgument(
                "The sign-up is invalid; fix the fields named.", violations=violations
            )
        password_hash = await hash_password(password)
        now = datetime.now(UTC)
        user_id = new_id()
        actor = Actor(user_id, source_ip=source_ip)
        async with self._sessions() as session, session.begin():
            if await email_taken(session, email):
                raise email_taken_error(email)
            if invitation_token is not None:
                tenant, role, invitation = await self._accept(session, invitation_token, email, now)
                invitation.accepted_at = now
                via = "invitation"
            else:
                assert new_tenant is not None
                tenant = await self._tenants.add(
                    session, name=tenant_name, slug=tenant_slug, email=email, plan="", actor=actor
                )
                role, via = TENANT_ADMIN, "new_tenant"
            user = User(
                id=user_id,
                tenant_id=tenant.id,
                email=email,
                display_name=name or None,
                password_hash=password_hash,
                role=role,
                failed_logins=0,
                created_at=now,
                last_login_at=now,
            )
            session.add(user)
            try:
                await session.flush()
            except IntegrityError:
                raise email_taken_error(email) from None
            actor.audit(
                session,
                tenant_id=tenant.id,
                action="auth.signup",
                target=f"users/{user.id}",
                metadata={"email": email, "role": role, "via": via},
            )
            tokens = self._open_session(session, user, tenant, now)
        return SignedIn(user, tenant, tokens)

    async def _accept(
        self, session: AsyncSession, token: str, email: str, now: datetime
    ) -> tuple[Tenant, str, Invitation]:
        invitation = await session.scalar(
            select(Invitation).where(Invitation.token_hash == hash_token(token))
        )
        if invitation is None:
            missing = NotFound("invitation", "token", reason="INVITATION_NOT_FOUND")
            missing.message = "No invitation has this token; ask the tenant's admin for a new one."
            raise missing
        if invitation.accepted_at is not None or invitation.revoked_at is not None:
            raise FailedPrecondition(
                "This invitation was already used or replaced by a newer one.",
                reason="INVITATION_USED",
            )
        if invitation.expires_at <= now:
            raise FailedPrecondition(
                "This invitation has expired; ask for a new one.", reason="INVITATION_EXPIRED"
            )
        if invitation.email != email:
            raise FailedPrecondition(
                "This invitation is for another email address.",
                reason="INVITATION_EMAIL_MISMATCH",
            )
        tenant = await session.get_one(Tenant, invitation.tenant_id)
        if tenant.status == "deleted":
            raise _tenant_inactive(tenant.id)
        return tenant, invitation.role, invitation

    # -- impersonation -------------------------------------------------------------------

    async def impersonate(
        self, *, tenant_id: str, user_id: str, reason: str, actor: Actor
    ) -> tuple[User, str]:
        reason = reason.strip()
        if not reason:
            raise InvalidArgument(
                "Say why you impersonate (ticket, incident).",
                violations=[FieldViolation("reason", "required")],
            )
        tenant = await self._tenants.get(tenant_id)
        if tenant.status == "deleted":
            raise FailedPrecondition(
                "The tenant is deleted.", reason="TENANT_DELETED", metadata={"tenant_id": tenant.id}
            )
        now = datetime.now(UTC)
        async with self._sessions() as session, session.begin():
            query = select(User).where(User.tenant_id == tenant.id)
            if user_id:
                query = query.where(User.id == user_id)
            else:
                query = query.where(User.role == TENANT_ADMIN).order_by(User.created_at, User.id)
            user = (await session.scalars(query.limit(1))).first()
            if user is None:
                raise NotFound("user", user_id or f"tenant_admin of {tenant.slug}")
            actor.audit(
                session,
                tenant_id=tenant.id,
                action="auth.impersonate",
                target=f"users/{user.id}",
                metadata={"reason": reason, "user_email": user.email},
            )
        principal = self.principal_of(user, tenant, impersonator=actor.subject)
        return user, self._access_token(principal, now)
