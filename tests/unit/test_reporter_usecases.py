"""The reporter's use cases over fakes of our own ports: authentication by follow-up code,
state checks, the reopen bound, racing actions, the public listing's pages."""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.clock import ManualClock
from services.common.errors import FailedPrecondition, NotFound, PermissionDenied, ValidationError
from services.common.ids import new_tracking_id
from services.intake.domain import Contact
from services.intake.listing import PublicQuery, build_query
from services.intake.reporter import NO_MATCH, ReporterActionRecord, ReporterHandlers, snapshot
from services.intake.reporter_rules import CaseSnapshot

CODE = "ABCD-EFGH-JKMN"


class FakeReports:
    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.events: list[ReporterActionRecord] = []
        self.before_write: Any = None  # a hook to move the case between read and write

    def add(self, **fields: Any) -> str:
        tid = fields.pop("_id", None) or new_tracking_id()
        self.docs[tid] = {
            "_id": tid,
            "privacy": "public",
            "classification": "complaint",
            "title": "Jalan berlubang",
            "body": "Jalan Cipto rusak",
            "region_code": "51.08",
            "received_at": datetime(2026, 3, 1, tzinfo=UTC),
            "code": CODE,
            **fields,
        }
        return tid

    async def get(self, tracking_id: str) -> dict[str, Any] | None:
        doc = self.docs.get(tracking_id)
        return copy.deepcopy(doc) if doc else None

    async def record_action(
        self, expected: CaseSnapshot, record: ReporterActionRecord, counts_as_rejection: bool
    ) -> bool:
        if self.before_write:
            self.before_write()
        doc = self.docs[record.tracking_id]
        now = snapshot(doc)
        if (
            now.state != expected.state
            or now.case_seq != expected.case_seq
            or now.reporter_seq == expected.case_seq
            or (counts_as_rejection and now.rejections != expected.rejections)
        ):
            return False
        doc["reporter_seq"] = expected.case_seq
        doc.setdefault("my_actions", []).append(record.__dict__)
        if counts_as_rejection:
            doc["rejections"] = now.rejections + 1
        self.events.append(record)
        return True

    async def list_public(self, query: PublicQuery) -> list[dict[str, Any]]:
        rows = [
            d
            for d in self.docs.values()
            if d["privacy"] == "public"
            and (not query.region_code or d["region_code"].startswith(query.region_code))
            and (not query.state or d.get("state") == query.state)
        ]
        rows.sort(key=lambda d: (d["received_at"], d["_id"]), reverse=True)
        if query.after:
            key = (query.after.received_at, query.after.tracking_id)
            rows = [d for d in rows if (d["received_at"], d["_id"]) < key]
        return rows[: query.page_size + 1]


def verify(doc: dict[str, Any] | None, code: str) -> bool:
    return doc is not None and doc["code"] == code


@pytest.fixture
def reports() -> FakeReports:
    return FakeReports()


@pytest.fixture
def handlers(reports: FakeReports) -> ReporterHandlers:
    ids = itertools.count(1)
    return ReporterHandlers(
        reports=reports,
        verify=verify,
        open_contact=lambda doc: (
            Contact("Siti Rahma", "+6281234567890", "siti@contoh.id") if doc.get("sealed") else None
        ),
        clock=ManualClock(),
        new_event_id=lambda: f"ev{next(ids)}",
        max_reopens=2,
    )


async def test_public_view_of_an_unknown_report_is_not_found(handlers: ReporterHandlers) -> None:
    with pytest.raises(NotFound):
        await handlers.public_view(new_tracking_id())
    with pytest.raises(ValidationError) as err:
        await handlers.public_view("ABC")
    assert err.value.violations[0].field == "tracking_id"


async def test_wrong_code_and_unknown_id_get_the_same_answer(
    handlers: ReporterHandlers, reports: FakeReports
) -> None:
    tid = reports.add()
    with pytest.raises(PermissionDenied) as wrong:
        await handlers.my_report(tid, "WXYZ-WXYZ-WXYZ")
    with pytest.raises(PermissionDenied) as unknown:
        await handlers.my_report(new_tracking_id(), CODE)
    assert str(wrong.value) == str(unknown.value) == NO_MATCH
    with pytest.raises(ValidationError) as empty:
        await handlers.my_report(tid, " ")
    assert empty.value.violations[0].field == "follow_up_code"


async def test_my_report_masks_the_contact_and_lists_allowed_actions(
    handlers: ReporterHandlers, reports: FakeReports
) -> None:
    tid = reports.add(sealed=True, state="resolved", case_seq=3)
    mine = await handlers.my_report(tid, CODE)
    assert mine.contact.phone == "+62812****7890"
    assert mine.contact.email == "s***@contoh.id"
    assert mine.contact.name == "S*** R***"
    assert mine.allowed == ["confirm_resolution", "reject_resolution", "upload_evidence"]
    anonymous = reports.add(privacy="anonymous")
    assert (await handlers.my_report(anonymous, CODE)).contact == Contact()


async def test_add_information_only_while_awaiting_the_reporter(
    handlers: ReporterHandlers, reports: FakeReports
) -> None:
    tid = reports.add(state="in_progress", case_seq=2)
    with pytest.raises(FailedPrecondition) as err:
        await handlers.add_information(tid, CODE, "Foto terlampir")
    assert "add_information" in str(err.value) and "awaiting_reporter" in str(err.value)
    assert "in_progress" in str(err.value)
    reports.docs[tid].update(state="awaiting_reporter", case_seq=3)
    record = await handlers.add_information(tid, CODE, "  Lokasi: depan pasar  ")
    assert (record.action, record.text) == ("info_provided", "Lokasi: depan pasar")
    assert [e.event_id for e in reports.events] == [record.event_id]


async def test_field_rules_come_before_authentication(
    handlers: ReporterHandlers, reports: FakeReports
) -> None:
    tid = reports.add(state="resolved", case_seq=1)
    with pytest.raises(ValidationError) as err:
        await handlers.confirm_resolution(tid, "wrong", 6, "x" * 2001)
    assert {v.field for v in err.value.violations} == {"rating", "comment"}
    with pytest.raises(ValidationError):
        await handlers.reject_resolution(tid, CODE, "  ")
    assert reports.events == []


async def test_confirm_and_reject_only_when_resolved(
    handlers: ReporterHandlers, reports: FakeReports
) -> None:
    tid = reports.add(state="awaiting_reporter", case_seq=1)
    with pytest.raises(FailedPrecondition, match="confirm_resolution is allowed only in"):
        await handlers.confirm_resolution(tid, CODE, 5, "")
    with pytest.raises(FailedPrecondition, match="reject_resolution is allowed only in"):
        await handlers.reject_resolution(tid, CODE, "belum diperbaiki")
    reports.docs[tid].update(state="resolved", case_seq=2)
    record = await handlers.confirm_resolution(tid, CODE, 4, "Terima kasih")
    assert (record.action, record.rating, record.text) == ("confirmed", 4, "Terima kasih")


async def test_one_reporter_action_per_case_state(
    handlers: ReporterHandlers, reports: FakeReports
) -> None:
    tid = reports.add(state="resolved", case_seq=5)
    await handlers.confirm_resolution(tid, CODE, 5, "")
    with pytest.raises(FailedPrecondition, match="still being handled"):
        await handlers.reject_resolution(tid, CODE, "berubah pikiran")
    assert len(reports.events) == 1


async def test_reopen_is_bounded(handlers: ReporterHandlers, reports: FakeReports) -> None:
    tid = reports.add(state="resolved", case_seq=1)
    for round_ in range(2):
        await handlers.reject_resolution(tid, CODE, f"belum selesai {round_}")
        # routing reopens the case and resolves it again
        reports.docs[tid].update(state="resolved", case_seq=reports.docs[tid]["case_seq"] + 2)
    with pytest.raises(FailedPrecondition, match="reopened 2 times"):
        await handlers.reject_resolution(tid, CODE, "masih belum")
    assert "reject_resolution" not in (await handlers.my_report(tid, CODE)).allowed
    await handlers.confirm_resolution(tid, CODE, 2, "ya sudahlah")
    assert [e.action for e in reports.events] == ["rejected", "rejected", "confirmed"]


async def test_a_case_that_moves_between_read_and_write_is_refused(
    handlers: ReporterHandlers, reports: FakeReports
) -> None:
    tid = reports.add(state="resolved", case_seq=1)

    def closed_meanwhile() -> None:
        reports.docs[tid].update(state="closed", case_seq=2)

    reports.before_write = closed_meanwhile
    with pytest.raises(FailedPrecondition, match="in state closed"):
        await handlers.reject_resolution(tid, CODE, "belum")
    assert reports.events == []


async def test_public_listing_pages_newest_first_without_gaps(
    handlers: ReporterHandlers, reports: FakeReports
) -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    public = [reports.add(received_at=start + timedelta(minutes=i // 2)) for i in range(7)]
    reports.add(privacy="confidential", received_at=start + timedelta(hours=1))
    reports.add(privacy="anonymous", received_at=start + timedelta(hours=1))
    seen: list[str] = []
    token = ""
    for _ in range(10):
        page = await handlers.list_public(build_query("", None, "", "", 3, token))
        seen += [d["_id"] for d in page.reports]
        token = page.next_page_token
        if not token:
            break
    expected = sorted(public, key=lambda t: (reports.docs[t]["received_at"], t), reverse=True)
    assert seen == expected


def test_page_tokens_are_checked() -> None:
    with pytest.raises(ValidationError) as err:
        build_query("", None, "", "", 10, "not-a-token")
    assert err.value.violations[0].field == "page_token"
    with pytest.raises(ValidationError) as bad:
        build_query("5", None, "", "nonsense", -1, "")
    assert {v.field for v in bad.value.violations} == {"region_code", "state", "page_size"}
    assert build_query("", None, "", "", 1000, "").page_size == 100
    assert build_query("", None, "", "", 0, "").page_size == 20


def test_follow_up_codes_are_checked_against_the_stored_hashes() -> None:
    from services.intake.followup import FIELD, hash_follow_up_code
    from services.intake.reporter_wiring import verify_code

    doc = {"_id": "T", FIELD: [hash_follow_up_code("7K3M-9QX2-DACB")]}
    assert verify_code(doc, "7k3m 9qx2 dacb")
    assert not verify_code(doc, "7K3M-9QX2-DACC")
    assert not verify_code({"_id": "T"}, "7K3M-9QX2-DACB")
    assert not verify_code(None, "7K3M-9QX2-DACB")


def test_reporter_settings_from_the_environment() -> None:
    from services.common.settings import Env, SettingsError
    from services.intake.reporter_wiring import ReporterSettings

    defaults = ReporterSettings.from_env(Env({}))
    assert defaults.max_reopens == 2
    assert defaults.evidence.max_file_bytes == 10 * 1024 * 1024
    custom = ReporterSettings.from_env(Env({"LAPOR_EVIDENCE_MAX_REPORT_BYTES": "4096"}))
    assert custom.evidence.max_report_bytes == 4096
    with pytest.raises(SettingsError, match="LAPOR_EVIDENCE_MAX_FILE_BYTES"):
        ReporterSettings.from_env(Env({"LAPOR_EVIDENCE_MAX_FILE_BYTES": "lots"}))
