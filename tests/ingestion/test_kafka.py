"""TrackEvents over a real Kafka-protocol broker (Tansu) that stops and starts again."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select

from embrec.ingestion.v1 import ingestion_service_pb2 as svc
from embrec.ingestion.v1 import resources_pb2 as pb
from services.event_messages import TOPICS
from services.events.kafka import ensure_topics
from services.storage.models import Interaction
from tests.ingestion.conftest import SECRET, Caller, caller_for, make_tenant, sql
from tests.services.conftest import RunningStack, StackFactory
from tests.support.servers import KafkaBroker

pytestmark = pytest.mark.integration


async def track(c: Caller, first: int, count: int) -> None:
    events = [
        pb.Interaction(
            user_id=f"user_{n}",
            item_id="sku-1",
            interaction_type=pb.INTERACTION_TYPE_VIEW,
            event_id=f"evt-{n}",
        )
        for n in range(first, first + count)
    ]
    reply = await c.stub.TrackEvents(
        svc.TrackEventsRequest(events=events), metadata=c.metadata, timeout=10
    )
    assert reply.accepted_count == count and not reply.errors


async def stored(stack: RunningStack, tenant_id: str) -> tuple[int, int]:
    """(rows, distinct users) of the tenant's interactions: equal when nothing doubled."""
    rows = await sql(
        stack,
        select(func.count(), func.count(func.distinct(Interaction.user_id))).where(
            Interaction.tenant_id == tenant_id
        ),
    )
    return int(rows[0][0]), int(rows[0][1])  # type: ignore[call-overload]


async def wait_stored(stack: RunningStack, tenant_id: str, expected: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (found := await stored(stack, tenant_id))[0] < expected:
        assert time.monotonic() < deadline, f"{found[0]} of {expected} events stored"
        await asyncio.sleep(0.3)


async def test_broker_restart_loses_and_duplicates_nothing(
    stack_factory: StackFactory, kafka_broker: KafkaBroker
) -> None:
    stack = await stack_factory(
        internal_secret=SECRET,
        event_bus="kafka",
        kafka_bootstrap=kafka_broker.bootstrap,
        kafka_session_timeout_ms=2000,
    )
    c = caller_for(stack, await make_tenant(stack))
    await track(c, 0, 50)
    await wait_stored(stack, c.tenant_id, 50, timeout=60)

    # The broker goes away (and, with memory storage, forgets every topic and offset).
    await asyncio.to_thread(kafka_broker.stop)
    await track(c, 50, 50)  # accepted: the outbox holds them
    await track(c, 50, 50)  # a client retry of the same events: acknowledged, not stored twice
    await asyncio.to_thread(kafka_broker.start)
    # A real Kafka keeps its topics across a restart; Tansu's memory storage does not,
    # so re-create them as the operator of a fresh cluster would.
    await ensure_topics(kafka_broker.bootstrap, sorted(set(TOPICS.values())))

    await wait_stored(stack, c.tenant_id, 100, timeout=60)
    await asyncio.sleep(3)  # room for any late duplicate to show up
    assert await stored(stack, c.tenant_id) == (100, 100)
