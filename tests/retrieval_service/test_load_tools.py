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


def test_h2load_log_rows_count_failed_streams_and_http_errors() -> None:
    result = LoadResult("grpc")
    first, last = parse_log(
        "1000000\t200\t1500\n1000100\t-1\t0\n1000200\t503\t900\nnot a row\n", result
    )
    assert result.latencies == [0.0015]
    assert result.errors == 2 and "stream failed" in result.first_error
    assert (first, last) == (1000000, 1001500)


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
