"""Training jobs, the model registry, deployments and schedules (no grpc here).

Errors (services.errors, mapped by the runtime's boundary):

    NotFound            TRAINING_JOB_NOT_FOUND, MODEL_NOT_FOUND, DEPLOYMENT_NOT_FOUND,
                        SCHEDULE_NOT_FOUND
    InvalidArgument     bad hyperparameters, traffic split, schedule, version name
    FailedPrecondition  INVALID_STATE (a job already queued/running, tenant not active,
                        cancel of a finished job), DATA_QUALITY_FAILED,
                        QUALITY_GATE_FAILED (deploy without force), MODEL_ARCHIVED,
                        NO_PREVIOUS_DEPLOYMENT
    ResourceExhausted   SCHEDULE_LIMIT

Every mutation records an audit event and, where other services care, an event
(TrainingJobStateChanged, ModelDeployed) in the same transaction (the outbox).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from embrec.events.v1 import events_pb2
from services.audit.record import record_audit
from services.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from services.event_messages import emit
from services.pagination import Page
from services.storage.models import Deployment, ModelVersion, Schedule, TrainingJob, new_id
from services.training.convert import (
    JOB_STATES,
    deployment_to_proto,
    version_name,
)
from services.training.hyper import validate_hyperparameters
from services.training.quality import check_data_quality

__all__ = [
    "ACTIVE_JOB_STATES",
    "FINAL_JOB_STATES",
    "QUALITY_GATE_RATIO",
    "Actor",
    "TrainingStore",
    "parse_version",
]

ACTIVE_JOB_STATES = ("queued", "running", "cancelling")
FINAL_JOB_STATES = ("succeeded", "failed", "cancelled")
#: A model whose NDCG@10 is below this share of the live model's needs force.
QUALITY_GATE_RATIO = 0.9
GATE_METRIC = "ndcg@10"
MAX_SCHEDULES = 10
MIN_SCHEDULE_INTERVAL = timedelta(hours=1)
_VERSION = re.compile(r"^v?([1-9][0-9]{0,8})$")


@dataclass(frozen=True)
class Actor:
    subject: str
    impersonator: str = ""
    source_ip: str = ""


def _audit(
    session: AsyncSession, actor: Actor, *, tenant_id: str, action: str, **fields: Any
) -> str:
    """record_audit with the caller's identities (who, as whom, from where) filled in."""
    return record_audit(
        session,
        tenant_id=tenant_id,
        actor=actor.subject,
        impersonator=actor.impersonator,
        source_ip=actor.source_ip,
        action=action,
        **fields,
    )


def parse_version(value: str, field: str = "model_version") -> int:
    match = _VERSION.match(value.strip())
    if not match:
        raise InvalidArgument(
            f"{field} must name a model version such as 'v3'; got {value!r}",
            violations=[FieldViolation(field, "expected v<number>")],
        )
    return int(match.group(1))


def job_changed(
    session: AsyncSession, job: TrainingJob, previous: str, *, model_version: str = ""
) -> None:
    """Publish TrainingJobStateChanged for a state change made in ``session``."""
    payload = events_pb2.TrainingJobStateChanged(
        job_id=job.id,
        previous_state=JOB_STATES.get(previous, 0),  # type: ignore[arg-type]
        state=JOB_STATES.get(job.state, 0),  # type: ignore[arg-type]
        model_version=model_version,
    )
    if job.state == "failed":
        payload.error.message = job.error or ""
    emit(session, payload, tenant_id=job.tenant_id)


class TrainingStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    # ------------------------------------------------------------------ jobs

    async def start_job(
        self,
        tenant_id: str,
        *,
        hyperparameters: dict[str, Any],
        auto_deploy: bool,
        actor: Actor,
        schedule_id: str | None = None,
    ) -> TrainingJob:
        validate_hyperparameters(hyperparameters)
        report = await check_data_quality(self._sessions, tenant_id)
        async with self._sessions.begin() as session:
            if not report.passed:
                _audit(
                    session,
                    actor,
                    tenant_id=tenant_id,
                    action="training.job.start",
                    outcome="failure",
                    metadata={"reason": "DATA_QUALITY_FAILED", "findings": report.summary()},
                )
            else:
                busy = await session.scalar(
                    select(TrainingJob.id).where(
                        TrainingJob.tenant_id == tenant_id,
                        TrainingJob.state.in_(ACTIVE_JOB_STATES),
                    )
                )
                if busy is not None:
                    raise FailedPrecondition(
                        f"Training job {busy} of this tenant is still queued or running; "
                        "wait for it or cancel it (POST /api/v1/trainingJobs/{id}:cancel).",
                        reason="INVALID_STATE",
                        metadata={"job_id": busy},
                    )
                job = TrainingJob(
                    id=new_id(),
                    tenant_id=tenant_id,
                    state="queued",
                    hyperparameters=hyperparameters,
                    progress={"message": "waiting for a trainer worker"},
                    requested_by=actor.subject,
                    schedule_id=schedule_id,
                    details={"auto_deploy": auto_deploy},
                )
                session.add(job)
                await session.flush()
                _audit(
                    session,
                    actor,
                    tenant_id=tenant_id,
                    action="training.job.start",
                    target=job.id,
                    metadata={
                        "auto_deploy": str(auto_deploy).lower(),
                        "trigger": "schedule" if schedule_id else "manual",
                        **({"schedule_id": schedule_id} if schedule_id else {}),
                    },
                )
                job_changed(session, job, "")
                return job
        # Refused on data quality: the audit record above is committed, then the error.
        raise FailedPrecondition(
            "The tenant's data cannot train a useful model: " + report.summary(),
            reason="DATA_QUALITY_FAILED",
            metadata={"checks": ",".join(i.check for i in report.issues if i.severity == "error")},
        )

    async def get_job(self, tenant_id: str, job_id: str) -> TrainingJob:
        async with self._sessions() as session:
            job = await session.get(TrainingJob, job_id.strip())
        if job is None or job.tenant_id != tenant_id:
            raise NotFound("training job", job_id)
        return job

    async def list_jobs(
        self, tenant_id: str, page: Page, state: str | None = None
    ) -> tuple[list[TrainingJob], bool]:
        query = select(TrainingJob).where(TrainingJob.tenant_id == tenant_id)
        if state:
            query = query.where(TrainingJob.state == state)
        query = query.order_by(TrainingJob.created_at.desc(), TrainingJob.id)
        return await self._page(query, page)

    async def cancel_job(self, tenant_id: str, job_id: str, actor: Actor) -> TrainingJob:
        async with self._sessions.begin() as session:
            job = await session.get(TrainingJob, job_id.strip(), with_for_update=True)
            if job is None or job.tenant_id != tenant_id:
                raise NotFound("training job", job_id)
            if job.state in ("cancelling", "cancelled"):
                return job
            if job.state in ("succeeded", "failed"):
                raise FailedPrecondition(
                    f"Training job {job.id} already {job.state}; only queued or running jobs "
                    "can be cancelled.",
                    reason="INVALID_STATE",
                    metadata={"job_id": job.id, "state": job.state},
                )
            previous = job.state
            now = datetime.now(UTC)
            # A queued job has no worker to acknowledge: it is cancelled at once. A
            # running one is asked to stop; its worker finishes the transition.
            if previous == "queued":
                job.state, job.finished_at = "cancelled", now
                job.progress = {**(job.progress or {}), "message": "cancelled before it started"}
            else:
                job.state = "cancelling"
                job.progress = {**(job.progress or {}), "message": "cancel requested"}
            _audit(
                session,
                actor,
                tenant_id=tenant_id,
                action="training.job.cancel",
                target=job.id,
                metadata={"previous_state": previous},
            )
            job_changed(session, job, previous)
        return job

    # ------------------------------------------------------------------ models

    async def list_models(
        self, tenant_id: str, page: Page, *, show_archived: bool = False
    ) -> tuple[list[ModelVersion], bool]:
        query = (
            select(ModelVersion)
            .where(ModelVersion.tenant_id == tenant_id)
            .order_by(ModelVersion.version.desc())
        )
        rows, more = await self._page(query, page)
        if not show_archived:
            rows = [r for r in rows if not (r.config or {}).get("archived")]
        return rows, more

    async def get_model(self, tenant_id: str, version: str) -> ModelVersion:
        number = parse_version(version)
        async with self._sessions() as session:
            return await self._model(session, tenant_id, number)

    async def _model(self, session: AsyncSession, tenant_id: str, number: int) -> ModelVersion:
        model = await session.scalar(
            select(ModelVersion).where(
                ModelVersion.tenant_id == tenant_id, ModelVersion.version == number
            )
        )
        if model is None:
            raise NotFound("model", version_name(number))
        return model

    async def traffic(self, tenant_id: str) -> dict[str, int]:
        """model_version -> percent of the active deployment."""
        async with self._sessions() as session:
            active = await self._active(session, tenant_id)
        if active is None:
            return {}
        return {str(s["model_version"]): int(s["percent"]) for s in active.split or []}

    # ------------------------------------------------------------------ deployments

    async def _active(self, session: AsyncSession, tenant_id: str) -> Deployment | None:
        return await session.scalar(
            select(Deployment)
            .where(Deployment.tenant_id == tenant_id, Deployment.active.is_(True))
            .order_by(Deployment.created_at.desc())
            .limit(1)
        )

    async def deploy(
        self,
        tenant_id: str,
        model_version: str,
        split: Sequence[tuple[str, int]],
        *,
        force: bool,
        reason: str,
        actor: Actor,
    ) -> Deployment:
        target = parse_version(model_version)
        entries = _validate_split(target, split)
        async with self._sessions.begin() as session:
            models = {n: await self._model(session, tenant_id, n) for n, _ in entries}
            for model in models.values():
                _check_deployable(model)
            active = await self._active(session, tenant_id)
            gate: dict[str, str] = {}
            if active is not None:
                gate = await self._quality_gate(session, tenant_id, active, models[target])
            if gate and not force:
                _audit(
                    session,
                    actor,
                    tenant_id=tenant_id,
                    action="model.deploy",
                    target=version_name(target),
                    outcome="failure",
                    metadata={"reason": "QUALITY_GATE_FAILED", **gate},
                )
            else:
                return await self._activate(
                    session,
                    tenant_id,
                    entries,
                    active,
                    actor=actor,
                    action="model.deploy",
                    details={"forced": bool(gate) and force, "rollback": False, "reason": reason},
                    extra={"model_version": version_name(target), **gate},
                )
        raise FailedPrecondition(
            f"Model {version_name(target)} has NDCG@10 {gate['candidate_ndcg@10']}, more than "
            f"{1 - QUALITY_GATE_RATIO:.0%} below the live model {gate['live_version']} "
            f"({gate['live_ndcg@10']}). Deploy with force to override.",
            reason="QUALITY_GATE_FAILED",
            metadata=gate,
        )

    async def _quality_gate(
        self, session: AsyncSession, tenant_id: str, active: Deployment, candidate: ModelVersion
    ) -> dict[str, str]:
        """{} when the candidate passes; else the figures that made it fail."""
        live = max(active.split or [], key=lambda s: int(s["percent"]), default=None)
        if live is None or int(live["version"]) == candidate.version:
            return {}
        live_model = await session.scalar(
            select(ModelVersion).where(
                ModelVersion.tenant_id == tenant_id, ModelVersion.version == int(live["version"])
            )
        )
        if live_model is None:
            return {}
        live_score = float((live_model.metrics or {}).get(GATE_METRIC, 0.0))
        score = float((candidate.metrics or {}).get(GATE_METRIC, 0.0))
        if live_score > 0 and score < QUALITY_GATE_RATIO * live_score:
            return {
                "live_version": version_name(live_model.version),
                "live_ndcg@10": f"{live_score:.4f}",
                "candidate_ndcg@10": f"{score:.4f}",
            }
        return {}

    async def _activate(
        self,
        session: AsyncSession,
        tenant_id: str,
        entries: list[tuple[int, int]],
        active: Deployment | None,
        *,
        actor: Actor,
        action: str,
        details: dict[str, Any],
        extra: dict[str, str],
    ) -> Deployment:
        now = datetime.now(UTC)
        if active is not None:
            await session.execute(
                update(Deployment)
                .where(Deployment.tenant_id == tenant_id, Deployment.active.is_(True))
                .values(active=False)
            )
            active.details = {**(active.details or {}), "state": "superseded"}
        # Active at once: retrievers keep serving the previous version until the new
        # index is loaded (IndexRegistry.best_available), so no PENDING phase is stored.
        row = Deployment(
            id=new_id(),
            tenant_id=tenant_id,
            split=[
                {"model_version": version_name(n), "version": n, "percent": p} for n, p in entries
            ],
            created_at=now,
            created_by=actor.subject,
            active=True,
            details={
                **details,
                "state": "active",
                "previous_deployment_id": active.id if active is not None else "",
                "activate_time": now.isoformat(),
            },
        )
        session.add(row)
        await session.flush()
        split_text = ",".join(f"{version_name(n)}:{p}" for n, p in entries)
        _audit(
            session,
            actor,
            tenant_id=tenant_id,
            action=action,
            target=row.id,
            metadata={
                "split": split_text,
                "forced": str(bool(details.get("forced"))).lower(),
                **({"reason": str(details["reason"])} if details.get("reason") else {}),
                **extra,
            },
        )
        emit(
            session,
            events_pb2.ModelDeployed(deployment=deployment_to_proto(row)),
            tenant_id=tenant_id,
        )
        return row

    async def rollback(
        self, tenant_id: str, deployment_id: str, *, reason: str, actor: Actor
    ) -> Deployment:
        async with self._sessions.begin() as session:
            active = await self._active(session, tenant_id)
            if deployment_id.strip():
                target = await session.get(Deployment, deployment_id.strip())
                if target is None or target.tenant_id != tenant_id:
                    raise NotFound("deployment", deployment_id)
            else:
                previous_id = str(
                    ((active.details or {}) if active else {}).get("previous_deployment_id", "")
                )
                target = await session.get(Deployment, previous_id) if previous_id else None
                if target is None:
                    raise FailedPrecondition(
                        "There is no earlier deployment to roll back to.",
                        reason="NO_PREVIOUS_DEPLOYMENT",
                    )
            entries = [(int(s["version"]), int(s["percent"])) for s in target.split or []]
            for number, _ in entries:
                _check_deployable(await self._model(session, tenant_id, number))
            return await self._activate(
                session,
                tenant_id,
                entries,
                active,
                actor=actor,
                action="model.rollback",
                details={"forced": False, "rollback": True, "reason": reason},
                extra={"restored_deployment_id": target.id},
            )

    async def list_deployments(self, tenant_id: str, page: Page) -> tuple[list[Deployment], bool]:
        query = (
            select(Deployment)
            .where(Deployment.tenant_id == tenant_id)
            .order_by(Deployment.created_at.desc(), Deployment.id)
        )
        return await self._page(query, page)

    # ------------------------------------------------------------------ schedules

    async def create_schedule(
        self,
        tenant_id: str,
        *,
        name: str,
        interval_seconds: float,
        min_new_interactions: int,
        hyperparameters: dict[str, Any],
        auto_deploy: bool,
        actor: Actor,
    ) -> Schedule:
        violations = []
        if not interval_seconds and min_new_interactions <= 0:
            violations.append(
                FieldViolation(
                    "schedule.interval", "set interval or min_new_interactions (or both)"
                )
            )
        if interval_seconds and interval_seconds < MIN_SCHEDULE_INTERVAL.total_seconds():
            violations.append(FieldViolation("schedule.interval", "must be at least 1 hour"))
        if min_new_interactions < 0:
            violations.append(FieldViolation("schedule.min_new_interactions", "must be >= 0"))
        if len(name) > 200:
            violations.append(FieldViolation("schedule.name", "at most 200 characters"))
        if violations:
            raise InvalidArgument(
                "Invalid schedule: " + "; ".join(f"{v.field} {v.description}" for v in violations),
                violations=violations,
            )
        validate_hyperparameters(hyperparameters, "schedule.hyperparameters")
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            count = await session.scalar(
                select(func.count()).select_from(Schedule).where(Schedule.tenant_id == tenant_id)
            )
            if int(count or 0) >= MAX_SCHEDULES:
                raise ResourceExhausted(
                    f"A tenant may have at most {MAX_SCHEDULES} schedules; delete one first.",
                    reason="SCHEDULE_LIMIT",
                    metadata={"limit": str(MAX_SCHEDULES)},
                )
            row = Schedule(
                id=new_id(),
                tenant_id=tenant_id,
                interval_seconds=int(interval_seconds),
                hyperparameters=hyperparameters,
                auto_deploy=auto_deploy,
                enabled=True,
                next_run_at=now + timedelta(seconds=interval_seconds) if interval_seconds else None,
                created_at=now,
                details={
                    "name": name,
                    "min_new_interactions": min_new_interactions,
                    # The new-interactions trigger counts from the schedule's creation.
                    "interactions_seen": await _interaction_count(session, tenant_id),
                },
            )
            session.add(row)
            _audit(
                session,
                actor,
                tenant_id=tenant_id,
                action="training.schedule.create",
                target=row.id,
                metadata={
                    "interval_seconds": str(int(interval_seconds)),
                    "min_new_interactions": str(min_new_interactions),
                },
            )
        return row

    async def list_schedules(self, tenant_id: str, page: Page) -> tuple[list[Schedule], bool]:
        query = (
            select(Schedule)
            .where(Schedule.tenant_id == tenant_id)
            .order_by(Schedule.created_at.desc(), Schedule.id)
        )
        return await self._page(query, page)

    async def delete_schedule(self, tenant_id: str, schedule_id: str, actor: Actor) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(Schedule, schedule_id.strip())
            if row is None or row.tenant_id != tenant_id:
                raise NotFound("schedule", schedule_id)
            await session.delete(row)
            _audit(
                session,
                actor,
                tenant_id=tenant_id,
                action="training.schedule.delete",
                target=schedule_id,
            )

    async def fire_due_schedules(self, now: datetime | None = None) -> list[str]:
        """Start a job for every schedule that is due; returns the job ids started.

        Safe with several workers: a schedule is claimed by a compare-and-set on its
        ``last_run_at``, so only one worker starts its job. A schedule whose tenant has
        a job in flight, or whose data fails the quality check, waits for the next tick.
        """
        now = now or datetime.now(UTC)
        async with self._sessions() as session:
            schedules = list(await session.scalars(select(Schedule).where(Schedule.enabled)))
        started: list[str] = []
        for schedule in schedules:
            details = schedule.details or {}
            due = schedule.next_run_at is not None and schedule.next_run_at <= now
            threshold = int(details.get("min_new_interactions", 0))
            if not due and threshold > 0:
                async with self._sessions() as session:
                    total = await _interaction_count(session, schedule.tenant_id)
                due = total - int(details.get("interactions_seen", 0)) >= threshold
            if not due:
                continue
            async with self._sessions() as session:
                busy = await session.scalar(
                    select(TrainingJob.id).where(
                        TrainingJob.tenant_id == schedule.tenant_id,
                        TrainingJob.state.in_(ACTIVE_JOB_STATES),
                    )
                )
                total = await _interaction_count(session, schedule.tenant_id)
            if busy is not None:
                continue
            claim = (
                update(Schedule)
                .where(Schedule.id == schedule.id)
                .values(
                    last_run_at=now,
                    next_run_at=now + timedelta(seconds=schedule.interval_seconds)
                    if schedule.interval_seconds
                    else None,
                    details={**details, "interactions_seen": total},
                )
            )
            claim = claim.where(
                Schedule.last_run_at.is_(None)
                if schedule.last_run_at is None
                else Schedule.last_run_at == schedule.last_run_at
            )
            async with self._sessions.begin() as session:
                claimed = (await session.execute(claim)).rowcount  # type: ignore[attr-defined]
            if not claimed:
                continue
            try:
                job = await self.start_job(
                    schedule.tenant_id,
                    hyperparameters=dict(schedule.hyperparameters or {}),
                    auto_deploy=schedule.auto_deploy,
                    actor=Actor(subject=f"schedule:{schedule.id}"),
                    schedule_id=schedule.id,
                )
            except (FailedPrecondition, InvalidArgument) as exc:
                # Recorded in the audit trail by start_job; the schedule tries next time.
                details = {**details, "interactions_seen": total, "last_error": exc.message}
                async with self._sessions.begin() as session:
                    await session.execute(
                        update(Schedule).where(Schedule.id == schedule.id).values(details=details)
                    )
                continue
            async with self._sessions.begin() as session:
                await session.execute(
                    update(Schedule).where(Schedule.id == schedule.id).values(last_job_id=job.id)
                )
            started.append(job.id)
        return started

    # ------------------------------------------------------------------ helpers

    async def _page(self, query: Any, page: Page) -> tuple[list[Any], bool]:
        async with self._sessions() as session:
            rows = list(await session.scalars(query.offset(page.offset).limit(page.size + 1)))
        return rows[: page.size], len(rows) > page.size


async def _interaction_count(session: AsyncSession, tenant_id: str) -> int:
    from services.storage.models import Interaction

    value = await session.scalar(
        select(func.count()).select_from(Interaction).where(Interaction.tenant_id == tenant_id)
    )
    return int(value or 0)


def _validate_split(target: int, split: Sequence[tuple[str, int]]) -> list[tuple[int, int]]:
    if not split:
        return [(target, 100)]
    violations: list[FieldViolation] = []
    entries: list[tuple[int, int]] = []
    for index, (version, percent) in enumerate(split):
        field = f"traffic_split[{index}]"
        try:
            number = parse_version(version, f"{field}.model_version")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
            continue
        if not 1 <= percent <= 100:
            violations.append(FieldViolation(f"{field}.percent", "must be 1-100"))
        if any(n == number for n, _ in entries):
            violations.append(
                FieldViolation(f"{field}.model_version", f"{version_name(number)} repeated")
            )
        entries.append((number, percent))
    if not violations and sum(p for _, p in entries) != 100:
        violations.append(
            FieldViolation(
                "traffic_split", f"percents sum to {sum(p for _, p in entries)}, not 100"
            )
        )
    if not violations and all(n != target for n, _ in entries):
        violations.append(
            FieldViolation(
                "traffic_split", f"must include {version_name(target)}, the deployed model"
            )
        )
    if violations:
        raise InvalidArgument(
            "Invalid traffic split: " + "; ".join(f"{v.field} {v.description}" for v in violations),
            violations=violations,
        )
    return entries


def _check_deployable(model: ModelVersion) -> None:
    if (model.config or {}).get("archived"):
        raise FailedPrecondition(
            f"Model {version_name(model.version)} is archived: its artifacts were removed.",
            reason="MODEL_ARCHIVED",
            metadata={"model_version": version_name(model.version)},
        )
