"""Start PostgreSQL, Redis and a Kafka-protocol broker ONCE for a whole CI run.

    python -m tests.support.ci_servers start --env-file /tmp/embrec-ci.env
    . /tmp/embrec-ci.env        # exports EMBREC_TEST_* and EMBREC_CI_SERVERS_STATE
    python -m tests.support.ci_servers stop --env-file /tmp/embrec-ci.env

`start` leaves the servers running (detached, in their own sessions) after it exits and
records their pids and files in a state file; the test session's fixtures then reuse
them through the EMBREC_TEST_* variables instead of starting their own. `stop` stops
them (gently, then SIGKILL) and removes their files; it is safe to run twice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.servers import KafkaBroker, PostgresServer, RedisServer

STATE_VAR = "EMBREC_CI_SERVERS_STATE"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (its parent, `start`, is gone; init reaps it).
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _stop_pid(pid: int, sig: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    # Each server leads its own process group (start_new_session): take its children too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def start(env_file: Path) -> int:
    state_dir = Path(tempfile.mkdtemp(prefix="embrec-ci-servers-"))
    state_path = state_dir / "state.json"
    pg = PostgresServer(state_dir / "postgres")
    rd = RedisServer(state_dir / "redis")
    kb = KafkaBroker(state_dir / "kafka")
    servers = (pg, rd, kb)
    records: list[dict[str, Any]] = []
    try:
        for server in servers:
            began = time.monotonic()
            server.start()
            print(
                f"ci_servers: {server.name} on port {server.port} "
                f"({time.monotonic() - began:.2f}s, log {server.log_path})",
                file=sys.stderr,
            )
    except BaseException:
        for server in servers:
            server.close()
        shutil.rmtree(state_dir, ignore_errors=True)
        raise
    env = {
        "EMBREC_TEST_POSTGRES_URL": pg.url,
        "EMBREC_TEST_REDIS_URL": rd.url,
        "EMBREC_TEST_KAFKA_BOOTSTRAP": kb.bootstrap,
        STATE_VAR: str(state_path),
    }
    for server in servers:
        records.append(
            {
                "name": server.name,
                "port": server.port,
                "signal": int(server.stop_signal),
                "paths": [str(p) for p in server.owned_paths()],
                "pid": server.detach(),
            }
        )
    state_path.write_text(json.dumps({"servers": records, "state_dir": str(state_dir)}, indent=2))
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    env_file.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _state_from_env_file(env_file: Path) -> Path | None:
    for line in env_file.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and words[1].startswith(f"{STATE_VAR}="):
            return Path(words[1].split("=", 1)[1])
    return None


def stop(state_path: Path | None, timeout: float = 20.0) -> int:
    if state_path is None or not state_path.is_file():
        print(f"ci_servers: no state file ({state_path}); nothing to stop", file=sys.stderr)
        return 0
    state = json.loads(state_path.read_text())
    for rec in state["servers"]:
        _stop_pid(int(rec["pid"]), int(rec["signal"]), timeout)
        for path in rec["paths"]:
            shutil.rmtree(path, ignore_errors=True)
        print(f"ci_servers: stopped {rec['name']} (pid {rec['pid']})", file=sys.stderr)
    shutil.rmtree(state["state_dir"], ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.ci_servers")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start the servers, write an env file to source")
    p_start.add_argument("--env-file", type=Path, required=True)
    p_stop = sub.add_parser("stop", help="stop the servers started by `start`")
    p_stop.add_argument("--env-file", type=Path)
    p_stop.add_argument("--state", type=Path, help=f"state file (default: ${STATE_VAR})")
    args = parser.parse_args(argv)

    if args.command == "start":
        return start(args.env_file)
    state: Path | None = args.state
    if state is None and args.env_file is not None and args.env_file.is_file():
        state = _state_from_env_file(args.env_file)
    if state is None and os.environ.get(STATE_VAR):
        state = Path(os.environ[STATE_VAR])
    return stop(state)


if __name__ == "__main__":
    sys.exit(main())
