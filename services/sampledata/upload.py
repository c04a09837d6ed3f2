"""Upload the sample files through the public API (gRPC via Envoy), with a progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
from rich.progress import Progress

from embrec.ingestion.v1 import ingestion_service_pb2 as svc
from embrec.ingestion.v1 import ingestion_service_pb2_grpc
from embrec.ingestion.v1 import resources_pb2 as pb

__all__ = ["upload_files"]

_CHUNK = 256 * 1024


def _chunks(path: Path, kind: str, tenant: str, progress: Progress) -> Iterator[object]:
    message = svc.ImportItemsRequest if kind == "items" else svc.ImportInteractionsRequest
    task = progress.add_task(f"{path.name}", total=path.stat().st_size)
    yield message(options=pb.ImportOptions(tenant_id=tenant, file_name=path.name))
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            progress.advance(task, len(chunk))
            yield message(chunk=chunk)


def upload_files(
    items: Path, interactions: Path, *, target: str, tenant: str, api_key: str
) -> tuple[pb.Upload, pb.Upload]:
    metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
    with grpc.insecure_channel(target) as channel, Progress() as progress:
        stub = ingestion_service_pb2_grpc.IngestionServiceStub(channel)
        item_upload = stub.ImportItems(_chunks(items, "items", tenant, progress), metadata=metadata)
        interaction_upload = stub.ImportInteractions(
            _chunks(interactions, "interactions", tenant, progress), metadata=metadata
        )
    return item_upload, interaction_upload
