"""Rules shared by the tenant service's parts (tenants, invitations, users, API keys).

Nothing here imports grpc. The parts:

* ``tenants``     TenantStore: create, get, list, update, suspend/reactivate, delete/undelete
* ``invitations`` issuing and accepting invitations (token shown once, stored hashed)
* ``auth``        AuthStore: sign-up, login with lockout, refresh rotation, logout,
                  impersonation, platform admins (``embrec admin create``)
* ``api_keys``    ApiKeyStore: create (secret shown once), list, revoke
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.record import record_audit
from services.errors import FieldViolation
from services.identity.credentials import Principal

__all__ = [
    "EMAIL_PATTERN",
    "MAX_NAME_LENGTH",
    "SLUG_PATTERN",
    "Actor",
    "email_violations",
    "hash_token",
    "new_token",
    "normalise_email",
    "slug_violations",
    "validate_new_tenant",
]

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
EMAIL_PATTERN = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MAX_NAME_LENGTH = 200
MAX_EMAIL_LENGTH = 320


def normalise_email(email: str) -> str:
    # Stored lower-cased, so the plain unique index is case-insensitive in effect.
    return email.strip().lower()


def email_violations(email: str, field: str = "email") -> list[FieldViolation]:
    if not email:
        return [FieldViolation(field, "required")]
    if len(email) > MAX_EMAIL_LENGTH or not EMAIL_PATTERN.match(email):
        return [FieldViolation(field, "not a valid email address")]
    return []


def slug_violations(slug: str, field: str = "slug") -> list[FieldViolation]:
    if not slug:
        return [FieldViolation(field, "required")]
    if not SLUG_PATTERN.match(slug):
        return [
            FieldViolation(
                field,
                "3-63 characters: lowercase letters, digits and '-', starting with a letter "
                "and not ending with '-'",
            )
        ]
    return []


def name_violations(name: str, field: str = "name") -> list[FieldViolation]:
    if not name.strip():
        return [FieldViolation(field, "required")]
    if len(name) > MAX_NAME_LENGTH:
        return [FieldViolation(field, f"at most {MAX_NAME_LENGTH} characters")]
    return []


def validate_new_tenant(name: str, slug: str, email: str) -> list[FieldViolation]:
    return name_violations(name) + slug_violations(slug) + email_violations(email)


def new_token(prefix: str) -> str:
    """An opaque secret (refresh token, invitation token): 256 bits, URL-safe."""
    return f"{prefix}{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    # High-entropy tokens: a fast hash is enough (argon2 is for low-entropy passwords).
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Actor:
    """Who did it, for the audit trail: both names when an admin impersonates a user."""

    subject: str
    impersonator: str = ""
    source_ip: str = ""

    @classmethod
    def of(cls, principal: Principal, source_ip: str = "") -> Actor:
        return cls(principal.subject, principal.impersonator, source_ip)

    def audit(
        self,
        session: AsyncSession,
        *,
        tenant_id: str,
        action: str,
        target: str = "",
        outcome: str = "success",
        metadata: dict[str, str] | None = None,
    ) -> str:
        return record_audit(
            session,
            tenant_id=tenant_id,
            actor=self.subject,
            action=action,
            target=target,
            outcome=outcome,
            impersonator=self.impersonator,
            source_ip=self.source_ip,
            metadata=metadata,
        )


ANONYMOUS = Actor("anonymous")
