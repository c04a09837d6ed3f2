"""Recommend load from h2load (nghttp2-client): raw gRPC over h2c, in C.

The Python load generator (loadgen.py) costs ~0.9 ms of CPU per request, taken from
the same cores as the stack it measures; h2load costs a few microseconds. h2load knows
nothing of gRPC, so each request is a fixed body: the gRPC frame (1 byte 0 = not
compressed, 4-byte big-endian length, the serialized ``RecommendRequest``) with
``content-type: application/grpc`` and ``te: trailers``.

h2load posts one ``-d`` file per run, so the clients are split over several h2load
processes, each asking for a different user. Per-request latency and HTTP status come
from h2load's ``--log-file`` (start µs, status, µs to the end of the response; -1 for
a failed stream). h2load does not read gRPC trailers, so a gRPC error (HTTP 200 with
``grpc-status`` ≠ 0) is invisible here: the bench counts those from an Envoy access
log that records only non-OK gRPC statuses.

Two modes: closed loop (each client sends its next request when the last one
finished: max throughput) and fixed rate (``rps`` in total, split evenly over the
clients with h2load's per-client ``--rps``: what ghz's ``--rps`` measures).

In fixed-rate mode the clients' phases are spread evenly over one client's request
interval. h2load paces each client with a timer started when it connects, so clients
connected together fire in the same instant: 50 clients at 20 req/s each would arrive
as a burst of 50 requests every 50 ms, not as 1,000 req/s. Independent shoppers are
not phase-locked, and neither is ghz's single rate limiter. So each h2load process
connects its clients one at a time (``-r 1 --rate-period``: 10 ms apart for 5 clients
at 20 req/s), and the processes start one request interval apart (1 ms at 1,000 req/s):
client j of process k fires at phase k + 10 j ms, all 50 phases distinct. (Until
2026-12-05 every client was its own h2load process, started 1 ms apart: the same
phases, but 50 processes waking on two cores cost 0.14 ms of CPU a request against
0.05 ms now.) h2load's rate mode runs a request count (``-n``), not a duration.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from services.retrieval.loadgen import LoadResult

__all__ = [
    "RECOMMEND_PATH",
    "RECOMMEND_REST_PATH",
    "grpc_frame",
    "h2load_available",
    "parse_log",
    "recommend_body",
    "rest_body",
    "run_h2load",
]

RECOMMEND_PATH = "/embrec.retrieval.v1.RetrievalService/Recommend"
RECOMMEND_REST_PATH = "/api/v1/recommendations"


def h2load_available() -> bool:
    return shutil.which("h2load") is not None


def grpc_frame(message: bytes) -> bytes:
    """A length-prefixed gRPC message (uncompressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def recommend_body(user_id: str, count: int = 10) -> bytes:
    from embrec.retrieval.v1 import retrieval_service_pb2 as pb

    return grpc_frame(pb.RecommendRequest(user_id=user_id, count=count).SerializeToString())


def rest_body(user_id: str, count: int = 10) -> bytes:
    return json.dumps({"user_id": user_id, "count": count}).encode()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def parse_log(text: str, result: LoadResult) -> tuple[float, float]:
    """Adds one h2load log's rows to ``result``; returns (first start, last end) in µs."""
    first, last = float("inf"), 0.0
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        start, status, micros = float(fields[0]), int(fields[1]), float(fields[2])
        first = min(first, start)
        last = max(last, start + max(micros, 0.0))
        if status == 200:
            result.latencies.append(micros / 1e6)
        elif status == 429:
            result.rate_limited += 1
        else:
            result.errors += 1
            result.first_error = result.first_error or (
                "stream failed (reset or connection error)" if status < 0 else f"HTTP {status}"
            )
    return first, last


def run_h2load(
    host: str,
    port: int,
    token: str,
    users: list[str],
    *,
    protocol: str = "grpc",
    concurrency: int = 50,
    duration: float = 15.0,
    rps: float = 0.0,
    count: int = 10,
) -> LoadResult:
    """``concurrency`` h2load clients for ``duration`` s, one h2load process per user.

    ``rps`` 0 = closed loop; else the total offered rate (each client ``rps/concurrency``).
    ``protocol`` ``grpc`` (h2c) or ``rest`` (JSON over HTTP/1.1 keep-alive, through the
    transcoder).
    """
    if protocol not in ("grpc", "rest"):
        raise ValueError(f"protocol must be 'grpc' or 'rest', not {protocol!r}")
    binary = shutil.which("h2load")
    if binary is None:
        raise RuntimeError("h2load not found (Debian: apt-get install nghttp2-client)")
    share = _split(concurrency, max(1, min(len(users), concurrency)))
    # Fixed rate: processes start 1/rps apart, clients connect `interval / clients` apart
    # within each (see the module docstring).
    stagger = 1.0 / rps if rps > 0 else 0.0
    interval = concurrency / rps if rps > 0 else 0.0
    result = LoadResult(protocol)
    grpc = protocol == "grpc"
    with tempfile.TemporaryDirectory(prefix="embrec-h2load-") as tmp:
        work = Path(tmp)
        running: list[tuple[subprocess.Popen[bytes], Path]] = []
        launched = time.monotonic()
        for k, clients in enumerate(share):
            user = users[k % len(users)]
            body = work / f"body-{k}.bin"
            body.write_bytes(recommend_body(user, count) if grpc else rest_body(user, count))
            log = work / f"log-{k}.tsv"
            argv = [
                binary,
                "-c",
                str(clients),
                "-m",
                "1",
                "-t",
                "1",
                "--log-file",
                str(log),
                "-d",
                str(body),
                "-H",
                f"authorization: Bearer {token}",
            ]
            if grpc:
                argv += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
            else:
                argv += ["--h1", "-H", "content-type: application/json"]
            if rps > 0:
                per_client = max(1, round(duration * rps / concurrency))
                argv += [
                    "--rps",
                    f"{rps / concurrency:.6g}",
                    "-n",
                    str(per_client * clients),
                    "-r",
                    "1",
                    "--rate-period",
                    f"{max(1, round(interval / clients * 1000))}ms",
                ]
            else:
                argv += ["-D", f"{max(1, round(duration))}"]
            path = RECOMMEND_PATH if grpc else RECOMMEND_REST_PATH
            argv.append(f"http://{host}:{port}{path}")
            if stagger:
                time.sleep(max(0.0, launched + k * stagger - time.monotonic()))
            process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            running.append((process, log))
        first, last = float("inf"), 0.0
        for process, log in running:
            output, _ = process.communicate(timeout=duration + 60)
            if process.returncode != 0 or not log.exists():
                result.first_error = result.first_error or output.decode(errors="replace")[-500:]
                continue
            start, end = parse_log(log.read_text(), result)
            first, last = min(first, start), max(last, end)
    result.elapsed = (last - first) / 1e6 if last > first else 0.0
    return result
