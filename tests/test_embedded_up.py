"""README command 1: `embrec up` starts everything, answers /health, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

pytestmark = pytest.mark.integration


def _processes_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and Path(cmdline[0].decode(errors="replace")).name == name:
            pids.append(int(entry.name))
    return pids


def test_up_serves_health_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    envoy_port, admin_port, grpc_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "EMBREC_DATA_DIR": str(tmp_path / "var"),
        "EMBREC_ENVOY_PORT": str(envoy_port),
        "EMBREC_ENVOY_ADMIN_PORT": str(admin_port),
        "EMBREC_GRPC_PORT": str(grpc_port),
        "EMBREC_AUTHZ_HTTP_PORT": "0",
        "EMBREC_METRICS_PORT": "0",
        "EMBREC_LOG_FORMAT": "text",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from services.cli import main; main()", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline:
            try:
                reply = httpx.get(f"http://127.0.0.1:{envoy_port}/health", timeout=2)
                if reply.status_code == 200:
                    body = reply.json()
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "embrec up exited early"
            time.sleep(0.3)
        assert body == {"status": "healthy"}
        config = str((tmp_path / "var" / "envoy.yaml").resolve())
        # Envoy runs in its own process session; find it by this run's config path.
        envoys = [pid for pid in _processes_named("envoy") if _has_arg(pid, config)]
        assert len(envoys) == 1, "exactly one Envoy runs for this stack"

        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "Traceback" not in output
        assert "stopped" in output
        time.sleep(0.5)
        assert not [pid for pid in envoys if Path(f"/proc/{pid}").exists() and _alive(pid)]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{envoy_port}/health", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _has_arg(pid: int, arg: str) -> bool:
    try:
        return arg.encode() in (Path(f"/proc/{pid}/cmdline")).read_bytes().split(b"\0")
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"
