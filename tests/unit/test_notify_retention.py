"""Notify's retention settings (LAPOR_NOTIFY_RECORD_RETENTION_DAYS,
LAPOR_NOTIFY_INBOX_RETENTION_DAYS) and the staleness rule (services/notify/handlers.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lapor.v1 import common_pb2, events_pb2

from services.common.settings import Env, SettingsError
from services.notify.bootstrap import NotifySettings
from services.notify.handlers import breach_at, stale

NOW = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
DAYS_90 = timedelta(days=90)


def settings(**env: str) -> NotifySettings:
    return NotifySettings.from_env(Env(env))


def test_records_are_kept_90_days_and_inbox_messages_60_by_default() -> None:
    s = settings()
    assert (s.record_retention, s.inbox_retention) == (DAYS_90, timedelta(days=60))
    assert s.provider == "collection"


def test_zero_keeps_for_good() -> None:
    s = settings(LAPOR_NOTIFY_RECORD_RETENTION_DAYS="0", LAPOR_NOTIFY_INBOX_RETENTION_DAYS=" 0 ")
    assert (s.record_retention, s.inbox_retention) == (None, None)


def test_the_retentions_are_read_in_days() -> None:
    s = settings(LAPOR_NOTIFY_RECORD_RETENTION_DAYS="31", LAPOR_NOTIFY_INBOX_RETENTION_DAYS="1")
    assert (s.record_retention, s.inbox_retention) == (timedelta(days=31), timedelta(days=1))


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [
        ("LAPOR_NOTIFY_RECORD_RETENTION_DAYS", "30", r"outside 31\.\.3650 \(0 keeps"),
        ("LAPOR_NOTIFY_RECORD_RETENTION_DAYS", "3651", r"outside 31\.\.3650 \(0 keeps"),
        ("LAPOR_NOTIFY_RECORD_RETENTION_DAYS", "-1", r"outside 31\.\.3650 \(0 keeps"),
        ("LAPOR_NOTIFY_RECORD_RETENTION_DAYS", "90d", "not an integer"),
        ("LAPOR_NOTIFY_INBOX_RETENTION_DAYS", "-1", r"outside 0\.\.3650"),
    ],
)
def test_a_bad_retention_is_named(name: str, raw: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}=.*{problem}"):
        settings(**{name: raw})


def test_an_event_is_stale_only_when_older_than_the_retention() -> None:
    assert not stale(NOW - DAYS_90, NOW, DAYS_90)  # a record created then still exists
    assert stale(NOW - DAYS_90 - timedelta(microseconds=1), NOW, DAYS_90)
    assert not stale(NOW - timedelta(days=3650), NOW, None)  # records kept: never stale
    assert not stale(None, NOW, DAYS_90)  # undated: not known to be old


def breach(occurred: datetime | None, due: datetime | None) -> events_pb2.SlaEvent:
    event = events_pb2.SlaEvent(
        meta=common_pb2.EventMeta(event_id="T:first_response:breach:unit", tracking_id="T"),
        breached=events_pb2.DeadlineBreached(clock="first_response", escalation_level="unit"),
    )
    if occurred is not None:
        event.meta.occurred_at.FromDatetime(occurred)
    if due is not None:
        event.breached.due_at.FromDatetime(due)
    return event


def test_a_breach_dates_from_its_deadline() -> None:
    due = NOW - timedelta(days=2)
    assert breach_at(breach(NOW, due)) == due  # a later rung: the deadline is the breach's
    assert breach_at(breach(due - timedelta(hours=1), due)) == due - timedelta(hours=1)
    assert breach_at(breach(NOW, None)) == NOW
    assert breach_at(breach(None, due)) == due
    assert breach_at(breach(None, None)) is None
