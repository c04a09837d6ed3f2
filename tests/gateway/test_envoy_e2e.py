"""Through a real Envoy to a real grpc.aio upstream: gRPC, JSON, and what is not routed."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.gateway.conftest import RunningEnvoy, load_messages

pytestmark = [pytest.mark.integration]


def _http(envoy: RunningEnvoy) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{envoy.port}", timeout=5)


def test_native_grpc_health_check_goes_through(envoy: RunningEnvoy) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_native_grpc_call_to_a_domain_service(envoy: RunningEnvoy, toy_descriptor: Path) -> None:
    messages = load_messages(toy_descriptor)
    request_cls = messages.cls("embrec.retrieval.v1.RecommendRequest")
    response_cls = messages.cls("embrec.retrieval.v1.RecommendResponse")
    with grpc.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        call = channel.unary_unary(
            "/embrec.retrieval.v1.RetrievalService/Recommend",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        reply = call(
            request_cls(user_id="u1", limit=1), timeout=5, metadata=[("x-tenant-id", "t1")]
        )
    assert list(reply.item_ids) == ["u1-item-0"]


def test_json_get_is_transcoded(envoy: RunningEnvoy) -> None:
    with _http(envoy) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_json_post_with_path_variable_keeps_proto_field_names(envoy: RunningEnvoy) -> None:
    with _http(envoy) as client:
        response = client.post("/v1/users/u7:recommend", json={"limit": 2})
    assert response.status_code == 200
    # preserve_proto_field_names + always_print_primitive_fields: snake_case, zeros shown.
    assert response.json() == {"item_ids": ["u7-item-0", "u7-item-1"], "served_by_shard": 0}


def test_grpc_error_becomes_http_status_with_json_body(envoy: RunningEnvoy) -> None:
    with _http(envoy) as client:
        response = client.post("/v1/users/missing:recommend", json={})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert "does not exist" in body["message"]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("path", ["/nope", "/v1/unknown/thing", "/embrec.nope.v1.Nope/Get"])
def test_unknown_json_path_is_404_json(envoy: RunningEnvoy, method: str, path: str) -> None:
    with _http(envoy) as client:
        response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    body = json.loads(response.text)
    assert body["code"] == 404
    assert body["message"]


def test_unknown_query_parameter_is_400(envoy: RunningEnvoy) -> None:
    with _http(envoy) as client:
        response = client.get("/health", params={"verbose": "1"})
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_unknown_grpc_method_is_unimplemented(envoy: RunningEnvoy) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        call = channel.unary_unary("/embrec.nope.v1.NopeService/Get")
        with pytest.raises(grpc.RpcError) as error:
            call(b"", timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_cors_preflight_from_the_console(envoy: RunningEnvoy) -> None:
    with _http(envoy) as client:
        response = client.options(
            "/v1/users/u1:recommend",
            headers={
                "origin": "http://localhost:8090",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, authorization",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:8090"


def test_cors_rejects_other_origins(envoy: RunningEnvoy) -> None:
    with _http(envoy) as client:
        response = client.get("/health", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_headers_on_a_transcoded_call(envoy: RunningEnvoy) -> None:
    with _http(envoy) as client:
        ok = client.get("/health", headers={"origin": "http://127.0.0.1:8090"})
        missing = client.get("/nope", headers={"origin": "http://127.0.0.1:8090"})
    assert ok.headers["access-control-allow-origin"] == "http://127.0.0.1:8090"
    # The console must be able to read error bodies too.
    assert missing.status_code == 404
    assert missing.headers["access-control-allow-origin"] == "http://127.0.0.1:8090"


def test_error_details_are_transcoded(envoy: RunningEnvoy) -> None:
    with _http(envoy) as client:
        response = client.post("/v1/users/denied:recommend", json={})
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert body["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "PERMISSION_DENIED_FOR_USER",
            "domain": "embrec.dev",
            "metadata": {"user_id": "denied"},
        }
    ]


def test_internal_services_are_not_reachable_through_the_gateway(
    envoy: RunningEnvoy, toy_descriptor: Path
) -> None:
    messages = load_messages(toy_descriptor)
    request_cls = messages.cls("embrec.retrieval.v1.RecommendRequest")
    with grpc.insecure_channel(f"127.0.0.1:{envoy.port}") as channel:
        call = channel.unary_unary(
            "/embrec.retrieval.v1.RetrievalInternalService/Reload",
            request_serializer=request_cls.SerializeToString,
        )
        with pytest.raises(grpc.RpcError) as error:
            call(request_cls(user_id="u1"), timeout=5)
    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
