"""Settings: defaults for the embedded mode, one readable line for a bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.config import ConfigError, load_settings


def test_defaults_are_the_embedded_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBREC_DATABASE_URL", raising=False)
    settings = load_settings(data_dir=Path("/tmp/x"))
    assert settings.effective_database_url == "sqlite+aiosqlite:////tmp/x/embrec.db"
    assert settings.event_bus == "sql"
    assert settings.effective_artifact_dir == Path("/tmp/x/artifacts")


def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBREC_GRPC_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="EMBREC_GRPC_PORT"):
        load_settings()


def test_kafka_needs_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBREC_EVENT_BUS", "kafka")
    monkeypatch.delenv("EMBREC_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(ConfigError, match="EMBREC_KAFKA_BOOTSTRAP"):
        load_settings()


def test_config_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "embrec.toml"
    config.write_text('grpc_port = 6000\nlog_level = "DEBUG"\n')
    monkeypatch.setenv("EMBREC_CONFIG_FILE", str(config))
    monkeypatch.setenv("EMBREC_LOG_LEVEL", "WARNING")
    settings = load_settings()
    assert settings.grpc_port == 6000
    assert settings.log_level == "WARNING"


def test_missing_config_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMBREC_CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def _embrec(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from services.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_bad_config_exits_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "EMBREC_GRPC_PORT": "99999", "EMBREC_DATA_DIR": str(tmp_path)}
    result = _embrec("serve", "--services", "tenant", env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and "EMBREC_GRPC_PORT" in lines[0]


def test_cli_unknown_service_is_a_usage_error(tmp_path: Path) -> None:
    result = _embrec("serve", "--services", "tenant,bogus", env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "bogus" in result.stderr and "Traceback" not in result.stderr
