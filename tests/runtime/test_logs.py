"""Secrets never reach the log stream, whatever path they take into a record."""

from __future__ import annotations

import io
import json
import logging

import pytest

from services.runtime.context import request_id_var
from services.runtime.logs import JsonFormatter, RedactingFilter, redact_text


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def logger(stream: io.StringIO) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test.redaction")
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


SECRETS = [
    "hunter2-password",
    "emb_live_Zx9YqR3tK8mN2pQ7",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl",
    "rt_3f9d8a7c6b5e4d3c",
]


def test_secrets_in_message_args_and_extras_are_masked(
    logger: logging.Logger, stream: io.StringIO
) -> None:
    logger.info("login password=%s", SECRETS[0])
    logger.info("key %s used", SECRETS[1])
    logger.info("Authorization: Bearer %s", SECRETS[2])
    logger.info(
        "call",
        extra={"metadata": {"authorization": "Bearer x", "refresh_token": SECRETS[3]}},
    )
    try:
        raise ValueError(f"bad api_key={SECRETS[1]}")
    except ValueError:
        logger.exception("failed")
    output = stream.getvalue()
    for secret in SECRETS:
        assert secret not in output
    assert output.count("[REDACTED]") >= 5
    for line in output.splitlines():
        json.loads(line)  # every line is one JSON object


def test_request_id_is_in_every_line(logger: logging.Logger, stream: io.StringIO) -> None:
    token = request_id_var.set("req-123")
    try:
        logger.info("hello")
    finally:
        request_id_var.reset(token)
    assert json.loads(stream.getvalue())["request_id"] == "req-123"


def test_plain_text_is_left_alone() -> None:
    assert redact_text("user 42 bought item 7") == "user 42 bought item 7"
