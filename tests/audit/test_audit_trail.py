"""The audit trail: events from producers through the bus into the hash chain; search,
export and VerifyChain as callers see them over gRPC."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import delete, select, update

from embrec.audit.v1 import audit_service_pb2, audit_service_pb2_grpc
from services.app import build_runtime
from services.audit.record import record_audit
from services.config import SERVICE_NAMES, load_settings
from services.identity.credentials import (
    SCOPES,
    Principal,
    generate_api_key,
    issue_access_token,
    principal_headers,
)
from services.runtime.server import Runtime
from services.storage.models import ApiKey, AuditEvent, Tenant

SECRET = "s" * 40


def _metadata(principal: Principal) -> tuple[tuple[str, str], ...]:
    return tuple(principal_headers(principal, SECRET).items())


ADMIN = _metadata(Principal(subject="user:admin", tenant_id="", role="platform_admin"))


def tenant_user(tenant_id: str) -> tuple[tuple[str, str], ...]:
    return _metadata(
        Principal(
            subject="user:u",
            tenant_id=tenant_id,
            role="tenant_admin",
            scopes=frozenset({"audit:read"}),
        )
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""
    settings = load_settings(
        data_dir=tmp_path,
        database_url=url,
        grpc_port=0,
        metrics_port=0,
        jwt_secret="j" * 40,
        internal_secret=SECRET,
        shutdown_grace_seconds=0.5,
    )
    rt = await build_runtime(settings, list(SERVICE_NAMES), migrate=True)
    await rt.start()
    yield rt
    await rt.stop()


def _sessions(rt: Runtime):  # type: ignore[no-untyped-def]
    # The runtime's own session factory (the audit module's store holds it).
    return next(m for m in rt.modules if m.name == "audit").store._sessions  # type: ignore[attr-defined]


async def _tenant(rt: Runtime, tenant_id: str, status: str = "active") -> str:
    async with _sessions(rt)() as session, session.begin():
        session.add(
            Tenant(
                id=tenant_id,
                name=tenant_id,
                slug=f"slug-{tenant_id}",
                email=f"a@{tenant_id}.example",
                status=status,
            )
        )
    return tenant_id


async def _produce(rt: Runtime, tenant: str, n: int, action: str = "tenant.update") -> None:
    sessions = _sessions(rt)
    async with sessions() as session, session.begin():
        for i in range(n):
            record_audit(
                session,
                tenant_id=tenant,
                actor=f"user:{i % 2}",
                action=action,
                target=f"tenants/{tenant}/thing/{i}",
                source_ip="10.0.0.1",
                metadata={"i": str(i)},
            )


async def _search(stub: audit_service_pb2_grpc.AuditServiceStub, metadata, **filters):  # type: ignore[no-untyped-def]
    return await stub.SearchAuditEvents(
        audit_service_pb2.SearchAuditEventsRequest(**filters), metadata=metadata
    )


async def _wait_for(stub, metadata, count: int, **filters):  # type: ignore[no-untyped-def]
    for _ in range(100):
        reply = await _search(stub, metadata, page_size=1000, **filters)
        if len(reply.audit_events) >= count:
            return reply
        await asyncio.sleep(0.1)
    raise AssertionError(f"only {len(reply.audit_events)} of {count} events arrived")


async def test_events_flow_into_a_verifiable_chain(runtime: Runtime) -> None:
    # Unique tenants: the PostgreSQL database is shared by the whole test session.
    tenant_a, tenant_b = f"ta-{uuid.uuid4().hex[:8]}", f"tb-{uuid.uuid4().hex[:8]}"
    await _tenant(runtime, tenant_a)
    await _tenant(runtime, tenant_b)
    await _produce(runtime, tenant_a, 5)
    await _produce(runtime, tenant_b, 3, action="apikey.create")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.port}") as channel:
        stub = audit_service_pb2_grpc.AuditServiceStub(channel)
        await _wait_for(stub, ADMIN, 3, tenant_id=tenant_b)
        everything = await _wait_for(stub, ADMIN, 5, tenant_id=tenant_a)
        assert [e.sequence for e in everything.audit_events] == sorted(
            (e.sequence for e in everything.audit_events), reverse=True
        )
        # Tenants see only themselves; naming another tenant is refused.
        own = await _search(stub, tenant_user(tenant_a))
        assert {e.tenant_id for e in own.audit_events} == {tenant_a}
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await _search(stub, tenant_user(tenant_a), tenant_id=tenant_b)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await _search(stub, ())
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Filters and pages.
        prefix = await _search(stub, ADMIN, action="apikey.", tenant_id=tenant_b)
        assert len(prefix.audit_events) == 3
        text = await _search(stub, ADMIN, query=f"{tenant_a.upper()}/THING/4")
        assert [e.target for e in text.audit_events] == [f"tenants/{tenant_a}/thing/4"]
        first = await _search(stub, ADMIN, page_size=3, tenant_id=tenant_a)
        second = await _search(
            stub, ADMIN, page_size=3, tenant_id=tenant_a, page_token=first.next_page_token
        )
        assert len(first.audit_events) == 3 and len(second.audit_events) == 2
        assert second.next_page_token == ""

        # Export: CSV, header then rows oldest first.
        chunks = [
            c
            async for c in stub.ExportAuditEvents(
                audit_service_pb2.ExportAuditEventsRequest(tenant_id=tenant_a), metadata=ADMIN
            )
        ]
        rows = list(csv.reader(io.StringIO(b"".join(c.data for c in chunks).decode())))
        assert rows[0][:3] == ["sequence", "time", "tenant_id"]
        assert len(rows) == 6 and all(r[2] == tenant_a for r in rows[1:])

        first_seq = min(e.sequence for e in everything.audit_events)
        verify = audit_service_pb2.VerifyChainRequest(start_sequence=first_seq)
        assert (await stub.VerifyChain(verify, metadata=ADMIN)).valid
        with pytest.raises(grpc.aio.AioRpcError) as not_admin:
            await stub.VerifyChain(verify, metadata=tenant_user(tenant_a))
        assert not_admin.value.code() == grpc.StatusCode.PERMISSION_DENIED

        # Tamper with one row: VerifyChain names it.
        sessions = _sessions(runtime)
        async with sessions() as session, session.begin():
            victim = (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.tenant_id == tenant_a)
                    .order_by(AuditEvent.seq)
                    .offset(2)
                    .limit(1)
                )
            ).one()
            original_actor, victim_seq, victim_id, victim_hash = (
                victim.actor,
                victim.seq,
                victim.id,
                victim.hash,
            )
            await session.execute(
                update(AuditEvent).where(AuditEvent.seq == victim.seq).values(actor="user:mallory")
            )
        report = await stub.VerifyChain(verify, metadata=ADMIN)
        assert not report.valid
        assert report.first_broken_sequence == victim_seq
        assert report.first_broken_event_id == victim_id
        assert report.actual_hash == victim_hash != report.expected_hash

        # Restore it, then delete a row: the tenant's next entry no longer links.
        async with sessions() as session, session.begin():
            await session.execute(
                update(AuditEvent).where(AuditEvent.seq == victim_seq).values(actor=original_actor)
            )
        assert (await stub.VerifyChain(verify, metadata=ADMIN)).valid
        async with sessions() as session, session.begin():
            await session.execute(delete(AuditEvent).where(AuditEvent.seq == victim_seq))
        report = await stub.VerifyChain(verify, metadata=ADMIN)
        assert not report.valid and report.first_broken_sequence > victim_seq


async def test_record_events_is_idempotent_and_validates(runtime: Runtime) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    from embrec.audit.v1 import resources_pb2

    stamp = Timestamp()
    stamp.GetCurrentTime()
    event = resources_pb2.AuditEvent(
        id="ev-1",
        tenant_id="t1",
        actor="service:x",
        action="model.deploy",
        outcome=resources_pb2.AUDIT_OUTCOME_SUCCESS,
        time=stamp,
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.port}") as channel:
        stub = audit_service_pb2_grpc.AuditInternalServiceStub(channel)
        first = await stub.RecordEvents(audit_service_pb2.RecordEventsRequest(events=[event]))
        again = await stub.RecordEvents(audit_service_pb2.RecordEventsRequest(events=[event]))
        assert (first.recorded_count, again.recorded_count) == (1, 0)
        bad = resources_pb2.AuditEvent(id="ev-2", time=stamp)
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await stub.RecordEvents(audit_service_pb2.RecordEventsRequest(events=[bad]))
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _bearer(secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {secret}"),)


async def _api_key(rt: Runtime, tenant_id: str, scopes: list[str]) -> str:
    key = generate_api_key()
    async with _sessions(rt)() as session, session.begin():
        session.add(
            ApiKey(
                tenant_id=tenant_id,
                name="audit reader",
                prefix=key.prefix,
                secret_hash=key.secret_hash,
                scopes=scopes,
            )
        )
    return key.full_key


async def test_direct_grpc_callers_use_access_tokens_and_api_keys(runtime: Runtime) -> None:
    """No gateway in front: the service itself checks JWTs and API keys."""
    tenant_a = await _tenant(runtime, f"ta-{uuid.uuid4().hex[:8]}")
    tenant_b = await _tenant(runtime, f"tb-{uuid.uuid4().hex[:8]}")
    await _produce(runtime, tenant_a, 2)
    await _produce(runtime, tenant_b, 1)
    jwt_secret = "j" * 40

    def token(tenant_id: str, role: str = "tenant_admin", scopes: frozenset[str] = SCOPES) -> str:
        principal = Principal(subject="user:u", tenant_id=tenant_id, role=role, scopes=scopes)
        return issue_access_token(principal, jwt_secret)[0]

    admin = _bearer(token("", role="platform_admin"))
    reader_key = await _api_key(runtime, tenant_a, ["audit:read"])
    plain_key = await _api_key(runtime, tenant_a, ["recommend:read"])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.port}") as channel:
        stub = audit_service_pb2_grpc.AuditServiceStub(channel)
        mine = await _wait_for(stub, admin, 2, tenant_id=tenant_a)
        await _wait_for(stub, admin, 1, tenant_id=tenant_b)

        by_token = await _search(stub, _bearer(token(tenant_a)))
        by_key = await _search(stub, _bearer(reader_key))
        assert len(by_token.audit_events) == len(by_key.audit_events) == 2
        assert {e.tenant_id for e in by_key.audit_events} == {tenant_a}
        # Naming itself by slug is fine; naming another tenant is not.
        own_slug = await _search(stub, _bearer(reader_key), tenant_id=f"slug-{tenant_a}")
        assert len(own_slug.audit_events) == 2

        async def code(metadata, **request):  # type: ignore[no-untyped-def]
            try:
                await _search(stub, metadata, **request)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        denied = grpc.StatusCode.PERMISSION_DENIED
        assert await code(_bearer(token(tenant_a)), tenant_id=tenant_b) == denied
        assert await code(_bearer(reader_key), tenant_id=f"slug-{tenant_b}") == denied
        assert await code(_bearer(plain_key)) == denied  # no audit:read scope
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED
        assert await code(_bearer(reader_key[:-2] + "xx")) == unauthenticated
        assert await code(_bearer(token(tenant_a)[:-3] + "abc")) == unauthenticated

        # From this test's first event: the PostgreSQL database is shared by the session,
        # and another test tampers with its own rows on purpose.
        first = min(e.sequence for e in mine.audit_events)
        verify = audit_service_pb2.VerifyChainRequest(start_sequence=first)
        assert (await stub.VerifyChain(verify, metadata=admin)).valid
        with pytest.raises(grpc.aio.AioRpcError) as not_admin:
            await stub.VerifyChain(verify, metadata=_bearer(token(tenant_a)))
        assert not_admin.value.code() == denied

        # Suspended: its people may still read their trail, its API keys may not.
        async with _sessions(runtime)() as session, session.begin():
            await session.execute(
                update(Tenant).where(Tenant.id == tenant_a).values(status="suspended")
            )
        await asyncio.sleep(1.1)  # the tenant state is cached for at most a second
        assert await code(_bearer(token(tenant_a))) == grpc.StatusCode.OK
        assert await code(_bearer(reader_key)) == denied
