"""The retriever stopped behind Envoy: the proposed gateway set-up serves popular items.

The committed gateway config does not have this yet (docs/retrieval-service.md, "Retriever
down behind the gateway"): here the generated config is amended the proposed way — an
aggregate cluster [replicas, popular-only responder] and a retry policy — to show the
design works with real Envoy and this service's ``retrieval_popular_only`` mode.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from gateway.envoy_config import GatewaySettings, build_config
from tests.retrieval_service.conftest import make_shop
from tests.services.conftest import REPO_ROOT, StackFactory
from tests.support.servers import EnvoyProcess, free_port


def amended_config(path: Path, listen: int, admin: int, primary: int, fallback: int) -> None:
    settings = GatewaySettings(
        descriptor_path=(REPO_ROOT / "envoy" / "embrec.pb").resolve(),
        listen_port=listen,
        admin_port=admin,
        default_upstream=("127.0.0.1", primary),
        health_check_interval=timedelta(milliseconds=500),
    )
    config: dict[str, Any] = build_config(settings)
    clusters = config["static_resources"]["clusters"]
    replicas = next(c for c in clusters if c["name"] == "retrieval")
    replicas["name"] = "retrieval-replicas"
    replicas["load_assignment"]["cluster_name"] = "retrieval-replicas"
    responder = yaml.safe_load(yaml.safe_dump(replicas))
    responder["name"] = responder["load_assignment"]["cluster_name"] = "retrieval-fallback"
    address = responder["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    address["address"]["socket_address"]["port_value"] = fallback
    clusters += [
        responder,
        {
            "name": "retrieval",
            "connect_timeout": "1s",
            "lb_policy": "CLUSTER_PROVIDED",
            "cluster_type": {
                "name": "envoy.clusters.aggregate",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.clusters.aggregate.v3."
                    "ClusterConfig",
                    "clusters": ["retrieval-replicas", "retrieval-fallback"],
                },
            },
        },
    ]
    listener = config["static_resources"]["listeners"][0]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    for host in manager["route_config"]["virtual_hosts"]:
        for route in host["routes"]:
            action = route.get("route")
            if action and action.get("cluster") == "retrieval":
                action["retry_policy"] = {
                    "retry_on": "connect-failure,refused-stream,reset,unavailable",
                    "num_retries": 2,
                    "retry_host_predicate": [
                        {
                            "name": "envoy.retry_host_predicates.previous_hosts",
                            "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.retry.host."
                                "previous_hosts.v3.PreviousHostsPredicate"
                            },
                        }
                    ],
                }
    path.write_text(yaml.safe_dump(config))


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

    listen, admin = free_port(), free_port()
    config = tmp_path / "envoy.yaml"
    amended_config(config, listen, admin, primary.runtime.port, responder.runtime.port)
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

    try:
        status, body = await asyncio.to_thread(call)
        assert status == 200 and body["fallback"] is False and body["model_version"] == "v1"

        await primary.runtime.stop()  # the retriever (and everything with it) is gone
        # Until Envoy's health check marks the replica down (2 × 0.5 s here), a request
        # can still fail: retries alone do not reach the fallback cluster of an
        # aggregate while the primary looks healthy.
        deadline = asyncio.get_running_loop().time() + 10
        failed_in_transition = 0
        while (status := (await asyncio.to_thread(call))[0]) != 200:
            failed_in_transition += 1
            assert asyncio.get_running_loop().time() < deadline, "never fell back"
            await asyncio.sleep(0.2)
        assert failed_in_transition <= 10
        for _ in range(10):
            status, body = await asyncio.to_thread(call)
            assert status == 200, body
            assert body["fallback"] is True
            assert body["fallback_reason"] == "FALLBACK_REASON_INDEX_UNAVAILABLE"
            assert body["items"][0]["item_id"] == shop.item_ids[6]
    finally:
        await asyncio.to_thread(envoy.close)
