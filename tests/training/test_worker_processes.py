"""Real `embrec worker` processes on one PostgreSQL queue: SIGKILL, resume, give up, no twins.

The service stack runs without its in-process worker; the workers are separate
`embrec worker` processes configured only through EMBREC_* variables, as in compose.
Leases are short so a killed worker's job is noticed within seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.rpc import error_details_pb2
from sqlalchemy import select

from embrec.training.v1 import resources_pb2 as pb
from embrec.training.v1 import training_service_pb2 as svc
from services.storage.db import create_engine, session_factory
from services.storage.models import AuditEvent, ModelVersion, TrainingJob
from tests.ingestion.conftest import sql
from tests.services.conftest import RunningStack, StackFactory
from tests.training.conftest import Caller, caller_for, tenant_with_data

pytestmark = pytest.mark.integration

LEASE_SECONDS = 5.0
MAX_ATTEMPTS = 2
EMBREC = Path(sys.executable).with_name("embrec")


@dataclass
class Workers:
    """`embrec worker` processes sharing the stack's database and artifact directory."""

    stack: RunningStack
    log_dir: Path
    lease_seconds: float = LEASE_SECONDS
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str) -> subprocess.Popen[bytes]:
        settings = self.stack.runtime.settings
        env = {
            **os.environ,
            "EMBREC_DATABASE_URL": settings.effective_database_url,
            "EMBREC_DATA_DIR": str(settings.data_dir),
            "EMBREC_ARTIFACT_DIR": str(settings.effective_artifact_dir),
            "EMBREC_TRAINING_POLL_SECONDS": "0.2",
            "EMBREC_TRAINING_HEARTBEAT_SECONDS": "0.5",
            "EMBREC_TRAINING_LEASE_SECONDS": str(self.lease_seconds),
            "EMBREC_TRAINING_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "EMBREC_LOG_LEVEL": "INFO",
        }
        log = (self.log_dir / f"worker-{name}.log").open("wb")
        # Its own session: the teardown can then stop the worker *and* a training
        # child it may have orphaned, without touching anything else.
        process = subprocess.Popen(
            [str(EMBREC), "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.started.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> list[int]:
        """SIGKILL the worker alone (as the OOM killer would); returns its children."""
        children = _children(process.pid)
        process.kill()
        process.wait(timeout=10)
        return children

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.log_dir.glob("worker-*.log"))
        )

    def close(self) -> None:
        for process in self.started:
            with _ignore_gone():
                os.killpg(process.pid, signal.SIGKILL)
            with _ignore_gone():
                process.wait(timeout=10)


class _ignore_gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, tb: object) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError | ChildProcessError)  # type: ignore[arg-type]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Callable[[RunningStack], Workers]]:
    made: list[Workers] = []

    def make(stack: RunningStack, lease_seconds: float = LEASE_SECONDS) -> Workers:
        made.append(Workers(stack, tmp_path, lease_seconds))
        return made[-1]

    yield make
    for w in made:
        w.close()


async def job_row(stack: RunningStack, job_id: str) -> TrainingJob:
    engine = create_engine(stack.runtime.settings.effective_database_url)
    try:
        async with session_factory(engine)() as session:
            row = await session.get(TrainingJob, job_id)
    finally:
        await engine.dispose()
    assert row is not None
    return row


async def wait_row(
    stack: RunningStack,
    job_id: str,
    ready: Callable[[TrainingJob], bool],
    workers: Workers,
    timeout: float = 120,
) -> TrainingJob:
    deadline = time.monotonic() + timeout
    while True:
        row = await job_row(stack, job_id)
        if ready(row):
            return row
        if time.monotonic() > deadline:
            pytest.fail(
                f"job {job_id} stuck: state={row.state} progress={row.progress} "
                f"attempts={row.attempts}\n{workers.logs()}"
            )
        await asyncio.sleep(0.2)


def run_by(process: subprocess.Popen[bytes]) -> Callable[[TrainingJob], bool]:
    # Worker ids are host:pid:random (services.training.worker).
    return lambda row: row.state == "running" and f":{process.pid}:" in (row.worker_id or "")


async def start_job(c: Caller, **hyper: Any) -> pb.TrainingJob:
    job: pb.TrainingJob = await c.stub.StartTrainingJob(
        svc.StartTrainingJobRequest(hyperparameters=pb.Hyperparameters(**hyper)),
        metadata=c.metadata,
    )
    return job


async def get_job(c: Caller, job_id: str) -> pb.TrainingJob:
    job: pb.TrainingJob = await c.stub.GetTrainingJob(
        svc.GetTrainingJobRequest(job_id=job_id), metadata=c.metadata
    )
    return job


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def trail(stack: RunningStack, job_id: str, last: str, timeout: float = 30) -> list[str]:
    """The job's audit actions in order, once ``last`` is among them.

    Audit records travel through the outbox to the audit service, so they land a
    moment after the state change they describe.
    """
    deadline = time.monotonic() + timeout
    while True:
        rows = await sql(
            stack,
            select(AuditEvent.action).where(AuditEvent.target == job_id).order_by(AuditEvent.seq),
        )
        actions = [str(action) for (action,) in rows]
        if last in actions or time.monotonic() > deadline:
            return actions
        await asyncio.sleep(0.2)


async def test_a_killed_worker_s_job_resumes_elsewhere_and_gives_up_after_max_attempts(
    pg_scratch_url: str, stack_factory: StackFactory, workers: Callable[..., Workers]
) -> None:
    stack = await stack_factory(pg_scratch_url, training_worker_enabled=False)
    pool = workers(stack)
    tenant_id = await tenant_with_data(stack)
    c = caller_for(stack, tenant_id)
    # Small batches and no early stopping: enough epochs to be killed in the middle.
    job = await start_job(c, epochs=24, early_stopping_patience=0, batch_size=256, embedding_dim=32)

    # Worker A trains a few epochs (each one checkpointed), then dies without a word.
    a = pool.start("a")
    row = await wait_row(
        stack, job.id, lambda r: run_by(a)(r) and int((r.progress or {}).get("epoch", 0)) >= 2, pool
    )
    epoch_at_kill = int((row.progress or {})["epoch"])
    orphans = pool.kill(a)
    assert orphans, "worker A should have had a training child process"
    # Its training child notices that its parent is gone and stops on its own, so it
    # cannot race the next attempt on the same checkpoint.
    await eventually(lambda: not any(_alive(pid) for pid in orphans), timeout=60)

    # Worker B re-queues the job once the lease runs out and resumes from the checkpoint.
    b = pool.start("b")
    row = await wait_row(stack, job.id, lambda r: r.state in ("succeeded", "failed"), pool, 240)
    assert row.state == "succeeded", (row.error, pool.logs())
    assert row.attempts == 2
    assert f":{b.pid}:" in (row.worker_id or "")
    assert int((row.progress or {})["resumed_from_epoch"]) >= epoch_at_kill
    done = await get_job(c, job.id)
    assert done.state == pb.TRAINING_JOB_STATE_SUCCEEDED
    assert done.model_version == "v1"
    # All 24 epochs, then the refit on train + validation (its epochs count on).
    assert done.progress.epoch == done.progress.total_epochs > 24
    models = await sql(
        stack, select(ModelVersion.version).where(ModelVersion.tenant_id == tenant_id)
    )
    assert models == [(1,)]
    actions = await trail(stack, job.id, "training.job.succeeded")
    # On the audit trail: two claims with the re-queue between them, then success.
    assert [a for a in actions if a.startswith("training.job.")][-4:] == [
        "training.job.running",
        "training.job.queued",
        "training.job.running",
        "training.job.succeeded",
    ], actions

    # A second job loses its worker on every attempt: after MAX_ATTEMPTS it fails,
    # with a reason a caller can act on, instead of bouncing between workers forever.
    second = await start_job(
        c, epochs=10_000, early_stopping_patience=0, batch_size=256, embedding_dim=32
    )
    await wait_row(stack, second.id, run_by(b), pool)
    pool.kill(b)
    c_worker = pool.start("c")
    await wait_row(stack, second.id, lambda r: run_by(c_worker)(r) and r.attempts == 2, pool)
    pool.kill(c_worker)
    pool.start("d")
    row = await wait_row(stack, second.id, lambda r: r.state not in ("queued", "running"), pool)
    assert row.state == "failed"
    failed = await get_job(c, second.id)
    assert failed.state == pb.TRAINING_JOB_STATE_FAILED
    assert "lost 2 times" in failed.error.message, failed.error.message
    info = error_details_pb2.ErrorInfo()
    assert failed.error.details[0].Unpack(info)
    assert info.reason == "WORKER_LOST"


async def test_two_workers_never_run_the_same_job(
    pg_scratch_url: str, stack_factory: StackFactory, workers: Callable[..., Workers]
) -> None:
    stack = await stack_factory(pg_scratch_url, training_worker_enabled=False)
    # No kills here: a longer lease, so a busy machine does not re-queue live jobs.
    pool = workers(stack, lease_seconds=15.0)
    # One job per tenant (a tenant runs one job at a time), all queued before any worker.
    jobs = {}
    for _ in range(5):
        tenant_id = await tenant_with_data(stack, users=300, items=120, interactions=3000)
        c = caller_for(stack, tenant_id)
        jobs[tenant_id] = (c, await start_job(c, epochs=2, embedding_dim=16))
    first, second = pool.start("a"), pool.start("b")

    async def all_done() -> bool:
        states = [(await job_row(stack, j.id)).state for _, j in jobs.values()]
        return all(s in ("succeeded", "failed", "cancelled") for s in states)

    try:
        await eventually(all_done, timeout=300)
    except AssertionError:
        pytest.fail(f"jobs did not finish\n{pool.logs()}")
    runners = set()
    for tenant_id, (c, job) in jobs.items():
        row = await job_row(stack, job.id)
        assert row.state == "succeeded", (row.error, pool.logs())
        actions = await trail(stack, job.id, "training.job.succeeded")
        claims = [
            action.rsplit(".", 1)[1]
            for action in actions
            if action in ("training.job.running", "training.job.queued")
        ]
        # Claimed once; a second claim only ever follows a re-queue (a lapsed lease on a
        # loaded machine), never while another worker holds the job.
        assert claims[0] == "running" and claims.count("running") == row.attempts, actions
        assert all(a != b for a, b in itertools.pairwise(claims)), actions
        runners.add((row.worker_id or "").split(":")[1])
        assert (await get_job(c, job.id)).model_version == "v1"
        models = await sql(
            stack, select(ModelVersion.version).where(ModelVersion.tenant_id == tenant_id)
        )
        assert models == [(1,)]
    # Both processes took part, so the claims really did compete.
    assert runners == {str(first.pid), str(second.pid)}
