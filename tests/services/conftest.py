"""Fixtures that run the real service runtime in-process, optionally behind real Envoy."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from services.app import build_runtime
from services.config import SERVICE_NAMES, load_settings
from services.identity.credentials import SCOPES, Principal, issue_access_token
from services.runtime.logs import JsonFormatter, RedactingFilter
from services.runtime.server import Runtime, ServiceModuleSpec
from tests.support.servers import EnvoyProcess, start_envoy

REPO_ROOT = Path(__file__).resolve().parents[2]

# Test-only identity secrets (no default exists outside tests); a test may pass its own.
TEST_JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"
TEST_INTERNAL_SECRET = "test-internal-secret-0123456789abcdef01234"


@dataclass
class RunningStack:
    runtime: Runtime
    channel: grpc.aio.Channel
    address: str

    @property
    def jwt_secret(self) -> str:
        secret = self.runtime.settings.jwt_secret
        assert secret is not None
        return secret.get_secret_value()

    def token_for(self, principal: Principal) -> str:
        """An access token signed with this stack's secret, as Login would issue it."""
        return issue_access_token(principal, self.jwt_secret)[0]

    def admin_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata of a platform admin (for calls that need one)."""
        admin = Principal(subject="test-admin", tenant_id="", role="platform_admin", scopes=SCOPES)
        return (("authorization", f"Bearer {self.token_for(admin)}"),)

    def admin_headers(self) -> dict[str, str]:
        """The same credential as HTTP headers, for JSON calls through Envoy."""
        return dict(self.admin_metadata())


StackFactory = Callable[..., Awaitable[RunningStack]]


@pytest.fixture
async def stack_factory(tmp_path: Path) -> AsyncIterator[StackFactory]:
    """Start a runtime hosting every service; `database_url=None` means SQLite in tmp."""
    started: list[RunningStack] = []

    async def start(
        database_url: str | None = None,
        extra_modules: Sequence[ServiceModuleSpec] = (),
        **overrides: object,
    ) -> RunningStack:
        # Test defaults; any of them may be overridden by the caller.
        values: dict[str, object] = {
            "data_dir": tmp_path / f"data-{len(started)}",
            "database_url": database_url or "",
            "grpc_port": 0,
            "metrics_port": 0,
            "health_poll_seconds": 0.3,
            "shutdown_grace_seconds": 2.0,
            "jwt_secret": TEST_JWT_SECRET,
            "internal_secret": TEST_INTERNAL_SECRET,
        }
        settings = load_settings(**{**values, **overrides})
        runtime = await build_runtime(settings, list(SERVICE_NAMES), migrate=True)
        runtime.modules = [*runtime.modules, *extra_modules]
        port = await runtime.start()
        address = f"127.0.0.1:{port}"
        stack = RunningStack(runtime, grpc.aio.insecure_channel(address), address)
        started.append(stack)
        return stack

    yield start
    for stack in reversed(started):
        await stack.channel.close()
        await stack.runtime.stop()


@pytest.fixture
async def stack(stack_factory: StackFactory) -> RunningStack:
    return await stack_factory()


@pytest.fixture
def envoy_for(tmp_path: Path) -> Iterator[Callable[[int], Awaitable[tuple[EnvoyProcess, int]]]]:
    """Start a real Envoy in front of a gRPC port; returns (process, listener port).

    Envoy starts in a worker thread so the runtime's event loop keeps serving (and
    probing its dependencies) meanwhile, as it would in production.
    """
    from services.embedded import render_gateway_config

    processes: list[EnvoyProcess] = []

    async def start(upstream_port: int) -> tuple[EnvoyProcess, int]:
        data_dir = tmp_path / f"envoy-{len(processes)}"
        data_dir.mkdir(parents=True, exist_ok=True)

        def configure(listen: int, admin: int) -> Path:
            settings = load_settings(data_dir=data_dir, envoy_port=listen, envoy_admin_port=admin)
            return render_gateway_config(settings, REPO_ROOT, upstream_port)

        envoy, listen = await asyncio.to_thread(start_envoy, configure, data_dir)
        processes.append(envoy)
        return envoy, listen

    yield start
    for envoy in processes:
        envoy.close()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Everything logged while the test runs, formatted and redacted as in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def log_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def unique_slug(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
