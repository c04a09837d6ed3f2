"""Console passwords: Argon2id hashes (argon2-cffi, RFC 9106 parameters).

Hashing costs tens of milliseconds of CPU on purpose, so it runs in a worker thread
and never stalls the event loop. ``verify_password`` answers False for any hash it
cannot use instead of raising, so a corrupt row reads as a wrong password.
``spend_verification`` does the same work against a dummy hash: a login for an unknown
email then takes as long as one for a known email, and timing reveals nothing.
"""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from services.errors import FieldViolation

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "hash_password",
    "needs_rehash",
    "password_violations",
    "spend_verification",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 10
#: Argon2 accepts any length, but an unbounded input is a cheap way to burn our CPU.
MAX_PASSWORD_LENGTH = 1024

# argon2-cffi's defaults are Argon2id with RFC 9106's low-memory profile (t=3, 64 MiB, p=4).
_HASHER = PasswordHasher()


def password_violations(password: str, field: str = "password") -> list[FieldViolation]:
    if len(password) < MIN_PASSWORD_LENGTH:
        return [FieldViolation(field, f"at least {MIN_PASSWORD_LENGTH} characters")]
    if len(password) > MAX_PASSWORD_LENGTH:
        return [FieldViolation(field, f"at most {MAX_PASSWORD_LENGTH} characters")]
    return []


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str, password: str) -> bool:
    return await asyncio.to_thread(_verify, stored_hash, password)


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("embrec-timing-equaliser")


async def spend_verification(password: str) -> None:
    """Spend the time of one verification (for unknown emails); always fails."""
    await asyncio.to_thread(_verify, _dummy_hash(), password)
