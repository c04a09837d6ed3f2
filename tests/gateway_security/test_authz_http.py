"""The HTTP ext_authz endpoint over a real socket: what Envoy gets back for each decision.

The decisions come from a scripted authorizer (the decision logic has its own tests and
the end-to-end suites run it behind a real Envoy); here the exchange itself is checked:
the request Envoy sends becomes the right AuthzRequest, and each decision becomes the
answer Envoy acts on.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.authz import GATEWAY_HEADERS, AuthzRequest, Decision
from gateway.authz_http import AuthzHttpServer
from services.config import ConfigError
from services.identity.credentials import Principal

Decide = Callable[[AuthzRequest], Awaitable[Decision]]


class ScriptedAuthorizer:
    def __init__(self) -> None:
        self.seen: list[AuthzRequest] = []
        self.decide: Decide = self._allow

    async def check(self, request: AuthzRequest) -> Decision:
        self.seen.append(request)
        return await self.decide(request)

    @staticmethod
    async def _allow(request: AuthzRequest) -> Decision:
        return Decision(
            allowed=True,
            set_headers={"x-tenant-id": "t1", "x-principal": "user:u1", "x-impersonator": ""},
            principal=Principal(subject="user:u1", tenant_id="t1", role="tenant_admin"),
        )


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[AuthzHttpServer, ScriptedAuthorizer]]:
    authorizer = ScriptedAuthorizer()
    server = AuthzHttpServer(authorizer, "127.0.0.1", 0)  # type: ignore[arg-type]
    stop = asyncio.Event()
    serving = asyncio.create_task(server.serve(stop))
    await asyncio.sleep(0)
    yield server, authorizer
    stop.set()
    await serving
    server.close()


async def _exchange(
    port: int, raw: bytes, answers: int = 1
) -> list[tuple[int, dict[str, str], bytes]]:
    """Send raw bytes; read ``answers`` HTTP responses (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    replies = []
    for _ in range(answers):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers["content-length"]))
        replies.append((int(status_line.split()[1]), headers, body))
    writer.close()
    return replies


def _check_request(path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"POST /authz{path} HTTP/1.1", "host: gateway_authz", f"content-length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_an_allowed_check_sets_the_principal_and_removes_the_other_gateway_headers(
    endpoint: tuple[AuthzHttpServer, ScriptedAuthorizer],
) -> None:
    server, authorizer = endpoint
    raw = _check_request(
        "/api/v1/recommendations?x=1",
        b'{"user_id": "u"}',
        authorization="Bearer abc",
        content_type="text/plain",  # the check request's own, never the client's
        x_embrec_content_type="application/json",
        x_embrec_peer="10.1.2.3",
    )
    [(status, headers, body)] = await _exchange(server.port, raw)

    assert status == 200 and body == b""
    assert headers["x-tenant-id"] == "t1" and headers["x-principal"] == "user:u1"
    removed = set(headers["x-envoy-auth-headers-to-remove"].split(","))
    # Every gateway header the decision does not set, the empty impersonator included.
    assert removed == set(GATEWAY_HEADERS) - {"x-tenant-id", "x-principal"}
    [seen] = authorizer.seen
    assert seen.method == "POST"
    assert seen.path == "/api/v1/recommendations?x=1"  # Envoy's prefix taken off
    assert seen.headers["authorization"] == "Bearer abc"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == b'{"user_id": "u"}'
    assert seen.source_ip == "10.1.2.3"


async def test_a_repeated_header_reaches_the_decision_joined(
    endpoint: tuple[AuthzHttpServer, ScriptedAuthorizer],
) -> None:
    server, authorizer = endpoint
    raw = (
        b"GET /authz/api/v1/items HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n"
        b"authorization: Bearer first\r\nauthorization: Bearer second\r\n\r\n"
    )
    await _exchange(server.port, raw)
    [seen] = authorizer.seen
    assert seen.method == "GET"
    assert seen.headers["authorization"] == "Bearer first,Bearer second"


async def test_a_denial_carries_status_reason_and_message(
    endpoint: tuple[AuthzHttpServer, ScriptedAuthorizer],
) -> None:
    server, authorizer = endpoint

    async def deny(request: AuthzRequest) -> Decision:
        return Decision(allowed=False, http_status=401, reason="TOKEN_EXPIRED", message="Expired.")

    authorizer.decide = deny
    [(status, headers, body)] = await _exchange(server.port, _check_request("/x.Y/Z"))
    assert status == 401
    assert headers["x-embrec-error-reason"] == "TOKEN_EXPIRED"
    assert headers["www-authenticate"].startswith("Bearer")
    assert body == b"Expired."
    assert "x-tenant-id" not in headers


async def test_a_failing_check_refuses_the_request(
    endpoint: tuple[AuthzHttpServer, ScriptedAuthorizer],
) -> None:
    server, authorizer = endpoint

    async def broken(request: AuthzRequest) -> Decision:
        raise RuntimeError("database gone")

    authorizer.decide = broken
    [(status, headers, _)] = await _exchange(server.port, _check_request("/x.Y/Z"))
    assert status == 503 and headers["x-embrec-error-reason"] == "AUTHZ_UNAVAILABLE"

    async def line_break(request: AuthzRequest) -> Decision:
        return Decision(
            allowed=True,
            set_headers={"x-principal": "user:u1\r\nx-role: platform_admin"},
            principal=Principal(subject="user:u1"),
        )

    authorizer.decide = line_break
    [(status, headers, _)] = await _exchange(server.port, _check_request("/x.Y/Z"))
    assert status == 503 and "x-role" not in headers


async def test_answers_keep_request_order_on_one_connection(
    endpoint: tuple[AuthzHttpServer, ScriptedAuthorizer],
) -> None:
    server, authorizer = endpoint

    async def slow_first(request: AuthzRequest) -> Decision:
        if request.path == "/slow":
            await asyncio.sleep(0.2)
        return Decision(allowed=False, http_status=403, reason=request.path, message="no")

    authorizer.decide = slow_first
    raw = _check_request("/slow") + _check_request("/fast")
    replies = await _exchange(server.port, raw, answers=2)
    assert [headers["x-embrec-error-reason"] for _, headers, _ in replies] == ["/slow", "/fast"]


async def test_an_unreadable_request_gets_400_and_the_connection_closes(
    endpoint: tuple[AuthzHttpServer, ScriptedAuthorizer],
) -> None:
    server, authorizer = endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"NOT HTTP AT ALL\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 5)  # read() returns at EOF: closed
    assert data.startswith(b"HTTP/1.1 400")
    assert authorizer.seen == []
    writer.close()


async def test_stopping_closes_idle_keep_alive_connections() -> None:
    authorizer: Any = ScriptedAuthorizer()
    server = AuthzHttpServer(authorizer, "127.0.0.1", 0)
    stop = asyncio.Event()
    serving = asyncio.create_task(server.serve(stop))
    await asyncio.sleep(0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(_check_request("/x.Y/Z"))
    await reader.readuntil(b"\r\n\r\n")
    stop.set()
    await asyncio.wait_for(serving, 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # the server hung up
    writer.close()
    server.close()


def test_a_taken_port_is_a_config_error_naming_the_setting() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="EMBREC_AUTHZ_HTTP_PORT"):
            AuthzHttpServer(ScriptedAuthorizer(), "127.0.0.1", port)  # type: ignore[arg-type]
