"""The load tools users get: ghz configs that name real methods, and the in-repo generator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from embrec.retrieval.v1 import retrieval_service_pb2 as pb
from services.retrieval.loadgen import run_load
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
