"""Schedules: periodic retraining and retraining after N new interactions start jobs.

The API refuses intervals under an hour, so "an hour passes" is simulated by moving
the schedule's next run into the past; the stack's own worker fires due schedules.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from sqlalchemy import insert, update

from embrec.training.v1 import resources_pb2 as pb
from embrec.training.v1 import training_service_pb2 as svc
from services.storage.models import Interaction, Schedule
from tests.ingestion.conftest import sql
from tests.services.conftest import StackFactory
from tests.training.conftest import Caller, caller_for, error_reason, tenant_with_data

CHEAP = pb.Hyperparameters(epochs=1, embedding_dim=16)


async def jobs_of(c: Caller) -> list[pb.TrainingJob]:
    response = await c.stub.ListTrainingJobs(svc.ListTrainingJobsRequest(), metadata=c.metadata)
    return list(response.training_jobs)


async def wait_for_jobs(c: Caller, count: int, timeout: float = 120) -> list[pb.TrainingJob]:
    deadline = time.monotonic() + timeout
    while len(jobs := await jobs_of(c)) < count:
        assert time.monotonic() < deadline, f"expected {count} job(s), have {len(jobs)}"
        await asyncio.sleep(0.2)
    return jobs


async def test_periodic_and_new_interaction_schedules_start_jobs(
    stack_factory: StackFactory,
) -> None:
    stack = await stack_factory(training_poll_seconds=0.2)

    # Periodic: every hour.
    periodic = caller_for(stack, await tenant_with_data(stack, interactions=3000))
    schedule = await periodic.stub.CreateSchedule(
        svc.CreateScheduleRequest(
            schedule=pb.Schedule(
                name="hourly", interval=Duration(seconds=3600), hyperparameters=CHEAP
            )
        ),
        metadata=periodic.metadata,
    )
    first_due = schedule.next_run_time.ToDatetime(UTC)
    assert timedelta(minutes=59) < first_due - datetime.now(UTC) <= timedelta(hours=1)
    await asyncio.sleep(1.0)  # a few worker ticks: not due yet, nothing starts
    assert await jobs_of(periodic) == []

    # The hour passes.
    await sql(
        stack,
        update(Schedule)
        .where(Schedule.id == schedule.id)
        .values(next_run_at=datetime.now(UTC) - timedelta(seconds=1)),
    )
    [job] = await wait_for_jobs(periodic, 1)
    assert job.trigger == pb.TRAINING_TRIGGER_SCHEDULE
    assert job.schedule_id == schedule.id
    assert job.hyperparameters.epochs == 1
    listed = await periodic.stub.ListSchedules(
        svc.ListSchedulesRequest(), metadata=periodic.metadata
    )
    [after] = listed.schedules
    assert after.last_job_id == job.id
    # The next run is an interval after this one, not a burst of catch-up runs.
    next_due = after.next_run_time.ToDatetime(UTC) - after.last_run_time.ToDatetime(UTC)
    assert next_due == timedelta(hours=1)

    # After N new interactions (no interval at all).
    counted = caller_for(stack, await tenant_with_data(stack, interactions=3000))
    threshold = 200
    schedule = await counted.stub.CreateSchedule(
        svc.CreateScheduleRequest(
            schedule=pb.Schedule(
                name="on-new-data", min_new_interactions=threshold, hyperparameters=CHEAP
            )
        ),
        metadata=counted.metadata,
    )
    assert not schedule.HasField("next_run_time")

    async def add_interactions(n: int) -> None:
        now = datetime.now(UTC)
        rows = [
            {
                "tenant_id": counted.tenant_id,
                "user_id": f"user_{i % 50}",
                "item_id": f"item_{i % 40}",
                "type": "view",
                "ts": now,
            }
            for i in range(n)
        ]
        await sql(stack, insert(Interaction).values(rows))

    await add_interactions(threshold - 1)
    await asyncio.sleep(1.0)
    assert await jobs_of(counted) == [], "one interaction short of the threshold"
    await add_interactions(1)
    [job] = await wait_for_jobs(counted, 1)
    assert job.trigger == pb.TRAINING_TRIGGER_SCHEDULE
    assert job.schedule_id == schedule.id


async def test_schedule_rules(stack_factory: StackFactory) -> None:
    stack = await stack_factory(training_worker_enabled=False)
    c = caller_for(stack, await tenant_with_data(stack, interactions=2000))
    for bad in (
        pb.Schedule(name="too often", interval=Duration(seconds=60)),
        pb.Schedule(name="never"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await c.stub.CreateSchedule(
                svc.CreateScheduleRequest(schedule=bad), metadata=c.metadata
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "schedule.interval" in (caught.value.details() or "")
    reader = caller_for(stack, c.tenant_id, scopes={"models:read"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reader.stub.CreateSchedule(
            svc.CreateScheduleRequest(schedule=pb.Schedule(min_new_interactions=10)),
            metadata=reader.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value)
