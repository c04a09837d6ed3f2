"""Configuration: one Settings class, read from EMBREC_* variables and an optional file.

Nothing else in embrec reads ``os.environ``. Settings are validated once at start;
``load_settings`` turns a validation failure into one line that names the setting,
so ``embrec`` can exit with that line instead of a traceback.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = ["DEFAULT_AUTHZ_HTTP_PORT", "ConfigError", "Settings", "load_settings"]

ENV_PREFIX = "EMBREC_"
SERVICE_NAMES = ("tenant", "ingestion", "training", "retrieval", "audit")
#: The gateway's HTTP ext_authz listener, beside the gRPC services' 50051.
DEFAULT_AUTHZ_HTTP_PORT = 50052
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line naming it."""


class _TomlFileSource(PydanticBaseSettingsSource):
    """Values from the TOML file named by EMBREC_CONFIG_FILE (lowest priority but defaults)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data: dict[str, Any] = {}
        if path is not None:
            try:
                self._data = tomllib.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise ConfigError(f"config file {path} does not exist") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every knob of an embrec process. Defaults give the embedded, single-host mode."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    config_file: Path | None = Field(default=None, description="Optional TOML file of settings.")
    data_dir: Path = Field(default=Path("var"), description="Where embedded state lives.")

    # Storage and messaging.
    database_url: str = Field(
        default="",
        description="SQLAlchemy async URL; empty means SQLite in data_dir (embedded mode).",
    )
    event_bus: Literal["sql", "kafka"] = Field(
        default="sql", description="'sql' = embedded event log table, 'kafka' = Kafka brokers."
    )
    kafka_bootstrap: str = Field(default="", description="host:port[,host:port]; needed for kafka.")
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        le=300_000,
        description="Consumer group session timeout; a group join takes about half of it.",
    )
    outbox_retention_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How long published outbox rows are kept (unpublished ones until sent).",
    )
    event_log_retention_seconds: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="How long the embedded event log keeps events (Kafka's default: 7 days).",
    )
    processed_events_retention_seconds: float = Field(
        default=8 * 86400.0,
        gt=0,
        description="How long consumers remember applied event ids; keep it above the bus's "
        "retention, or a redelivered old event is applied twice.",
    )
    retention_interval_seconds: float = Field(
        default=600.0, gt=0, description="How often each process deletes what is past retention."
    )
    redis_url: str = Field(default="", description="redis://...; empty disables the Redis cache.")
    artifact_dir: Path | None = Field(
        default=None, description="Model artifacts; default data_dir/artifacts."
    )

    # Serving.
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    authz_http_port: int = Field(
        default=DEFAULT_AUTHZ_HTTP_PORT,
        ge=0,
        le=65535,
        description="Where a process hosting `gateway` answers Envoy's ext_authz checks "
        "over HTTP (on grpc_host; 0 = any free port).",
    )
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 disables /metrics.")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="Event loop of `embrec serve` and `embrec up`: uvloop where it is "
        "installed (auto; less CPU per gRPC call), or the standard asyncio loop.",
    )
    shutdown_grace_seconds: float = Field(default=10.0, ge=0)
    health_poll_seconds: float = Field(default=2.0, gt=0)
    usage_flush_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often each process writes its API usage counts (GetUsage lags by this).",
    )
    health_probe_timeout_seconds: float = Field(
        default=2.0, gt=0, description="A dependency slower than this counts as down."
    )
    health_targets: dict[str, str] = Field(
        default_factory=dict,
        description="Peer services probed by GET /health: name -> host:port (compose mode).",
    )
    gateway_admin_url: str = Field(
        default="",
        description="Envoy's admin address (http://host:port) whose /ready GET /health "
        "checks as the 'gateway' component; empty: not checked. `embrec up` sets it.",
    )

    # Retrieval (docs/retrieval-service.md).
    retrieval_cache_ttl_seconds: float = Field(
        default=300.0, gt=0, description="Lifetime of a cached recommendation response."
    )
    retrieval_local_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long a replica keeps an answer it read from Redis in its own "
        "memory (dropped at once by the user's new events, like Redis's copy). 0: off.",
    )
    retrieval_memory_cap_mb: int = Field(
        default=0,
        ge=0,
        description="Cap on loaded model indexes per process; the coldest tenants are "
        "evicted beyond it. 0 means no cap.",
    )
    retrieval_popular_only: bool = Field(
        default=False,
        description="Never load model indexes: answer with popular items (fallback=true). "
        "For a fallback responder behind the gateway (docs/retrieval-service.md).",
    )
    retrieval_catalog_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Age after which a tenant's catalog and popularity are re-read.",
    )

    # Gateway and console (embedded `embrec up`).
    envoy_port: int = Field(default=8080, ge=1, le=65535)
    envoy_admin_port: int = Field(default=9901, ge=1, le=65535)
    console_port: int = Field(default=8090, ge=1, le=65535)

    # Observability.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    tracing_exporter: Literal["none", "console", "otlp"] = "none"

    # Identity; never logged. Empty in the embedded mode: `embrec up` then keeps random
    # secrets in data_dir, so tokens survive a restart without any default in a file.
    jwt_secret: SecretStr | None = Field(
        default=None, description="HMAC key for access tokens; at least 32 characters."
    )
    internal_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key the gateway signs principal headers with; at least 32 characters.",
    )
    # Login throttling: after this many consecutive failures for one email, sign-in is
    # refused for the lockout period, doubling with every further failure (capped at 1 h).
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: float = Field(default=60.0, gt=0)

    # Training (issue #5). The embedded process runs a trainer worker in the training
    # module; compose runs `embrec worker` containers and turns it off in the services.
    training_worker_enabled: bool = Field(
        default=True, description="Run a trainer worker inside the process hosting training."
    )
    training_poll_seconds: float = Field(
        default=2.0, gt=0, description="How often an idle worker looks for queued jobs."
    )
    training_heartbeat_seconds: float = Field(
        default=5.0, gt=0, description="How often a busy worker renews its job's lease."
    )
    training_lease_seconds: float = Field(
        default=60.0, gt=0, description="A job whose heartbeat is older was lost with its worker."
    )
    training_max_attempts: int = Field(
        default=3, ge=1, description="Tries per job before a lost job is failed."
    )

    @field_validator("jwt_secret", "internal_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # Short HMAC keys can be brute-forced offline from a single token.
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {MIN_SECRET_LENGTH} characters")
        return value

    @field_validator("kafka_bootstrap")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file is named by an env variable, so read env first to find it.
        file_value = env_settings().get("config_file") or init_settings().get("config_file")
        path = Path(file_value) if file_value else None
        return (init_settings, env_settings, _TomlFileSource(settings_cls, path))

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'embrec.db').as_posix()}"

    @property
    def effective_artifact_dir(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def grpc_address(self) -> str:
        return f"{self.grpc_host}:{self.grpc_port}"

    def require_identity_secrets(self) -> tuple[str, str]:
        """(jwt_secret, internal_secret) for services that check credentials, or ConfigError.

        Only the embedded mode may run without them set: `embrec up` generates both once
        and keeps them in data_dir/secrets.json.
        """
        for name, value in (
            ("JWT_SECRET", self.jwt_secret),
            ("INTERNAL_SECRET", self.internal_secret),
        ):
            if value is None:
                raise ConfigError(
                    f"{ENV_PREFIX}{name} is required (at least {MIN_SECRET_LENGTH} random "
                    f"characters, e.g. `openssl rand -hex 32`)"
                )
        assert self.jwt_secret is not None and self.internal_secret is not None
        return self.jwt_secret.get_secret_value(), self.internal_secret.get_secret_value()

    def check_consistency(self) -> None:
        """Cross-field rules that a single field validator cannot express."""
        if self.event_bus == "kafka" and not self.kafka_bootstrap:
            raise ConfigError(
                f"{ENV_PREFIX}KAFKA_BOOTSTRAP is required when {ENV_PREFIX}EVENT_BUS=kafka"
            )


def load_settings(**overrides: Any) -> Settings:
    """Build and validate Settings; raise ConfigError with one readable line."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(p) for p in first["loc"]) or "?"
        raise ConfigError(f"invalid setting {ENV_PREFIX}{name.upper()}: {first['msg']}") from None
    settings.check_consistency()
    return settings
