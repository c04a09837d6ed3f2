"""The verified-token cache: bounded, keyed by the token's hash, never past ``exp``."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from gateway.authz import VerifiedTokenCache
from services.identity.credentials import Principal
from tests.gateway_security.conftest import SecuredStack

ALICE = Principal(subject="user:alice", tenant_id="t1", role="tenant_admin")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_entries_live_until_the_token_expires_and_no_longer() -> None:
    clock = Clock()
    cache = VerifiedTokenCache(clock=clock)
    key = cache.key("header.payload.signature")
    cache.put(key, clock.now + 60, ALICE)
    assert cache.get(key) == ALICE
    assert cache.get(cache.key("header.payload.signaturX")) is None  # one byte off: a miss
    clock.now += 59.9
    assert cache.get(key) == ALICE
    clock.now += 0.1
    assert cache.get(key) is None and len(cache) == 0
    cache.put(key, clock.now - 1, ALICE)  # already expired: not kept
    assert len(cache) == 0


def test_the_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache = VerifiedTokenCache(max_entries=3, clock=Clock())
    keys = [cache.key(f"token-{n}") for n in range(4)]
    for key in keys[:3]:
        cache.put(key, 2_000.0, ALICE)
    assert cache.get(keys[0]) == ALICE  # now the most recently used
    cache.put(keys[3], 2_000.0, ALICE)
    assert len(cache) == 3
    assert cache.get(keys[1]) is None  # the least recently used went
    assert all(cache.get(k) == ALICE for k in (keys[0], keys[2], keys[3]))


async def test_an_expired_token_is_refused_even_after_it_was_cached(
    secured: SecuredStack,
) -> None:
    tenant = await secured.tenant(plan="enterprise")
    # Valid for about two more seconds: cached on first use, then it must stop working.
    token = secured.token(tenant.id, ttl=timedelta(seconds=2))
    async with httpx.AsyncClient(base_url=secured.base_url, timeout=10) as client:
        headers = {"authorization": f"Bearer {token}"}
        assert (await client.get("/api/v1/dataStats", headers=headers)).status_code == 200
        assert len(secured.authorizer._tokens) >= 1
        await asyncio.sleep(3.1)
        late = await client.get("/api/v1/dataStats", headers=headers)
        assert late.status_code == 401
        assert late.headers["x-embrec-error-reason"] == "TOKEN_EXPIRED"


def test_decisions_live_one_ttl_never_past_the_credential_and_die_on_invalidation() -> None:
    from gateway.authz import Decision, _DecisionCache

    clock = Clock()
    cache = _DecisionCache(ttl=1.0, max_entries=10, clock=clock)
    allowed = Decision(allowed=True, principal=ALICE)
    cache.put(("k",), allowed, cache.generation, valid_until=clock.now + 60)
    assert cache.get(("k",)) is allowed
    clock.now += 1.0
    assert cache.get(("k",)) is None  # the cache's own TTL
    cache.put(("k",), allowed, cache.generation, valid_until=clock.now + 0.5)
    clock.now += 0.5
    assert cache.get(("k",)) is None  # the credential expired first
    cache.put(("k",), allowed, cache.generation, valid_until=clock.now + 60)
    cache.clear()  # a key or tenant changed
    assert cache.get(("k",)) is None
    stale = cache.generation - 1  # decided before that change
    cache.put(("k",), allowed, stale, valid_until=clock.now + 60)
    assert cache.get(("k",)) is None and len(cache) == 0
