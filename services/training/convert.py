"""Rows of the training tables as ``embrec.training.v1`` messages (protobuf, no grpc).

Used by the servicer for responses and by the domain for event payloads
(ModelDeployed carries a Deployment), so both describe a row the same way.

Stored shapes (JSON columns, documented in docs/training-service.md):

* ``training_jobs.hyperparameters``: the requested values, contract names
  (``max_duration`` as ``max_duration_seconds``); ``progress``: the latest
  TrainingProgress fields; ``details``: auto_deploy, error_reason, version, snapshot.
* ``models.config``: {"hyperparameters": resolved (contract names), "lineage": {...}}.
* ``deployments.split``: [{"model_version": "v3", "version": 3, "percent": 90}, ...];
  ``details``: state, previous_deployment_id, forced, rollback, reason, activate_time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import code_pb2, error_details_pb2, status_pb2

from embrec.training.v1 import resources_pb2 as pb
from services.errors import ERROR_DOMAIN
from services.storage.models import Deployment, ModelVersion, Schedule, TrainingJob

__all__ = [
    "JOB_STATES",
    "deployment_to_proto",
    "hyperparameters_from_proto",
    "hyperparameters_to_proto",
    "job_to_proto",
    "model_to_proto",
    "progress_to_proto",
    "schedule_to_proto",
    "version_name",
]

JOB_STATES = {
    "queued": pb.TRAINING_JOB_STATE_QUEUED,
    "running": pb.TRAINING_JOB_STATE_RUNNING,
    "succeeded": pb.TRAINING_JOB_STATE_SUCCEEDED,
    "failed": pb.TRAINING_JOB_STATE_FAILED,
    "cancelling": pb.TRAINING_JOB_STATE_CANCELLING,
    "cancelled": pb.TRAINING_JOB_STATE_CANCELLED,
}
DEPLOYMENT_STATES = {
    "pending": pb.DEPLOYMENT_STATE_PENDING,
    "active": pb.DEPLOYMENT_STATE_ACTIVE,
    "superseded": pb.DEPLOYMENT_STATE_SUPERSEDED,
    "failed": pb.DEPLOYMENT_STATE_FAILED,
}
_INT_FIELDS = (
    "embedding_dim",
    "num_layers",
    "epochs",
    "batch_size",
    "negatives_per_positive",
    "early_stopping_patience",
    "seed",
)
_FLOAT_FIELDS = ("learning_rate", "l2_weight", "holdout_fraction")


def version_name(version: int) -> str:
    return f"v{version}"


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def hyperparameters_from_proto(message: pb.Hyperparameters) -> dict[str, Any]:
    """Only the fields the caller set (proto3 optional), in contract names."""
    values: dict[str, Any] = {}
    for name in (*_INT_FIELDS, *_FLOAT_FIELDS):
        if message.HasField(name):
            values[name] = getattr(message, name)
    if message.HasField("max_duration"):
        values["max_duration_seconds"] = message.max_duration.ToTimedelta().total_seconds()
    return values


def hyperparameters_to_proto(values: dict[str, Any]) -> pb.Hyperparameters:
    message = pb.Hyperparameters()
    for name in _INT_FIELDS:
        if values.get(name) is not None:
            setattr(message, name, int(values[name]))
    for name in _FLOAT_FIELDS:
        if values.get(name) is not None:
            setattr(message, name, float(values[name]))
    if values.get("max_duration_seconds") is not None:
        message.max_duration.CopyFrom(_duration(float(values["max_duration_seconds"])))
    return message


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def progress_to_proto(job: TrainingJob) -> pb.TrainingProgress:
    p = job.progress or {}
    message = pb.TrainingProgress(
        job_id=job.id,
        state=JOB_STATES.get(job.state, pb.TRAINING_JOB_STATE_UNSPECIFIED),
        epoch=int(p.get("epoch", 0)),
        total_epochs=int(p.get("total_epochs", 0)),
        loss=float(p.get("loss", 0.0)),
        metrics={k: float(v) for k, v in (p.get("metrics") or {}).items()},
        message=str(p.get("message", "")),
        update_time=timestamp(job.updated_at),
    )
    if p.get("eta_seconds") is not None and job.state == "running":
        message.eta.CopyFrom(_duration(max(float(p["eta_seconds"]), 0.0)))
    return message


def job_to_proto(job: TrainingJob) -> pb.TrainingJob:
    details = job.details or {}
    message = pb.TrainingJob(
        id=job.id,
        tenant_id=job.tenant_id,
        state=JOB_STATES.get(job.state, pb.TRAINING_JOB_STATE_UNSPECIFIED),
        hyperparameters=hyperparameters_to_proto(job.hyperparameters or {}),
        progress=progress_to_proto(job),
        auto_deploy=bool(details.get("auto_deploy", False)),
        trigger=pb.TRAINING_TRIGGER_SCHEDULE if job.schedule_id else pb.TRAINING_TRIGGER_MANUAL,
        schedule_id=job.schedule_id or "",
        creator=job.requested_by or "",
        create_time=timestamp(job.created_at),
    )
    if job.state == "succeeded" and details.get("version"):
        message.model_version = version_name(int(details["version"]))
    if job.state == "failed":
        reason = str(details.get("error_reason") or "TRAINING_FAILED")
        # The reason travels as ErrorInfo, as in every other error of the platform, so a
        # caller can tell WORKER_LOST (retry) from DATA_QUALITY_FAILED (fix the data).
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(
                reason=reason, domain=ERROR_DOMAIN, metadata={"job_id": job.id}
            )
        )
        message.error.CopyFrom(
            status_pb2.Status(
                code=code_pb2.FAILED_PRECONDITION
                if reason == "DATA_QUALITY_FAILED"
                else code_pb2.ABORTED,
                message=job.error or "failed",
                details=[info],
            )
        )
    if job.started_at is not None:
        message.start_time.CopyFrom(timestamp(job.started_at))
    if job.finished_at is not None:
        message.end_time.CopyFrom(timestamp(job.finished_at))
    return message


def model_to_proto(model: ModelVersion, traffic_percent: int = 0) -> pb.Model:
    config = model.config or {}
    lineage = config.get("lineage") or {}
    message = pb.Model(
        version=version_name(model.version),
        tenant_id=model.tenant_id,
        state=pb.MODEL_STATE_ARCHIVED if config.get("archived") else pb.MODEL_STATE_READY,
        metrics={k: float(v) for k, v in (model.metrics or {}).items()},
        lineage=pb.ModelLineage(
            job_id=model.job_id or "",
            data_hash=model.data_hash or "",
            config=hyperparameters_to_proto(config.get("hyperparameters") or {}),
            interaction_count=int(lineage.get("interaction_count", 0)),
            user_count=int(lineage.get("user_count", 0)),
            item_count=int(lineage.get("item_count", 0)),
            trainer_version=str(lineage.get("trainer_version", "")),
            device=str(lineage.get("device", "")),
        ),
        artifact_uri=model.artifact_uri,
        traffic_percent=traffic_percent,
        create_time=timestamp(model.created_at),
    )
    snapshot = _parse_time(lineage.get("data_snapshot_time"))
    if snapshot is not None:
        message.lineage.data_snapshot_time.CopyFrom(timestamp(snapshot))
    return message


def deployment_state(row: Deployment) -> str:
    return str((row.details or {}).get("state") or ("active" if row.active else "superseded"))


def deployment_to_proto(row: Deployment) -> pb.Deployment:
    details = row.details or {}
    message = pb.Deployment(
        id=row.id,
        tenant_id=row.tenant_id,
        traffic_split=[
            pb.TrafficSplit(model_version=str(s["model_version"]), percent=int(s["percent"]))
            for s in row.split or []
        ],
        state=DEPLOYMENT_STATES.get(deployment_state(row), pb.DEPLOYMENT_STATE_UNSPECIFIED),
        previous_deployment_id=str(details.get("previous_deployment_id") or ""),
        forced=bool(details.get("forced", False)),
        rollback=bool(details.get("rollback", False)),
        reason=str(details.get("reason", "")),
        creator=row.created_by or "",
        create_time=timestamp(row.created_at),
    )
    activated = _parse_time(details.get("activate_time"))
    if activated is not None:
        message.activate_time.CopyFrom(timestamp(activated))
    return message


def schedule_to_proto(row: Schedule) -> pb.Schedule:
    details = row.details or {}
    message = pb.Schedule(
        id=row.id,
        tenant_id=row.tenant_id,
        name=str(details.get("name", "")),
        min_new_interactions=int(details.get("min_new_interactions", 0)),
        hyperparameters=hyperparameters_to_proto(row.hyperparameters or {}),
        auto_deploy=row.auto_deploy,
        last_job_id=row.last_job_id or "",
        create_time=timestamp(row.created_at),
    )
    if row.interval_seconds:
        message.interval.CopyFrom(_duration(float(row.interval_seconds)))
    if row.next_run_at is not None and row.interval_seconds:
        message.next_run_time.CopyFrom(timestamp(row.next_run_at))
    if row.last_run_at is not None:
        message.last_run_time.CopyFrom(timestamp(row.last_run_at))
    return message
