"""Invitations: how a person joins an existing tenant's console.

No mail is sent: the one-time token is returned to whoever issued the invitation (the
console or CLI shows it as an accept link) and only its SHA-256 is stored. Issuing a
new invitation for an address supersedes that address's pending one in the tenant, so
"send again" is simply issuing again. CreateTenant issues one (role tenant_admin) for
the tenant's contact email.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.errors import AlreadyExists, FieldViolation, InvalidArgument
from services.identity.principal import TENANT_ADMIN, TENANT_MEMBER
from services.storage.models import Invitation, User
from services.tenant.domain import Actor, email_violations, hash_token, new_token, normalise_email

__all__ = ["INVITATION_TTL", "InvitationStore", "IssuedInvitation", "issue_invitation"]

INVITATION_TTL = timedelta(days=7)
INVITATION_TOKEN_PREFIX = "einv_"  # noqa: S105 - a public marker, not a secret
INVITABLE_ROLES = (TENANT_ADMIN, TENANT_MEMBER)


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str  # shown once


async def email_taken(session: AsyncSession, email: str) -> bool:
    return await session.scalar(select(User.id).where(User.email == email)) is not None


def email_taken_error(email: str) -> AlreadyExists:
    return AlreadyExists(
        "A user with this email already exists; sign in instead.",
        reason="EMAIL_TAKEN",
        metadata={"email": email},
    )


async def issue_invitation(
    session: AsyncSession, *, tenant_id: str, email: str, role: str, actor: Actor
) -> IssuedInvitation:
    """Add an invitation in ``session``'s transaction, superseding pending ones."""
    now = datetime.now(UTC)
    await session.execute(
        update(Invitation)
        .where(
            Invitation.tenant_id == tenant_id,
            Invitation.email == email,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token = new_token(INVITATION_TOKEN_PREFIX)
    invitation = Invitation(
        tenant_id=tenant_id,
        email=email,
        role=role,
        token_hash=hash_token(token),
        invited_by=actor.subject,
        created_at=now,
        expires_at=now + INVITATION_TTL,
    )
    session.add(invitation)
    await session.flush()
    actor.audit(
        session,
        tenant_id=tenant_id,
        action="invitation.create",
        target=f"invitations/{invitation.id}",
        metadata={"email": email, "role": role},
    )
    return IssuedInvitation(invitation, token)


class InvitationStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(
        self, *, tenant_id: str, email: str, role: str, actor: Actor
    ) -> IssuedInvitation:
        email = normalise_email(email)
        violations = email_violations(email, "invitation.email")
        role = role or TENANT_MEMBER
        if role not in INVITABLE_ROLES:
            violations.append(
                FieldViolation("invitation.role", "must be TENANT_ADMIN or TENANT_MEMBER")
            )
        if violations:
            raise InvalidArgument("The invitation is invalid.", violations=violations)
        async with self._sessions() as session, session.begin():
            if await email_taken(session, email):
                raise email_taken_error(email)
            return await issue_invitation(
                session, tenant_id=tenant_id, email=email, role=role, actor=actor
            )
