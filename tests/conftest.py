"""Shared fixtures: real servers for the tests (see tests/support/servers.py).

Session fixtures (`postgres_url`, `redis_url`, `kafka_bootstrap`) reuse a server named
by EMBREC_TEST_POSTGRES_URL / EMBREC_TEST_REDIS_URL / EMBREC_TEST_KAFKA_BOOTSTRAP
(.ci/run starts them once) or start one for the whole session. Function fixtures
(`postgres_server`, `redis_server`, `kafka_broker`) give a test its own server that it
may stop and restart. A missing binary skips the test, or fails it when CI=true (the
same rule as tests/support/tools.skip_unless_ci, used for Envoy and Chromium).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.servers import (
    KafkaBroker,
    PostgresServer,
    RedisServer,
    ServerBinaryMissing,
)

S = TypeVar("S", PostgresServer, RedisServer, KafkaBroker)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Async tests run on the loop `embrec serve` and `embrec up` run on (uvloop where
    installed: services/runtime/loop.py), else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return {"asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}


def _launch(factory: Callable[[], S]) -> S:
    try:
        return factory().start()
    except ServerBinaryMissing as exc:
        # In CI a missing server is a broken machine, not a reason to skip tests.
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


def _shared(env_var: str, factory: Callable[[], S], attr: str) -> Iterator[str]:
    if url := os.environ.get(env_var):
        yield url
        return
    server = _launch(factory)
    try:
        yield str(getattr(server, attr))
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`postgresql+asyncpg://postgres@127.0.0.1:PORT/embrec`, shared by the session."""
    workdir = tmp_path_factory.mktemp("postgres")
    yield from _shared("EMBREC_TEST_POSTGRES_URL", lambda: PostgresServer(workdir), "url")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`redis://127.0.0.1:PORT/0`, shared by the session."""
    workdir = tmp_path_factory.mktemp("redis")
    yield from _shared("EMBREC_TEST_REDIS_URL", lambda: RedisServer(workdir), "url")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`127.0.0.1:PORT` of a Kafka-protocol broker, shared by the session."""
    workdir = tmp_path_factory.mktemp("kafka")
    yield from _shared("EMBREC_TEST_KAFKA_BOOTSTRAP", lambda: KafkaBroker(workdir), "bootstrap")


def _private(factory: Callable[[], S]) -> Iterator[S]:
    server = _launch(factory)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_server(tmp_path: Path) -> Iterator[PostgresServer]:
    """A started PostgreSQL of the test's own: stop()/start()/restart() keep its data."""
    yield from _private(lambda: PostgresServer(tmp_path / "postgres"))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started Redis of the test's own (no persistence: a restart starts empty)."""
    yield from _private(lambda: RedisServer(tmp_path / "redis"))


@pytest.fixture
def kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A started Tansu broker of the test's own (memory storage: a restart loses topics)."""
    yield from _private(lambda: KafkaBroker(tmp_path / "kafka"))
