"""Conversions between google.type.Date / Timestamp and Python dates."""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp
from google.type.date_pb2 import Date


def to_proto_date(value: dt.date | None) -> Date | None:
    if value is None:
        return None
    return Date(year=value.year, month=value.month, day=value.day)


def from_proto_date(value: Date | None) -> dt.date | None:
    """The date, or None for an unset or all-zero Date. Raises ValueError for an impossible date."""
    if value is None or (value.year == 0 and value.month == 0 and value.day == 0):
        return None
    return dt.date(value.year, value.month, value.day)


def to_timestamp(value: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return ts


def from_timestamp(value: Timestamp) -> dt.datetime:
    return value.ToDatetime(tzinfo=dt.UTC)
