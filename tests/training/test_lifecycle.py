"""Training through the real runtime: jobs, the worker, the registry, deployments."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from sqlalchemy import select

from embrec.events.v1 import events_pb2
from embrec.training.v1 import resources_pb2 as pb
from embrec.training.v1 import training_service_pb2 as svc
from services.event_messages import open_envelope
from services.storage.models import OutboxEvent
from tests.ingestion.conftest import make_tenant, sql
from tests.services.conftest import RunningStack, StackFactory
from tests.training.conftest import Caller, caller_for, error_reason, tenant_with_data
from trainer.artifacts import ArtifactsCorruptError, load_artifacts, verify_artifacts

FAST = pb.Hyperparameters(epochs=12, embedding_dim=32)


async def wait_final(c: Caller, job_id: str, timeout: float = 120) -> list[pb.TrainingProgress]:
    """Every snapshot WatchTrainingJob streams until the job ends."""
    seen: list[pb.TrainingProgress] = []

    async def watch() -> None:
        request = svc.WatchTrainingJobRequest(job_id=job_id)
        async for progress in c.stub.WatchTrainingJob(request, metadata=c.metadata):
            seen.append(progress)

    await asyncio.wait_for(watch(), timeout)
    return seen


async def train(c: Caller, **hyper: float) -> pb.TrainingJob:
    params = pb.Hyperparameters()
    params.CopyFrom(FAST)
    for key, value in hyper.items():
        setattr(params, key, value)
    job = await c.stub.StartTrainingJob(
        svc.StartTrainingJobRequest(hyperparameters=params), metadata=c.metadata
    )
    await wait_final(c, job.id)
    done: pb.TrainingJob = await c.stub.GetTrainingJob(
        svc.GetTrainingJobRequest(job_id=job.id), metadata=c.metadata
    )
    return done


async def test_a_job_trains_registers_and_beats_popularity(stack_factory: StackFactory) -> None:
    stack = await stack_factory(training_poll_seconds=0.2)
    tenant_id = await tenant_with_data(stack)
    c = caller_for(stack, tenant_id)

    job = await c.stub.StartTrainingJob(
        svc.StartTrainingJobRequest(hyperparameters=FAST), metadata=c.metadata
    )
    assert job.state == pb.TRAINING_JOB_STATE_QUEUED
    progress = await wait_final(c, job.id)
    states = [p.state for p in progress]
    assert states[-1] == pb.TRAINING_JOB_STATE_SUCCEEDED, progress[-1]
    assert pb.TRAINING_JOB_STATE_RUNNING in states
    assert any(p.epoch > 0 and p.total_epochs == 12 for p in progress)

    done = await c.stub.GetTrainingJob(
        svc.GetTrainingJobRequest(job_id=job.id), metadata=c.metadata
    )
    assert done.model_version == "v1"
    model = await c.stub.GetModel(svc.GetModelRequest(model_version="v1"), metadata=c.metadata)
    # The seed's promise: clearly better than recommending what is popular.
    assert model.metrics["ndcg@10"] > 1.5 * model.metrics["baseline_ndcg@10"], model.metrics
    assert model.lineage.job_id == job.id
    assert model.lineage.config.embedding_dim == 32
    assert model.lineage.interaction_count == 12_000
    assert len(model.lineage.data_hash) == 64

    # Artifacts in artifact_dir/<tenant>/<version>, verified by checksum.
    path = stack.runtime.settings.effective_artifact_dir / tenant_id / "v1"
    assert Path(model.artifact_uri.removeprefix("file://")) == path.absolute()
    verify_artifacts(path)
    artifacts = load_artifacts(path)
    assert artifacts.item_embeddings.shape[1] == 32
    (path / "popularity.npy").write_bytes(b"tampered")
    with pytest.raises(ArtifactsCorruptError):
        verify_artifacts(path)


async def test_broken_data_is_refused_with_the_reason(stack: RunningStack) -> None:
    tenant_id = await make_tenant(stack)
    c = caller_for(stack, tenant_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.StartTrainingJob(svc.StartTrainingJobRequest(), metadata=c.metadata)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "DATA_QUALITY_FAILED"
    assert "TOO_FEW_INTERACTIONS" in (caught.value.details() or "")
    report = await c.stub.RunDataQualityCheck(svc.RunDataQualityCheckRequest(), metadata=c.metadata)
    assert not report.passed
    assert report.issues[0].severity == pb.DATA_QUALITY_SEVERITY_ERROR


async def test_bad_hyperparameters_and_scopes(stack: RunningStack) -> None:
    tenant_id = await tenant_with_data(stack, interactions=2000)
    c = caller_for(stack, tenant_id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.StartTrainingJob(
            svc.StartTrainingJobRequest(hyperparameters=pb.Hyperparameters(embedding_dim=4)),
            metadata=c.metadata,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    reader = caller_for(stack, tenant_id, scopes={"models:read"})
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await reader.stub.StartTrainingJob(svc.StartTrainingJobRequest(), metadata=reader.metadata)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_cancel_a_running_job(stack_factory: StackFactory) -> None:
    stack = await stack_factory(training_poll_seconds=0.2)
    tenant_id = await tenant_with_data(stack)
    c = caller_for(stack, tenant_id)
    job = await c.stub.StartTrainingJob(
        svc.StartTrainingJobRequest(
            hyperparameters=pb.Hyperparameters(epochs=10_000, early_stopping_patience=0)
        ),
        metadata=c.metadata,
    )
    # A second job while one is in flight is refused.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.StartTrainingJob(svc.StartTrainingJobRequest(), metadata=c.metadata)
    assert error_reason(caught.value) == "INVALID_STATE"

    async def first_epoch() -> None:
        request = svc.WatchTrainingJobRequest(job_id=job.id)
        async for progress in c.stub.WatchTrainingJob(request, metadata=c.metadata):
            if progress.epoch >= 1:
                return

    await asyncio.wait_for(first_epoch(), 90)
    cancelled = await c.stub.CancelTrainingJob(
        svc.CancelTrainingJobRequest(job_id=job.id), metadata=c.metadata
    )
    assert cancelled.state == pb.TRAINING_JOB_STATE_CANCELLING
    progress = await wait_final(c, job.id, timeout=60)
    assert progress[-1].state == pb.TRAINING_JOB_STATE_CANCELLED
    models = await c.stub.ListModels(svc.ListModelsRequest(), metadata=c.metadata)
    assert list(models.models) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.CancelTrainingJob(
            svc.CancelTrainingJobRequest(job_id="nope"), metadata=c.metadata
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_deploy_split_gate_and_rollback(stack_factory: StackFactory) -> None:
    stack = await stack_factory(training_poll_seconds=0.2)
    tenant_id = await tenant_with_data(stack)
    c = caller_for(stack, tenant_id)
    assert (await train(c)).model_version == "v1"
    # A deliberately weak model: one epoch, tiny embeddings.
    weak = await train(c, epochs=1, embedding_dim=8, learning_rate=0.0001)
    assert weak.model_version == "v2"

    first = await c.stub.DeployModel(
        svc.DeployModelRequest(model_version="v1"), metadata=c.metadata
    )
    assert [(s.model_version, s.percent) for s in first.traffic_split] == [("v1", 100)]
    assert first.state == pb.DEPLOYMENT_STATE_ACTIVE

    split = [
        pb.TrafficSplit(model_version="v1", percent=90),
        pb.TrafficSplit(model_version="v2", percent=10),
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.DeployModel(
            svc.DeployModelRequest(model_version="v2", traffic_split=split), metadata=c.metadata
        )
    assert error_reason(caught.value) == "QUALITY_GATE_FAILED"
    for bad in (
        [pb.TrafficSplit(model_version="v1", percent=90)],
        [
            pb.TrafficSplit(model_version="v1", percent=50),
            pb.TrafficSplit(model_version="v1", percent=50),
        ],
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await c.stub.DeployModel(
                svc.DeployModelRequest(model_version="v1", traffic_split=bad), metadata=c.metadata
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await c.stub.DeployModel(svc.DeployModelRequest(model_version="v9"), metadata=c.metadata)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    canary = await c.stub.DeployModel(
        svc.DeployModelRequest(
            model_version="v2", traffic_split=split, force=True, reason="canary"
        ),
        metadata=c.metadata,
    )
    assert canary.forced and canary.previous_deployment_id == first.id
    v2 = await c.stub.GetModel(svc.GetModelRequest(model_version="v2"), metadata=c.metadata)
    assert v2.traffic_percent == 10

    back = await c.stub.Rollback(svc.RollbackRequest(reason="bad canary"), metadata=c.metadata)
    assert back.rollback
    assert [(s.model_version, s.percent) for s in back.traffic_split] == [("v1", 100)]
    history = await c.stub.ListDeployments(svc.ListDeploymentsRequest(), metadata=c.metadata)
    assert [d.id for d in history.deployments] == [back.id, canary.id, first.id]
    assert [d.state for d in history.deployments] == [
        pb.DEPLOYMENT_STATE_ACTIVE,
        pb.DEPLOYMENT_STATE_SUPERSEDED,
        pb.DEPLOYMENT_STATE_SUPERSEDED,
    ]

    # Every deployment told the retrievers (ModelDeployed on the bus, via the outbox).
    rows = await sql(
        stack, select(OutboxEvent.payload).where(OutboxEvent.event_type.like("%ModelDeployed"))
    )
    deployed = []
    for (payload,) in rows:
        event = events_pb2.ModelDeployed()
        open_envelope(payload).payload.Unpack(event)  # type: ignore[arg-type]
        deployed.append(event.deployment.id)
    assert set(deployed) >= {first.id, canary.id, back.id}
