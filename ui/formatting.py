"""Small formatters shared by pages (timestamps, enum names, percentages)."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

__all__ = ["enum_label", "percent", "when"]


def when(stamp: Timestamp) -> str:
    """A protobuf timestamp as 'YYYY-MM-DD HH:MM UTC', or '' when unset."""
    if not stamp.seconds and not stamp.nanos:
        return ""
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M UTC")


def enum_label(name: str, prefix: str) -> str:
    """'TRAINING_JOB_STATE_RUNNING' → 'running'."""
    return name.removeprefix(prefix).replace("_", " ").lower()


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"
