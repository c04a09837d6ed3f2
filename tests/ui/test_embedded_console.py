"""`embrec up` serves the console on its own port, prints the address, and stops it."""

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


def test_up_serves_the_console_and_stops_it_on_ctrl_c(tmp_path: Path) -> None:
    console_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
        "EMBREC_DATA_DIR": str(tmp_path / "var"),
        "EMBREC_ENVOY_PORT": str(free_port()),
        "EMBREC_ENVOY_ADMIN_PORT": str(free_port()),
        "EMBREC_GRPC_PORT": str(free_port()),
        "EMBREC_AUTHZ_HTTP_PORT": "0",
        "EMBREC_CONSOLE_PORT": str(console_port),
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
    console = f"http://127.0.0.1:{console_port}"
    try:
        deadline = time.monotonic() + 90
        page = None
        while time.monotonic() < deadline:
            try:
                reply = httpx.get(f"{console}/login", timeout=2)
                if reply.status_code == 200:
                    page = reply.text
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "embrec up exited early"
            time.sleep(0.3)
        assert page is not None, "the console did not answer"
        assert "embrec" in page

        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=40)
        assert process.returncode == 0, output
        assert f"console   {console}" in output  # the banner names it
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{console}/login", timeout=1)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
