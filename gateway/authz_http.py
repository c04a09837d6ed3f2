"""Envoy's ext_authz over plain HTTP/1.1: the same decisions as the gRPC ``Check``, for
a fraction of its CPU.

Why a second transport: every request through the gateway waits for one authz check,
and on the 2-core machine the gRPC one cost 0.35 ms of CPU in this process (grpc.aio's
own per-call work, near what a trivial handler costs) plus 0.17 ms in Envoy, about a
third of a Recommend call's whole CPU. Answered here, the check costs 0.04 ms and
Envoy's side 0.11 ms (docs/retrieval-service.md, "The ext_authz hop over HTTP").

What Envoy sends (gateway/security_config.authz_http_filter): the client's method, its
path under :data:`AUTHZ_PATH_PREFIX`, the credential headers, the client's content type
in :data:`CONTENT_TYPE_HEADER` and its address in :data:`PEER_HEADER` (both set by
Envoy, never by the client) and the first 64 KiB of the body. What it gets back:

* 200: allowed. Envoy copies the gateway headers of the answer onto the request
  (replacing client-sent copies; ``allowed_upstream_headers``) and removes those named
  in ``x-envoy-auth-headers-to-remove`` (the gateway headers this principal does not
  carry, so no client-sent copy survives).
* 429: over the tenant's global rate limit (when a :class:`BatchedWindowLimiter` is
  given; Redis configured), with ``retry-after`` and, for gRPC callers, ``grpc-status:
  8`` so they see RESOURCE_EXHAUSTED (Envoy would map a bare 429 to UNAVAILABLE, which
  clients retry at once).
* 401 / 403: denied. Envoy answers the client with that status, the message as the
  body (shaped into the usual JSON error by the local-reply config) and the headers
  ``allowed_client_headers`` lets through; gRPC clients see UNAUTHENTICATED /
  PERMISSION_DENIED.
* 503, or no answer at all: Envoy refuses the request (fail closed, like the gRPC
  transport's ``status_on_error``).

The content type must not travel as ``content-type``. With ``application/grpc`` on the
check request, Envoy's HTTP client treats the exchange as gRPC: when the endpoint cannot
be reached, its own 503 becomes a trailers-only "200 + grpc-status 14", which ext_authz
reads as 200, and the gRPC call went through unchecked (seen with Envoy 1.40 and a dead
authz port; REST calls were refused). Under another name the check request is plain
HTTP and a failure is a failure; ``tests/gateway_security/test_authz_e2e.py`` keeps it so.

Requests are parsed with httptools (llhttp, the parser uvicorn uses). Envoy does not
pipeline, but answers are still written in request order if a client does.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import os
import socket
from typing import cast

import httptools

from gateway.authz import (
    RATE_LIMIT_KEY_HEADER,
    RATE_LIMIT_LIMIT_HEADER,
    AnswerMemo,
    Authorizer,
    AuthzRequest,
    Decision,
    upstream_changes,
)
from gateway.ratelimit import BatchedWindowLimiter
from services.config import ConfigError

__all__ = [
    "AUTHZ_PATH_PREFIX",
    "CONTENT_TYPE_HEADER",
    "PEER_HEADER",
    "REMOVE_HEADERS_HEADER",
    "AuthzHttpServer",
]

logger = logging.getLogger(__name__)

#: Envoy puts this before the client's path, so the check request is recognisable.
AUTHZ_PATH_PREFIX = "/authz"
#: The client's address, added by Envoy to every check request (headers_to_add).
PEER_HEADER = "x-embrec-peer"
#: The client's content type, under another name (see the module docstring).
CONTENT_TYPE_HEADER = "x-embrec-content-type"
#: Envoy's name for "remove these headers from the client's request".
REMOVE_HEADERS_HEADER = "x-envoy-auth-headers-to-remove"
#: Envoy sends at most 64 KiB of body; anything much larger is not Envoy.
_MAX_BODY_BYTES = 128 * 1024

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


def _response(status: int, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"content-length: {len(body)}"]
    for name, value in headers:
        if any(c in value for c in "\r\n\0"):
            # Values come from our own tokens and rows; a line break would split the answer.
            raise ValueError(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _refusal(
    status: int, reason: str, message: str, extra: list[tuple[str, str]] | None = None
) -> bytes:
    """Any answer but 200: the reason in a header, the message as the body."""
    headers = [("content-type", "text/plain; charset=utf-8"), ("x-embrec-error-reason", reason)]
    return _response(status, headers + (extra or []), message.encode())


_BAD_REQUEST = _refusal(400, "AUTHZ_BAD_REQUEST", "The authorization check could not be read.")
_UNAVAILABLE = _refusal(503, "AUTHZ_UNAVAILABLE", "Authorization is unavailable; try again.")


def decision_response(decision: Decision) -> bytes:
    """The HTTP answer Envoy expects for ``decision`` (see the module docstring)."""
    if decision.allowed:
        kept, removed = upstream_changes(decision)
        headers = sorted(kept.items())
        if removed:
            headers.append((REMOVE_HEADERS_HEADER, ",".join(removed)))
        return _response(200, headers)
    challenge = [("www-authenticate", 'Bearer realm="embrec"')]
    return _refusal(
        decision.http_status,
        decision.reason,
        decision.message,
        challenge if decision.http_status == 401 else None,
    )


def rate_limited_response(limit: int, wait: float, grpc: bool) -> bytes:
    """The answer for a request over its tenant's global limit (429)."""
    retry_after = max(1, math.ceil(wait))
    headers = [
        ("retry-after", str(retry_after)),
        ("x-ratelimit-limit", str(limit)),
        ("x-ratelimit-remaining", "0"),
        ("x-ratelimit-reset", str(retry_after)),
    ]
    if grpc:
        headers.append(("grpc-status", "8"))  # RESOURCE_EXHAUSTED, as the local limit says
    message = f"Over the plan's limit of {limit} requests per second; retry after {retry_after} s."
    return _refusal(429, "RATE_LIMITED", message, headers)


class AuthzHttpServer:
    """Binds at construction (so the port is known before Envoy's config is written),
    serves from :meth:`serve` until its stop event is set."""

    def __init__(
        self,
        authorizer: Authorizer,
        host: str,
        port: int,
        limiter: BatchedWindowLimiter | None = None,
    ) -> None:
        self.authorizer = authorizer
        self.limiter = limiter
        try:
            self._socket = socket.create_server((host, port), backlog=1024)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} for Envoy's authz checks "
                f"({os.strerror(exc.errno) if exc.errno else exc}); set EMBREC_AUTHZ_HTTP_PORT"
            ) from exc
        self._socket.setblocking(False)
        self.port: int = self._socket.getsockname()[1]
        self._connections: set[_Connection] = set()
        self._answers: AnswerMemo[bytes] = AnswerMemo()

    async def serve(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), sock=self._socket)
        logger.info("answering Envoy's authz checks over HTTP on port %d", self.port)
        try:
            await stop.wait()
        finally:
            server.close()
            for connection in list(self._connections):
                connection.close()
            await server.wait_closed()

    def close(self) -> None:
        """Release the port (a runtime that never started still holds it)."""
        self._socket.close()

    async def answer(self, request: AuthzRequest) -> bytes:
        try:
            decision = await self.authorizer.check(request)
            if decision.allowed and self.limiter is not None:
                refusal = self._over_limit(decision, request)
                if refusal is not None:
                    return refusal
            answer = self._answers.get(decision)
            if answer is None:
                answer = decision_response(decision)
                self._answers.put(decision, answer)
        except Exception:  # a broken check must refuse the request, never wave it through
            logger.exception("authz check failed: %s %s", request.method, request.path)
            return _UNAVAILABLE
        if not decision.allowed:
            logger.info(
                "authz denied %s %s: %s",
                request.method,
                decision.method or request.path,
                decision.reason,
            )
        return answer

    def _over_limit(self, decision: Decision, request: AuthzRequest) -> bytes | None:
        assert self.limiter is not None
        key = decision.set_headers.get(RATE_LIMIT_KEY_HEADER, "")
        limit = decision.set_headers.get(RATE_LIMIT_LIMIT_HEADER, "")
        if not key or not limit.isdigit():
            return None  # no budget named: nothing to count
        wait = self.limiter.admit(key, int(limit))
        if not wait:
            return None
        grpc = request.headers.get("content-type", "").startswith("application/grpc")
        return rate_limited_response(int(limit), wait, grpc)


class _Connection(asyncio.Protocol):
    """One keep-alive connection from Envoy; httptools calls the ``on_*`` methods."""

    def __init__(self, server: AuthzHttpServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._pending: collections.deque[asyncio.Task[bytes]] = collections.deque()
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body = bytearray()
        self._too_large = False
        self._close_after: asyncio.Task[bytes] | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is not an asyncio.Transport subclass).
        self._transport = cast(asyncio.Transport, transport)
        self._server._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(_BAD_REQUEST)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        for task in self._pending:
            task.cancel()
        self._pending.clear()
        self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = bytearray()
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        # A repeated header is joined, as the gRPC transport's CheckRequest joins it: two
        # credentials then read as one malformed credential, never as the last one sent.
        previous = self._headers.get(key)
        self._headers[key] = text if previous is None else f"{previous},{text}"

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > _MAX_BODY_BYTES:
            self._too_large = True
        else:
            self._body += body

    def on_message_complete(self) -> None:
        if self._too_large:
            self._fail(_BAD_REQUEST)
            return
        path = self._url.decode("latin-1")
        if path.startswith(AUTHZ_PATH_PREFIX + "/"):
            path = path[len(AUTHZ_PATH_PREFIX) :]
        headers = self._headers
        headers["content-type"] = headers.pop(CONTENT_TYPE_HEADER, "")
        request = AuthzRequest(
            method=self._parser.get_method().decode("latin-1"),
            path=path,
            headers=headers,
            body=bytes(self._body),
            source_ip=self._headers.get(PEER_HEADER, ""),
        )
        task = asyncio.get_running_loop().create_task(self._server.answer(request))
        if not self._parser.should_keep_alive():
            self._close_after = task
        self._pending.append(task)
        task.add_done_callback(self._write_ready)

    # -- answers, in request order ----------------------------------------------------------

    def _write_ready(self, _: asyncio.Task[bytes]) -> None:
        while self._pending and self._pending[0].done():
            task = self._pending.popleft()
            if task.cancelled() or self._transport is None:
                continue
            self._transport.write(task.result())
            if task is self._close_after:
                self._transport.close()

    def _fail(self, answer: bytes) -> None:
        """Answer a request that cannot be read, then drop the connection. Earlier
        requests still waiting get no answer (Envoy refuses them: fail closed) rather
        than someone else's."""
        if self._transport is None:
            return
        if not self._pending:
            self._transport.write(answer)
        self._transport.close()
