"""The generated bootstrap: its shape, its determinism, and Envoy's own validation."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from envoy_data_plane.envoy.config.cluster.v3 import ClusterLbPolicy
from envoy_data_plane.envoy.extensions.filters.http.router.v3 import Router
from envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3 import (
    HttpConnectionManager,
    HttpConnectionManagerCodecType,
    HttpFilter,
)
from envoy_data_plane.google.protobuf import Any as PbAny

from gateway._descriptor import domain_of, read_services
from gateway.authz import GATEWAY_HEADERS
from gateway.envoy_config import (
    EMBEDDED_CONFIG_PATH,
    GatewaySettings,
    build_bootstrap,
    build_config,
    default_embedded_settings,
    render_yaml,
    secured,
)
from tests.gateway.conftest import PROTO_ROOT, envoy_binary, include_dirs

REPO_ROOT = Path(__file__).resolve().parents[2]
RETRIEVAL = "embrec.retrieval.v1.RetrievalService"


@pytest.fixture(scope="module")
def settings(toy_descriptor: Path) -> GatewaySettings:
    return GatewaySettings(descriptor_path=toy_descriptor, default_upstream=("127.0.0.1", 50051))


@pytest.fixture(scope="module")
def config(settings: GatewaySettings) -> dict[str, Any]:
    """One render shared by the read-only tests (a render takes most of a second)."""
    return build_config(settings)


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    listener = config["static_resources"]["listeners"][0]
    typed: dict[str, Any] = listener["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def _routes(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    hosts = _manager(config)["route_config"]["virtual_hosts"]
    return {route["name"]: route for route in hosts[0]["routes"]}


def _validate(config_file: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config_file)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_services_come_from_the_descriptor_without_google_packages(toy_descriptor: Path) -> None:
    services = read_services(toy_descriptor)
    assert [s.full_name for s in services] == [
        "embrec.platform.v1.PlatformService",
        "embrec.retrieval.v1.RetrievalInternalService",
        "embrec.retrieval.v1.RetrievalService",
    ]
    assert [s.internal for s in services] == [False, True, False]
    assert services[2].streaming_methods == ("StreamRecommendations",)


@pytest.mark.parametrize("package", ["embrec.tenant", "google.api", "acme.tenant.v1", "embrec.x.y"])
def test_packages_outside_the_naming_scheme_are_rejected(package: str) -> None:
    with pytest.raises(ValueError, match=r"embrec\.<domain>"):
        domain_of(package)


def test_domain_is_the_cluster_name() -> None:
    assert domain_of("embrec.retrieval.v1") == "retrieval"


def test_rendering_is_deterministic(settings: GatewaySettings) -> None:
    assert render_yaml(settings) == render_yaml(settings)


def test_generated_config_passes_envoy_validation(
    settings: GatewaySettings, tmp_path: Path
) -> None:
    config_file = tmp_path / "envoy.yaml"
    config_file.write_text(render_yaml(settings))
    result = _validate(config_file, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_typed_config_is_packed_with_its_type_url(config: dict[str, Any]) -> None:
    manager = _manager(config)
    assert manager["@type"].endswith(
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    )
    assert all(
        f["typed_config"]["@type"].startswith("type.googleapis.com/envoy.")
        for f in manager["http_filters"]
    )


def test_one_port_serves_json_and_grpc(settings: GatewaySettings) -> None:
    # AUTO is proto3's default and so is left out of the YAML: check the typed object.
    listener = build_bootstrap(settings).static_resources.listeners[0]
    manager = listener.filter_chains[0].filters[0].typed_config.unpack()
    assert isinstance(manager, HttpConnectionManager)
    assert manager.codec_type == HttpConnectionManagerCodecType.AUTO


def test_filter_chain_order_with_empty_slots(config: dict[str, Any]) -> None:
    names = [f["name"] for f in _manager(config)["http_filters"]]
    assert names == [
        "envoy.filters.http.cors",
        "envoy.filters.http.grpc_json_transcoder",
        "envoy.filters.http.router",
    ]


def test_authz_and_rate_limit_slots_sit_between_cors_and_transcoder(
    settings: GatewaySettings,
) -> None:
    # Any typed filter will do to check placement; Router stands in for the real ones.
    authz = HttpFilter(name="test.authz", typed_config=PbAny.pack(Router()))
    limit = HttpFilter(name="test.limit", typed_config=PbAny.pack(Router()))
    filled = replace(settings, authz_filters=[authz], rate_limit_filters=[limit])
    names = [f["name"] for f in _manager(build_config(filled))["http_filters"]]
    assert names[:3] == ["envoy.filters.http.cors", "test.authz", "test.limit"]
    assert names[3] == "envoy.filters.http.grpc_json_transcoder"


def test_transcoder_options(settings: GatewaySettings, config: dict[str, Any]) -> None:
    transcoder = _manager(config)["http_filters"][-2]["typed_config"]
    assert transcoder["services"] == [
        "embrec.platform.v1.PlatformService",
        "embrec.retrieval.v1.RetrievalService",
    ]
    assert transcoder["proto_descriptor"] == str(settings.descriptor_path)
    assert transcoder["convert_grpc_status"] is True
    assert "auto_mapping" not in transcoder  # false
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["request_validation_options"] == {
        "reject_unknown_method": True,
        "reject_unknown_query_parameters": True,
    }


def test_routes_per_service_with_timeouts(settings: GatewaySettings) -> None:
    routes = _routes(build_config(replace(settings, request_timeout=timedelta(seconds=7))))
    platform = routes["embrec.platform.v1.PlatformService"]
    assert platform["match"] == {"prefix": "/embrec.platform.v1.PlatformService/"}
    assert platform["route"]["cluster"] == "platform"
    assert platform["route"]["timeout"] == "7s"
    assert platform["route"]["max_stream_duration"] == {"grpc_timeout_header_max": "7s"}
    stream = routes["embrec.retrieval.v1.RetrievalService/StreamRecommendations"]
    assert stream["match"] == {
        "path": "/embrec.retrieval.v1.RetrievalService/StreamRecommendations"
    }
    assert stream["route"]["timeout"] == "0s"
    names = list(routes)
    # The exact streaming route must come before its service's prefix route.
    assert names.index("embrec.retrieval.v1.RetrievalService/StreamRecommendations") < (
        names.index("embrec.retrieval.v1.RetrievalService")
    )


def test_health_and_reflection_go_to_the_platform_cluster(config: dict[str, Any]) -> None:
    routes = _routes(config)
    for name in (
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ):
        assert routes[name]["route"]["cluster"] == "platform"


def test_catch_all_routes_are_last(config: dict[str, Any]) -> None:
    names = list(_routes(config))
    assert names[-2:] == ["unknown_grpc_method", "json"]


def test_retrieval_uses_ring_hash_on_the_tenant(settings: GatewaySettings) -> None:
    config = build_config(settings)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert clusters["retrieval"]["lb_policy"] == "RING_HASH"
    assert "lb_policy" not in clusters["platform"]  # ROUND_ROBIN, the default
    route = _routes(config)["embrec.retrieval.v1.RetrievalService"]["route"]
    assert route["hash_policy"] == [{"header": {"header_name": "x-tenant-id"}}]
    # Bounded load: a hot tenant spills to the next replica on the ring.
    bounded = clusters["retrieval"]["common_lb_config"]["consistent_hashing_lb_config"]
    assert bounded == {"hash_balance_factor": 150}
    assert "common_lb_config" not in clusters["platform"]
    plain = build_config(replace(settings, retrieval_hash_balance_factor=None))
    assert not any("common_lb_config" in c for c in plain["static_resources"]["clusters"])
    with pytest.raises(ValueError, match=">= 100"):
        build_config(replace(settings, retrieval_hash_balance_factor=99))
    off = build_bootstrap(replace(settings, retrieval_ring_hash=False))
    lb = {c.name: c.lb_policy for c in off.static_resources.clusters}
    assert lb["retrieval"] == ClusterLbPolicy.ROUND_ROBIN
    assert all(c.common_lb_config is None for c in off.static_resources.clusters)


def test_retrieval_fallback_only_when_configured(settings: GatewaySettings) -> None:
    def retrieval_parts(config: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
        clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
        retrieval_routes = [
            r["route"]
            for r in _routes(config).values()
            if r.get("route", {}).get("cluster") == "retrieval"
        ]
        return clusters, retrieval_routes

    clusters, routes = retrieval_parts(build_config(settings))
    assert {"retrieval-replicas", "retrieval-fallback"}.isdisjoint(clusters)
    assert "cluster_type" not in clusters["retrieval"]
    assert "outlier_detection" not in clusters["retrieval"]
    assert routes and all("retry_policy" not in r for r in routes)

    with_fallback = replace(settings, retrieval_fallback_upstream=("popular", 50060))
    clusters, routes = retrieval_parts(build_config(with_fallback))
    aggregate = clusters["retrieval"]
    assert aggregate["lb_policy"] == "CLUSTER_PROVIDED"
    assert aggregate["cluster_type"]["name"] == "envoy.clusters.aggregate"
    assert aggregate["cluster_type"]["typed_config"] == {
        "@type": "type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig",
        "clusters": ["retrieval-replicas", "retrieval-fallback"],  # tried in this order
    }
    replicas, responder = clusters["retrieval-replicas"], clusters["retrieval-fallback"]
    assert replicas["lb_policy"] == "RING_HASH"
    assert replicas["outlier_detection"]["consecutive_local_origin_failure"] == 2
    assert replicas["outlier_detection"]["max_ejection_percent"] == 100
    assert "outlier_detection" not in responder
    for member in (replicas, responder):
        assert member["health_checks"][0]["grpc_health_check"] == {}
        assert member["load_assignment"]["cluster_name"] == member["name"]
    endpoint = responder["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "popular", "port_value": 50060}
    # The ring hash on the tenant still applies: the aggregate hands it to the replicas.
    assert routes and all(
        r["hash_policy"] == [{"header": {"header_name": "x-tenant-id"}}] for r in routes
    )
    for route in routes:
        retry = route["retry_policy"]
        assert retry["retry_on"] == (
            "connect-failure,refused-stream,reset,unavailable,gateway-error"
        )
        assert retry["num_retries"] == 2 and retry["per_try_timeout"] == "2s"
        assert [p["name"] for p in retry["retry_host_predicate"]] == [
            "envoy.retry_host_predicates.previous_hosts"
        ]
    # Other domains are untouched.
    others = [
        r["route"]
        for r in _routes(build_config(with_fallback)).values()
        if "route" in r and r["route"]["cluster"] != "retrieval"
    ]
    assert others and all("retry_policy" not in r for r in others)


def test_fallback_config_passes_envoy_validation(settings: GatewaySettings, tmp_path: Path) -> None:
    config_file = tmp_path / "envoy.yaml"
    with_fallback = replace(settings, retrieval_fallback_upstream=("127.0.0.1", 50060))
    config_file.write_text(render_yaml(with_fallback))
    result = _validate(config_file, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_clusters_speak_http2_and_are_health_checked(config: dict[str, Any]) -> None:
    for cluster in config["static_resources"]["clusters"]:
        options = cluster["typed_extension_protocol_options"]
        http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
        assert http["explicit_http_config"] == {"http2_protocol_options": {}}
        assert cluster["health_checks"][0]["grpc_health_check"] == {}
        assert cluster["connect_timeout"] == "1s"


def test_upstream_addresses(settings: GatewaySettings) -> None:
    custom = replace(
        settings,
        upstreams={"retrieval": ("retriever", 50052)},
        default_upstream=("10.0.0.5", 50051),
    )
    clusters = {c["name"]: c for c in build_config(custom)["static_resources"]["clusters"]}
    assert clusters["retrieval"]["type"] == "STRICT_DNS"
    assert clusters["platform"]["type"] == "STATIC"
    endpoint = clusters["retrieval"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert address == {"address": "retriever", "port_value": 50052}


def test_missing_upstream_fails_at_generation(settings: GatewaySettings) -> None:
    with pytest.raises(ValueError, match="no upstream address for cluster"):
        build_config(replace(settings, default_upstream=None))


def test_unknown_upstream_name_fails_at_generation(settings: GatewaySettings) -> None:
    with pytest.raises(ValueError, match="match no service domain"):
        build_config(replace(settings, upstreams={"retrival": ("127.0.0.1", 1)}))


def test_descriptor_without_error_details_is_refused(tmp_path: Path) -> None:
    from grpc_tools import protoc

    out = tmp_path / "bare.pb"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = ["protoc", *(f"-I{d}" for d in include_dirs()), "--include_imports"]
    assert protoc.main([*args, f"--descriptor_set_out={out}", *protos]) == 0
    bare = GatewaySettings(descriptor_path=out, default_upstream=("127.0.0.1", 1))
    with pytest.raises(ValueError, match=r"error_details\.proto"):
        build_config(bare)


def test_internal_services_get_no_route(config: dict[str, Any]) -> None:
    assert not [name for name in _routes(config) if "Internal" in name]
    transcoder = _manager(config)["http_filters"][-2]["typed_config"]
    assert "embrec.retrieval.v1.RetrievalInternalService" not in transcoder["services"]


def test_descriptor_source_is_read_when_envoys_path_is_elsewhere(
    settings: GatewaySettings, toy_descriptor: Path
) -> None:
    image = replace(
        settings, descriptor_path=Path("/app/envoy/embrec.pb"), descriptor_source=toy_descriptor
    )
    transcoder = _manager(build_config(image))["http_filters"][-2]["typed_config"]
    assert transcoder["proto_descriptor"] == "/app/envoy/embrec.pb"


def _ext_authz(config: dict[str, Any]) -> dict[str, Any]:
    filters = _manager(config)["http_filters"]
    found: dict[str, Any] = next(
        f["typed_config"] for f in filters if f["name"] == "envoy.filters.http.ext_authz"
    )
    return found


def _cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in config["static_resources"]["clusters"] if c["name"] == name
    )
    return found


def test_secured_asks_authz_over_http_on_its_own_port(settings: GatewaySettings) -> None:
    config = build_config(secured(settings, ("10.0.0.5", 50051), authz_http_port=50052))
    authz = _ext_authz(config)
    assert "grpc_service" not in authz and not authz.get("failure_mode_allow", False)
    assert authz["status_on_error"]["code"] == "ServiceUnavailable"
    service = authz["http_service"]
    upstream = {
        p["exact"]
        for p in service["authorization_response"]["allowed_upstream_headers"]["patterns"]
    }
    assert upstream == set(GATEWAY_HEADERS)
    # The client's content type travels under another name: as `content-type`, a gRPC
    # one turns Envoy's own failure to reach authz into an allow.
    sent = {p["exact"] for p in authz["allowed_headers"]["patterns"]}
    assert "content-type" not in sent and "authorization" in sent
    added = {h["key"]: h["value"] for h in service["authorization_request"]["headers_to_add"]}
    assert added == {
        "x-embrec-peer": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "x-embrec-content-type": "%REQ(content-type)%",
    }
    address = _cluster(config, "gateway_authz")["load_assignment"]["endpoints"][0]
    socket_address = address["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert (socket_address["address"], socket_address["port_value"]) == ("10.0.0.5", 50052)
    assert "typed_extension_protocol_options" not in _cluster(config, "gateway_authz")


def test_secured_without_an_http_port_asks_over_grpc(settings: GatewaySettings) -> None:
    config = build_config(secured(settings, ("10.0.0.5", 50051), authz_http_port=None))
    authz = _ext_authz(config)
    assert authz["grpc_service"]["envoy_grpc"]["cluster_name"] == "gateway_authz"
    cluster = _cluster(config, "gateway_authz")
    socket_address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"
    ]["socket_address"]
    assert socket_address["port_value"] == 50051
    assert "typed_extension_protocol_options" in cluster  # HTTP/2


def test_embedded_settings() -> None:
    settings = default_embedded_settings(REPO_ROOT)
    assert settings.descriptor_path == Path("envoy/embrec.pb")
    assert settings.resolved_descriptor_path() == REPO_ROOT / "envoy/embrec.pb"
    assert (settings.listen_address, settings.listen_port) == ("127.0.0.1", 8080)
    assert (settings.admin_address, settings.admin_port) == ("127.0.0.1", 9901)
    assert settings.upstream_for("tenant") == ("127.0.0.1", 50051)


@pytest.mark.skipif(
    not (REPO_ROOT / "envoy/embrec.pb").exists(),
    reason="envoy/embrec.pb is not built yet (the contracts' descriptor set); "
    "envoy/envoy.yaml was rendered from a stand-in and cannot be compared",
)
class TestCommittedConfig:
    def test_committed_config_matches_a_fresh_render(self) -> None:
        committed = (REPO_ROOT / EMBEDDED_CONFIG_PATH).read_text()
        assert committed == render_yaml(default_embedded_settings(REPO_ROOT)), (
            "envoy/envoy.yaml is stale: run `embrec gen`"
        )

    def test_committed_config_passes_envoy_validation(self) -> None:
        # Relative descriptor path: validate from the repo root, as Envoy runs.
        result = _validate(EMBEDDED_CONFIG_PATH, REPO_ROOT)
        assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_binary_is_found() -> None:
    assert shutil.which("envoy") or envoy_binary().exists()
