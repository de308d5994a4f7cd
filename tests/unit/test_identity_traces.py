"""The forget round's rules over an in-memory store: the identity backstop
(LAPOR_INTAKE_IDENTITY_MAX_DAYS) next to the closure retention, each counted under its
reason; and the reporter's evidence listing once the names they gave were erased."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lapor.v1 import reporter_pb2
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.settings import Env, SettingsError
from services.intake.channel_auth import config_entry
from services.intake.channel_wiring import ChannelSettings, forget_expired
from services.intake.domain import Channel
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_api import ReporterServicer
from tests.unit.test_reporter_usecases import CODE, FakeReports, verify

NOW = datetime(2030, 1, 1, tzinfo=UTC)
BASE = {
    "LAPOR_ABUSE_HASH_KEY": "k" * 32,
    "LAPOR_INTAKE_CLIENTS": config_entry("web-portal", [Channel.WEB], "s" * 40),
}


class FakeForgetting:
    """The complaint store's forgetting, as calls: each returns `erase` identities."""

    def __init__(self, erase: int = 0) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.erase = erase

    async def forget_dedupe_keys(self, before_bucket: int) -> int:
        self.calls.append(("dedupe", before_bucket))
        return 0

    async def forget_anonymous_scopes(self, received_before: datetime) -> int:
        self.calls.append(("anonymous", received_before))
        return 0

    async def forget_identities(self, closed_before: datetime) -> int:
        self.calls.append(("final", closed_before))
        return self.erase

    async def forget_stale_identities(self, received_before: datetime) -> int:
        self.calls.append(("age", received_before))
        return self.erase


def erased(reason: str) -> float:
    sample = REGISTRY.get_sample_value("lapor_intake_identities_erased_total", {"reason": reason})
    return sample or 0.0


def test_the_identity_max_age_setting() -> None:
    assert ChannelSettings.from_env(Env(BASE)).identity_max_age == timedelta(days=1095)
    off = ChannelSettings.from_env(Env({**BASE, "LAPOR_INTAKE_IDENTITY_MAX_DAYS": "0"}))
    assert off.identity_max_age == timedelta(0)
    for bad in ("-1", "36501", "three years"):
        with pytest.raises(SettingsError, match="LAPOR_INTAKE_IDENTITY_MAX_DAYS"):
            ChannelSettings.from_env(Env({**BASE, "LAPOR_INTAKE_IDENTITY_MAX_DAYS": bad}))


async def test_the_round_erases_identities_received_the_longest_keep_ago() -> None:
    settings = replace(
        ChannelSettings.from_env(Env(BASE)),
        identity_retention=timedelta(days=365),
        identity_max_age=timedelta(days=1095),
    )
    store = FakeForgetting(erase=2)
    final, age = erased("final"), erased("age")
    await forget_expired(settings, store, ManualClock(NOW))
    assert ("final", NOW - timedelta(days=365)) in store.calls
    assert ("age", NOW - timedelta(days=1095)) in store.calls
    assert (erased("final") - final, erased("age") - age) == (2, 2)  # each under its reason


async def test_a_max_age_of_zero_erases_nothing_by_age() -> None:
    settings = replace(ChannelSettings.from_env(Env(BASE)), identity_max_age=timedelta(0))
    store = FakeForgetting(erase=1)
    age = erased("age")
    await forget_expired(settings, store, ManualClock(NOW))
    assert [name for name, _ in store.calls if name == "age"] == []
    assert erased("age") == age
    assert ("final", NOW - timedelta(days=365)) in store.calls  # the closure rule still runs


async def test_the_reporter_sees_the_neutral_name_of_a_file_whose_name_was_erased() -> None:
    reports = FakeReports()
    at = datetime(2026, 3, 1, tzinfo=UTC)
    entry = {"type": "image/jpeg", "size": 3, "sha256": "00", "at": at}
    tid = reports.add(
        evidence=[
            {"id": "65f0c0ffee0000000000a001", "name": "foto_jalan.jpg", **entry},
            {"id": "65f0c0ffee0000000000a002", **entry},  # the identity was erased
        ]
    )
    handlers = ReporterHandlers(
        reports=reports,
        verify=verify,
        open_contact=lambda doc: None,
        clock=ManualClock(),
        new_event_id=str,
        max_reopens=2,
    )
    servicer = ReporterServicer(handlers, None)  # type: ignore[arg-type]
    request = reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code=CODE)
    mine = await servicer.GetMyReport(request, None)  # type: ignore[arg-type]
    assert [e.file_name for e in mine.evidence] == [
        "foto_jalan.jpg",
        "lampiran-65f0c0ffee0000000000a002.jpg",
    ]
