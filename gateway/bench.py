"""`embrec bench authz`: authz decision latency, and what the secured gateway costs.

Prints figures only (budgets are read by people, not asserted). Everything runs on
this machine: SQLite in a temporary directory, the services and the gateway module
in this process, and three Envoys in front of them, one after the other: one without
ext_authz and rate limits, one asking authz over HTTP (what the configs use) and one
over gRPC, so the differences are the gateway's overhead per request with each.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from services.runtime.ports import free_ports

__all__ = ["bench_authz"]

_SECRET_A = "a" * 40
_SECRET_B = "b" * 40


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = ordered[len(ordered) // 2] * 1e6
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6
    return f"p50 {p50:8.1f} µs   p99 {p99:8.1f} µs   ({len(samples)} calls)"


async def _time(call: Callable[[], Awaitable[object]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def _run(requests: int, repo_root: Path) -> None:
    from gateway.authz import AuthzRequest
    from gateway.service import GatewayModule
    from services.app import build_runtime
    from services.config import SERVICE_NAMES, load_settings
    from services.identity.credentials import (
        SCOPES,
        Principal,
        generate_api_key,
        issue_access_token,
    )
    from services.storage.models import ApiKey, Tenant

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        settings = load_settings(
            data_dir=data,
            grpc_port=0,
            authz_http_port=0,
            metrics_port=0,
            jwt_secret=_SECRET_A,
            internal_secret=_SECRET_B,
            log_level="ERROR",
        )
        runtime = await build_runtime(settings, [*SERVICE_NAMES, "gateway"], migrate=True)
        port = await runtime.start()
        module = next(m for m in runtime.modules if isinstance(m, GatewayModule))
        authorizer = module.authorizer
        assert authorizer is not None
        try:
            key = generate_api_key()
            async with authorizer._sessions() as session, session.begin():
                tenant = Tenant(name="bench", slug="bench", email="b@bench.example", plan="pro")
                session.add(tenant)
                await session.flush()
                session.add(
                    ApiKey(
                        tenant_id=tenant.id,
                        name="bench",
                        prefix=key.prefix,
                        secret_hash=key.secret_hash,
                        scopes=sorted(SCOPES),
                    )
                )
            token, _ = issue_access_token(
                Principal(subject="u", tenant_id=tenant.id, role="tenant_admin", scopes=SCOPES),
                _SECRET_A,
            )
            body = b'{"user_id": "user_123", "count": 5}'

            def request(credential: str) -> AuthzRequest:
                return AuthzRequest(
                    "POST",
                    "/api/v1/recommendations",
                    {"authorization": f"Bearer {credential}", "content-type": "application/json"},
                    body,
                    "127.0.0.1",
                )

            jwt_request, key_request = request(token), request(key.full_key)
            await authorizer.check(jwt_request)

            async def uncached() -> object:
                authorizer.clear_caches()
                return await authorizer.check(key_request)

            # A fresh token per call: what verification costs when the verified-token
            # cache misses (a client's first call with a new token).
            fresh = iter(
                [
                    request(
                        issue_access_token(
                            Principal(
                                subject=f"u{n}",
                                tenant_id=tenant.id,
                                role="tenant_admin",
                                scopes=SCOPES,
                            ),
                            _SECRET_A,
                        )[0]
                    )
                    for n in range(1000)
                ]
            )

            print("authz decision (in process, no Envoy)")
            jwt_times = await _time(lambda: authorizer.check(jwt_request), 2000)
            fresh_times = await _time(lambda: authorizer.check(next(fresh)), 1000)
            key_times = await _time(lambda: authorizer.check(key_request), 2000)
            print(f"  JWT, tenant cached     {_percentiles(jwt_times)}")
            print(f"  JWT, new token         {_percentiles(fresh_times)}")
            print(f"  API key, cached        {_percentiles(key_times)}")
            print(f"  API key, uncached      {_percentiles(await _time(uncached, 300))}")
            authz_http_port = module.authz_http.port if module.authz_http else None
            results = await _through_envoy(
                data, repo_root, port, authz_http_port, token, body, requests
            )
        finally:
            await runtime.stop()
    print("through Envoy, REST POST /api/v1/recommendations (a tenant without a model), sequential")
    plain = statistics.median(results["plain"])
    print(f"  without authz/limits            {_percentiles(results['plain'])}")
    for transport in _TRANSPORTS:
        secured = results[transport]
        print(f"  with authz over {transport:<4} + limits  {_percentiles(secured)}")
        overhead = statistics.median(secured) - plain
        print(f"    gateway overhead  {overhead * 1e6:8.1f} µs per request (median difference)")


#: How Envoy asks for decisions: HTTP (what the configs use) and gRPC, measured alike.
_TRANSPORTS = ("http", "grpc")


async def _through_envoy(
    data: Path,
    repo_root: Path,
    port: int,
    authz_http_port: int | None,
    token: str,
    body: bytes,
    requests: int,
) -> dict[str, list[float]]:
    import httpx

    from services.config import load_settings
    from services.embedded import EnvoyChild, render_gateway_config

    results: dict[str, list[float]] = {}
    for name in ("plain", *_TRANSPORTS):
        secure = name != "plain"
        listen, admin = free_ports(2)
        envoy_settings = load_settings(
            data_dir=data / f"envoy-{name}",
            envoy_port=listen,
            envoy_admin_port=admin,
            jwt_secret=_SECRET_A,
            internal_secret=_SECRET_B,
        )
        envoy_settings.data_dir.mkdir(parents=True, exist_ok=True)
        config = render_gateway_config(
            envoy_settings,
            repo_root,
            port,
            security=secure,
            authz_http_port=authz_http_port,
            authz_transport="grpc" if name == "grpc" else "http",
        )
        envoy = EnvoyChild(config, admin, envoy_settings.data_dir / "envoy.log")
        await envoy.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}") as client:
                headers = {"authorization": f"Bearer {token}"}

                async def call(
                    client: httpx.AsyncClient = client, headers: dict[str, str] = headers
                ) -> object:
                    return await client.post(
                        "/api/v1/recommendations", content=body, headers=headers
                    )

                await _time(call, 50)  # warm up connections and caches
                results[name] = await _time(call, requests)
        finally:
            envoy.stop()
    return results


def bench_authz(requests: int, repo_root: Path) -> None:
    asyncio.run(_run(requests, repo_root))
