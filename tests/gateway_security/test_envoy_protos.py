"""gateway/_gen speaks Envoy's wire format, and is what gateway/protogen.py makes."""

from __future__ import annotations

import warnings
from pathlib import Path

from gateway._gen import envoy_authz_pb2, envoy_ratelimit_pb2
from gateway.protogen import generate

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from envoy_data_plane.envoy.service.auth import v3 as auth
    from envoy_data_plane.envoy.service.ratelimit import v3 as rls

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_match_the_protos(tmp_path: Path) -> None:
    for fresh in generate(tmp_path):
        committed = REPO_ROOT / fresh.relative_to(tmp_path)
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed} is stale"


def test_check_request_from_envoy_parses() -> None:
    envoy = auth.CheckRequest.from_dict(
        {
            "attributes": {
                "source": {"address": {"socket_address": {"address": "10.1.2.3", "port_value": 5}}},
                "request": {
                    "http": {
                        "method": "POST",
                        "path": "/api/v1/x?y=1",
                        "headers": {"authorization": "Bearer t"},
                        "raw_body": "e30=",
                    }
                },
            }
        }
    )
    ours = envoy_authz_pb2.CheckRequest.FromString(bytes(envoy))
    http = ours.attributes.request.http
    assert (http.method, http.path, dict(http.headers)) == (
        "POST",
        "/api/v1/x?y=1",
        {"authorization": "Bearer t"},
    )
    assert http.raw_body == b"{}"
    assert ours.attributes.source.address.socket_address.address == "10.1.2.3"


def test_check_response_reads_as_envoy_expects() -> None:
    ours = envoy_authz_pb2.CheckResponse(
        denied_response=envoy_authz_pb2.DeniedHttpResponse(
            status=envoy_authz_pb2.HttpStatus(code=403),
            headers=[
                envoy_authz_pb2.HeaderValueOption(
                    header=envoy_authz_pb2.HeaderValue(key="k", value="v"),
                    append_action=envoy_authz_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                )
            ],
            body="no",
        )
    )
    envoy = auth.CheckResponse.parse(ours.SerializeToString())
    assert envoy.denied_response.status.code == 403
    assert envoy.denied_response.headers[0].header.key == "k"
    assert envoy.denied_response.headers[0].append_action.value == 2
    ok = envoy_authz_pb2.CheckResponse(
        ok_response=envoy_authz_pb2.OkHttpResponse(headers_to_remove=["x-tenant-id"])
    )
    assert auth.CheckResponse.parse(ok.SerializeToString()).ok_response.headers_to_remove == [
        "x-tenant-id"
    ]


def test_rate_limit_messages_round_trip() -> None:
    envoy = rls.RateLimitRequest.from_dict(
        {
            "domain": "embrec",
            "hits_addend": 1,
            "descriptors": [
                {"entries": [{"key": "tenant", "value": "t1"}, {"key": "limit", "value": "20"}]}
            ],
        }
    )
    ours = envoy_ratelimit_pb2.RateLimitRequest.FromString(bytes(envoy))
    assert [(e.key, e.value) for e in ours.descriptors[0].entries] == [
        ("tenant", "t1"),
        ("limit", "20"),
    ]
    reply = envoy_ratelimit_pb2.RateLimitResponse(
        overall_code=envoy_ratelimit_pb2.RateLimitResponse.OVER_LIMIT,
        response_headers_to_add=[envoy_ratelimit_pb2.HeaderValue(key="retry-after", value="1")],
    )
    parsed = rls.RateLimitResponse.parse(reply.SerializeToString())
    assert parsed.overall_code.value == 2
    assert parsed.response_headers_to_add[0].key == "retry-after"
