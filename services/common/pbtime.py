"""Conversions between datetimes and protobuf Timestamps, for every service's codec."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def occurred_at(ts: Timestamp) -> datetime:
    """An event's time as an aware UTC datetime; now when the producer left it unset."""
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else datetime.now(UTC)
