"""Models, training jobs and deployments of one tenant: shared by the admin back office
(any tenant, picked by id) and the tenant portal (the caller's own tenant: tenant_id "")."""

from __future__ import annotations

from collections.abc import Mapping

from nicegui import ui

from embrec.training.v1 import resources_pb2 as train_res
from embrec.training.v1 import training_service_pb2 as train_pb

from .. import session
from ..client import ApiError
from ..formatting import enum_label, when
from ..layout import empty_state, error_banner, floating_dialog, guarded

__all__ = ["models_panel"]

_ACTIVE_JOB_STATES = {
    train_res.TRAINING_JOB_STATE_QUEUED,
    train_res.TRAINING_JOB_STATE_RUNNING,
    train_res.TRAINING_JOB_STATE_CANCELLING,
}
#: How often a page refreshes a running job's progress (WatchTrainingJob would push it,
#: but a poll survives reconnects and keeps one code path for every state).
POLL_SECONDS = 2.0


def _job_state(job: train_res.TrainingJob) -> str:
    return enum_label(train_res.TrainingJobState.Name(job.state), "TRAINING_JOB_STATE_")


def _metrics(values: Mapping[str, float]) -> str:
    items = sorted(values.items())
    return ", ".join(f"{k} {v:.4f}" for k, v in items) or "—"


async def models_panel(tenant_id: str, *, can_train: bool = True) -> None:
    """Jobs (with live progress), model versions with metrics, deploy and rollback."""
    # Buttons stay outside the redrawn boxes: NiceGUI cancels a handler whose button is
    # deleted, and every action redraws the boxes.
    with ui.row().classes("items-center w-full"):
        ui.label("Training jobs").classes("text-h6")
        ui.space()
        if can_train:
            ui.button("Train now", icon="play_arrow", on_click=lambda: guarded(train)())
    jobs_box = ui.column().classes("w-full")
    ui.label("Model versions").classes("text-h6")
    models_box = ui.column().classes("w-full")
    with ui.row().classes("items-center"):
        ui.label("Deployments").classes("text-h6")
        ui.button("Roll back", icon="undo", on_click=lambda: guarded(rollback)()).props("flat")
    deploy_box = ui.column().classes("w-full")

    async def train() -> None:
        api = session.api()
        job = await api.call(
            api.training.StartTrainingJob, train_pb.StartTrainingJobRequest(tenant_id=tenant_id)
        )
        ui.notify(f"Training job {job.id} queued", type="positive")
        await refresh()

    async def deploy(version: str, percent: int) -> None:
        api = session.api()
        request = train_pb.DeployModelRequest(tenant_id=tenant_id, model_version=version)
        if percent < 100:
            # The rest of the traffic stays on what serves now (the current split's lead).
            current = await _current_version(tenant_id)
            if not current or current == version:
                ui.notify(
                    "Nothing else is deployed: a first deployment takes 100 %.", type="warning"
                )
                return
            request.traffic_split.add(model_version=version, percent=percent)
            request.traffic_split.add(model_version=current, percent=100 - percent)
        else:
            request.traffic_split.add(model_version=version, percent=100)
        deployment = await api.call(api.training.DeployModel, request)
        split = ", ".join(f"{s.model_version} {s.percent} %" for s in deployment.traffic_split)
        ui.notify(f"Deployed: {split}", type="positive")
        await refresh()

    async def rollback() -> None:
        api = session.api()
        deployment = await api.call(
            api.training.Rollback,
            train_pb.RollbackRequest(tenant_id=tenant_id, reason="rollback from the console"),
        )
        split = ", ".join(f"{s.model_version} {s.percent} %" for s in deployment.traffic_split)
        ui.notify(f"Rolled back: {split}", type="positive")
        await refresh()

    def ask_deploy(version: str) -> None:
        with floating_dialog() as dialog, ui.card():
            ui.label(f"Deploy {version}").classes("text-h6")
            traffic = ui.slider(min=1, max=100, value=100).props("label-always")
            ui.label("Traffic percentage for this version; the rest stays on the current one.")

            async def confirm() -> None:
                dialog.close()
                await guarded(deploy)(version, int(traffic.value))

            with ui.row():
                ui.button("Deploy", on_click=confirm)
                ui.button("Cancel", on_click=dialog.close).props("flat")
        dialog.open()

    timers: list[ui.timer] = []

    async def refresh() -> None:
        active = await redraw()
        for timer in timers:
            timer.active = active

    async def redraw() -> bool:
        """Redraw jobs and models; True while a job is still queued or running."""
        api = session.api()
        active = False
        jobs_box.clear()
        with jobs_box:
            try:
                jobs = await api.call(
                    api.training.ListTrainingJobs,
                    train_pb.ListTrainingJobsRequest(tenant_id=tenant_id, page_size=10),
                )
            except ApiError as error:
                error_banner(error, what="Could not list training jobs")
                jobs = None
            if jobs is not None and not jobs.training_jobs:
                empty_state("No training jobs yet. 'Train now' starts one.", "model_training")
            for job in jobs.training_jobs if jobs is not None else []:
                with ui.card().classes("w-full training-job").mark("training-job"):
                    with ui.row().classes("items-center gap-4 w-full"):
                        ui.label(job.id).classes("text-mono")
                        ui.badge(_job_state(job))
                        ui.label(f"created {when(job.create_time)}").classes("text-caption")
                        if job.model_version:
                            ui.label(f"→ model {job.model_version}")
                    progress = job.progress
                    if job.state in _ACTIVE_JOB_STATES:
                        active = True
                        fraction = (
                            progress.epoch / progress.total_epochs if progress.total_epochs else 0
                        )
                        ui.linear_progress(value=round(fraction, 3), show_value=False)
                        ui.label(
                            f"epoch {progress.epoch}/{progress.total_epochs or '?'}"
                            + (f", loss {progress.loss:.4f}" if progress.loss else "")
                            + (f" · {progress.message}" if progress.message else "")
                        ).classes("text-caption")
                    elif job.state == train_res.TRAINING_JOB_STATE_FAILED:
                        ui.label(f"Failed: {job.error.message}").classes("text-negative")
        models_box.clear()
        with models_box:
            try:
                models = await api.call(
                    api.training.ListModels,
                    train_pb.ListModelsRequest(tenant_id=tenant_id, page_size=20),
                )
            except ApiError as error:
                error_banner(error, what="Could not list models")
                models = None
            if models is not None and not models.models:
                empty_state("No model versions yet: a finished training job makes one.")
            for model in models.models if models is not None else []:
                with ui.card().classes("w-full model-version").mark("model-version"):
                    with ui.row().classes("items-center gap-4 w-full"):
                        ui.label(model.version).classes("text-weight-bold")
                        ui.badge(
                            f"{model.traffic_percent} % traffic",
                            color="positive" if model.traffic_percent else "grey",
                        )
                        ui.label(when(model.create_time)).classes("text-caption")
                        ui.space()
                        ui.button("Deploy", on_click=lambda v=model.version: ask_deploy(v)).props(
                            "outline"
                        )
                    ui.label(f"metrics: {_metrics(model.metrics)}").classes("text-caption")
        deploy_box.clear()
        with deploy_box:
            try:
                deployments = await api.call(
                    api.training.ListDeployments,
                    train_pb.ListDeploymentsRequest(tenant_id=tenant_id, page_size=5),
                )
            except ApiError as error:
                error_banner(error, what="Could not list deployments")
                return active
            if not deployments.deployments:
                empty_state("Nothing deployed yet: recommendations use popular items.")
            for d in deployments.deployments:
                split = ", ".join(f"{s.model_version} {s.percent} %" for s in d.traffic_split)
                state = enum_label(train_res.DeploymentState.Name(d.state), "DEPLOYMENT_STATE_")
                ui.label(
                    f"{when(d.create_time)} · {state} · {split}"
                    + (" · rollback" if d.rollback else "")
                )
        return active

    # Live progress: poll while a job runs (the timer stops itself when none does, and
    # dies with the page).
    timers.append(ui.timer(POLL_SECONDS, guarded(refresh), active=False))
    await refresh()


async def _current_version(tenant_id: str) -> str:
    api = session.api()
    deployments = await api.call(
        api.training.ListDeployments,
        train_pb.ListDeploymentsRequest(tenant_id=tenant_id, page_size=5),
    )
    for d in deployments.deployments:
        if d.state == train_res.DEPLOYMENT_STATE_ACTIVE and d.traffic_split:
            return str(max(d.traffic_split, key=lambda s: s.percent).model_version)
    return ""
