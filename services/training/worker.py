"""The trainer worker: claims queued jobs, trains them in a child process, registers models.

Queue: the ``training_jobs`` table itself. A worker claims the oldest queued job with
``SELECT ... FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite serialises writers) and a
compare-and-set ``UPDATE ... WHERE state = 'queued'``, so two workers never run the
same job. While it trains, the worker renews the job's lease (``heartbeat_at``) and
writes progress; a job whose heartbeat is older than ``training_lease_seconds`` was
lost with its worker: any worker re-queues it (``attempts`` counts tries) and the next
claim resumes it from its last epoch checkpoint, or fails it with the reason after
``training_max_attempts`` tries.

One job, step by step: data-quality check → model version allocated (kept across
retries) → a consistent snapshot of the tenant's interactions (one SELECT) saved next
to the checkpoint, so a resumed job trains on exactly the same data → the child
process (``runner.run_training``) splits by time, trains, evaluates and writes the
versioned artifacts atomically → the worker verifies their checksums and registers
the model and the job's success in one transaction (audit + events), then deploys it
when the job asked for auto_deploy and it passes the quality gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import shutil
import socket
import time
from datetime import UTC, datetime, timedelta
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit.record import record_audit
from services.config import Settings
from services.errors import EmbrecError
from services.storage.models import Interaction, Item, ModelVersion, TrainingJob, new_id
from services.training.convert import version_name
from services.training.domain import Actor, TrainingStore, job_changed
from services.training.hyper import contract_names, trainer_overrides
from services.training.quality import check_data_quality
from services.training.runner import run_training

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

#: Progress is written at most this often (WatchTrainingJob polls the row).
PROGRESS_INTERVAL = 0.5
#: How often the worker looks at the child's queue and the job's row.
POLL = 0.2
WORK_DIR = ".work"


class Worker:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        *,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{new_id()[:8]}"
        self.store = TrainingStore(sessions)
        self.actor = Actor(subject=f"worker:{self.worker_id}")
        self._lease = timedelta(seconds=settings.training_lease_seconds)

    # ------------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop`` is set; fire due schedules when idle."""
        logger.info("trainer worker %s started", self.worker_id)
        while not stop.is_set():
            busy = False
            try:
                await self.recover_lost_jobs()
                await self.store.fire_due_schedules()
                busy = await self.run_once(stop)
            except Exception:
                # A database outage must not kill the worker; it retries after a pause.
                logger.exception("trainer worker iteration failed")
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.training_poll_seconds)
        logger.info("trainer worker %s stopped", self.worker_id)

    async def run_once(self, stop: asyncio.Event | None = None) -> bool:
        """Claim one job and run it to an end; False when nothing was queued."""
        job = await self.claim()
        if job is None:
            return False
        await self.execute(job, stop or asyncio.Event())
        return True

    # ------------------------------------------------------------------ queue

    async def claim(self) -> TrainingJob | None:
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            candidate = await session.scalar(
                select(TrainingJob.id)
                .where(TrainingJob.state == "queued")
                .order_by(TrainingJob.created_at)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if candidate is None:
                return None
            claimed = await session.execute(
                update(TrainingJob)
                .where(TrainingJob.id == candidate, TrainingJob.state == "queued")
                .values(
                    state="running",
                    worker_id=self.worker_id,
                    heartbeat_at=now,
                    attempts=TrainingJob.attempts + 1,
                    started_at=func.coalesce(TrainingJob.started_at, now),
                )
            )
            if not claimed.rowcount:  # type: ignore[attr-defined]
                return None
            job = await session.get(TrainingJob, candidate, populate_existing=True)
            assert job is not None
            job.progress = {**(job.progress or {}), "message": f"claimed by {self.worker_id}"}
            # Claims are on the trail too: with re-queues, "who ran this, how often" matters.
            record_audit(
                session,
                tenant_id=job.tenant_id,
                actor=self.actor.subject,
                action="training.job.running",
                target=job.id,
                metadata={"previous_state": "queued", "attempt": str(job.attempts)},
            )
            job_changed(session, job, "queued")
            return job

    async def recover_lost_jobs(self) -> list[str]:
        """Re-queue (or fail, past max attempts) jobs whose worker stopped heartbeating."""
        cutoff = datetime.now(UTC) - self._lease
        async with self.sessions() as session:
            stale = list(
                await session.scalars(
                    select(TrainingJob).where(
                        TrainingJob.state.in_(("running", "cancelling")),
                        TrainingJob.heartbeat_at < cutoff,
                    )
                )
            )
        recovered = []
        for job in stale:
            if job.state == "cancelling":
                new_state, message = "cancelled", "cancelled (its worker was lost)"
            elif job.attempts >= self.settings.training_max_attempts:
                new_state = "failed"
                message = (
                    f"The trainer worker running this job was lost {job.attempts} times "
                    f"(no heartbeat for {self._lease.total_seconds():.0f} s); giving up."
                )
            else:
                new_state = "queued"
                message = (
                    f"worker {job.worker_id} lost (no heartbeat for "
                    f"{self._lease.total_seconds():.0f} s); re-queued, will resume from "
                    "its last checkpoint"
                )
            if await self._transition(
                job, new_state, message, expect_heartbeat=job.heartbeat_at, reason="WORKER_LOST"
            ):
                recovered.append(job.id)
        return recovered

    async def _transition(
        self,
        job: TrainingJob,
        state: str,
        message: str,
        *,
        expect_heartbeat: datetime | None = None,
        expect_worker: bool = False,
        reason: str = "",
        model_version: str = "",
    ) -> bool:
        """Compare-and-set the job's state; audited, published. False if someone else won."""
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            row = await session.get(TrainingJob, job.id, with_for_update=True)
            if row is None:
                return False
            if expect_heartbeat is not None and row.heartbeat_at != expect_heartbeat:
                return False
            if expect_worker and row.worker_id != self.worker_id:
                return False
            previous = row.state
            row.state = state
            row.progress = {**(row.progress or {}), "message": message}
            if state == "queued":
                row.worker_id = None
            if state in ("succeeded", "failed", "cancelled"):
                row.finished_at = now
            if state == "failed":
                row.error = message
                row.details = {**(row.details or {}), "error_reason": reason or "TRAINING_FAILED"}
            record_audit(
                session,
                tenant_id=row.tenant_id,
                actor=self.actor.subject,
                action=f"training.job.{state}",
                target=row.id,
                outcome="failure" if state == "failed" else "success",
                metadata={
                    "previous_state": previous,
                    **({"reason": reason} if reason else {}),
                    **({"model_version": model_version} if model_version else {}),
                },
            )
            job_changed(session, row, previous, model_version=model_version)
        return True

    # ------------------------------------------------------------------ one job

    async def execute(self, job: TrainingJob, stop: asyncio.Event) -> None:
        tenant_dir = self.settings.effective_artifact_dir / job.tenant_id
        work_dir = tenant_dir / WORK_DIR / job.id
        try:
            await self._progress(job.id, {"message": "checking data quality"})
            report = await check_data_quality(self.sessions, job.tenant_id)
            if not report.passed:
                await self._transition(
                    job,
                    "failed",
                    "The data-quality check failed: " + report.summary(),
                    expect_worker=True,
                    reason="DATA_QUALITY_FAILED",
                )
                return
            version = await self._allocate_version(job)
            snapshot = await self._snapshot(job, work_dir)
            artifact = tenant_dir / version_name(version)
            outcome = await self._train(job, version, snapshot, work_dir, tenant_dir, stop)
        except Exception as exc:
            logger.exception("training job %s failed", job.id)
            await self._transition(
                job, "failed", f"{type(exc).__name__}: {exc}", expect_worker=True
            )
            return
        kind = outcome["kind"]
        if kind == "lost":
            return  # another worker (or the lease sweep) owns the job now
        if kind == "cancelled":
            await self._transition(job, "cancelled", "cancelled", expect_worker=True)
            shutil.rmtree(work_dir, ignore_errors=True)
            return
        if kind == "stopped":
            # This process is shutting down: hand the job back at once instead of
            # waiting for the lease to expire; it resumes from its checkpoint.
            await self._transition(
                job, "queued", "re-queued: its worker shut down", expect_worker=True
            )
            return
        if kind != "done":
            await self._transition(
                job,
                "failed",
                str(outcome.get("error", "training failed")),
                expect_worker=True,
                reason="NON_FINITE_LOSS" if outcome.get("non_finite") else "TRAINING_FAILED",
            )
            return
        try:
            await self._register(job, version, artifact, snapshot, outcome)
        except Exception as exc:
            logger.exception("registering the model of job %s failed", job.id)
            await self._transition(
                job, "failed", f"registering the model failed: {exc}", expect_worker=True
            )
            return
        shutil.rmtree(work_dir, ignore_errors=True)

    async def _allocate_version(self, job: TrainingJob) -> int:
        """The job's model version: allocated once, kept when the job is resumed."""
        async with self.sessions.begin() as session:
            row = await session.get(TrainingJob, job.id, with_for_update=True)
            assert row is not None
            existing = (row.details or {}).get("version")
            if existing:
                return int(existing)
            registered = await session.scalar(
                select(func.max(ModelVersion.version)).where(
                    ModelVersion.tenant_id == job.tenant_id
                )
            )
            claimed = [
                int((d or {}).get("version") or 0)
                for d in await session.scalars(
                    select(TrainingJob.details).where(TrainingJob.tenant_id == job.tenant_id)
                )
            ]
            number = max([int(registered or 0), *claimed]) + 1
            # A directory left by a crash of another process must never be overwritten.
            root = self.settings.effective_artifact_dir / job.tenant_id
            while (root / version_name(number)).exists():
                number += 1
            row.details = {**(row.details or {}), "version": number}
            return number

    async def _snapshot(self, job: TrainingJob, work_dir: Path) -> dict[str, Any]:
        """Interactions as of now, saved once per job (a resumed job reuses them)."""
        path = work_dir / "snapshot.npz"
        async with self.sessions() as session:
            row = await session.get(TrainingJob, job.id)
            assert row is not None
            saved = (row.details or {}).get("snapshot")
        if saved and path.exists():
            return dict(saved)
        await self._progress(job.id, {"message": "reading interactions"})
        users: list[str] = []
        items: list[str] = []
        stamps: list[float] = []
        # One statement: PostgreSQL and SQLite both read it from one snapshot, so
        # rows committed meanwhile are either wholly in or wholly out.
        async with self.sessions() as session:
            result = await session.stream(
                select(Interaction.user_id, Interaction.item_id, Interaction.ts)
                .where(Interaction.tenant_id == job.tenant_id)
                .order_by(Interaction.id)
                .execution_options(yield_per=20_000)
            )
            async for user_id, item_id, ts in result:
                users.append(user_id)
                items.append(item_id)
                stamps.append(ts.timestamp())
            # The catalog's categories, for the recent-category boost (trainer.recency).
            catalog = (
                await session.execute(
                    select(Item.item_id, Item.category).where(Item.tenant_id == job.tenant_id)
                )
            ).all()
        await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
        tmp = work_dir / "snapshot.tmp.npz"
        await asyncio.to_thread(
            np.savez,
            tmp,
            users=np.asarray(users, dtype=str),
            items=np.asarray(items, dtype=str),
            timestamps=np.asarray(stamps, dtype=np.float64),
            catalog_items=np.asarray([row[0] for row in catalog], dtype=str),
            catalog_categories=np.asarray([row[1] or "" for row in catalog], dtype=str),
        )
        os.replace(tmp, path)
        newest = max(stamps) if stamps else 0.0
        snapshot = {
            "interaction_count": len(users),
            "data_snapshot_time": datetime.fromtimestamp(newest, UTC).isoformat(),
            "taken_at": datetime.now(UTC).isoformat(),
        }
        async with self.sessions.begin() as session:
            row = await session.get(TrainingJob, job.id, with_for_update=True)
            assert row is not None
            row.details = {**(row.details or {}), "snapshot": snapshot}
        return snapshot

    async def _train(
        self,
        job: TrainingJob,
        version: int,
        snapshot: dict[str, Any],
        work_dir: Path,
        tenant_dir: Path,
        stop: asyncio.Event,
    ) -> dict[str, Any]:
        artifact = tenant_dir / version_name(version)
        if artifact.exists():
            # The previous attempt wrote the artifacts and died before registering them.
            return await self._reuse(artifact)
        overrides, max_seconds = trainer_overrides(job.hyperparameters or {})
        spec = {
            "snapshot_path": str(work_dir / "snapshot.npz"),
            "checkpoint_dir": str(work_dir / "checkpoint"),
            "artifact_root": str(tenant_dir),
            "version": version_name(version),
            "overrides": overrides,
            # Only an explicit budget: the trainer then schedules the learning rate by
            # the share of time used, so a large default would keep it in warm-up.
            "max_seconds": max_seconds,
        }
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        cancel = ctx.Event()
        process = ctx.Process(
            target=run_training, args=(spec, queue, cancel), name=f"train-{job.id[:8]}", daemon=True
        )
        process.start()
        logger.info("training job %s (v%d) in process %s", job.id, version, process.pid)
        last_write = 0.0
        last_beat = time.monotonic()
        pending: dict[str, Any] = {}
        outcome: dict[str, Any] | None = None
        stopping = False
        try:
            while outcome is None:
                await asyncio.sleep(POLL)
                while True:
                    try:
                        message = queue.get_nowait()
                    except Exception:  # queue.Empty
                        break
                    if message.get("kind") == "progress":
                        pending.update({k: v for k, v in message.items() if k != "kind"})
                    else:
                        outcome = message
                if outcome is not None:
                    break
                if not process.is_alive():
                    # Drain what it wrote just before exiting, then judge by exit code.
                    await asyncio.sleep(POLL)
                    with contextlib.suppress(Exception):
                        outcome = await asyncio.to_thread(queue.get, True, 1.0)
                    if outcome is None:
                        outcome = {
                            "kind": "error",
                            "error": f"the training process died (exit code {process.exitcode})",
                        }
                    break
                now = time.monotonic()
                if (pending and now - last_write >= PROGRESS_INTERVAL) or (
                    now - last_beat >= self.settings.training_heartbeat_seconds
                ):
                    state = await self._progress(job.id, pending, only_if_mine=True)
                    pending, last_write, last_beat = {}, now, now
                    if state is None:
                        cancel.set()
                        return {"kind": "lost"}
                    if state == "cancelling":
                        cancel.set()
                if stop.is_set() and not stopping:
                    stopping = True
                    cancel.set()
            if pending:
                await self._progress(job.id, pending, only_if_mine=True)
        finally:
            # Joined in a thread: a child that takes a while to exit (torch teardown)
            # must not block the loop, or the lease would lapse and the job be re-queued.
            if process.is_alive():
                await asyncio.to_thread(process.join, 10)
            if process.is_alive():
                process.kill()
            await asyncio.to_thread(process.join, 5)
            queue.close()
        if stopping and outcome.get("kind") == "cancelled":
            async with self.sessions() as session:
                state = await session.scalar(
                    select(TrainingJob.state).where(TrainingJob.id == job.id)
                )
            if state != "cancelling":
                return {"kind": "stopped"}
        return outcome

    async def _reuse(self, artifact: Path) -> dict[str, Any]:
        import json

        from trainer.artifacts import verify_artifacts

        await asyncio.to_thread(verify_artifacts, artifact)
        metrics = json.loads((artifact / "metrics.json").read_text())
        config = json.loads((artifact / "config.json").read_text())
        users = json.loads((artifact / "user_ids.json").read_text())
        items = json.loads((artifact / "item_ids.json").read_text())
        return {
            "kind": "done",
            "artifact_path": str(artifact),
            "metrics": metrics,
            "config": config,
            "data_hash": (artifact / "data_hash.txt").read_text().strip(),
            "user_count": len(users),
            "item_count": len(items),
            "device": "",
        }

    async def _register(
        self,
        job: TrainingJob,
        version: int,
        artifact: Path,
        snapshot: dict[str, Any],
        outcome: dict[str, Any],
    ) -> None:
        from trainer.artifacts import verify_artifacts

        await self._progress(job.id, {"message": "verifying artifacts"})
        await asyncio.to_thread(verify_artifacts, artifact)
        metrics = {k: float(v) for k, v in outcome["metrics"].items()}
        lineage = {
            "interaction_count": int(snapshot.get("interaction_count", 0)),
            "user_count": int(outcome.get("user_count", 0)),
            "item_count": int(outcome.get("item_count", 0)),
            "data_snapshot_time": snapshot.get("data_snapshot_time", ""),
            "trainer_version": _trainer_version(),
            "device": outcome.get("device", ""),
        }
        resolved = contract_names(dict(outcome.get("config") or {}))
        max_seconds = (job.hyperparameters or {}).get("max_duration_seconds")
        if max_seconds is not None:
            resolved["max_duration_seconds"] = max_seconds
        name = version_name(version)
        now = datetime.now(UTC)
        uri = await asyncio.to_thread(lambda: artifact.absolute().as_uri())
        async with self.sessions.begin() as session:
            row = await session.get(TrainingJob, job.id, with_for_update=True)
            if (
                row is None
                or row.worker_id != self.worker_id
                or row.state
                not in (
                    "running",
                    "cancelling",
                )
            ):
                return  # lost the lease meanwhile; the artifacts are reused on the retry
            model = ModelVersion(
                id=new_id(),
                tenant_id=job.tenant_id,
                version=version,
                job_id=job.id,
                artifact_uri=uri,
                metrics=metrics,
                config={"hyperparameters": resolved, "lineage": lineage},
                data_hash=str(outcome.get("data_hash", "")),
                created_at=now,
            )
            session.add(model)
            previous = row.state
            row.state = "succeeded"
            row.finished_at = now
            row.metrics = metrics
            row.progress = {
                **(row.progress or {}),
                "message": f"model {name} registered",
                "metrics": {k: v for k, v in metrics.items() if "@" in k},
            }
            record_audit(
                session,
                tenant_id=job.tenant_id,
                actor=self.actor.subject,
                action="training.job.succeeded",
                target=job.id,
                metadata={
                    "model_version": name,
                    "ndcg@10": f"{metrics.get('ndcg@10', 0.0):.4f}",
                    "data_hash": str(outcome.get("data_hash", "")),
                },
            )
            record_audit(
                session,
                tenant_id=job.tenant_id,
                actor=self.actor.subject,
                action="model.register",
                target=name,
                metadata={"job_id": job.id, "artifact_uri": model.artifact_uri},
            )
            job_changed(session, row, previous, model_version=name)
        if (job.details or {}).get("auto_deploy"):
            try:
                await self.store.deploy(
                    job.tenant_id,
                    name,
                    [],
                    force=False,
                    reason=f"auto_deploy of training job {job.id}",
                    actor=self.actor,
                )
                note = f"model {name} registered and deployed at 100%"
            except EmbrecError as exc:
                note = f"model {name} registered; not deployed: {exc.message}"
            await self._progress(job.id, {"message": note})

    async def _progress(
        self, job_id: str, values: dict[str, Any], *, only_if_mine: bool = False
    ) -> str | None:
        """Merge ``values`` into the job's progress and renew its lease.

        Returns the job's state, or None when this worker no longer owns it.
        """
        async with self.sessions.begin() as session:
            row = await session.get(TrainingJob, job_id, with_for_update=True)
            if row is None:
                return None
            if only_if_mine and (
                row.worker_id != self.worker_id or row.state not in ("running", "cancelling")
            ):
                return None
            row.progress = {**(row.progress or {}), **values}
            row.heartbeat_at = datetime.now(UTC)
            row.updated_at = datetime.now(UTC)
            return row.state


def _trainer_version() -> str:
    try:
        return f"embrec {dist_version('embrec')}"
    except Exception:
        return "embrec"
