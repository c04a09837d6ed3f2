"""The gateway's services for Envoy: ext_authz and RLS ``ShouldRateLimit``.

Thin adapters over gateway/authz.py and gateway/ratelimit.py, hosted by the runtime as
the ``gateway`` module (services/app.py). ext_authz has two transports over one
:class:`~gateway.authz.Authorizer`: HTTP on ``authz_http_port`` (gateway/authz_http.py;
what the generated Envoy configs use, for its lower cost a check) and the gRPC v3
``Check`` on the runtime's grpc.aio server (``secured(..., authz_http_port=None)``).
With Redis configured, the HTTP endpoint also applies the global rate limit itself
(gateway/ratelimit.BatchedWindowLimiter); the gRPC transport's configs call the RLS
``ShouldRateLimit`` instead. In the embedded mode Envoy's clusters point at this
process's ports.
gRPC messages come from gateway/_gen (Envoy's protos, trimmed; third_party/envoy_min).

A bus watcher (``embrec.audit``, a consumer group of its own per process so every
replica sees every event) drops cached API keys and tenants when an ``apikey.*`` or
``tenant.*`` action is recorded: a revoked key or a suspended tenant is refused within
a poll interval, and within the cache TTL even if the bus is down.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, status_pb2
from prometheus_client.registry import Collector

from gateway._gen import (
    envoy_authz_pb2,
    envoy_authz_pb2_grpc,
    envoy_ratelimit_pb2,
    envoy_ratelimit_pb2_grpc,
)
from gateway.authz import AnswerMemo, Authorizer, AuthzRequest, Decision, upstream_changes
from gateway.authz_http import AuthzHttpServer
from gateway.plans import load_plans
from gateway.policy import build_policy
from gateway.ratelimit import BatchedWindowLimiter, RedisRateLimiter
from services.app import ServiceContext, WorkingModule
from services.events.bus import EventRecord

__all__ = ["AuthorizationServicer", "RateLimitServicer", "module"]

logger = logging.getLogger(__name__)

AUTHZ_SERVICE = "envoy.service.auth.v3.Authorization"
RLS_SERVICE = "envoy.service.ratelimit.v3.RateLimitService"

_OVERWRITE = envoy_authz_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_RL = envoy_ratelimit_pb2.RateLimitResponse


def _header(key: str, value: str) -> envoy_authz_pb2.HeaderValueOption:
    return envoy_authz_pb2.HeaderValueOption(
        header=envoy_authz_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
    )


def check_response(decision: Decision) -> envoy_authz_pb2.CheckResponse:
    if decision.allowed:
        kept, removed = upstream_changes(decision)
        return envoy_authz_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.OK),
            ok_response=envoy_authz_pb2.OkHttpResponse(
                headers=[_header(k, v) for k, v in sorted(kept.items())],
                headers_to_remove=removed,
            ),
        )
    headers = [
        _header("content-type", "application/json"),
        _header("x-embrec-error-reason", decision.reason),
    ]
    if decision.http_status == 401:
        headers.append(_header("www-authenticate", 'Bearer realm="embrec"'))
    code = code_pb2.UNAUTHENTICATED if decision.http_status == 401 else code_pb2.PERMISSION_DENIED
    return envoy_authz_pb2.CheckResponse(
        status=status_pb2.Status(code=code, message=decision.message),
        denied_response=envoy_authz_pb2.DeniedHttpResponse(
            status=envoy_authz_pb2.HttpStatus(code=decision.http_status),
            headers=headers,
            body=decision.message,
        ),
    )


class AuthorizationServicer(envoy_authz_pb2_grpc.AuthorizationServicer):
    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer
        self._responses: AnswerMemo[envoy_authz_pb2.CheckResponse] = AnswerMemo()

    def _response(self, decision: Decision) -> envoy_authz_pb2.CheckResponse:
        response = self._responses.get(decision)
        if response is None:
            response = check_response(decision)
            self._responses.put(decision, response)
        return response

    async def Check(
        self, request: envoy_authz_pb2.CheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> envoy_authz_pb2.CheckResponse:
        http = request.attributes.request.http
        decision = await self.authorizer.check(
            AuthzRequest(
                method=http.method,
                path=http.path,
                headers=dict(http.headers),
                body=http.raw_body or http.body.encode(),
                source_ip=request.attributes.source.address.socket_address.address,
            )
        )
        if not decision.allowed:
            logger.info(
                "authz denied %s %s: %s", http.method, decision.method or http.path, decision.reason
            )
        return self._response(decision)


class RateLimitServicer(envoy_ratelimit_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, limiter: RedisRateLimiter) -> None:
        self.limiter = limiter

    async def ShouldRateLimit(
        self,
        request: envoy_ratelimit_pb2.RateLimitRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> envoy_ratelimit_pb2.RateLimitResponse:
        descriptors = [[(e.key, e.value) for e in d.entries] for d in request.descriptors]
        decision = await self.limiter.check(request.domain, descriptors, request.hits_addend or 1)
        response = _RL(overall_code=_RL.OVER_LIMIT if decision.over_limit else _RL.OK)
        for result in decision.results:
            reset = Duration()
            reset.FromMilliseconds(int(result.reset_seconds * 1000))
            response.statuses.append(
                _RL.DescriptorStatus(
                    code=_RL.OVER_LIMIT if result.over_limit else _RL.OK,
                    current_limit=_RL.RateLimit(
                        requests_per_unit=result.limit, unit=_RL.RateLimit.SECOND
                    ),
                    limit_remaining=result.remaining,
                    duration_until_reset=reset,
                )
            )
        if decision.over_limit:
            response.response_headers_to_add.append(
                envoy_ratelimit_pb2.HeaderValue(
                    key="retry-after", value=str(decision.retry_after_seconds)
                )
            )
        return response


def _invalidate(authorizer: Authorizer, record: EventRecord) -> None:
    from services.audit.consumer import decode_audit_event

    event = decode_audit_event(record)
    if event is None or not event.tenant_id:
        return
    if event.action.startswith("apikey."):
        authorizer.invalidate_keys_of(event.tenant_id)
    elif event.action.startswith("tenant."):
        authorizer.invalidate_tenant(event.tenant_id)
        authorizer.invalidate_keys_of(event.tenant_id)


@dataclass
class GatewayModule(WorkingModule):
    authorizer: Authorizer | None = None
    limiter: RedisRateLimiter | None = None
    collectors: list[Collector] = field(default_factory=list)
    #: Envoy's HTTP ext_authz endpoint; its port is bound when the module is built.
    authz_http: AuthzHttpServer | None = None


def module(ctx: ServiceContext) -> GatewayModule:
    from services.audit.consumer import AUDIT_TOPIC, bus_consumer

    jwt_secret, internal_secret = ctx.settings.require_identity_secrets()
    authorizer = Authorizer(
        ctx.sessions,
        jwt_secret=jwt_secret,
        internal_secret=internal_secret,
        policy=build_policy(),
        plans=load_plans(),
    )
    redis = None
    if ctx.settings.redis_url:
        from redis.asyncio import Redis

        redis = Redis.from_url(
            ctx.settings.redis_url, socket_timeout=0.05, socket_connect_timeout=0.05
        )
    limiter = RedisRateLimiter(redis)
    authz_servicer = AuthorizationServicer(authorizer)
    # Over HTTP, authz applies the global limit itself (no RLS call per request).
    batched = BatchedWindowLimiter(limiter) if redis is not None else None
    authz_http = AuthzHttpServer(
        authorizer, ctx.settings.grpc_host, ctx.settings.authz_http_port, batched
    )
    rls_servicer = RateLimitServicer(limiter)

    async def watch(stop: asyncio.Event) -> None:
        # A group of its own: every authz replica must see every key/tenant change.
        group = f"gateway-authz-{uuid.uuid4().hex[:12]}"
        consumer = bus_consumer(
            ctx.settings, ctx.sessions, group, [AUDIT_TOPIC], from_beginning=False
        )

        async def handle(record: EventRecord) -> None:
            _invalidate(authorizer, record)

        await consumer.run(handle, stop)

    async def close_authz_http() -> None:
        authz_http.close()

    def register(server: grpc.aio.Server) -> None:
        envoy_authz_pb2_grpc.add_AuthorizationServicer_to_server(authz_servicer, server)
        envoy_ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(rls_servicer, server)

    return GatewayModule(
        name="gateway",
        names=[AUTHZ_SERVICE, RLS_SERVICE],
        register=register,
        background=[watch, authz_http.serve, *([batched.run] if batched else [])],
        on_stop=[limiter.close, close_authz_http],
        authorizer=authorizer,
        limiter=limiter,
        collectors=limiter.collectors(),
        authz_http=authz_http,
    )
