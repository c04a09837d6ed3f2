"""Validation shared by the methods that take an ``embrec.common.v1.TimeRange``."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.errors import FieldViolation, InvalidArgument

__all__ = ["MAX_RANGE", "check_time_range"]

#: The longest range a report covers (a year, leap years included).
MAX_RANGE = timedelta(days=366)


def check_time_range(start: datetime, end: datetime) -> None:
    """INVALID_ARGUMENT naming ``time_range`` if it is inverted or longer than a year."""
    if end < start:
        raise InvalidArgument(
            "time_range.end_time is before start_time.",
            violations=[FieldViolation("time_range", "end_time before start_time")],
        )
    if end - start > MAX_RANGE:
        raise InvalidArgument(
            "time_range is longer than 366 days; ask for a shorter range.",
            violations=[FieldViolation("time_range", "at most 366 days")],
        )
