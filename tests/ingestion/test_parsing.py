"""Reading and validating import files (pure: no server, no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.ingestion.parsing import (
    HeaderError,
    InteractionValidator,
    ItemValidator,
    RowError,
    RowReader,
)

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def read(data: bytes, chunk: int = 7, fmt: str = "csv") -> tuple[RowReader, list[tuple]]:
    reader = RowReader(fmt)
    rows = []
    for start in range(0, len(data), chunk):
        rows.extend(reader.feed(data[start : start + chunk]))
    rows.extend(reader.finish())
    return reader, rows


def report(kind: str, data: bytes, chunk: int = 7) -> list[tuple[int, str, str]]:
    reader, rows = read(data, chunk)
    assert reader.header is not None
    validator = (
        ItemValidator(reader.header)
        if kind == "items"
        else InteractionValidator(reader.header, now=NOW)
    )
    errors: list[RowError] = list(validator.header_errors)
    for row, fields, error in rows:
        if error is not None:
            errors.append(error)
            continue
        _clean, row_errors = validator.validate(row, fields)
        errors.extend(row_errors)
    return [(e.row, e.column, e.reason) for e in errors]


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
def test_every_kind_of_bad_item_row_is_reported(chunk: int) -> None:
    assert report("items", (DATA / "items_bad.csv").read_bytes(), chunk) == [
        (2, "price", "NEGATIVE_PRICE"),
        (3, "price", "INVALID_NUMBER"),
        (4, "item_id", "MISSING_VALUE"),
        (5, "item_id", "DUPLICATE_ITEM_ID"),
        (6, "image_url", "INVALID_URL"),
        (7, "", "MALFORMED_ROW"),
    ]


@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_every_kind_of_bad_interaction_row_is_reported(chunk: int) -> None:
    # Unknown items are checked against the catalog by the pipeline, not here.
    assert report("interactions", (DATA / "interactions_bad.csv").read_bytes(), chunk) == [
        (0, "session", "UNKNOWN_COLUMN"),
        (3, "interaction_type", "UNKNOWN_INTERACTION_TYPE"),
        (4, "timestamp", "INVALID_TIMESTAMP"),
        (5, "timestamp", "FUTURE_TIMESTAMP"),
        (7, "user_id", "MISSING_VALUE"),
        (8, "value", "MISSING_VALUE"),
        (9, "value", "INVALID_NUMBER"),
    ]


def test_quoted_newlines_and_commas_survive_chunking() -> None:
    _, rows = read((DATA / "items_bad.csv").read_bytes(), chunk=3)
    by_row = {row: fields for row, fields, _ in rows}
    assert by_row[6]["title"] == "Cable, USB-C"
    assert by_row[8]["title"] == "Quoted\nnewline"
    assert by_row[1]["brand"] == "Acme"


def test_invalid_utf8_is_a_row_error_not_a_crash() -> None:
    _, rows = read((DATA / "interactions_utf8.csv").read_bytes(), chunk=1 << 20)
    assert [(row, error.reason if error else None) for row, _, error in rows] == [
        (1, None),
        (2, "INVALID_UTF8"),
    ]


def test_exact_duplicates_are_detected() -> None:
    validator = InteractionValidator(["user_id", "item_id", "interaction_type"], now=NOW)
    first, _ = validator.validate(
        1,
        {
            "user_id": "u",
            "item_id": "i",
            "interaction_type": "view",
            "timestamp": "2026-01-01T00:00:00Z",
        },
    )
    again, _ = validator.validate(
        2,
        {
            "user_id": "u",
            "item_id": "i",
            "interaction_type": "view",
            "timestamp": "2026-01-01T00:00:00Z",
        },
    )
    assert first is not None and again is not None
    assert not validator.is_duplicate(first)
    assert validator.is_duplicate(again)


def test_timestamps_accept_iso_and_unix_seconds_and_millis() -> None:
    validator = InteractionValidator(["user_id", "item_id", "interaction_type"], now=NOW)
    for text in (
        "2026-01-01T00:00:00Z",
        "2026-01-01 01:00:00+01:00",
        "1767225600",
        "1767225600000",
    ):
        row, errors = validator.validate(
            1, {"user_id": "u", "item_id": "i", "interaction_type": "VIEW", "timestamp": text}
        )
        assert errors == [] and row is not None
        assert row.ts == datetime(2026, 1, 1, tzinfo=UTC), text


def test_header_without_required_columns_is_refused() -> None:
    reader, _ = read(b"sku,title\n1,x\n")
    assert reader.header is not None
    with pytest.raises(HeaderError, match="item_id"):
        ItemValidator(reader.header)
    with pytest.raises(HeaderError, match="empty"):
        read(b"")


def test_json_lines_rows_and_bad_lines() -> None:
    data = (
        b'{"item_id": "a", "price": 3, "attributes": {"brand": "Acme"}}\n'
        b"not json\n"
        b"[1, 2]\n"
        b'{"item_id": "b", "title": null}\n'
    )
    _, rows = read(data, chunk=4, fmt="json")
    assert [(r, f, e.reason if e else None) for r, f, e in rows] == [
        (1, {"item_id": "a", "price": "3", "brand": "Acme"}, None),
        (2, {}, "MALFORMED_ROW"),
        (3, {}, "MALFORMED_ROW"),
        (4, {"item_id": "b", "title": ""}, None),
    ]


FAST_CASES = [
    ["u1", "sku-1", "view", "2026-01-01T00:00:00Z", "", "", ""],
    [" u1 ", "sku-1", "VIEW", "1767225600", "", "rec-1", "e-1"],
    ["u1", "sku-1", "rating", "2026-01-01T00:00:00+02:00", "4", "", ""],
    ["u1", "sku-1", "rating", "2026-01-01T00:00:00Z", "", "", ""],  # rating without value
    ["u1", "sku-1", "purchase", "2026-13-01T00:00:00Z", "", "", ""],  # no 13th month
    ["u1", "sku-1", "view", "2027-01-01T00:00:00Z", "", "", ""],  # future
    ["u1", "sku-1", "view", "1989-12-31T00:00:00Z", "", "", ""],  # before 1990
    ["u1", "sku-1", "like", "", "", "", ""],
    ["", "sku-1", "view", "", "", "", ""],
    ["u" * 129, "sku-1", "view", "", "", "", ""],
    ["u1", "sku-1", "click", "", "nan", "", ""],
    ["u1", "sku-1", "click", "", "", "r" * 65, ""],
    ["u1", "sku-1", "click", "", "", "", "e" * 65],
]


@pytest.mark.parametrize("values", FAST_CASES)
def test_fast_path_accepts_exactly_what_validation_accepts(values: list[str]) -> None:
    columns = ["user_id", "item_id", "interaction_type", "timestamp", "value"]
    columns += ["recommendation_id", "event_id"]
    validator = InteractionValidator(columns, now=NOW)
    clean, errors = validator.validate(1, dict(zip(columns, values, strict=True)))
    assert validator.accept(values) == clean
    assert (clean is None) == bool(errors)


def test_unquoted_chunks_and_quoted_records_give_the_same_rows() -> None:
    data = b'user_id,item_id,interaction_type\nu1,a,view\n\nu2,"b,c",click\nu3,d\nu4,e,view\n'
    expected = [
        (1, {"user_id": "u1", "item_id": "a", "interaction_type": "view"}, None),
        (2, {"user_id": "u2", "item_id": "b,c", "interaction_type": "click"}, None),
    ]
    for chunk in (3, 64, 1 << 16):
        _, rows = read(data, chunk)
        assert rows[:2] == expected
        assert rows[2][0] == 3 and rows[2][2] is not None and rows[2][2].reason == "MALFORMED_ROW"
        assert rows[3][:2] == (4, {"user_id": "u4", "item_id": "e", "interaction_type": "view"})


def test_windows_line_endings_on_the_fast_path() -> None:
    data = b"user_id,item_id,interaction_type\r\nu1,a,view\r\n\r\nu2,b,click\r\n"
    _, rows = read(data, chunk=1 << 16)
    assert [(row, fields["user_id"]) for row, fields, _ in rows] == [(1, "u1"), (2, "u2")]
