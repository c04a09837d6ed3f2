"""The retriever stopped behind Envoy: the generated gateway config serves popular items.

``GatewaySettings.retrieval_fallback_upstream`` points the gateway at a popular-only
responder (this service with ``retrieval_popular_only``): ``retrieval`` is then an
aggregate cluster [replicas, responder], the replicas have outlier detection and the
retrieval routes retry. Nothing here amends the generated config.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from embrec.retrieval.v1 import retrieval_service_pb2 as retrieval_pb
from embrec.retrieval.v1 import retrieval_service_pb2_grpc as retrieval_grpc
from gateway.envoy_config import GatewaySettings, build_config
from tests.retrieval_service.conftest import make_shop
from tests.services.conftest import REPO_ROOT, StackFactory
from tests.support.servers import EnvoyProcess, free_port

# Requests allowed to fail between the stop and the first fallback answer. With the
# gateway's 5 s health-check interval the replica would look healthy for up to 10 s
# (about 50 failed calls at this test's pace) if only the health check noticed; outlier
# detection and the retries made it 0 in every run measured; 3 leaves room for a
# loaded CI machine.
MAX_FAILED_IN_TRANSITION = 3


async def test_stopped_retriever_falls_back_to_popular_items(
    stack_factory: StackFactory, tmp_path: Path
) -> None:
    primary = await stack_factory()
    responder = await stack_factory(
        database_url=primary.runtime.settings.effective_database_url,
        retrieval_popular_only=True,
    )
    shop = await make_shop(primary)
    await shop.interactions("x", [shop.item_ids[6]] * 3)
    await shop.train(1)
    await shop.deploy([("v1", 100)])
    await shop.wait_for_version("u1", "v1")
    # A responder reads a tenant's deployment on its first request for it (in the
    # background; until then it says NO_MODEL): let it do so before the primary goes.
    fallback = retrieval_grpc.RetrievalServiceStub(responder.channel)
    deadline = asyncio.get_running_loop().time() + 10
    while (
        await fallback.Recommend(
            retrieval_pb.RecommendRequest(user_id="u1", count=3), metadata=shop.metadata()
        )
    ).fallback_reason != retrieval_pb.FALLBACK_REASON_INDEX_UNAVAILABLE:
        assert asyncio.get_running_loop().time() < deadline, "the responder never read the route"
        await asyncio.sleep(0.1)

    listen, admin = free_port(), free_port()
    # The gateway's own health-check interval (5 s), so the transition below measures
    # outlier detection and retries, not a fast health check.
    settings = GatewaySettings(
        descriptor_path=(REPO_ROOT / "envoy" / "embrec.pb").resolve(),
        listen_port=listen,
        admin_port=admin,
        default_upstream=("127.0.0.1", primary.runtime.port),
        retrieval_fallback_upstream=("127.0.0.1", responder.runtime.port),
    )
    config = tmp_path / "envoy.yaml"
    config.write_text(yaml.safe_dump(build_config(settings)))
    envoy = EnvoyProcess(config, admin, workdir=tmp_path / "envoy")
    await asyncio.to_thread(envoy.start)
    token = dict(shop.metadata())["authorization"]

    def call() -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{listen}/api/v1/recommendations",
            data=json.dumps({"user_id": "u1", "count": 3}).encode(),
            headers={"content-type": "application/json", "authorization": token},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, {"error": exc.read().decode()[:200]}
        except (urllib.error.URLError, TimeoutError) as exc:  # no answer at all
            return 0, {"error": str(exc)}

    try:
        for _ in range(3):
            status, body = await asyncio.to_thread(call)
            assert status == 200, body
            assert body["fallback"] is False and body["model_version"] == "v1"

        await primary.runtime.stop()  # the retriever (and everything with it) is gone
        deadline = asyncio.get_running_loop().time() + 15
        failed_in_transition = 0
        while (status := (await asyncio.to_thread(call))[0]) != 200:
            failed_in_transition += 1
            assert asyncio.get_running_loop().time() < deadline, "never fell back"
            await asyncio.sleep(0.2)
        assert failed_in_transition <= MAX_FAILED_IN_TRANSITION
        for _ in range(10):
            status, body = await asyncio.to_thread(call)
            assert status == 200, body
            assert body["fallback"] is True
            assert body["fallback_reason"] == "FALLBACK_REASON_INDEX_UNAVAILABLE"
            assert body["items"][0]["item_id"] == shop.item_ids[6]
    finally:
        await asyncio.to_thread(envoy.close)
