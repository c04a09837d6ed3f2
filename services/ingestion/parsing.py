"""Reading and validating import files: pure Python, no grpc, no database.

An import arrives as byte chunks of a CSV (RFC 4180, UTF-8, header row) or JSON Lines
file, or as typed rows. :class:`RowReader` turns chunks into ``(row number, fields)``
pairs as they come, holding at most one unfinished record between chunks, so memory
does not grow with the file. :class:`ItemValidator` and :class:`InteractionValidator`
check one row at a time and return either a clean row or the list of :class:`RowError`
that reject it, with the column at fault and a message saying how to fix it.

Why it is built this way:

* Records are split on newlines whose quote count so far is even: a quoted field may
  hold newlines, and in RFC 4180 an escaped quote is doubled, so parity is exact. The
  complete records of a chunk then go through one ``csv.reader`` call (fast in C).
* Invalid UTF-8 is found per chunk and only then pinned down to the record, so clean
  files pay one ``decode`` per chunk.
* Exact duplicate interactions are dropped within a sliding window of recent rows
  (duplicates in event logs are adjacent: double submits, retried batches), which keeps
  memory bounded however large the file is. A retried *file* is caught by the upload's
  id or content hash instead.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

__all__ = [
    "INTERACTION_COLUMNS",
    "INTERACTION_TYPES",
    "ITEM_COLUMNS",
    "MAX_ID_LENGTH",
    "CleanInteraction",
    "CleanItem",
    "HeaderError",
    "InteractionValidator",
    "ItemValidator",
    "RowError",
    "RowReader",
    "gc_paused",
]

MAX_ID_LENGTH = 128
MAX_TITLE_LENGTH = 1000
MAX_CATEGORY_LENGTH = 200
MAX_URL_LENGTH = 2048
MAX_ATTRIBUTE_LENGTH = 1000
MAX_ATTRIBUTES = 100
MAX_RECORD_BYTES = 64 * 1024
MAX_RECOMMENDATION_ID_LENGTH = 64
#: Timestamps later than now + this are refused (clock skew allowance).
FUTURE_TOLERANCE = timedelta(minutes=5)
#: Timestamps before this are refused: almost always seconds read as milliseconds or 0.
EARLIEST_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)
_VALUE_PREVIEW = 200
_DUPLICATE_WINDOW = 100_000

ITEM_COLUMNS = ("item_id", "title", "category", "price", "image_url")
INTERACTION_COLUMNS = (
    "user_id",
    "item_id",
    "interaction_type",
    "timestamp",
    "value",
    "recommendation_id",
    "event_id",
)
REQUIRED_ITEM_COLUMNS = ("item_id",)
REQUIRED_INTERACTION_COLUMNS = ("user_id", "item_id", "interaction_type")
INTERACTION_TYPES = ("view", "click", "add_to_cart", "purchase", "rating")


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row (or one of its cells) was rejected. ``row`` 0 is the header."""

    row: int
    column: str
    reason: str
    message: str
    value: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "column": self.column,
            "reason": self.reason,
            "message": self.message,
            "value": self.value,
        }


class HeaderError(ValueError):
    """The file cannot be read at all (no header, missing required columns)."""

    def __init__(self, message: str, *, column: str = "", reason: str = "MISSING_COLUMN") -> None:
        super().__init__(message)
        self.column = column
        self.reason = reason


#: A row's fields: values in header order (CSV) or by name (JSON Lines, typed rows).
Fields = list[str] | dict[str, str]
Row = tuple[int, dict[str, str], RowError | None]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (restored after it).

    For the import's synchronous per-batch loops (no ``await`` inside, so nothing else
    runs meanwhile): they allocate tens of thousands of tuples that live on, and the
    collections those allocations trigger cost 2-4 us a row, measured. One collection
    runs after the block instead.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _preview(value: str) -> str:
    return value if len(value) <= _VALUE_PREVIEW else value[:_VALUE_PREVIEW]


# --------------------------------------------------------------------------- reading


class RowReader:
    """Turns byte chunks of a CSV or JSON Lines file into numbered rows.

    ``feed(chunk)`` yields ``(row, fields, error)`` for every record completed by the
    chunk; ``finish()`` yields the last one. ``fields`` maps column name to text (JSON
    values are converted to text, so one validator serves both formats); ``error`` is a
    RowError when the record itself is unreadable (then ``fields`` is empty).
    """

    def __init__(self, fmt: str = "csv") -> None:
        if fmt not in ("csv", "json"):
            raise ValueError(f"unknown format {fmt!r}")
        self.format = fmt
        self.header: list[str] | None = None
        self.rows_read = 0
        self.bytes_read = 0
        self._pending = b""
        self._pending_quotes = 0
        #: Lines of a quoted record that continues in the next chunk.
        self._carry: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[tuple[int, dict[str, str], RowError | None]]:
        return self._as_dicts(self.feed_values(chunk))

    def finish(self) -> Iterator[tuple[int, dict[str, str], RowError | None]]:
        return self._as_dicts(self.finish_values())

    def _as_dicts(self, rows: Iterator[tuple[int, Fields, RowError | None]]) -> Iterator[Row]:
        for row, fields, error in rows:
            yield row, self.as_dict(fields), error

    def as_dict(self, fields: Fields) -> dict[str, str]:
        """A CSV row's values by column name (JSON rows are dicts already)."""
        if isinstance(fields, dict):
            return fields
        if not fields or self.header is None:
            return {}
        return dict(zip(self.header, fields, strict=True))

    def feed_values(self, chunk: bytes) -> Iterator[tuple[int, Fields, RowError | None]]:
        """Like :meth:`feed`, but CSV rows come as value lists in header order (cheaper)."""
        self.bytes_read += len(chunk)
        data = self._pending + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            self._pending = data
            if len(self._pending) > MAX_RECORD_BYTES * 4:
                # A "line" this long is not a CSV record: refuse rather than buffer it all.
                raise HeaderError(
                    "No line break in the first 256 KiB: is this a CSV or JSON Lines file?",
                    reason="MALFORMED_FILE",
                )
            return
        self._pending = data[cut + 1 :]
        yield from self._records(data[: cut + 1])

    def feed_plain(self, chunk: bytes) -> list[list[str]] | None:
        """The common case of :meth:`feed_values`, in one call: the value lists of the
        records the chunk completes, when they are all plain (header read, no quotes,
        valid UTF-8, every row as wide as the header, no blank line, none too long).

        They are rows ``rows_read - len(result) + 1`` to ``rows_read``. Anything else
        returns None and consumes nothing: the caller then feeds the chunk to
        :meth:`feed_values`, which handles every case (and reports what is wrong).
        """
        if self.header is None or self._carry or self.format != "csv":
            return None
        data = self._pending + chunk
        cut = data.rfind(b"\n")
        if cut < 0 or b'"' in data:
            return None
        try:
            lines = data[:cut].decode("utf-8").split("\n")
        except UnicodeDecodeError:
            return None
        if max(map(len, lines)) > MAX_RECORD_BYTES:
            return None
        parsed = list(csv.reader(lines))
        width = len(self.header)
        if len(parsed) != len(lines) or set(map(len, parsed)) != {width}:
            return None  # blank or malformed lines: the general path reports them
        self.bytes_read += len(chunk)
        self._pending = data[cut + 1 :]
        self.rows_read += len(parsed)
        return parsed

    def finish_values(self) -> Iterator[tuple[int, Fields, RowError | None]]:
        rest, self._pending = self._pending, b""
        if rest.strip():
            yield from self._records(rest + b"\n")
        if self._carry:
            # An unterminated quote ran to the end of the file: report it as one record.
            carry, self._carry, self._pending_quotes = self._carry, [], 0
            yield from self._csv_rows(carry)
        if self.header is None and self.format == "csv":
            raise HeaderError("The file is empty: it needs a header row naming the columns.")

    def _records(self, data: bytes) -> Iterator[tuple[int, Fields, RowError | None]]:
        if self.format == "json":
            yield from self._json_records(data)
            return
        if self.header is not None and not self._carry and b'"' not in data:
            # The common case: no quotes, so every line is one record and the whole
            # chunk goes through a single csv.reader call.
            try:
                lines = data.decode("utf-8").split("\n")
            except UnicodeDecodeError:
                lines = []
            if lines and max(map(len, lines)) <= MAX_RECORD_BYTES:
                yield from self._plain_rows(lines)
                return
        for record, error in self._csv_records(data):
            if error is not None:
                if self.header is None:
                    raise HeaderError("The header row is not valid UTF-8.", reason="INVALID_UTF8")
                self.rows_read += 1
                yield self.rows_read, {}, error
                continue
            yield from self._csv_rows(record)

    def _csv_records(self, data: bytes) -> Iterator[tuple[list[str], RowError | None]]:
        """Decode and split into logical records (quoted newlines kept together)."""
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Slow path: find the bad record(s) line by line.
            yield from self._csv_records_slow(data)
            return
        if text.startswith("\ufeff") and self.header is None and self.rows_read == 0:
            text = text[1:]  # Excel writes a byte order mark
        logical, self._carry = self._carry, []
        for line in text.splitlines(keepends=True):
            self._pending_quotes += line.count('"')
            logical.append(line)
            if self._pending_quotes % 2 == 0:
                self._pending_quotes = 0
                yield logical, None
                logical = []
        yield from self._keep_open(logical)

    def _keep_open(self, logical: list[str]) -> Iterator[tuple[list[str], RowError | None]]:
        """Carry a quoted record over to the next chunk, unless it is absurdly long."""
        if logical and sum(map(len, logical)) > MAX_RECORD_BYTES:
            # An unbalanced quote would otherwise swallow the rest of the file.
            self._pending_quotes = 0
            yield logical, None
            return
        self._carry = logical

    def _csv_records_slow(self, data: bytes) -> Iterator[tuple[list[str], RowError | None]]:
        logical, self._carry = self._carry, []
        bad: bytes | None = None
        for raw in data.splitlines(keepends=True):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                bad = bad or raw
                line = raw.decode("utf-8", errors="replace")
            self._pending_quotes += line.count('"')
            logical.append(line)
            if self._pending_quotes % 2 == 0:
                self._pending_quotes = 0
                if bad is not None:
                    yield (
                        [],
                        RowError(
                            0,
                            "",
                            "INVALID_UTF8",
                            "The row is not valid UTF-8; save the file as UTF-8.",
                            _preview(bad.decode("utf-8", errors="replace").rstrip("\r\n")),
                        ),
                    )
                    bad = None
                else:
                    yield logical, None
                logical = []
        yield from self._keep_open(logical)

    def _plain_rows(self, lines: list[str]) -> Iterator[tuple[int, Fields, RowError | None]]:
        assert self.header is not None
        width = len(self.header)
        for parsed in csv.reader(lines):
            if len(parsed) != width:
                if not parsed or (len(parsed) == 1 and not parsed[0].strip()):
                    continue  # blank lines are not rows
                self.rows_read += 1
                yield (
                    self.rows_read,
                    [],
                    RowError(
                        self.rows_read,
                        "",
                        "MALFORMED_ROW",
                        f"The row has {len(parsed)} fields but the header has {width}; "
                        "quote values that contain commas.",
                        _preview(",".join(parsed).rstrip("\r")),
                    ),
                )
                continue
            self.rows_read += 1
            yield self.rows_read, parsed, None

    def _csv_rows(self, record: list[str]) -> Iterator[tuple[int, Fields, RowError | None]]:
        joined = "".join(record)
        if not joined.strip():
            return  # blank lines are not rows
        try:
            parsed = next(csv.reader(io.StringIO(joined), strict=True))
        except (csv.Error, StopIteration) as exc:
            if self.header is None:
                raise HeaderError(f"The header row is not valid CSV: {exc}") from None
            self.rows_read += 1
            yield (
                self.rows_read,
                {},
                RowError(
                    self.rows_read,
                    "",
                    "MALFORMED_ROW",
                    f"The row is not valid CSV ({exc}); check its quotes.",
                    _preview(joined.rstrip("\r\n")),
                ),
            )
            return
        if self.header is None:
            self._set_header([name.strip() for name in parsed])
            return
        self.rows_read += 1
        row = self.rows_read
        if len(joined) > MAX_RECORD_BYTES:
            yield (
                row,
                {},
                RowError(
                    row,
                    "",
                    "TOO_LONG",
                    f"The row is longer than {MAX_RECORD_BYTES} bytes.",
                    _preview(joined),
                ),
            )
            return
        header = self.header
        if len(parsed) != len(header):
            yield (
                row,
                {},
                RowError(
                    row,
                    "",
                    "MALFORMED_ROW",
                    f"The row has {len(parsed)} fields but the header has {len(header)}; "
                    "quote values that contain commas.",
                    _preview(joined.rstrip("\r\n")),
                ),
            )
            return
        yield row, parsed, None

    def _set_header(self, names: list[str]) -> None:
        if not any(names):
            raise HeaderError("The header row is empty.")
        seen: set[str] = set()
        for name in names:
            if not name:
                raise HeaderError("The header has an empty column name.", reason="MALFORMED_ROW")
            if name in seen:
                raise HeaderError(
                    f"The header names column {name!r} twice.",
                    column=name,
                    reason="DUPLICATE_COLUMN",
                )
            seen.add(name)
        self.header = names

    def _json_records(self, data: bytes) -> Iterator[tuple[int, Fields, RowError | None]]:
        for raw in data.splitlines():
            if not raw.strip():
                continue
            self.rows_read += 1
            row = self.rows_read
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield (
                    row,
                    {},
                    RowError(
                        row,
                        "",
                        "INVALID_UTF8",
                        "The line is not valid UTF-8; save the file as UTF-8.",
                        _preview(raw.decode("utf-8", errors="replace")),
                    ),
                )
                continue
            if len(raw) > MAX_RECORD_BYTES:
                yield (
                    row,
                    {},
                    RowError(
                        row, "", "TOO_LONG", f"The line is longer than {MAX_RECORD_BYTES} bytes."
                    ),
                )
                continue
            try:
                value = json.loads(text)
            except ValueError as exc:
                yield (
                    row,
                    {},
                    RowError(
                        row, "", "MALFORMED_ROW", f"The line is not JSON ({exc}).", _preview(text)
                    ),
                )
                continue
            if not isinstance(value, dict):
                yield (
                    row,
                    {},
                    RowError(
                        row,
                        "",
                        "MALFORMED_ROW",
                        "Each line must be one JSON object.",
                        _preview(text),
                    ),
                )
                continue
            yield row, json_fields(value), None


def json_fields(value: Mapping[str, Any]) -> dict[str, str]:
    """A JSON object's values as text; a nested ``attributes`` object is flattened."""
    fields: dict[str, str] = {}
    for key, item in value.items():
        if key == "attributes" and isinstance(item, dict):
            for name, attribute in item.items():
                fields[str(name)] = _json_text(attribute)
            continue
        fields[str(key)] = _json_text(item)
    return fields


def _json_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class CleanItem:
    item_id: str
    title: str
    category: str
    price: float | None
    image_url: str
    attributes: dict[str, str]


class CleanInteraction(NamedTuple):
    """A valid interaction row. A tuple, not a dataclass: a million of them are built
    per large import, and tuples are the cheapest Python object to create and hash."""

    user_id: str
    item_id: str
    type: str
    ts: datetime
    value: float | None
    recommendation_id: str
    event_id: str = ""
    #: ``ts`` as naive UTC text with microseconds (``2026-11-25 10:00:00.000000``), the
    #: form SQLAlchemy stores a DateTime in on SQLite; cut from the file's own text when
    #: it is in the common ``2026-11-25T10:00:00Z`` form (formatting the datetime costs
    #: several times more, for a million rows per large import).
    ts_text: str = ""


def _check_header(
    columns: list[str], required: tuple[str, ...], known: tuple[str, ...] | None
) -> list[RowError]:
    missing = [name for name in required if name not in columns]
    if missing:
        raise HeaderError(
            f"The header lacks the required column(s) {', '.join(missing)}; "
            f"the first row must name the columns, e.g. {','.join(required)}.",
            column=missing[0],
        )
    if known is None:
        return []
    return [
        RowError(
            0,
            name,
            "UNKNOWN_COLUMN",
            f"Column {name!r} is not an interaction field ({', '.join(known)}); "
            "it is ignored. Remove it or rename it.",
            _preview(name),
        )
        for name in columns
        if name not in known
    ]


def _parse_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


#: Interaction type names as files usually spell them, for a lookup without strip/lower.
_TYPE_NAMES = {name: name for name in INTERACTION_TYPES}


def parse_timestamp(text: str) -> datetime | None:
    """ISO 8601 (``Z`` or an offset; no offset means UTC) or Unix seconds/milliseconds."""
    if len(text) == 20 and text[4] == "-" and text[19] == "Z":
        # 2026-11-25T10:00:00Z, the most common export format: one C call.
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    text = text.strip()
    number = _parse_number(text) if text[:1].isdigit() and "-" not in text else None
    if number is not None:
        if number > 1e11:  # milliseconds since the epoch
            number /= 1000.0
        try:
            return datetime.fromtimestamp(number, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def timestamp_text(ts: datetime, text: str = "") -> str:
    """``ts`` (aware, UTC) as naive text with microseconds: see ``CleanInteraction``.

    ``text`` is the file's value that ``ts`` was parsed from, if any: in the form
    ``YYYY-MM-DDTHH:MM:SSZ`` the result is that text with ``T`` and ``Z`` replaced.
    """
    if (
        len(text) == 20
        and text[10] == "T"
        and text[19] == "Z"
        and text[4] == "-"
        and text[7] == "-"
        and text[13] == ":"
        and text[16] == ":"
    ):
        return text.replace("T", " ").replace("Z", ".000000")
    return ts.isoformat(" ", "microseconds")[:26]


class ItemValidator:
    """Validates catalog rows; columns beyond the known five become attributes."""

    def __init__(self, columns: list[str]) -> None:
        self.header_errors = _check_header(columns, REQUIRED_ITEM_COLUMNS, None)
        self._attribute_columns = [c for c in columns if c not in ITEM_COLUMNS]
        self._seen: set[str] = set()

    def validate(
        self, row: int, fields: Mapping[str, str]
    ) -> tuple[CleanItem | None, list[RowError]]:
        errors: list[RowError] = []
        item_id = fields.get("item_id", "").strip()
        if not item_id:
            errors.append(RowError(row, "item_id", "MISSING_VALUE", "item_id is required.", ""))
        elif len(item_id) > MAX_ID_LENGTH:
            errors.append(
                RowError(
                    row,
                    "item_id",
                    "TOO_LONG",
                    f"item_id is longer than {MAX_ID_LENGTH} characters.",
                    _preview(item_id),
                )
            )
        title = fields.get("title", "").strip()
        if len(title) > MAX_TITLE_LENGTH:
            errors.append(
                RowError(
                    row,
                    "title",
                    "TOO_LONG",
                    f"title exceeds {MAX_TITLE_LENGTH} characters.",
                    _preview(title),
                )
            )
        category = fields.get("category", "").strip()
        if len(category) > MAX_CATEGORY_LENGTH:
            errors.append(
                RowError(
                    row,
                    "category",
                    "TOO_LONG",
                    f"category exceeds {MAX_CATEGORY_LENGTH} characters.",
                    _preview(category),
                )
            )
        price: float | None = None
        price_text = fields.get("price", "").strip()
        if price_text:
            price = _parse_number(price_text)
            if price is None:
                errors.append(
                    RowError(
                        row,
                        "price",
                        "INVALID_NUMBER",
                        "price must be a number such as 19.99 (no currency sign).",
                        _preview(price_text),
                    )
                )
            elif price < 0:
                errors.append(
                    RowError(
                        row, "price", "NEGATIVE_PRICE", "price must not be negative.", price_text
                    )
                )
        image_url = fields.get("image_url", "").strip()
        if image_url:
            if len(image_url) > MAX_URL_LENGTH:
                errors.append(
                    RowError(
                        row,
                        "image_url",
                        "TOO_LONG",
                        f"image_url exceeds {MAX_URL_LENGTH} characters.",
                        _preview(image_url),
                    )
                )
            elif not image_url.startswith(("http://", "https://")):
                errors.append(
                    RowError(
                        row,
                        "image_url",
                        "INVALID_URL",
                        "image_url must be an absolute http(s) URL.",
                        _preview(image_url),
                    )
                )
        attributes: dict[str, str] = {}
        for name in self._attribute_columns or [k for k in fields if k not in ITEM_COLUMNS]:
            value = fields.get(name, "")
            if value == "":
                continue
            if len(value) > MAX_ATTRIBUTE_LENGTH:
                errors.append(
                    RowError(
                        row,
                        name,
                        "TOO_LONG",
                        f"attribute {name!r} exceeds {MAX_ATTRIBUTE_LENGTH} characters.",
                        _preview(value),
                    )
                )
            attributes[name] = value
        if len(attributes) > MAX_ATTRIBUTES:
            errors.append(
                RowError(
                    row, "", "TOO_MANY_ATTRIBUTES", f"At most {MAX_ATTRIBUTES} attributes per item."
                )
            )
        if not errors:
            if item_id in self._seen:
                errors.append(
                    RowError(
                        row,
                        "item_id",
                        "DUPLICATE_ITEM_ID",
                        "This item_id already appeared earlier in the file; the first row wins.",
                        _preview(item_id),
                    )
                )
            else:
                self._seen.add(item_id)
        if errors:
            return None, errors
        return CleanItem(item_id, title, category, price, image_url, attributes), []


@dataclass
class InteractionValidator:
    """Validates interaction rows; ``now`` is fixed per import so a file is judged once."""

    columns: list[str]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    header_errors: list[RowError] = field(init=False)
    _recent: set[int] = field(init=False, default_factory=set)
    _ring: list[int] = field(init=False, default_factory=list)
    _oldest: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.header_errors = _check_header(
            self.columns, REQUIRED_INTERACTION_COLUMNS, INTERACTION_COLUMNS
        )
        self._latest = self.now + FUTURE_TOLERANCE
        self._now_text = timestamp_text(self.now)
        position = {name: index for index, name in enumerate(self.columns)}
        self._at = tuple(position.get(name, -1) for name in INTERACTION_COLUMNS)

    def accept(self, values: list[str]) -> CleanInteraction | None:
        """The fast path: a row (values in header order) if it is entirely valid, else
        None, and :meth:`validate` then explains what is wrong.

        It accepts exactly what ``validate`` accepts; it only skips building error
        objects and a dict per row, which dominate the cost of clean files.
        """
        at_user, at_item, at_type, at_ts, at_value, at_rec, at_event = self._at
        user_id = values[at_user].strip()
        item_id = values[at_item].strip()
        if not user_id or not item_id or len(user_id) > MAX_ID_LENGTH:
            return None
        if len(item_id) > MAX_ID_LENGTH:
            return None
        kind = _TYPE_NAMES.get(values[at_type])
        if kind is None:
            kind = values[at_type].strip().lower()
            if kind not in INTERACTION_TYPES:
                return None
        ts, ts_text = self.now, self._now_text
        if at_ts >= 0 and values[at_ts]:
            stamp = values[at_ts]
            parsed = parse_timestamp(stamp)
            if parsed is None or parsed < EARLIEST_TIMESTAMP or parsed > self._latest:
                return None
            ts, ts_text = parsed, timestamp_text(parsed, stamp)
        value: float | None = None
        value_text = values[at_value].strip() if at_value >= 0 else ""
        if value_text:
            value = _parse_number(value_text)
            if value is None:
                return None
        elif kind == "rating":
            return None
        recommendation_id = values[at_rec].strip() if at_rec >= 0 else ""
        event_id = values[at_event].strip() if at_event >= 0 else ""
        if len(recommendation_id) > MAX_RECOMMENDATION_ID_LENGTH or len(event_id) > 64:
            return None
        return CleanInteraction(
            user_id, item_id, kind, ts, value, recommendation_id, event_id, ts_text
        )

    def validate(
        self, row: int, fields: Mapping[str, str]
    ) -> tuple[CleanInteraction | None, list[RowError]]:
        errors: list[RowError] = []
        ids: list[str] = []
        for column in ("user_id", "item_id"):
            text = fields.get(column, "").strip()
            if not text:
                errors.append(RowError(row, column, "MISSING_VALUE", f"{column} is required."))
            elif len(text) > MAX_ID_LENGTH:
                errors.append(
                    RowError(
                        row,
                        column,
                        "TOO_LONG",
                        f"{column} is longer than {MAX_ID_LENGTH} characters.",
                        _preview(text),
                    )
                )
            ids.append(text)
        kind = fields.get("interaction_type", "").strip().lower()
        if not kind:
            errors.append(
                RowError(row, "interaction_type", "MISSING_VALUE", "interaction_type is required.")
            )
        elif kind not in INTERACTION_TYPES:
            errors.append(
                RowError(
                    row,
                    "interaction_type",
                    "UNKNOWN_INTERACTION_TYPE",
                    f"interaction_type must be one of {', '.join(INTERACTION_TYPES)}.",
                    _preview(kind),
                )
            )
        stamp_text = fields.get("timestamp", "").strip()
        ts, ts_text = self.now, self._now_text
        if stamp_text:
            parsed = parse_timestamp(stamp_text)
            if parsed is None or parsed < EARLIEST_TIMESTAMP:
                errors.append(
                    RowError(
                        row,
                        "timestamp",
                        "INVALID_TIMESTAMP",
                        "timestamp must be ISO 8601 (2026-11-25T10:00:00Z) or Unix seconds "
                        "after 1990.",
                        _preview(stamp_text),
                    )
                )
            elif parsed > self._latest:
                errors.append(
                    RowError(
                        row,
                        "timestamp",
                        "FUTURE_TIMESTAMP",
                        "timestamp is more than 5 minutes in the future; check the time zone.",
                        _preview(stamp_text),
                    )
                )
            else:
                ts, ts_text = parsed, timestamp_text(parsed, stamp_text)
        value: float | None = None
        value_text = fields.get("value", "").strip()
        if value_text:
            value = _parse_number(value_text)
            if value is None:
                errors.append(
                    RowError(
                        row,
                        "value",
                        "INVALID_NUMBER",
                        "value must be a number (a rating, quantity or amount).",
                        _preview(value_text),
                    )
                )
        elif kind == "rating":
            errors.append(
                RowError(row, "value", "MISSING_VALUE", "A rating needs its value (e.g. 4).")
            )
        recommendation_id = fields.get("recommendation_id", "").strip()
        if len(recommendation_id) > MAX_RECOMMENDATION_ID_LENGTH:
            errors.append(
                RowError(
                    row,
                    "recommendation_id",
                    "TOO_LONG",
                    f"recommendation_id exceeds {MAX_RECOMMENDATION_ID_LENGTH} characters.",
                    _preview(recommendation_id),
                )
            )
        event_id = fields.get("event_id", "").strip()
        if len(event_id) > 64:
            errors.append(
                RowError(
                    row,
                    "event_id",
                    "TOO_LONG",
                    "event_id exceeds 64 characters.",
                    _preview(event_id),
                )
            )
        if errors:
            return None, errors
        clean = CleanInteraction(
            ids[0], ids[1], kind, ts, value, recommendation_id, event_id, ts_text
        )
        return clean, []

    def is_duplicate(self, interaction: CleanInteraction) -> bool:
        """Whether an identical row appeared among the last rows (bounded window)."""
        key = hash(interaction[:6])  # every field but event_id
        recent = self._recent
        if key in recent:
            return True
        recent.add(key)
        # First in, first out: the ring holds the window's keys in arrival order (they
        # are distinct, since a key already in the window is never added again).
        ring = self._ring
        if len(ring) < _DUPLICATE_WINDOW:
            ring.append(key)
        else:
            at = self._oldest
            recent.discard(ring[at])
            ring[at] = key
            self._oldest = at + 1 if at + 1 < _DUPLICATE_WINDOW else 0
        return False
