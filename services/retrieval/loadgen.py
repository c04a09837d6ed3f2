"""An async load generator for Recommend, over gRPC or JSON/REST, with ghz's summary.

ghz is not installable everywhere (it is not here), so this prints the same figures:
requests, req/s, latency percentiles, errors. Requests are templated per user: worker
``w`` sends its ``i``-th request for ``user_<(w + i * workers) % users>``, so the user
mix (and the cache hit rate) is reproducible.

A Python client is itself CPU-bound (about 1-3k req/s per process), so the load can be
spread over several client processes (``processes``); their samples are merged.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

__all__ = ["LoadResult", "run_load"]


@dataclass
class LoadResult:
    protocol: str
    latencies: list[float] = field(default_factory=list)  # seconds, successful calls
    errors: int = 0
    #: Refused over the tenant plan's rate limit (HTTP 429 / RESOURCE_EXHAUSTED from the
    #: gateway): the platform working as configured, counted apart from errors.
    rate_limited: int = 0
    fallbacks: int = 0
    elapsed: float = 0.0
    first_error: str = ""

    @property
    def requests(self) -> int:
        return len(self.latencies) + self.errors + self.rate_limited

    def merge(self, other: LoadResult) -> None:
        self.latencies += other.latencies
        self.errors += other.errors
        self.rate_limited += other.rate_limited
        self.fallbacks += other.fallbacks
        self.elapsed = max(self.elapsed, other.elapsed)
        self.first_error = self.first_error or other.first_error

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def drop_fastest(self, count: int) -> None:
        """Take ``count`` calls out of the answered ones, the fastest first: calls the
        load generator timed as answers but the stack refused (a gRPC status in an HTTP
        200, which h2load cannot read). Envoy's refusals are local replies, the quickest
        answers of a pass, so the percentiles left describe the calls that were served."""
        if count > 0:
            self.latencies = sorted(self.latencies)[count:]

    def summary(self) -> str:
        rate = self.requests / self.elapsed if self.elapsed else 0.0
        mean = statistics.fmean(self.latencies) if self.latencies else float("nan")
        return (
            f"{self.protocol:5s} requests {self.requests:7d}  {rate:8.1f} req/s  "
            f"mean {mean * 1e3:6.2f} ms  p50 {self.percentile(0.50) * 1e3:6.2f} ms  "
            f"p95 {self.percentile(0.95) * 1e3:6.2f} ms  "
            f"p99 {self.percentile(0.99) * 1e3:6.2f} ms  "
            f"errors {self.errors}  fallbacks {self.fallbacks}{self._limited()}"
        )

    def _limited(self) -> str:
        """The rate-limited count, and the rate actually answered, when there are any."""
        if not self.rate_limited:
            return ""
        text = f"  rate-limited {self.rate_limited}"
        if self.elapsed:
            answered = (self.requests - self.rate_limited) / self.elapsed
            text += f" (answered {answered:.1f} req/s)"
        return text


@dataclass(frozen=True)
class _Plan:
    protocol: str  # grpc | rest
    host: str
    port: int
    token: str
    workers: int
    worker_offset: int
    total_workers: int
    users: int
    count: int
    duration: float


async def _grpc_worker(
    plan: _Plan, w: int, channel: object, result: LoadResult, end: float
) -> None:
    import grpc

    from embrec.retrieval.v1 import retrieval_service_pb2 as pb
    from embrec.retrieval.v1 import retrieval_service_pb2_grpc as pb_grpc

    stub = pb_grpc.RetrievalServiceStub(channel)
    metadata = (("authorization", f"Bearer {plan.token}"),)
    i = 0
    while time.perf_counter() < end:
        user = f"user_{(w + i * plan.total_workers) % plan.users}"
        i += 1
        started = time.perf_counter()
        try:
            reply = await stub.Recommend(
                pb.RecommendRequest(user_id=user, count=plan.count), metadata=metadata, timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:  # the plan's rate limit
                result.rate_limited += 1
                continue
            result.errors += 1
            result.first_error = result.first_error or f"{exc.code().name}: {exc.details()}"
            continue
        result.latencies.append(time.perf_counter() - started)
        result.fallbacks += int(reply.fallback)


async def _rest_worker(plan: _Plan, w: int, result: LoadResult, end: float) -> None:
    """HTTP/1.1 keep-alive, one connection per worker (as k6 or hey would)."""
    reader, writer = await asyncio.open_connection(plan.host, plan.port)
    i = 0
    try:
        while time.perf_counter() < end:
            user = f"user_{(w + i * plan.total_workers) % plan.users}"
            i += 1
            body = json.dumps({"user_id": user, "count": plan.count}).encode()
            head = (
                f"POST /api/v1/recommendations HTTP/1.1\r\nHost: {plan.host}\r\n"
                f"Content-Type: application/json\r\nAuthorization: Bearer {plan.token}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            payload = await reader.readexactly(length) if length else b""
            status = int(status_line.split()[1]) if status_line else 0
            if status == 429:  # the plan's rate limit
                result.rate_limited += 1
                continue
            if status != 200:
                result.errors += 1
                result.first_error = result.first_error or f"HTTP {status}: {payload[:200]!r}"
                if not status_line:
                    break
                continue
            result.latencies.append(time.perf_counter() - started)
            result.fallbacks += int(b'"fallback":true' in payload.replace(b" ", b""))
    finally:
        writer.close()


async def _run_plan(plan: _Plan) -> LoadResult:
    import grpc

    result = LoadResult(plan.protocol)
    started = time.perf_counter()
    end = started + plan.duration
    channels = []
    if plan.protocol == "grpc":
        # Several HTTP/2 connections: Envoy spreads them over its worker threads.
        channels = [
            grpc.aio.insecure_channel(f"{plan.host}:{plan.port}")
            for _ in range(min(4, plan.workers))
        ]
        tasks = [
            _grpc_worker(plan, plan.worker_offset + k, channels[k % len(channels)], result, end)
            for k in range(plan.workers)
        ]
    else:
        tasks = [
            _rest_worker(plan, plan.worker_offset + k, result, end) for k in range(plan.workers)
        ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for channel in channels:
            await channel.close()
    result.elapsed = time.perf_counter() - started
    return result


def _run_in_process(plan: _Plan) -> LoadResult:
    return asyncio.run(_run_plan(plan))


def run_load(
    protocol: str,
    host: str,
    port: int,
    token: str,
    *,
    concurrency: int = 50,
    users: int = 1000,
    count: int = 10,
    duration: float = 15.0,
    processes: int = 2,
) -> LoadResult:
    """``concurrency`` workers in ``processes`` client processes for ``duration`` seconds."""
    processes = max(1, min(processes, concurrency))
    share = [
        concurrency // processes + (1 if k < concurrency % processes else 0)
        for k in range(processes)
    ]
    plans = []
    offset = 0
    for workers in share:
        plans.append(
            _Plan(protocol, host, port, token, workers, offset, concurrency, users, count, duration)
        )
        offset += workers
    total = LoadResult(protocol)
    if processes == 1:
        total.merge(_run_in_process(plans[0]))
        return total
    # spawn, not fork: forking a process that has used grpc is unsafe.
    with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn")) as pool:
        for part in pool.map(_run_in_process, plans):
            total.merge(part)
    return total
