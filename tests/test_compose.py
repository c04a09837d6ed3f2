"""The compose stack is written, not run here (no Docker engine): check what can be."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.cli import _parse_services
from tests.support.servers import validate_envoy_config

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose"


def _compose() -> dict[str, dict[str, object]]:
    data = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    services: dict[str, dict[str, object]] = data["services"]
    return services


def test_every_embrec_command_is_valid() -> None:
    hosted: list[str] = []
    for name, service in _compose().items():
        command = service.get("command")
        if isinstance(command, list) and command[:2] == ["embrec", "serve"]:
            services = command[command.index("--services") + 1]
            hosted += _parse_services(str(services))  # raises on an unknown name
            assert service.get("depends_on"), f"{name} must wait for its migrations"
    # retrieval twice: the replicas and the popular-only fallback responder.
    assert sorted(hosted) == sorted(
        ["tenant", "ingestion", "training", "retrieval", "retrieval", "audit", "gateway"]
    )


def test_retrieval_fallback_responder_is_popular_only_and_behind_envoy() -> None:
    services = _compose()
    fallback = services["retrieval-fallback"]
    assert fallback["command"] == ["embrec", "serve", "--services", "retrieval"]
    environment = fallback["environment"]
    assert isinstance(environment, dict)
    assert environment["EMBREC_RETRIEVAL_POPULAR_ONLY"] == "true"
    # The merge key keeps the shared settings (database, Redis, secrets).
    assert "EMBREC_DATABASE_URL" in environment
    replicas_environment = services["retrieval"].get("environment", {})
    assert isinstance(replicas_environment, dict)
    assert "EMBREC_RETRIEVAL_POPULAR_ONLY" not in replicas_environment
    envoy = yaml.safe_load((COMPOSE / "envoy.compose.yaml").read_text())
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    members = clusters["retrieval"]["cluster_type"]["typed_config"]["clusters"]
    assert members == ["retrieval-replicas", "retrieval-fallback"]
    endpoint = clusters["retrieval-fallback"]["load_assignment"]["endpoints"][0]
    address = endpoint["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address == {"address": "retrieval-fallback", "port_value": 50051}


def test_envoy_clusters_name_compose_services() -> None:
    services = set(_compose())
    config = (COMPOSE / "envoy.compose.yaml").read_text()
    for address in re.findall(r"address: ([a-z][a-z0-9_-]*)\n", config):
        assert address in services, f"Envoy points at {address!r}, which compose lacks"


def test_compose_envoy_config_validates(tmp_path: Path) -> None:
    # In the image the descriptor sits at /app/envoy; point at this checkout's copy.
    config = (COMPOSE / "envoy.compose.yaml").read_text()
    local = config.replace("/app/envoy/embrec.pb", str(ROOT / "envoy" / "embrec.pb"))
    assert local != config
    path = tmp_path / "envoy.yaml"
    path.write_text(local)
    validate_envoy_config(path)
