"""Build Envoy's bootstrap (envoy/envoy.yaml) from typed Envoy v3 API objects.

The config is data derived from two inputs: the protobuf descriptor set (which services
exist, which methods stream) and :class:`GatewaySettings` (where the upstreams are).
Nothing is hand-written YAML, so the config cannot drift from the contracts; the
committed file is checked against a fresh render and by ``envoy --mode validate``.

Shape of the generated bootstrap::

    listener (codec AUTO: HTTP/1.1 JSON and gRPC over h2c on one port)
      http filters: CORS → authz slot → rate-limit slot → grpc_json_transcoder → router
      routes:  /<pkg>.<Service>/<StreamingMethod>  → <domain> cluster, no deadline
               /<pkg>.<Service>/                   → <domain> cluster, request timeout
               /grpc.health.v1.Health/, /grpc.reflection.*  → platform cluster
               / (gRPC content type)               → 404 (UNIMPLEMENTED)
               /                                   → transcoder rewrites, or 404 JSON
      (services named *InternalService are not routed)
    clusters: one per domain (``embrec.<domain>.v1`` → ``<domain>``), HTTP/2, gRPC
              health-checked; retrieval by ring hash on x-tenant-id
              with a fallback responder: retrieval = aggregate [retrieval-replicas
              (ring hash, outlier detection), retrieval-fallback], and retries on the
              retrieval routes
    admin:    its own loopback port

Serialization: envoy-data-plane's messages are betterproto2 messages. ``Any.pack``
stores the type URL from the library's message pool and ``to_dict`` emits the packed
message inline with its ``"@type"`` key (proto3 JSON), which is exactly what Envoy's
YAML loader expects, so every ``typed_config`` is built as a dataclass and packed — no
hand-written ``"@type"`` strings. Proto3 JSON leaves out fields holding their default
value (``codec_type: AUTO``, ``lb_policy: ROUND_ROBIN``, ``auto_mapping: false``, ...);
Envoy reads an absent field as that same default, and the tests check these on the
typed objects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any as _Any

import betterproto2
import yaml
from envoy_data_plane.envoy.config.accesslog.v3 import AccessLog
from envoy_data_plane.envoy.config.bootstrap.v3 import Admin, Bootstrap, BootstrapStaticResources
from envoy_data_plane.envoy.config.cluster.v3 import (
    Cluster,
    ClusterCommonLbConfig,
    ClusterCommonLbConfigConsistentHashingLbConfig,
    ClusterCustomClusterType,
    ClusterDiscoveryType,
    ClusterLbPolicy,
    OutlierDetection,
)
from envoy_data_plane.envoy.config.core.v3 import (
    Address,
    DataSource,
    HeaderValue,
    HeaderValueOption,
    HeaderValueOptionHeaderAppendAction,
    HealthCheck,
    HealthCheckGrpcHealthCheck,
    Http2ProtocolOptions,
    SocketAddress,
    SubstitutionFormatString,
)
from envoy_data_plane.envoy.config.endpoint.v3 import (
    ClusterLoadAssignment,
    Endpoint,
    LbEndpoint,
    LocalityLbEndpoints,
)
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain, Listener
from envoy_data_plane.envoy.config.route.v3 import (
    DirectResponseAction,
    HeaderMatcher,
    RetryPolicy,
    RetryPolicyRetryHostPredicate,
    Route,
    RouteAction,
    RouteActionHashPolicy,
    RouteActionHashPolicyHeader,
    RouteActionMaxStreamDuration,
    RouteConfiguration,
    RouteMatch,
    VirtualHost,
)
from envoy_data_plane.envoy.extensions.access_loggers.stream.v3 import StdoutAccessLog
from envoy_data_plane.envoy.extensions.clusters.aggregate.v3 import ClusterConfig
from envoy_data_plane.envoy.extensions.filters.http.buffer.v3 import Buffer, BufferPerRoute
from envoy_data_plane.envoy.extensions.filters.http.cors.v3 import Cors, CorsPolicy
from envoy_data_plane.envoy.extensions.filters.http.grpc_json_transcoder.v3 import (
    GrpcJsonTranscoder,
    GrpcJsonTranscoderPrintOptions,
    GrpcJsonTranscoderRequestValidationOptions,
)
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpFilter,
    LocalReplyConfig,
)
from envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3 import PreviousHostsPredicate
from envoy_data_plane.envoy.extensions.upstreams.http.v3 import (
    HttpProtocolOptions,
    HttpProtocolOptionsExplicitHttpConfig,
)
from envoy_data_plane.envoy.type.matcher.v3 import StringMatcher
from envoy_data_plane.google.protobuf import Any, Struct

from gateway._descriptor import GrpcService, message_types, read_services
from services.config import DEFAULT_AUTHZ_HTTP_PORT

__all__ = [
    "GatewaySettings",
    "build_bootstrap",
    "build_config",
    "default_embedded_settings",
    "regenerate",
    "render_yaml",
    "secured",
    "write",
]

# The gateway's own clusters are named after proto domains; health and reflection (not
# part of our contracts) go to the platform domain's server.
PLATFORM_CLUSTER = "platform"
RETRIEVAL_CLUSTER = "retrieval"
# With a fallback responder, ``retrieval`` is an aggregate of these two (tried in order).
RETRIEVAL_REPLICAS_CLUSTER = "retrieval-replicas"
RETRIEVAL_FALLBACK_CLUSTER = "retrieval-fallback"
TENANT_HEADER = "x-tenant-id"

# Standard gRPC services every embrec server also registers, routed so grpcurl, ghz and
# grpc-health-probe work through the gateway. Value: methods that stream.
_INFRA_SERVICES: dict[str, tuple[str, ...]] = {
    "grpc.health.v1.Health": ("Watch",),
    "grpc.reflection.v1.ServerReflection": ("ServerReflectionInfo",),
    "grpc.reflection.v1alpha.ServerReflection": ("ServerReflectionInfo",),
}

# Envoy's filter names (the conventional ``envoy.filters.http.*`` names; the typed_config
# type, not the name, selects the extension, but stats and per-route config use the name).
CORS_FILTER = "envoy.filters.http.cors"
BUFFER_FILTER = "envoy.filters.http.buffer"
TRANSCODER_FILTER = "envoy.filters.http.grpc_json_transcoder"
ROUTER_FILTER = "envoy.filters.http.router"

# Where `embrec gen` writes the embedded config, relative to the repo root.
EMBEDDED_CONFIG_PATH = Path("envoy/envoy.yaml")

# convert_grpc_status renders a google.rpc.Status's details only if their types are in
# the descriptor set; without them Envoy answers with the right status and an EMPTY body.
_ERROR_DETAIL_TYPE = "google.rpc.ErrorInfo"

_HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_NO_DEADLINE = timedelta(0)


@dataclass
class GatewaySettings:
    """Everything that varies between deployments of the gateway.

    ``upstreams`` maps a cluster (a proto domain, e.g. ``"tenant"``) to ``(host, port)``;
    domains not listed fall back to ``default_upstream``. A domain with neither is an
    error at generation time, not a cluster that silently points nowhere.
    """

    descriptor_path: Path = Path("envoy/embrec.pb")
    """Path Envoy loads the descriptor set from, written verbatim into the config. A
    relative path is resolved by Envoy against its working directory (the repo root)."""
    base_dir: Path | None = None
    """Where a relative ``descriptor_path`` lives when the generator reads it."""
    descriptor_source: Path | None = None
    """The file the generator reads, when Envoy's path means nothing here (a path
    inside a container image); defaults to ``descriptor_path`` under ``base_dir``."""
    listen_address: str = "127.0.0.1"
    listen_port: int = 8080
    admin_address: str = "127.0.0.1"
    admin_port: int = 9901
    upstreams: dict[str, tuple[str, int]] = field(default_factory=dict)
    default_upstream: tuple[str, int] | None = None
    request_timeout: timedelta = timedelta(seconds=15)
    """Deadline of unary calls (also the cap on a client's grpc-timeout)."""
    cors_allowed_origins: tuple[str, ...] = ("http://localhost:8090", "http://127.0.0.1:8090")
    retrieval_ring_hash: bool = True
    """Route retrieval by a ring hash on x-tenant-id, so a tenant's index stays warm."""
    retrieval_hash_balance_factor: int | None = 150
    """Bounded-load ring hash (percent, >= 100): a replica takes a tenant's request only
    while its outstanding requests are under this share of the replicas' average, else
    the next replica on the ring does. A hot tenant spills over instead of queueing on
    one replica; a quiet one stays on its own. None: plain ring hash. At 1,000 req/s of
    one tenant on two replicas, 150 moved about 4-8 % of the requests (judged by the
    second replica's CPU share) and the p99 median from 35 to 21.5 ms
    (docs/retrieval-service.md, "Bounded-load ring hash")."""
    retrieval_fallback_upstream: tuple[str, int] | None = None
    """Where a popular-only retrieval responder listens (a retrieval server with
    ``EMBREC_RETRIEVAL_POPULAR_ONLY=true``). When set, a caller whose retrievers are all
    down gets popular items flagged ``fallback=true`` instead of 503 / UNAVAILABLE:
    ``retrieval`` becomes an aggregate cluster [replicas, fallback], the replicas get
    outlier detection and the retrieval routes retry. None: no fallback (embedded mode,
    where the one process hosting retrieval also hosts everything else)."""
    access_log: bool = True
    health_check_interval: timedelta = timedelta(seconds=5)
    # Insertion points for the filters other work fills in, kept in chain order:
    # CORS → authz_filters (ext_authz) → rate_limit_filters → transcoder → router.
    # Both run before the transcoder re-matches the route, so they must not depend on
    # the route (FACTS: the transcoder clears the route cache).
    authz_filters: Sequence[HttpFilter] = ()
    rate_limit_filters: Sequence[HttpFilter] = ()
    extra_clusters: Sequence[Cluster] = ()
    """Clusters those filters call (an authz or rate-limit service outside the domains)."""
    response_headers: Mapping[str, str] = field(default_factory=dict)
    """Added to every response (security headers; see gateway/security_config.py)."""
    max_request_body_bytes: int | None = None
    """Largest REST (JSON) request body (413 beyond); None = Envoy's defaults. Enforced
    by a buffer filter: the transcoder streams JSON and would not count it whole."""
    max_upload_body_bytes: int | None = None
    """Largest raw upload body (``Content-Type: text/csv``, the ``:csv`` import methods,
    which the transcoder buffers whole); None = ``max_request_body_bytes``."""

    def resolved_descriptor_path(self) -> Path:
        if self.descriptor_source is not None:
            return self.descriptor_source
        if self.descriptor_path.is_absolute() or self.base_dir is None:
            return self.descriptor_path
        return self.base_dir / self.descriptor_path

    def upstream_for(self, cluster: str) -> tuple[str, int]:
        if cluster in self.upstreams:
            return self.upstreams[cluster]
        if self.default_upstream is not None:
            return self.default_upstream
        raise ValueError(f"no upstream address for cluster {cluster!r} and no default_upstream")


def default_embedded_settings(repo_root: Path) -> GatewaySettings:
    """Settings for ``embrec up``: every domain is served by one process on :50051.

    The descriptor path stays relative (``envoy/embrec.pb``) so the committed config
    is machine-independent; Envoy must run with the repo root as its working directory.
    The gateway's authz and rate-limit services run in that same process; the global
    (Redis) rate limit is added only where a Redis is configured (embedded.py).
    """
    return secured(GatewaySettings(base_dir=repo_root, default_upstream=("127.0.0.1", 50051)))


def secured(
    settings: GatewaySettings,
    authz_address: tuple[str, int] | None = None,
    *,
    authz_http_port: int | None = DEFAULT_AUTHZ_HTTP_PORT,
    global_rate_limit: bool = False,
) -> GatewaySettings:
    """``settings`` with ext_authz, rate limits, security headers and a body limit.

    ``authz_address`` is where the process hosting the ``gateway`` module serves gRPC
    (RLS, and the gRPC ext_authz ``Check``); by default the default upstream (the
    embedded single process). ext_authz goes over HTTP to ``authz_http_port`` on that
    host (its ``EMBREC_AUTHZ_HTTP_PORT``), or over gRPC when it is None.
    """
    from dataclasses import replace

    from gateway.security_config import (
        MAX_JSON_BODY_BYTES,
        MAX_UPLOAD_BODY_BYTES,
        SECURITY_RESPONSE_HEADERS,
        security_filters,
    )

    host, port = authz_address or settings.upstream_for(PLATFORM_CLUSTER)
    authz, limits, clusters = security_filters(
        host, port, authz_http_port=authz_http_port, global_rate_limit=global_rate_limit
    )
    return replace(
        settings,
        authz_filters=authz,
        rate_limit_filters=limits,
        extra_clusters=clusters,
        response_headers=dict(SECURITY_RESPONSE_HEADERS),
        max_request_body_bytes=MAX_JSON_BODY_BYTES,
        max_upload_body_bytes=MAX_UPLOAD_BODY_BYTES,
    )


# --- building ---------------------------------------------------------------------------


def build_bootstrap(settings: GatewaySettings) -> Bootstrap:
    """The typed bootstrap; :func:`build_config` is its plain-dict form."""
    descriptor = settings.resolved_descriptor_path()
    # *InternalService services are for service-to-service calls: not routed, not
    # transcoded; a call to one through the gateway gets 404 / UNIMPLEMENTED.
    services = [s for s in read_services(descriptor) if not s.internal]
    if not services:
        raise ValueError(f"no public services in descriptor set {descriptor}")
    if _ERROR_DETAIL_TYPE not in message_types(descriptor):
        raise ValueError(
            f"descriptor set {descriptor} lacks {_ERROR_DETAIL_TYPE}: JSON error bodies "
            "would be empty; pass google/rpc/error_details.proto to protoc (or import it)"
        )
    domains = sorted({service.domain for service in services})
    if PLATFORM_CLUSTER not in domains:
        raise ValueError(
            f"descriptor set has no embrec.{PLATFORM_CLUSTER}.v1 service; health and "
            "reflection routes need that cluster"
        )
    unknown = sorted(set(settings.upstreams) - set(domains))
    if unknown:
        raise ValueError(f"upstreams {unknown} match no service domain {domains}")
    return Bootstrap(
        admin=Admin(address=_socket(settings.admin_address, settings.admin_port)),
        static_resources=BootstrapStaticResources(
            listeners=[_listener(settings, services)],
            clusters=[*_clusters(settings, domains), *settings.extra_clusters],
        ),
    )


def build_config(settings: GatewaySettings) -> dict[str, _Any]:
    """The bootstrap as a plain dict in proto3 JSON form with proto field names."""
    config: dict[str, _Any] = build_bootstrap(settings).to_dict(casing=betterproto2.Casing.SNAKE)
    return config


def render_yaml(settings: GatewaySettings) -> str:
    """Deterministic YAML: same settings and descriptor → byte-identical text."""
    header = (
        "# Generated by gateway/envoy_config.py from the descriptor set: do not edit.\n"
        "# Regenerate with `embrec gen`. Envoy must run with the repo root as cwd.\n"
    )
    body = yaml.safe_dump(build_config(settings), sort_keys=True, default_flow_style=False)
    return header + body


def write(settings: GatewaySettings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_yaml(settings), encoding="utf-8")


def regenerate(repo_root: Path) -> Path:
    """Rewrite the committed envoy/envoy.yaml from envoy/embrec.pb; returns its path."""
    path = repo_root / EMBEDDED_CONFIG_PATH
    write(default_embedded_settings(repo_root), path)
    return path


# --- listener ---------------------------------------------------------------------------


def _listener(settings: GatewaySettings, services: list[GrpcService]) -> Listener:
    manager = HttpConnectionManager(
        stat_prefix="ingress",
        # AUTO sniffs each connection: HTTP/1.1 for JSON clients, h2c for gRPC clients.
        codec_type=HttpConnectionManagerCodecType.AUTO,
        route_config=_route_config(settings, services),
        http_filters=_http_filters(settings, services),
        local_reply_config=_json_local_replies(),
        access_log=[_stdout_access_log()] if settings.access_log else [],
    )
    return Listener(
        name="ingress",
        address=_socket(settings.listen_address, settings.listen_port),
        filter_chains=[
            FilterChain(
                filters=[
                    Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=Any.pack(manager),
                    )
                ]
            )
        ],
    )


def _http_filters(settings: GatewaySettings, services: list[GrpcService]) -> list[HttpFilter]:
    transcoder = GrpcJsonTranscoder(
        proto_descriptor=str(settings.descriptor_path),
        services=[service.full_name for service in services],
        convert_grpc_status=True,
        # Only methods with a google.api.http rule get a JSON route; POST-ing JSON to
        # /pkg.Service/Method would expose every internal RPC as an unplanned REST API.
        auto_mapping=False,
        print_options=GrpcJsonTranscoderPrintOptions(
            preserve_proto_field_names=True,
            # JSON clients get every field, zeros and empty strings included, so a
            # response's shape does not depend on its values.
            always_print_primitive_fields=True,
        ),
        # Without these an unmapped JSON request passes through to a gRPC upstream,
        # which resets it and the client sees 503/415 instead of 404/400.
        request_validation_options=GrpcJsonTranscoderRequestValidationOptions(
            reject_unknown_method=True,
            reject_unknown_query_parameters=True,
        ),
        max_request_body_size=settings.max_upload_body_bytes or settings.max_request_body_bytes,
    )
    # Envoy's transcoder converts JSON as it streams and only bounds what it holds at
    # once, so a 20 MiB JSON body would pass it. The buffer filter counts the whole body
    # (413 beyond the limit); gRPC routes switch it off per route (streams), CSV uploads
    # get the upload limit (_fallback_routes).
    body_limit = (
        [
            HttpFilter(
                name=BUFFER_FILTER,
                typed_config=Any.pack(Buffer(max_request_bytes=settings.max_request_body_bytes)),
            )
        ]
        if settings.max_request_body_bytes
        else []
    )
    return [
        HttpFilter(name=CORS_FILTER, typed_config=Any.pack(Cors())),
        *settings.authz_filters,
        *settings.rate_limit_filters,
        *body_limit,
        HttpFilter(name=TRANSCODER_FILTER, typed_config=Any.pack(transcoder)),
        HttpFilter(name=ROUTER_FILTER, typed_config=Any.pack(Router())),
    ]


def _json_local_replies() -> LocalReplyConfig:
    # Replies Envoy makes itself (no route, no healthy upstream, timeouts, filter
    # denials) get the same {"code", "message"} shape as transcoded gRPC errors, with
    # the HTTP status as the code. gRPC callers still get grpc-status trailers: Envoy
    # turns local replies to gRPC requests into trailers-only responses.
    body = Struct.from_dict({"code": "%RESPONSE_CODE%", "message": "%LOCAL_REPLY_BODY%"})
    return LocalReplyConfig(body_format=SubstitutionFormatString(json_format=body))


def _stdout_access_log() -> AccessLog:
    return AccessLog(name="envoy.access_loggers.stdout", typed_config=Any.pack(StdoutAccessLog()))


# --- routes -----------------------------------------------------------------------------


def _route_config(settings: GatewaySettings, services: list[GrpcService]) -> RouteConfiguration:
    routes: list[Route] = []
    for service in services:
        routes += _service_routes(
            settings, service.full_name, service.streaming_methods, service.domain
        )
    for name, streaming in sorted(_INFRA_SERVICES.items()):
        routes += _service_routes(settings, name, streaming, PLATFORM_CLUSTER)
    routes += _fallback_routes(settings)
    return RouteConfiguration(
        name="embrec",
        virtual_hosts=[
            VirtualHost(
                name="embrec",
                domains=["*"],
                routes=routes,
                typed_per_filter_config={CORS_FILTER: Any.pack(_cors_policy(settings))},
                response_headers_to_add=[
                    HeaderValueOption(
                        header=HeaderValue(key=k, value=v),
                        append_action=HeaderValueOptionHeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD,
                    )
                    for k, v in sorted(settings.response_headers.items())
                ],
            )
        ],
    )


def _fallback_routes(settings: GatewaySettings) -> list[Route]:
    """What every path that is not ``/<pkg>.<Service>/...`` matches.

    A JSON request (``GET /health``) matches the catch-all first: the transcoder then
    rewrites it to ``/<pkg>.<Service>/<Method>`` and Envoy re-matches the real route, or,
    if no google.api.http rule fits, rejects it with 404 (reject_unknown_method) before
    it leaves Envoy. The catch-all must forward rather than be a direct_response:
    Envoy's CORS filter (and per-route config of other filters) ignores routes that do
    not forward, which would drop CORS for every JSON call. Its cluster is therefore
    never reached in practice.

    The transcoder lets gRPC requests through untouched, so an unknown gRPC method gets
    its 404 here (gRPC clients see UNIMPLEMENTED) instead of bothering an upstream.
    """
    grpc_content_type = HeaderMatcher(
        name="content-type", string_match=StringMatcher(prefix="application/grpc")
    )
    routes = [
        Route(
            name="unknown_grpc_method",
            match=RouteMatch(prefix="/", headers=[grpc_content_type]),
            direct_response=DirectResponseAction(
                status=404, body=DataSource(inline_string="no such gRPC method")
            ),
            typed_per_filter_config=_no_body_buffer(settings),
        ),
    ]
    if settings.max_request_body_bytes and settings.max_upload_body_bytes:
        csv_content_type = HeaderMatcher(
            name="content-type", string_match=StringMatcher(prefix="text/csv")
        )
        routes.append(
            Route(
                name="csv_upload",
                match=RouteMatch(prefix="/", headers=[csv_content_type]),
                route=RouteAction(cluster=PLATFORM_CLUSTER, timeout=settings.request_timeout),
                typed_per_filter_config={
                    BUFFER_FILTER: Any.pack(
                        BufferPerRoute(
                            buffer=Buffer(max_request_bytes=settings.max_upload_body_bytes)
                        )
                    )
                },
            )
        )
    routes.append(
        Route(
            name="json",
            match=RouteMatch(prefix="/"),
            route=RouteAction(cluster=PLATFORM_CLUSTER, timeout=settings.request_timeout),
        )
    )
    return routes


def _no_body_buffer(settings: GatewaySettings) -> dict[str, Any]:
    """Per-route config that switches the body-limit buffer off (gRPC streams)."""
    if not settings.max_request_body_bytes:
        return {}
    return {BUFFER_FILTER: Any.pack(BufferPerRoute(disabled=True))}


def _service_routes(
    settings: GatewaySettings, service: str, streaming: Sequence[str], cluster: str
) -> list[Route]:
    """Exact routes for streaming methods first, then the service's prefix route.

    A route ``timeout`` bounds the whole response, so a Watch or Export stream would be
    cut at the request timeout: streaming methods get no route deadline and honour the
    client's grpc-timeout uncapped; idle streams still end at the connection manager's
    stream_idle_timeout (5 minutes by default), so long-lived streams should heartbeat.
    Unary calls get the request timeout, and a shorter client deadline wins.
    """
    hash_policy = []
    if settings.retrieval_ring_hash and cluster == RETRIEVAL_CLUSTER:
        hash_policy = [
            RouteActionHashPolicy(header=RouteActionHashPolicyHeader(header_name=TENANT_HEADER))
        ]
    retry_policy = None
    if settings.retrieval_fallback_upstream is not None and cluster == RETRIEVAL_CLUSTER:
        retry_policy = _retrieval_retry_policy()

    def route(name: str, match: RouteMatch, timeout: timedelta) -> Route:
        return Route(
            name=name,
            match=match,
            route=RouteAction(
                cluster=cluster,
                timeout=timeout,
                max_stream_duration=RouteActionMaxStreamDuration(grpc_timeout_header_max=timeout),
                hash_policy=hash_policy,
                retry_policy=retry_policy,
            ),
            typed_per_filter_config=_no_body_buffer(settings),
        )

    routes = [
        route(f"{service}/{method}", RouteMatch(path=f"/{service}/{method}"), _NO_DEADLINE)
        for method in streaming
    ]
    routes.append(route(service, RouteMatch(prefix=f"/{service}/"), settings.request_timeout))
    return routes


def _cors_policy(settings: GatewaySettings) -> CorsPolicy:
    return CorsPolicy(
        allow_origin_string_match=[StringMatcher(exact=o) for o in settings.cors_allowed_origins],
        allow_methods="GET, POST, PUT, PATCH, DELETE, OPTIONS",
        allow_headers=(
            "authorization, content-type, x-api-key, x-request-id, grpc-timeout, "
            "x-grpc-web, x-user-agent"
        ),
        # The console reads error details and rate-limit state from these.
        expose_headers=(
            "grpc-status, grpc-message, x-request-id, retry-after, "
            "x-ratelimit-limit, x-ratelimit-remaining, x-ratelimit-reset"
        ),
        max_age="600",
    )


# --- clusters ---------------------------------------------------------------------------


def _clusters(settings: GatewaySettings, domains: Sequence[str]) -> list[Cluster]:
    clusters: list[Cluster] = []
    for domain in domains:
        ring_hash = settings.retrieval_ring_hash and domain == RETRIEVAL_CLUSTER
        address = settings.upstream_for(domain)
        if domain != RETRIEVAL_CLUSTER or settings.retrieval_fallback_upstream is None:
            clusters.append(_cluster(settings, domain, address, ring_hash=ring_hash))
            continue
        clusters += [
            _cluster(
                settings,
                RETRIEVAL_REPLICAS_CLUSTER,
                address,
                ring_hash=ring_hash,
                outlier_detection=_replica_outlier_detection(),
            ),
            # Stateless (no index loaded), so plain round robin over its replicas.
            _cluster(
                settings,
                RETRIEVAL_FALLBACK_CLUSTER,
                settings.retrieval_fallback_upstream,
                ring_hash=False,
            ),
            _aggregate(RETRIEVAL_CLUSTER, [RETRIEVAL_REPLICAS_CLUSTER, RETRIEVAL_FALLBACK_CLUSTER]),
        ]
    return clusters


def _aggregate(name: str, members: list[str]) -> Cluster:
    """A cluster that sends each request to the first member with healthy hosts.

    The aggregate passes the route's hash policy on to the member's load balancer, so
    the replicas keep their ring hash on the tenant.
    """
    return Cluster(
        name=name,
        connect_timeout=timedelta(seconds=1),
        lb_policy=ClusterLbPolicy.CLUSTER_PROVIDED,
        cluster_type=ClusterCustomClusterType(
            name="envoy.clusters.aggregate", typed_config=Any.pack(ClusterConfig(clusters=members))
        ),
    )


def _replica_outlier_detection() -> OutlierDetection:
    """Eject a replica after its second consecutive connect failure, reset or timeout.

    Health checks alone leave a window of up to unhealthy_threshold × interval (10 s
    here) in which a stopped replica still looks healthy and every request to it fails.
    Traffic notices sooner: with the route's retries, the request that meets the dead
    replica usually gets it ejected before its last attempt, which then goes to the
    fallback (docs/retrieval-service.md has the measured transition).

    Only locally originated failures count (split_external_local_origin_errors): a
    replica that answers, even with an error status, is up, and statuses it returns on
    purpose must not take it out. Envoy's own upstream timeouts do count: a replica
    that hangs twice in a row is as good as down for its callers.
    """
    return OutlierDetection(
        split_external_local_origin_errors=True,
        consecutive_local_origin_failure=2,
        enforcing_consecutive_local_origin_failure=100,
        # Short: a replica ejected by a blip is back soon, and a successful health check
        # un-ejects it at once (successful_active_health_check_uneject_host's default).
        base_ejection_time=timedelta(seconds=5),
        interval=timedelta(seconds=1),
        # Envoy's default 10 % would never eject the last replicas, and "all replicas
        # gone" is exactly the case the fallback is for.
        max_ejection_percent=100,
    )


def _retrieval_retry_policy() -> RetryPolicy:
    """Retry what never reached a replica's handler (or died with it) on another host.

    With every replica ejected or unhealthy, the aggregate cluster picks the fallback on
    the retry. ``unavailable`` is gRPC's status for a replica shutting down. Recommend
    and the other retrieval methods are reads, so a retry cannot do a thing twice.
    The per-try timeout bounds a replica that hangs instead of closing its connection
    (seen once in testing: a stopped replica's HTTP/2 connection stayed open and the
    request waited for the whole route timeout); retrieval answers in milliseconds and
    never waits for an index load, so 2 s only cuts off a replica that is stuck.
    """
    return RetryPolicy(
        retry_on="connect-failure,refused-stream,reset,unavailable,gateway-error",
        num_retries=2,
        per_try_timeout=timedelta(seconds=2),
        retry_host_predicate=[
            RetryPolicyRetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=Any.pack(PreviousHostsPredicate()),
            )
        ],
    )


def _cluster(
    settings: GatewaySettings,
    name: str,
    address: tuple[str, int],
    *,
    ring_hash: bool,
    outlier_detection: OutlierDetection | None = None,
) -> Cluster:
    host, port = address
    interval = settings.health_check_interval
    return Cluster(
        name=name,
        # An IP literal needs no resolver; a name (compose service, k8s service) is
        # re-resolved so replicas can come and go.
        type=ClusterDiscoveryType.STATIC if _is_ip(host) else ClusterDiscoveryType.STRICT_DNS,
        connect_timeout=timedelta(seconds=1),
        lb_policy=ClusterLbPolicy.RING_HASH if ring_hash else ClusterLbPolicy.ROUND_ROBIN,
        common_lb_config=_bounded_load(settings) if ring_hash else None,
        load_assignment=ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                LocalityLbEndpoints(
                    lb_endpoints=[LbEndpoint(endpoint=Endpoint(address=_socket(host, port)))]
                )
            ],
        ),
        typed_extension_protocol_options={
            # gRPC needs HTTP/2 to the upstream; Envoy's default upstream codec is 1.1.
            _HTTP_PROTOCOL_OPTIONS_KEY: Any.pack(
                HttpProtocolOptions(
                    explicit_http_config=HttpProtocolOptionsExplicitHttpConfig(
                        http2_protocol_options=Http2ProtocolOptions()
                    )
                )
            )
        },
        health_checks=[
            HealthCheck(
                timeout=timedelta(seconds=1),
                interval=interval,
                # Without traffic Envoy would check only every 60 s, so a server
                # started after Envoy would look down for up to a minute.
                no_traffic_interval=interval,
                unhealthy_threshold=2,
                healthy_threshold=1,
                # Empty service name: the server's overall health, which grpc's
                # HealthServicer reports from the start; per-service names would need
                # every server to register each service it hosts.
                grpc_health_check=HealthCheckGrpcHealthCheck(),
            )
        ],
        outlier_detection=outlier_detection,
    )


def _bounded_load(settings: GatewaySettings) -> ClusterCommonLbConfig | None:
    factor = settings.retrieval_hash_balance_factor
    if factor is None:
        return None
    if factor < 100:
        raise ValueError(f"retrieval_hash_balance_factor must be >= 100 (percent), got {factor}")
    return ClusterCommonLbConfig(
        consistent_hashing_lb_config=ClusterCommonLbConfigConsistentHashingLbConfig(
            hash_balance_factor=factor
        )
    )


def _socket(host: str, port: int) -> Address:
    return Address(socket_address=SocketAddress(address=host, port_value=port))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
