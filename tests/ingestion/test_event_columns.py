"""Bulk imports announce interactions in columns; consumers read the same facts."""

from __future__ import annotations

from datetime import UTC, datetime

from embrec.events.v1 import events_pb2
from embrec.ingestion.v1 import resources_pb2 as pb
from services.event_messages import interactions_of
from services.ingestion.imports import add_columns, row_micros
from services.ingestion.parsing import CleanInteraction, timestamp_text


def _row(n: int, ts: datetime, value: float | None, rec: str, event: str) -> CleanInteraction:
    kind = ("view", "click", "purchase", "rating", "add_to_cart")[n % 5]
    return CleanInteraction(f"u{n}", f"i{n}", kind, ts, value, rec, event, timestamp_text(ts))


def _expected(row: CleanInteraction) -> pb.Interaction:
    types = {
        "view": pb.INTERACTION_TYPE_VIEW,
        "click": pb.INTERACTION_TYPE_CLICK,
        "add_to_cart": pb.INTERACTION_TYPE_ADD_TO_CART,
        "purchase": pb.INTERACTION_TYPE_PURCHASE,
        "rating": pb.INTERACTION_TYPE_RATING,
    }
    message = pb.Interaction(
        user_id=row.user_id,
        item_id=row.item_id,
        interaction_type=types[row.type],
        recommendation_id=row.recommendation_id,
        event_id=row.event_id,
    )
    message.timestamp.FromDatetime(row.ts)
    if row.value is not None:
        message.value = row.value
    return message


def test_columns_expand_to_the_same_interactions() -> None:
    stamps = [
        datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 25, 10, 59, 59, 999_999, tzinfo=UTC),
        datetime(1990, 1, 1, tzinfo=UTC),
        datetime(2026, 2, 28, 23, 59, 59, 1, tzinfo=UTC),
    ]
    rows = [
        _row(
            n,
            stamps[n % len(stamps)],
            [None, 4.0, 0.0, -2.5][n % 4],
            "rec-1" if n % 3 == 0 else "",
            f"e{n}" if n % 2 else "",
        )
        for n in range(12)
    ]
    event = events_pb2.InteractionsRecorded()
    add_columns(event.columns, rows, row_micros(rows).tolist())
    parsed = events_pb2.InteractionsRecorded.FromString(event.SerializeToString())
    assert interactions_of(parsed) == [_expected(r) for r in rows]


def test_unattributed_rows_send_no_id_columns() -> None:
    rows = [_row(n, datetime(2026, 1, 1, tzinfo=UTC), None, "", "") for n in range(3)]
    event = events_pb2.InteractionsRecorded()
    add_columns(event.columns, rows, row_micros(rows).tolist())
    assert not event.columns.recommendation_ids
    assert not event.columns.event_ids
    assert not event.columns.values
    assert [i.recommendation_id for i in interactions_of(event)] == ["", "", ""]


def test_tracked_events_keep_their_messages() -> None:
    message = pb.Interaction(user_id="u", item_id="i", interaction_type=pb.INTERACTION_TYPE_VIEW)
    event = events_pb2.InteractionsRecorded(interactions=[message])
    assert interactions_of(event) == [message]
