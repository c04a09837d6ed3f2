"""The load tools users get: ghz configs that name real methods, and the in-repo generator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from services.cli import REPO_ROOT
from services.retrieval.bench import bench_serve
from services.retrieval.h2load import (
    h2load_available,
    parse_log,
    recommend_body,
    rest_body,
    run_h2load,
)
from services.retrieval.loadgen import LoadResult, run_load
from tests.retrieval_service.conftest import make_shop
from tests.services.conftest import StackFactory

LOAD_DIR = Path(__file__).resolve().parents[1] / "load"


def test_ghz_configs_call_real_methods_with_templated_users() -> None:
    configs = sorted(LOAD_DIR.glob("*.json"))
    assert configs
    for path in configs:
        config = json.loads(path.read_text())
        service, _, method = config["call"].rpartition(".")
        descriptor = pb.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]]
        assert method in descriptor.methods_by_name, path
        request = descriptor.methods_by_name[method].input_type
        assert set(config["data"]) <= set(request.fields_by_name), path
        assert "{{" in json.dumps(config["data"]), f"{path}: requests are not templated"
        assert config["insecure"] is True and "authorization" in config["metadata"]


async def test_load_generator_reports_what_it_did(stack_factory: StackFactory) -> None:
    stack = await stack_factory()
    shop = await make_shop(stack, n_items=50)
    token = dict(shop.metadata())["authorization"].removeprefix("Bearer ")
    result = await asyncio.to_thread(
        run_load,
        "grpc",
        "127.0.0.1",
        stack.runtime.port,
        token,
        concurrency=4,
        users=20,
        duration=1.0,
        processes=1,
    )
    assert result.errors == 0, result.first_error
    assert result.requests > 0
    assert result.fallbacks == result.requests  # no model deployed: popular items
    assert "req/s" in result.summary() and "p99" in result.summary()


needs_h2load = pytest.mark.skipif(not h2load_available(), reason="h2load (nghttp2-client) missing")


@needs_h2load
@pytest.mark.parametrize("rps", [0.0, 40.0])
async def test_h2load_generator_sends_real_recommend_calls(
    stack_factory: StackFactory, rps: float
) -> None:
    stack = await stack_factory()
    shop = await make_shop(stack, n_items=50)
    token = dict(shop.metadata())["authorization"].removeprefix("Bearer ")
    result = await asyncio.to_thread(
        run_h2load,
        "127.0.0.1",
        stack.runtime.port,
        token,
        ["user_a", "user_b"],
        concurrency=4,
        duration=1.0,
        rps=rps,
    )
    assert result.errors == 0, result.first_error
    assert result.requests > 0 and len(result.latencies) == result.requests
    assert result.elapsed > 0
    if rps:
        # Fixed rate: each client sends its share of duration x rate, then stops.
        assert result.requests == 40


def test_h2load_log_rows_count_failed_streams_and_http_errors() -> None:
    result = LoadResult("grpc")
    first, last = parse_log(
        "1000000\t200\t1500\n1000100\t-1\t0\n1000200\t503\t900\n1000300\t429\t100\nnot a row\n",
        result,
    )
    assert result.latencies == [0.0015]
    assert result.errors == 2 and "stream failed" in result.first_error
    # Over the plan's rate limit: counted, shown, and not an error.
    assert result.rate_limited == 1 and result.requests == 4
    assert "errors 2  fallbacks 0  rate-limited 1" in result.summary()
    result.elapsed = 1.0
    assert "rate-limited 1 (answered 3.0 req/s)" in result.summary()
    assert (first, last) == (1000000, 1001500)


def test_refusals_h2load_timed_as_answers_are_counted_once() -> None:
    """gRPC refusals (HTTP 200, grpc-status in the trailers) come back from h2load as
    answers; moving them to rate-limited must not count them twice nor time them."""
    result = LoadResult("grpc", latencies=[0.030, 0.0004, 0.025, 0.0003, 0.020])
    result.drop_fastest(2)  # two RESOURCE_EXHAUSTED local replies, per Envoy's log
    result.rate_limited += 2
    assert result.latencies == [0.020, 0.025, 0.030]
    assert result.requests == 5
    result.elapsed = 1.0
    assert "rate-limited 2 (answered 3.0 req/s)" in result.summary()


def test_refusals_over_the_plan_are_told_apart_from_errors_in_envoys_log() -> None:
    from services.retrieval.bench import _rate_limited

    path = "/embrec.retrieval.v1.RetrievalService/Recommend"
    assert _rate_limited(f"200 grpc-status 8 RL {path}")  # Envoy's local bucket
    assert _rate_limited(f"200 grpc-status 8 UAEX {path}")  # authz's global limit
    assert not _rate_limited(f"200 grpc-status 16 UAEX {path}")  # a credential refused
    assert not _rate_limited(f"200 grpc-status 14 UF {path}")  # an upstream failure


def test_grpc_frame_is_length_prefixed() -> None:
    framed = recommend_body("user_7", 5)
    message = pb.RecommendRequest.FromString(framed[5:])
    assert framed[0] == 0 and int.from_bytes(framed[1:5], "big") == len(framed) - 5
    assert (message.user_id, message.count) == ("user_7", 5)
    assert json.loads(rest_body("user_7", 5)) == {"user_id": "user_7", "count": 5}


@needs_h2load
def test_bench_serve_h2load_passes_through_envoy_without_errors() -> None:
    """The whole bench, tiny: real Envoy (with the error access log), authz, replicas."""
    figures = bench_serve(
        REPO_ROOT,
        items=300,
        users=200,
        concurrency=4,
        duration=1.0,
        replicas=1,
        protocols=("grpc", "rest"),
        loadgen="h2load",
        rate=40.0,
        h2load_users=2,
        out=lambda _line: None,
    )
    assert set(figures) == {"grpc-max", "rest-max", "grpc-rate", "rest-rate"}
    for name, figure in figures.items():
        assert figure["requests"] > 0, name
        assert figure["errors"] == 0 and figure["grpc_status_errors"] == 0, name
        assert figure["fallbacks"] == 0, name
        assert figure["cache_hit_rate"] > 0.5, name


@needs_h2load
async def test_grpc_errors_h2load_cannot_see_are_counted_from_envoys_error_log(
    stack_factory: StackFactory, tmp_path: Path
) -> None:
    """A gRPC error is HTTP 200 with grpc-status in the trailers: h2load counts it as a
    success, the bench's Envoy error log (non-OK gRPC statuses only) does not."""
    from services.embedded import EnvoyChild
    from services.retrieval.bench import _envoy_config, _log_lines
    from services.runtime.ports import free_ports

    stack = await stack_factory()
    shop = await make_shop(stack, n_items=50)
    token = dict(shop.metadata())["authorization"].removeprefix("Bearer ")
    port = stack.runtime.port
    listen, admin = free_ports(2)
    config, error_log = tmp_path / "envoy.yaml", tmp_path / "errors.log"
    # No ext_authz: the service itself judges the credential.
    _envoy_config(REPO_ROOT, config, listen, admin, port, [port], authz=False, error_log=error_log)
    envoy = EnvoyChild(config, admin, tmp_path / "envoy.log")
    await envoy.start()
    try:
        good = await asyncio.to_thread(
            run_h2load, "127.0.0.1", listen, token, ["user_a"], concurrency=2, duration=1.0
        )
        assert good.errors == 0 and good.requests > 0, good.first_error
        logged_after_good = len(_log_lines(error_log))
        bad = await asyncio.to_thread(
            run_h2load, "127.0.0.1", listen, "not-a-token", ["user_a"], concurrency=2, duration=1.0
        )
    finally:
        envoy.stop()
    assert bad.latencies and bad.errors == 0  # HTTP 200 every time: h2load sees no error
    refused = [line for line in _log_lines(error_log)[logged_after_good:] if "DC" not in line]
    assert len(refused) >= len(bad.latencies)  # every refusal was logged by Envoy
    assert all(line.split()[:3] == ["200", "grpc-status", "16"] for line in refused)
