"""TrainingService adapter: protobuf ↔ the training domain. Thin by design.

Reads need ``models:read``, changes ``models:write`` (API keys carry them only when
granted; console roles have both). Platform admins name the tenant (id or slug), as
on the seed's ``POST /api/admin/train {"tenant_id": "techgadgets"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2

from embrec.training.v1 import resources_pb2 as pb
from embrec.training.v1 import training_service_pb2 as svc
from embrec.training.v1 import training_service_pb2_grpc
from services.app import ServiceContext, WorkingModule
from services.errors import FailedPrecondition
from services.identity.credentials import Principal
from services.identity.principal import authenticator_for, source_ip
from services.pagination import next_token, parse_page
from services.runtime.servicers import contract_servicer
from services.training.convert import (
    JOB_STATES,
    deployment_to_proto,
    hyperparameters_from_proto,
    job_to_proto,
    model_to_proto,
    progress_to_proto,
    schedule_to_proto,
    version_name,
)
from services.training.domain import FINAL_JOB_STATES, Actor, TrainingStore
from services.training.quality import check_data_quality

__all__ = ["build_module"]

Context = grpc.aio.ServicerContext[Any, Any]
_STATE_FILTER = {v: k for k, v in JOB_STATES.items()}
_SEVERITY = {
    "info": pb.DATA_QUALITY_SEVERITY_INFO,
    "warning": pb.DATA_QUALITY_SEVERITY_WARNING,
    "error": pb.DATA_QUALITY_SEVERITY_ERROR,
}
#: How often WatchTrainingJob re-reads the job (progress lives in the database, so the
#: stream works whichever process runs the job).
WATCH_POLL_SECONDS = 0.3

_Base = contract_servicer(
    training_service_pb2_grpc.TrainingServiceServicer,
    svc.DESCRIPTOR.services_by_name["TrainingService"],
    "issue #5 (training)",
)


def _actor(principal: Principal, context: Context) -> Actor:
    return Actor(
        subject=principal.subject,
        impersonator=principal.impersonator,
        source_ip=source_ip(context),
    )


class TrainingServicer(_Base):  # type: ignore[misc,valid-type]
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._auth = authenticator_for(ctx)
        self._store = TrainingStore(ctx.sessions)

    async def _tenant(
        self, context: Context, requested: str, scope: str
    ) -> tuple[Principal, str, str]:
        read = scope.endswith(":read")
        principal = await self._auth.require(context, scope=scope, allow_suspended=read)
        tenant = await self._auth.resolve_tenant(principal, requested)
        return principal, tenant.id, tenant.status

    # -- jobs ----------------------------------------------------------------------------

    async def StartTrainingJob(
        self, request: svc.StartTrainingJobRequest, context: Context
    ) -> pb.TrainingJob:
        principal, tenant_id, status = await self._tenant(
            context, request.tenant_id, "models:write"
        )
        if status != "active":
            raise FailedPrecondition(
                f"The tenant is {status}; training needs an active tenant.",
                reason="INVALID_STATE",
                metadata={"tenant_id": tenant_id, "status": status},
            )
        job = await self._store.start_job(
            tenant_id,
            hyperparameters=hyperparameters_from_proto(request.hyperparameters),
            auto_deploy=request.auto_deploy,
            actor=_actor(principal, context),
        )
        return job_to_proto(job)

    async def GetTrainingJob(
        self, request: svc.GetTrainingJobRequest, context: Context
    ) -> pb.TrainingJob:
        _, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:read")
        return job_to_proto(await self._store.get_job(tenant_id, request.job_id))

    async def ListTrainingJobs(
        self, request: svc.ListTrainingJobsRequest, context: Context
    ) -> svc.ListTrainingJobsResponse:
        _, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:read")
        state = _STATE_FILTER.get(request.state)
        page = parse_page(request.page_size, request.page_token, (tenant_id, state))
        rows, more = await self._store.list_jobs(tenant_id, page, state)
        return svc.ListTrainingJobsResponse(
            training_jobs=[job_to_proto(r) for r in rows],
            next_page_token=next_token(page, len(rows), more),
        )

    async def CancelTrainingJob(
        self, request: svc.CancelTrainingJobRequest, context: Context
    ) -> pb.TrainingJob:
        principal, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:write")
        job = await self._store.cancel_job(tenant_id, request.job_id, _actor(principal, context))
        return job_to_proto(job)

    async def WatchTrainingJob(
        self, request: svc.WatchTrainingJobRequest, context: Context
    ) -> AsyncIterator[pb.TrainingProgress]:
        _, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:read")
        job = await self._store.get_job(tenant_id, request.job_id)
        last: bytes | None = None
        while True:
            snapshot = progress_to_proto(job)
            key = snapshot.SerializeToString(deterministic=True)
            if key != last:
                last = key
                yield snapshot
            if job.state in FINAL_JOB_STATES:
                return
            await asyncio.sleep(WATCH_POLL_SECONDS)
            job = await self._store.get_job(tenant_id, request.job_id)

    # -- models and deployments ----------------------------------------------------------

    async def ListModels(
        self, request: svc.ListModelsRequest, context: Context
    ) -> svc.ListModelsResponse:
        _, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:read")
        page = parse_page(request.page_size, request.page_token, (tenant_id, request.show_archived))
        rows, more = await self._store.list_models(
            tenant_id, page, show_archived=request.show_archived
        )
        traffic = await self._store.traffic(tenant_id)
        return svc.ListModelsResponse(
            models=[model_to_proto(r, traffic.get(version_name(r.version), 0)) for r in rows],
            next_page_token=next_token(page, len(rows), more),
        )

    async def GetModel(self, request: svc.GetModelRequest, context: Context) -> pb.Model:
        _, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:read")
        model = await self._store.get_model(tenant_id, request.model_version)
        traffic = await self._store.traffic(tenant_id)
        return model_to_proto(model, traffic.get(version_name(model.version), 0))

    async def DeployModel(self, request: svc.DeployModelRequest, context: Context) -> pb.Deployment:
        principal, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:write")
        row = await self._store.deploy(
            tenant_id,
            request.model_version,
            [(s.model_version, s.percent) for s in request.traffic_split],
            force=request.force,
            reason=request.reason,
            actor=_actor(principal, context),
        )
        return deployment_to_proto(row)

    async def Rollback(self, request: svc.RollbackRequest, context: Context) -> pb.Deployment:
        principal, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:write")
        row = await self._store.rollback(
            tenant_id,
            request.deployment_id,
            reason=request.reason,
            actor=_actor(principal, context),
        )
        return deployment_to_proto(row)

    async def ListDeployments(
        self, request: svc.ListDeploymentsRequest, context: Context
    ) -> svc.ListDeploymentsResponse:
        _, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:read")
        page = parse_page(request.page_size, request.page_token, (tenant_id,))
        rows, more = await self._store.list_deployments(tenant_id, page)
        return svc.ListDeploymentsResponse(
            deployments=[deployment_to_proto(r) for r in rows],
            next_page_token=next_token(page, len(rows), more),
        )

    # -- schedules and data quality ------------------------------------------------------

    async def CreateSchedule(
        self, request: svc.CreateScheduleRequest, context: Context
    ) -> pb.Schedule:
        principal, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:write")
        s = request.schedule
        interval = s.interval.ToTimedelta().total_seconds() if s.HasField("interval") else 0.0
        row = await self._store.create_schedule(
            tenant_id,
            name=s.name,
            interval_seconds=interval,
            min_new_interactions=s.min_new_interactions,
            hyperparameters=hyperparameters_from_proto(s.hyperparameters),
            auto_deploy=s.auto_deploy,
            actor=_actor(principal, context),
        )
        return schedule_to_proto(row)

    async def ListSchedules(
        self, request: svc.ListSchedulesRequest, context: Context
    ) -> svc.ListSchedulesResponse:
        _, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:read")
        page = parse_page(request.page_size, request.page_token, (tenant_id,))
        rows, more = await self._store.list_schedules(tenant_id, page)
        return svc.ListSchedulesResponse(
            schedules=[schedule_to_proto(r) for r in rows],
            next_page_token=next_token(page, len(rows), more),
        )

    async def DeleteSchedule(
        self, request: svc.DeleteScheduleRequest, context: Context
    ) -> empty_pb2.Empty:
        principal, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:write")
        await self._store.delete_schedule(
            tenant_id, request.schedule_id, _actor(principal, context)
        )
        return empty_pb2.Empty()

    async def RunDataQualityCheck(
        self, request: svc.RunDataQualityCheckRequest, context: Context
    ) -> pb.DataQualityReport:
        _, tenant_id, _ = await self._tenant(context, request.tenant_id, "models:read")
        report = await check_data_quality(self._ctx.sessions, tenant_id)
        message = pb.DataQualityReport(
            tenant_id=tenant_id,
            passed=report.passed,
            interaction_count=report.interaction_count,
            user_count=report.user_count,
            item_count=report.item_count,
            issues=[
                pb.DataQualityIssue(
                    check=i.check,
                    severity=_SEVERITY[i.severity],
                    message=i.message,
                    observed=i.observed,
                    threshold=i.threshold,
                )
                for i in report.issues
            ],
        )
        message.check_time.FromDatetime(report.check_time)
        return message


def build_module(ctx: ServiceContext) -> WorkingModule:
    """The service, plus an in-process trainer worker unless settings turn it off."""
    servicer = TrainingServicer(ctx)

    def register(server: grpc.aio.Server) -> None:
        training_service_pb2_grpc.add_TrainingServiceServicer_to_server(servicer, server)

    background = []
    if ctx.settings.training_worker_enabled:
        from services.training.worker import Worker

        worker = Worker(ctx.settings, ctx.sessions)
        background.append(worker.run)
    return WorkingModule(
        name="training",
        names=[svc.DESCRIPTOR.services_by_name["TrainingService"].full_name],
        register=register,
        background=background,
    )
