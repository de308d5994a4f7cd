"""The reporter's repository and the CaseAction projection against the real database
process: conditional action writes with their outbox event, the public listing's filters
and pages, idempotent case updates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from lapor.v1 import common_pb2, events_pb2

from services.common.kafka import Delivery
from services.common.topics import REPORTER_ACTIONS
from services.intake.case_view import CaseActionProjection
from services.intake.domain import Classification
from services.intake.listing import build_query
from services.intake.reporter import ReporterActionRecord, snapshot
from services.intake.reporter_store import MongoReportRepository

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def report(tid: str, **fields: Any) -> dict[str, Any]:
    return {
        "_id": tid,
        "privacy": "public",
        "classification": "complaint",
        "title": f"judul {tid}",
        "body": "isi",
        "region_code": "51.08",
        "received_at": T0,
        "history": [],
        "_applied": [],
        **fields,
    }


async def test_reporter_action_is_stored_with_its_event_once_per_case_state(db: Any) -> None:
    complaints = db["complaints"]
    await complaints.insert_one(report("A", state="resolved", case_seq=3))
    woken: list[bool] = []
    repo = MongoReportRepository(complaints, on_stored=lambda: woken.append(True))
    doc = await repo.get("A")
    assert doc is not None
    record = ReporterActionRecord("ev1", "A", "rejected", "belum diperbaiki", 0, T0)
    assert await repo.record_action(snapshot(doc), record, counts_as_rejection=True)
    again = ReporterActionRecord("ev2", "A", "confirmed", "", 5, T0)
    assert not await repo.record_action(snapshot(doc), again, counts_as_rejection=False)
    stored = await complaints.find_one({"_id": "A"})
    assert stored["rejections"] == 1 and stored["reporter_seq"] == 3
    assert [a["event_id"] for a in stored["my_actions"]] == ["ev1"]
    assert stored["_outbox_pending"] is True and woken == [True]
    [entry] = stored["_outbox"]
    assert (entry["topic"], entry["key"]) == (REPORTER_ACTIONS, "A")
    event = events_pb2.ReporterAction.FromString(entry["value"])
    assert (event.meta.event_id, event.action, event.text) == (
        "ev1",
        "rejected",
        "belum diperbaiki",
    )


async def test_public_listing_filters_and_pages(db: Any) -> None:
    complaints = db["complaints"]
    repo = MongoReportRepository(complaints)
    await repo.ensure_indexes()
    docs = [
        report("P1", received_at=T0 + timedelta(minutes=1), region_code="51.08", state="resolved"),
        report("P2", received_at=T0 + timedelta(minutes=2), region_code="51.71"),
        report("P3", received_at=T0 + timedelta(minutes=2), region_code="52.01", topic="BPJS"),
        report("P4", received_at=T0 + timedelta(minutes=3), classification="aspiration"),
        report("C1", received_at=T0 + timedelta(minutes=4), privacy="confidential"),
        report("N1", received_at=T0 + timedelta(minutes=5), privacy="anonymous"),
    ]
    await complaints.insert_many(docs)

    async def ids(**kw: Any) -> list[str]:
        q = build_query(
            kw.get("region", ""), kw.get("cls"), kw.get("cat", ""), kw.get("state", ""), 10, ""
        )
        return [d["_id"] for d in await repo.list_public(q)]

    assert await ids() == ["P4", "P3", "P2", "P1"]
    assert await ids(region="51") == ["P4", "P2", "P1"]
    assert await ids(region="51.71") == ["P2"]
    assert await ids(cat="BPJS") == ["P3"]
    assert await ids(state="resolved") == ["P1"]
    assert await ids(cls=Classification.ASPIRATION) == ["P4"]
    listed = await repo.list_public(build_query("", None, "", "", 10, ""))
    assert all("follow_up_codes" not in d and "reporter" not in d for d in listed)


def case_action(event_id: str, tid: str, **fields: Any) -> Delivery[events_pb2.CaseAction]:
    meta = common_pb2.EventMeta(event_id=event_id, tracking_id=tid, producer="routing")
    return Delivery(events_pb2.CaseAction(meta=meta, **fields), tid, 0, 0)


async def test_case_actions_apply_once_and_keep_yellow_after_a_response(db: Any) -> None:
    complaints = db["complaints"]
    await complaints.insert_one(report("A"))
    projection = CaseActionProjection(complaints)
    responded = case_action(
        "c1", "A", action="responded", actor_role="officer", from_state="assigned",
        to_state="assigned",
    )  # fmt: skip
    await projection.apply([responded])
    await projection.apply([responded])  # redelivered
    back = case_action(
        "c2", "A", action="forwarded", actor_role="institution_admin", from_state="assigned",
        to_state="in_verification",
    )  # fmt: skip
    await projection.apply([back])
    doc = await complaints.find_one({"_id": "A"})
    assert [h["action"] for h in doc["history"]] == ["responded", "forwarded"]
    assert doc["state"] == "in_verification" and doc["colour"] == "yellow"
    assert doc["case_seq"] == 1
