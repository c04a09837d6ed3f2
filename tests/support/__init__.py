"""Test support: launchers for real servers (PostgreSQL, Redis, a Kafka-protocol broker, Envoy)."""

from tests.support.servers import (
    EnvoyConfigError,
    EnvoyProcess,
    KafkaBroker,
    PostgresServer,
    RedisServer,
    ServerBinaryMissing,
    ServerStartError,
    free_port,
    validate_envoy_config,
)

__all__ = [
    "EnvoyConfigError",
    "EnvoyProcess",
    "KafkaBroker",
    "PostgresServer",
    "RedisServer",
    "ServerBinaryMissing",
    "ServerStartError",
    "free_port",
    "validate_envoy_config",
]
