"""README's main job: `embrec demo` end to end, as a user runs it (issue #6).

One stack for the whole module, started by the demo itself (`--keep-running`), then
used again as an already running stack: a wrong admin password fails as one clear
line, and a second demo with the right one runs beside the first tenant. The printed
curl is executed (with httpx) against the live gateway.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_CLI = [sys.executable, "-c", "from services.cli import main; main()", "demo"]


def _env(tmp_path: Path, envoy_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "EMBREC_DATA_DIR": str(tmp_path / "var"),
        "EMBREC_ENVOY_PORT": str(envoy_port),
        "EMBREC_ENVOY_ADMIN_PORT": str(free_port()),
        "EMBREC_GRPC_PORT": str(free_port()),
        "EMBREC_AUTHZ_HTTP_PORT": "0",
        "EMBREC_CONSOLE_PORT": str(free_port()),
        "EMBREC_METRICS_PORT": "0",
        "EMBREC_LOG_FORMAT": "text",
    }


def _run(args: list[str], env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_CLI, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )


def _section(output: str, start: str, end: str) -> str:
    return output.split(start, 1)[1].split(end, 1)[0]


def _headed_blocks(section: str) -> dict[str, tuple[str, list[list[str]]]]:
    """`  user_1  (...)  — model v1` headings → (served-by text, item rows)."""
    blocks: dict[str, tuple[str, list[list[str]]]] = {}
    current = ""
    for line in section.splitlines():
        heading = re.match(r"^  (\S.*?)\s+— (.*)$", line)
        if heading:
            current = heading.group(1).split()[0]
            blocks[current] = (heading.group(2), [])
        elif re.match(r"^\s+\d+\. ", line) and current:
            blocks[current][1].append(line.split())
    return blocks


def _curl_request(output: str) -> tuple[str, dict[str, str], str]:
    lines = output[output.index("curl -s -X POST") :].splitlines()
    command = []
    for line in lines:
        command.append(line.rstrip("\\").strip())
        if not line.endswith("\\"):
            break
    argv = shlex.split(" ".join(command))
    url = argv[argv.index("POST") + 1]
    headers = dict(argv[i + 1].split(": ", 1) for i, arg in enumerate(argv) if arg == "-H")
    return url, headers, argv[argv.index("-d") + 1]


def _stop(pid: int) -> None:
    """Stop the stack the demo left running, and wait until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)


def test_demo_runs_end_to_end_and_its_curl_works(tmp_path: Path) -> None:
    envoy_port = free_port()
    gateway = f"http://127.0.0.1:{envoy_port}"
    env = _env(tmp_path, envoy_port)
    first = _run(["--small", "--keep-running"], env)
    output = first.stdout
    pid_match = re.search(r"stop it with: kill (\d+)", output)
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Traceback" not in output + first.stderr
        assert f"no stack at {gateway}: starting `embrec up`" in output
        assert "admin@embrec.local (this stack's first platform admin" in output
        assert re.search(r"interactions\.csv: 15,000 rows → 14,\d{3} accepted, 0 rejected", output)
        assert "succeeded" in output
        version = re.search(r"model (v\d+): NDCG@10", output)
        assert version is not None
        model = version.group(1)

        # Known users: the model's ranking, not a fallback, and nothing they already saw.
        known = _headed_blocks(_section(output, "Recommendations (", "Filtered:"))
        assert "user_123" in known and len(known) == 3
        for served_by, rows in known.values():
            assert served_by == f"model {model}"
            assert len(rows) == 5

        # The category filter is exact.
        filtered = _headed_blocks(_section(output, "Filtered:", "A brand-new user"))
        assert set(filtered) == set(known)
        for served_by, rows in filtered.values():
            assert served_by == f"model {model}"
            assert [row[-3] for row in rows] == ["smartphones"] * 5

        # A brand-new visitor: popular items, then fold-in from what they just viewed.
        new_user = _section(output, "A brand-new user", "Reproduce")
        assert "with no history  — popular items (fallback: UNKNOWN_USER)" in new_user
        assert f"— model {model}, fold-in from recent_item_ids" in new_user
        assert len(re.findall(r"^\s+\d+\. item_", new_user, re.MULTILINE)) == 10

        # The printed curl works as printed (a website key that can only recommend).
        url, headers, body = _curl_request(output)
        assert url == f"{gateway}/api/v1/recommendations"
        assert headers["Authorization"].startswith("Bearer emb_live_")
        reply = httpx.post(url, headers=headers, content=body, timeout=30)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["fallback"] is False
        assert answer["model_version"] == model
        assert len(answer["items"]) == 5
        assert {item["category"] for item in answer["items"]} == {"smartphones"}
        # Least privilege: the same key cannot upload data.
        upload = httpx.post(
            f"{gateway}/api/v1/uploads/items:csv",
            headers={**headers, "Content-Type": "text/csv"},
            content=b"item_id,title\nx,y\n",
            timeout=30,
        )
        assert upload.status_code == 403

        # The stack is still up, and `--keep-running` printed how to reach it.
        assert pid_match is not None
        assert httpx.get(f"{gateway}/health", timeout=10).status_code == 200
        password = re.search(r"admin\s+admin@embrec\.local\s+password (\S+)", output)
        assert password is not None

        # Against a running stack: a wrong password is one clear line, no traceback.
        wrong = _run(["--admin-password-stdin", "--small"], env, stdin="not-the-password\n")
        assert wrong.returncode == 1
        assert "Traceback" not in wrong.stdout + wrong.stderr
        assert "embrec demo: signing in as platform admin failed:" in wrong.stderr
        assert "HTTP 401" in wrong.stderr
        assert "using the running stack" in wrong.stdout

        # And with the right one, a second tenant goes through the same stack (tiny data,
        # to keep the test short), leaving the stack running: it is not the demo's.
        second = _run(
            [
                *("--admin-password-stdin", "--users", "300"),
                *("--items", "120", "--interactions", "4000"),
            ],
            env,
            stdin=password.group(1) + "\n",
        )
        assert second.returncode == 0, second.stdout + second.stderr
        assert "signed in as admin@embrec.local (as given)" in second.stdout
        assert "Stopping the stack" not in second.stdout
        assert httpx.get(f"{gateway}/health", timeout=10).status_code == 200
        tenants = {m for m in re.findall(r"tenant\s+(demo-[0-9a-f]{6})", output + second.stdout)}
        assert len(tenants) == 2
    finally:
        if pid_match is not None:
            _stop(int(pid_match.group(1)))
