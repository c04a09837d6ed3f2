"""The real-server launchers in tests/support really start, stop and restart servers."""

from __future__ import annotations

import socket
import textwrap
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from services.runtime.ports import free_ports
from tests.support import servers
from tests.support.servers import (
    EnvoyConfigError,
    EnvoyProcess,
    KafkaBroker,
    PostgresServer,
    RedisServer,
    ServerStartError,
    free_port,
    start_envoy,
    validate_envoy_config,
)

pytestmark = pytest.mark.integration


def _raw_dsn(url: str) -> str:
    # SQLAlchemy's driver suffix means nothing to asyncpg itself.
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


# ---------------------------------------------------------------- PostgreSQL


async def test_postgres_session_url_accepts_queries(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+asyncpg://")
    conn = await asyncpg.connect(_raw_dsn(postgres_url))
    try:
        assert await conn.fetchval("SELECT current_database()") == "embrec"
    finally:
        await conn.close()


async def test_postgres_stop_refuses_and_restart_keeps_data(
    postgres_server: PostgresServer,
) -> None:
    dsn = _raw_dsn(postgres_server.url)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE t (v text)")
        await conn.execute("INSERT INTO t VALUES ('kept')")
    finally:
        await conn.close()
    port = postgres_server.port

    postgres_server.stop()
    assert not postgres_server.running
    with pytest.raises(OSError):
        await asyncpg.connect(dsn, timeout=5)

    postgres_server.start()
    assert postgres_server.port == port
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT v FROM t") == "kept"
    finally:
        await conn.close()


# ---------------------------------------------------------------- Redis


async def test_redis_set_get(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    try:
        await client.set("embrec:test", "v")
        assert await client.get("embrec:test") == b"v"
    finally:
        await client.aclose()


async def test_redis_restart_on_same_port(redis_server: RedisServer) -> None:
    port = redis_server.port
    redis_server.restart()
    assert redis_server.port == port
    client = aioredis.from_url(redis_server.url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    # Hold the port so the server cannot bind it; a fixed port is not retried.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = RedisServer(tmp_path, port=port)
        with pytest.raises(ServerStartError, match=r"(?i)address already in use"):
            server.start()
        server.close()


# ---------------------------------------------------------------- Kafka protocol


def _roundtrip(bootstrap: str) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1)]).values():
        future.result(timeout=10)

    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(10) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            # Group join takes about half the session timeout (FACTS): keep it short.
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    try:
        consumer.subscribe([topic])
        msg = None
        for _ in range(30):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None
        assert (msg.key(), msg.value()) == (b"k", b"hello")
    finally:
        consumer.close()


def test_kafka_produce_consume(kafka_bootstrap: str) -> None:
    _roundtrip(kafka_bootstrap)


def test_kafka_broker_restart_on_same_port(kafka_broker: KafkaBroker) -> None:
    _roundtrip(kafka_broker.bootstrap)
    port = kafka_broker.port
    kafka_broker.restart()
    assert kafka_broker.port == port
    _roundtrip(kafka_broker.bootstrap)


# ---------------------------------------------------------------- Envoy


_HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def _envoy_config(admin_port: int, listener_port: int) -> str:
    return textwrap.dedent(
        f"""\
        admin:
          address:
            socket_address: {{address: 127.0.0.1, port_value: {admin_port}}}
        static_resources:
          listeners:
          - name: main
            address:
              socket_address: {{address: 127.0.0.1, port_value: {listener_port}}}
            filter_chains:
            - filters:
              - name: envoy.filters.network.http_connection_manager
                typed_config:
                  "@type": type.googleapis.com/{_HCM}
                  stat_prefix: main
                  codec_type: AUTO
                  route_config:
                    virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                      - match: {{prefix: "/"}}
                        direct_response:
                          status: 200
                          body: {{inline_string: "hello from envoy"}}
                  http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
        """
    )


def test_envoy_validates_and_serves(tmp_path: Path) -> None:
    admin_port, listener_port = free_port(), free_port()
    config = tmp_path / "envoy.yaml"
    config.write_text(_envoy_config(admin_port, listener_port))
    validate_envoy_config(config)

    with EnvoyProcess(config, admin_port, workdir=tmp_path) as envoy:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{listener_port}/anything", timeout=5) as resp:
            assert resp.status == 200
            assert resp.read() == b"hello from envoy"
        envoy.restart()
        with opener.open(f"http://127.0.0.1:{listener_port}/", timeout=5) as resp:
            assert resp.status == 200


def test_start_envoy_picks_other_ports_when_one_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first listener port handed out is already bound, as when an outgoing
    # connection's ephemeral port takes it between free_port() and Envoy's bind.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        picks = [[taken.getsockname()[1], free_port()]]
        monkeypatch.setattr(
            servers, "free_ports", lambda n: picks.pop(0) if picks else free_ports(n)
        )
        configs: list[int] = []

        def configure(listen: int, admin: int) -> Path:
            configs.append(listen)
            path = tmp_path / f"envoy-{len(configs)}.yaml"
            path.write_text(_envoy_config(admin, listen))
            return path

        envoy, listen = start_envoy(configure, tmp_path)
        try:
            assert configs[0] == taken.getsockname()[1]
            assert len(configs) == 2 and listen == configs[1]
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{listen}/", timeout=5) as resp:
                assert resp.read() == b"hello from envoy"
        finally:
            envoy.close()


def test_start_envoy_never_gives_listener_and_admin_one_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closed probe socket's port can come straight back from the next probe: were the
    # two ports probed one at a time, they would be this one port.
    same = free_port()
    monkeypatch.setattr(servers, "free_port", lambda: same)
    used: list[tuple[int, int]] = []

    def configure(listen: int, admin: int) -> Path:
        used.append((listen, admin))
        path = tmp_path / f"envoy-{len(used)}.yaml"
        path.write_text(_envoy_config(admin, listen))
        return path

    envoy, listen = start_envoy(configure, tmp_path)
    try:
        assert len(used) == 1 and used[0][0] != used[0][1] and listen == used[0][0]
    finally:
        envoy.close()


def test_only_the_latest_start_decides_whether_a_port_was_taken(tmp_path: Path) -> None:
    log = tmp_path / "envoy.log"
    start = "=== embrec test support: starting envoy on port 1"
    log.write_text(f"{start}\ncannot bind: Address already in use\n{start}\nbad config\n")
    assert not servers.port_was_taken(log)  # a retry would not help this one
    log.write_text(f"{start}\nbad config\n{start}\ncannot bind: Address already in use\n")
    assert servers.port_was_taken(log)
    assert not servers.port_was_taken(tmp_path / "missing.log")


def test_envoy_validate_rejects_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("static_resources:\n  listeners:\n  - name: x\n    bogus_field: 1\n")
    with pytest.raises(EnvoyConfigError, match="bogus_field"):
        validate_envoy_config(config)
