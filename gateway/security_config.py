"""Envoy filter objects for the gateway's security: ext_authz, rate limits, limits.

Used by :class:`gateway.envoy_config.GatewaySettings` (``authz_filters``,
``rate_limit_filters``, ``extra_clusters``). Chain order (envoy_config): CORS →
ext_authz → local rate limit → global rate limit (RLS) → transcoder → router. All of
them run before the transcoder re-matches the route, so none depends on the route
(FACTS): authz resolves the RPC itself (gateway/policy.py) and the rate-limit
descriptors come from filter-level actions on headers that authz sets.

* ext_authz: to the ``gateway_authz`` cluster, fail closed (an authz outage is 503,
  never an open door), with the first 64 KiB of the body so authz can read a tenant id
  named in a JSON or protobuf body. Over HTTP/1.1 (gateway/authz_http.py; what the
  generated configs use: a check costs a third of the gRPC transport's CPU) or gRPC v3
  (``Check`` on the services' gRPC port).
* local rate limit: one token bucket per tenant (``x-embrec-rl-key``) and plan
  (``x-plan``), sized from the plan table (gateway/plans.toml). Per Envoy.
* global rate limit (needs Redis): over HTTP ext_authz, applied by the authz endpoint
  itself; with the gRPC transport, the RLS protocol to ``gateway_rls``, descriptor
  (tenant, effective limit). Fail open either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from envoy_data_plane.envoy.config.cluster.v3 import Cluster, ClusterDiscoveryType
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    ApiVersion,
    GrpcService,
    GrpcServiceEnvoyGrpc,
    HeaderValue,
    HeaderValueOption,
    Http2ProtocolOptions,
    HttpUri,
    RuntimeFractionalPercent,
    SocketAddress,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.ratelimit.v3 import RateLimitServiceConfig
from envoy_data_plane.envoy.config.route.v3 import (
    RateLimit as RouteRateLimit,
)
from envoy_data_plane.envoy.config.route.v3 import (
    RateLimitAction,
    RateLimitActionRequestHeaders,
)
from envoy_data_plane.envoy.extensions.common.ratelimit.v3 import (
    LocalRateLimitDescriptor,
    RateLimitDescriptorEntry,
    XRateLimitHeadersRfcVersion,
)
from envoy_data_plane.envoy.extensions.filters.http.ext_authz.v3 import (
    AuthorizationRequest,
    AuthorizationResponse,
    BufferSettings,
    ExtAuthz,
    HttpService,
)
from envoy_data_plane.envoy.extensions.filters.http.local_ratelimit.v3 import LocalRateLimit
from envoy_data_plane.envoy.extensions.filters.http.ratelimit.v3 import (
    RateLimit,
    RateLimitXRateLimitHeadersRfcVersion,
)
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpFilter,
)
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import ListStringMatcher, StringMatcher
from envoy_data_plane.envoy.type.v3 import (
    FractionalPercent,
    FractionalPercentDenominatorType,
    HttpStatus,
    StatusCode,
    TokenBucket,
)
from envoy_data_plane.google.protobuf import Any

from gateway.authz import GATEWAY_HEADERS, RATE_LIMIT_KEY_HEADER, RATE_LIMIT_LIMIT_HEADER
from gateway.authz_http import AUTHZ_PATH_PREFIX, CONTENT_TYPE_HEADER, PEER_HEADER
from gateway.plans import PlanTable, load_plans
from gateway.ratelimit import DESCRIPTOR_LIMIT, DESCRIPTOR_TENANT

__all__ = [
    "AUTHZ_CLUSTER",
    "RLS_CLUSTER",
    "SECURITY_RESPONSE_HEADERS",
    "authz_filter",
    "authz_http_filter",
    "global_rate_limit_filter",
    "grpc_cluster",
    "http_cluster",
    "local_rate_limit_filter",
]

AUTHZ_CLUSTER = "gateway_authz"
RLS_CLUSTER = "gateway_rls"
RLS_DOMAIN = "embrec"
#: Request headers ext_authz forwards to the authz service (all that it reads); the
#: HTTP transport passes the content type under another name.
AUTHZ_CREDENTIAL_HEADERS = ("authorization", "x-api-key")
AUTHZ_REQUEST_HEADERS = (*AUTHZ_CREDENTIAL_HEADERS, "content-type")
#: Headers of a denial that reach the client (the HTTP transport passes only these):
#: the reason, the challenge of a 401, and a 429's rate-limit state and gRPC status.
AUTHZ_DENIAL_HEADERS = (
    "content-type",
    "x-embrec-error-reason",
    "www-authenticate",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "grpc-status",
)
#: Bytes of the request body ext_authz sees (enough for any tenant id near the top).
AUTHZ_BODY_BYTES = 64 * 1024

#: Largest REST body (413 beyond, JSON error body). Bulk data goes through the gRPC
#: import streams, or the ``:csv`` methods (raw text/csv body) up to the upload limit.
MAX_JSON_BODY_BYTES = 10 * 1024 * 1024
#: Largest raw CSV body of ``POST /api/v1/uploads/*:csv`` (the ingestion contract says
#: 64 MiB); the gateway holds it whole while transcoding it.
MAX_UPLOAD_BODY_BYTES = 64 * 1024 * 1024

#: Added to every response (REST clients and browsers are the audience).
SECURITY_RESPONSE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "cache-control": "no-store",
}

_HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _always() -> RuntimeFractionalPercent:
    # FACTS: filter_enabled / filter_enforced default to 0 %: nothing would happen.
    return RuntimeFractionalPercent(
        default_value=FractionalPercent(
            numerator=100, denominator=FractionalPercentDenominatorType.HUNDRED
        ),
        runtime_key="embrec_ratelimit_enabled",
    )


def _grpc_service(cluster: str, timeout: timedelta) -> GrpcService:
    return GrpcService(envoy_grpc=GrpcServiceEnvoyGrpc(cluster_name=cluster), timeout=timeout)


def _exact(names: Sequence[str]) -> ListStringMatcher:
    return ListStringMatcher(patterns=[StringMatcher(exact=name) for name in names])


def grpc_cluster(name: str, host: str, port: int) -> Cluster:
    """An HTTP/2 cluster for one of the gateway's gRPC services."""
    cluster = http_cluster(name, host, port)
    cluster.typed_extension_protocol_options = {
        _HTTP_PROTOCOL_OPTIONS_KEY: Any.pack(
            HttpProtocolOptions(
                explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                    http2_protocol_options=Http2ProtocolOptions()
                )
            )
        )
    }
    return cluster


def http_cluster(name: str, host: str, port: int) -> Cluster:
    """An HTTP/1.1 cluster (keep-alive connections; the HTTP ext_authz endpoint)."""
    return Cluster(
        name=name,
        type=ClusterDiscoveryType.STATIC if host[:1].isdigit() else ClusterDiscoveryType.STRICT_DNS,
        connect_timeout=timedelta(seconds=1),
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[
                        LbEndpoint(
                            endpoint=Endpoint(
                                address=Address(
                                    socket_address=SocketAddress(address=host, port_value=port)
                                )
                            )
                        )
                    ]
                )
            ],
        ),
    )


def authz_filter(cluster: str = AUTHZ_CLUSTER, timeout: timedelta | None = None) -> HttpFilter:
    config = ExtAuthz(
        grpc_service=_grpc_service(cluster, timeout or timedelta(seconds=2)),
        transport_api_version=ApiVersion.V3,
        failure_mode_allow=False,
        with_request_body=BufferSettings(
            max_request_bytes=AUTHZ_BODY_BYTES, allow_partial_message=True, pack_as_bytes=True
        ),
        status_on_error=HttpStatus(code=StatusCode.ServiceUnavailable),
        # Only what the decision reads (gateway/authz.py): the credential and the content
        # type (gRPC or REST); method, path, body and peer address travel anyway. Every
        # other header would be copied into each Check request and parsed for nothing.
        allowed_headers=_exact(AUTHZ_REQUEST_HEADERS),
    )
    return HttpFilter(name="envoy.filters.http.ext_authz", typed_config=Any.pack(config))


def authz_http_filter(cluster: str = AUTHZ_CLUSTER, timeout: timedelta | None = None) -> HttpFilter:
    """ext_authz over HTTP: the same decision as :func:`authz_filter`, answered by
    gateway/authz_http.py (see its docstring for the exchange)."""
    timeout = timeout or timedelta(seconds=2)
    config = ExtAuthz(
        http_service=HttpService(
            server_uri=HttpUri(uri=f"http://{cluster}", cluster=cluster, timeout=timeout),
            path_prefix=AUTHZ_PATH_PREFIX,
            authorization_request=AuthorizationRequest(
                # The client's address, as the gRPC transport's source attribute gives it,
                # and its content type under another name: as `content-type` a gRPC one
                # made Envoy read its own failure to reach authz as an allow
                # (gateway/authz_http.py). Client-sent copies are overwritten.
                headers_to_add=[
                    HeaderValue(key=PEER_HEADER, value="%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
                    HeaderValue(key=CONTENT_TYPE_HEADER, value="%REQ(content-type)%"),
                ]
            ),
            authorization_response=AuthorizationResponse(
                # Set on the upstream request, replacing any client-sent copy; the answer
                # names the rest in x-envoy-auth-headers-to-remove.
                allowed_upstream_headers=_exact(GATEWAY_HEADERS),
                allowed_client_headers=_exact(AUTHZ_DENIAL_HEADERS),
            ),
        ),
        failure_mode_allow=False,
        with_request_body=BufferSettings(
            max_request_bytes=AUTHZ_BODY_BYTES, allow_partial_message=True
        ),
        status_on_error=HttpStatus(code=StatusCode.ServiceUnavailable),
        allowed_headers=_exact(AUTHZ_CREDENTIAL_HEADERS),
    )
    return HttpFilter(name="envoy.filters.http.ext_authz", typed_config=Any.pack(config))


def _retry_after() -> HeaderValueOption:
    return HeaderValueOption(header=HeaderValue(key="retry-after", value="1"))


def local_rate_limit_filter(plans: PlanTable | None = None) -> HttpFilter:
    plans = plans or load_plans()
    descriptors = [
        LocalRateLimitDescriptor(
            entries=[
                RateLimitDescriptorEntry(key="plan", value=plan.name),
                # No value: a wildcard, one bucket per distinct tenant (FACTS).
                RateLimitDescriptorEntry(key=DESCRIPTOR_TENANT),
            ],
            token_bucket=TokenBucket(
                max_tokens=plan.burst,
                tokens_per_fill=plan.requests_per_second,
                fill_interval=timedelta(seconds=1),
            ),
        )
        for plan in sorted(plans.plans.values(), key=lambda p: p.name)
    ]
    config = LocalRateLimit(
        stat_prefix="tenant_local_rate_limit",
        # Requests no descriptor matches (none, in practice: authz sets both headers)
        # share this generous default bucket.
        token_bucket=TokenBucket(
            max_tokens=100_000, tokens_per_fill=100_000, fill_interval=timedelta(seconds=1)
        ),
        filter_enabled=_always(),
        filter_enforced=_always(),
        always_consume_default_token_bucket=False,
        descriptors=descriptors,
        rate_limits=[
            RouteRateLimit(
                actions=[
                    RateLimitAction(
                        request_headers=RateLimitActionRequestHeaders(
                            header_name="x-plan", descriptor_key="plan"
                        )
                    ),
                    RateLimitAction(
                        request_headers=RateLimitActionRequestHeaders(
                            header_name=RATE_LIMIT_KEY_HEADER, descriptor_key=DESCRIPTOR_TENANT
                        )
                    ),
                ]
            )
        ],
        response_headers_to_add=[_retry_after()],
        enable_x_ratelimit_headers=XRateLimitHeadersRfcVersion.DRAFT_VERSION_03,
        rate_limited_as_resource_exhausted=True,
    )
    return HttpFilter(name="envoy.filters.http.local_ratelimit", typed_config=Any.pack(config))


def global_rate_limit_filter(
    cluster: str = RLS_CLUSTER, timeout: timedelta | None = None
) -> HttpFilter:
    config = RateLimit(
        domain=RLS_DOMAIN,
        timeout=timeout or timedelta(milliseconds=200),
        failure_mode_deny=False,  # the limiter down must not take the API down
        rate_limit_service=RateLimitServiceConfig(
            grpc_service=_grpc_service(cluster, timeout or timedelta(milliseconds=200)),
            transport_api_version=ApiVersion.V3,
        ),
        rate_limited_as_resource_exhausted=True,
        enable_x_ratelimit_headers=RateLimitXRateLimitHeadersRfcVersion.DRAFT_VERSION_03,
        rate_limits=[
            RouteRateLimit(
                actions=[
                    RateLimitAction(
                        request_headers=RateLimitActionRequestHeaders(
                            header_name=RATE_LIMIT_KEY_HEADER, descriptor_key=DESCRIPTOR_TENANT
                        )
                    ),
                    RateLimitAction(
                        request_headers=RateLimitActionRequestHeaders(
                            header_name=RATE_LIMIT_LIMIT_HEADER, descriptor_key=DESCRIPTOR_LIMIT
                        )
                    ),
                ]
            )
        ],
    )
    return HttpFilter(name="envoy.filters.http.ratelimit", typed_config=Any.pack(config))


def security_filters(
    host: str, port: int, *, authz_http_port: int | None, global_rate_limit: bool
) -> tuple[list[HttpFilter], list[HttpFilter], list[Cluster]]:
    """(authz filters, rate-limit filters, clusters) for a gateway whose gRPC services
    (RLS, and the gRPC ``Check``) listen on ``host:port``; ext_authz goes over HTTP to
    ``host:authz_http_port`` when that is given, else over gRPC.

    ``global_rate_limit`` adds Envoy's RLS filter for the gRPC transport only: over
    HTTP the authz endpoint applies the global limit itself wherever it has a Redis
    (gateway/ratelimit.BatchedWindowLimiter), so a request costs no second call.
    """
    limits = [local_rate_limit_filter()]
    clusters: Sequence[Cluster]
    if authz_http_port is not None:
        authz = [authz_http_filter()]
        clusters = [http_cluster(AUTHZ_CLUSTER, host, authz_http_port)]
    else:
        authz = [authz_filter()]
        clusters = [grpc_cluster(AUTHZ_CLUSTER, host, port)]
    if global_rate_limit and authz_http_port is None:
        limits.append(global_rate_limit_filter())
        clusters = [*clusters, grpc_cluster(RLS_CLUSTER, host, port)]
    return authz, limits, list(clusters)
