"""Structured logging: one JSON object per line on stdout, secrets redacted.

Configured once by the entry point (``configure_logging``); modules only call
``logging.getLogger(__name__)``. Redaction runs on every record, whatever logger
produced it, so a secret passed by mistake into a message or an ``extra`` field is
masked before it reaches any handler.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from services.runtime.context import current_request_id

__all__ = ["REDACTED", "RedactingFilter", "configure_logging", "redact_text", "redact_value"]

REDACTED = "[REDACTED]"

# Keys whose values are secrets wherever they appear (metadata, extras, dict payloads).
_SECRET_KEY = re.compile(
    r"(authorization|password|passwd|secret|token|api[-_]?key|cookie|credential)", re.IGNORECASE
)
# Secrets that may appear inside free text: bearer credentials, our API keys, JWTs,
# and key=value pairs naming a secret.
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"\bemb_(?:live|test)_[A-Za-z0-9_-]{8,}"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    (
        re.compile(
            r"(?i)((?:password|passwd|secret|token|api[-_]?key)[\"']?\s*[:=]\s*[\"']?)"
            r"[^\"'\s,}]+"
        ),
        rf"\g<1>{REDACTED}",
    ),
)

# Attributes every LogRecord has; anything else was passed through ``extra``.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def redact_text(text: str) -> str:
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_value(key: str, value: Any) -> Any:
    """Mask a value if its key names a secret; recurse into mappings and sequences."""
    if _SECRET_KEY.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(key, v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    """Rewrites a record in place so no handler ever sees the secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the line
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        for key in list(vars(record)):
            if key not in _RESERVED:
                setattr(record, key, redact_value(key, getattr(record, key)))
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None) or current_request_id() or "-"
        base = f"{self.formatTime(record)} {record.levelname:<7} {record.name} [{request_id}] "
        text = base + record.getMessage()
        if record.exc_info:
            text += "\n" + redact_text(self.formatException(record.exc_info))
        return text


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Install one stdout handler on the root logger. Call once, from the entry point."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Chatty libraries stay at WARNING unless asked for DEBUG.
    for name in ("aiosqlite", "sqlalchemy.engine", "asyncio", "httpx", "httpcore", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
