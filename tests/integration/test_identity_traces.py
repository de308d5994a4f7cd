"""What leads back to a reporter goes with their identity, against the real database
process: the keyed hash of a social-media post or an institution system's reference in the
report's scope, and the names the reporter gave their evidence files (never in GridFS, gone
from the listing at erasure and at a raise to anonymous, never listed on a report that keeps
no identity). And the backstop: an identity is erased LAPOR_INTAKE_IDENTITY_MAX_DAYS after
receipt whatever the report's state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

from bson import ObjectId
from lapor.v1 import reporter_pb2
from prometheus_client import REGISTRY

from services.common.clock import ManualClock
from services.common.ids import new_tracking_id
from services.common.topics import REPORTER_ACTIONS
from services.intake.case_view import CaseActionProjection
from services.intake.channel_wiring import forget_expired
from services.intake.channels import POST_SCOPE, reference_scope
from services.intake.domain import Channel, InstitutionOrigin, Privacy, receive
from services.intake.evidence import EvidenceHandlers, EvidenceHeader, EvidenceLimits
from services.intake.evidence_store import (
    GridFsEvidenceStore,
    drop_unkept_file_names,
    neutral_file_names,
)
from services.intake.followup import hash_follow_up_code
from services.intake.reporter import ReporterHandlers
from services.intake.reporter_api import ReporterServicer
from services.intake.reporter_store import MongoReportRepository
from services.intake.reporter_wiring import verify_code
from services.intake.store import MongoComplaintStore
from tests.integration.test_identity_retention import SETTINGS, T0, action
from tests.integration.test_intake_store_channels import CIPHER, CMD, make_store

CODE = "7K3M-9QX2-DACB"
PDF = b"%PDF-1.4\n" + b"%" * 2_000 + b"\n%%EOF\n"
NAME = "KTP_Budi_Santoso_081234567890.pdf"  # what a reporter may call a scan of their ID
WEB = CMD
SOCIAL = replace(CMD, channel=Channel.SOCIAL_MEDIA)
INSTITUTION = replace(
    CMD, channel=Channel.INSTITUTION_SYSTEM, institution=InstitutionOrigin("sys-a", "A/17")
)
POST = f"{POST_SCOPE}0f3a"  # a keyed hash of the post
REFERENCE = reference_scope("sys-a", "9b1c")
DEDUPE = "dedupe:000000000001:h"


def erased(reason: str) -> float:
    sample = REGISTRY.get_sample_value("lapor_intake_identities_erased_total", {"reason": reason})
    return sample or 0.0


async def add(store: MongoComplaintStore, cmd: Any, scope: str = "", **fields: Any) -> str:
    """Store a report of `cmd` under `scope` (else its own idempotency key, `web:<its id>`)."""
    tid = new_tracking_id()
    if not scope:
        cmd = replace(cmd, idempotency_key=tid)
    stored = await store.add(
        receive(
            cmd,
            tid,
            fields.pop("at", T0),
            idempotency_scope=scope,
            follow_up_hash=hash_follow_up_code(CODE),
            **fields,
        )
    )
    return stored.tracking_id


async def close(complaints: Any, *tids: str) -> None:
    await CaseActionProjection(complaints).apply(
        [action(tid, "confirmed", "resolved", "closed", T0) for tid in tids]
    )


async def docs(complaints: Any) -> dict[str, Any]:
    return {d["_id"]: d async for d in complaints.find({})}


async def one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def reporter_side(db: Any) -> tuple[ReporterHandlers, EvidenceHandlers]:
    reporter = ReporterHandlers(
        MongoReportRepository(db["complaints"]), verify_code, lambda d: None, ManualClock(), str, 2
    )
    files = GridFsEvidenceStore(db, db["complaints"])
    return reporter, EvidenceHandlers(reporter, files, ManualClock(), EvidenceLimits())


async def upload(db: Any, evidence: EvidenceHandlers, tid: str) -> str:
    await db["complaints"].update_one({"_id": tid}, {"$set": {"state": "in_progress"}})
    stored = await evidence.upload(EvidenceHeader(tid, CODE, NAME, "application/pdf"), one(PDF))
    return stored.evidence_id


async def test_erasure_forgets_the_post_or_reference_the_report_came_from(db: Any) -> None:
    store = await make_store(db)
    complaints = db["complaints"]
    social = await add(store, SOCIAL, POST, dedupe_keys=(DEDUPE,))
    institution = await add(store, INSTITUTION, REFERENCE)
    web = await add(store, WEB)
    open_ = await add(store, SOCIAL, f"{POST_SCOPE}77aa")
    anonymous = await add(store, replace(SOCIAL, privacy=Privacy.ANONYMOUS), f"{POST_SCOPE}5e")
    await close(complaints, social, institution, web, anonymous)
    before = erased("final")

    # Anonymous scopes kept for good: this one follows that setting, not the identity's.
    settings = replace(SETTINGS, anonymous_scope_retention=timedelta(0))
    await forget_expired(settings, store, ManualClock(T0 + timedelta(days=366)))
    kept = await docs(complaints)
    assert kept[social]["idem"] == [f"forgotten:{social}"]  # its dedupe key went too
    assert kept[institution]["idem"] == f"forgotten:{institution}"
    assert kept[web]["idem"] == f"web:{web}"  # an idempotency key leads nowhere
    for tid in (social, institution, web):
        assert "reporter" not in kept[tid] and "retention_from" not in kept[tid]
    assert kept[open_]["idem"] == f"{POST_SCOPE}77aa" and "reporter" in kept[open_]
    assert kept[anonymous]["idem"] == f"{POST_SCOPE}5e"
    assert "retention_from" not in kept[anonymous]  # not left waiting in the index for it
    assert erased("final") - before == 3
    await store.close()


class Interrupted(MongoComplaintStore):
    """A store whose scope rewrite meets a concurrent write once (the report is left as
    `_rewrite_scopes` leaves a report whose ``idem`` changed between its read and write)."""

    skip = True

    async def _rewrite_scopes(self, *args: Any) -> tuple[int, int]:
        if self.skip:
            self.skip = False
            return 1, 0
        return await super()._rewrite_scopes(*args)


async def test_a_report_whose_scope_was_not_yet_forgotten_stays_due(db: Any) -> None:
    store = Interrupted(db["complaints"], CIPHER)
    await store.ensure_indexes()
    complaints = db["complaints"]
    social = await add(store, SOCIAL, POST)
    await close(complaints, social)
    closed_before = T0 + timedelta(days=1)

    assert await store.forget_identities(closed_before) == 0
    doc = await complaints.find_one({"_id": social})
    assert doc["idem"] == POST and "reporter" in doc  # neither goes without the other
    assert doc["retention_from"] == T0  # still due

    assert await store.forget_identities(closed_before) == 1  # the next round
    doc = await complaints.find_one({"_id": social})
    assert doc["idem"] == f"forgotten:{social}" and "reporter" not in doc
    assert "retention_from" not in doc
    await store.close()


async def test_gridfs_never_keeps_the_name_the_reporter_gave_a_file(db: Any) -> None:
    store = await make_store(db)
    _, evidence = reporter_side(db)
    tid = await add(store, WEB)
    evidence_id = await upload(db, evidence, tid)
    stored = await db["evidence.files"].find_one({"_id": ObjectId(evidence_id)})
    assert stored["filename"] == f"lampiran-{evidence_id}.pdf"
    listed = (await db["complaints"].find_one({"_id": tid}))["evidence"]
    assert listed[0]["name"] == NAME  # the reporter's, while their identity is kept
    await store.close()


async def test_files_stored_under_the_reporters_name_get_neutral_names(db: Any) -> None:
    files = db["evidence.files"]
    ids = [ObjectId() for _ in range(4)]
    names = [NAME, "lampiran-Budi.jpg", f"lampiran-{ids[2]}.pdf", "IMG_0001.HEIC"]
    types = ["application/pdf", "image/jpeg", "application/pdf", "image/heic"]
    await files.insert_many(
        [
            {"_id": i, "filename": n, "metadata": {"tracking_id": "T", "content_type": t}}
            for i, n, t in zip(ids, names, types, strict=True)
        ]
    )
    damaged = ObjectId()
    await files.insert_one({"_id": damaged, "filename": "Budi.bin"})  # no metadata
    assert await neutral_file_names(files) == 4
    assert await neutral_file_names(files) == 0  # idempotent
    kept = {d["_id"]: d["filename"] async for d in files.find({})}
    assert kept == {
        ids[0]: f"lampiran-{ids[0]}.pdf",
        ids[1]: f"lampiran-{ids[1]}.jpg",
        ids[2]: f"lampiran-{ids[2]}.pdf",
        ids[3]: f"lampiran-{ids[3]}.heic",
        damaged: f"lampiran-{damaged}.bin",
    }


async def test_after_erasure_the_reporter_sees_neutral_file_names(db: Any) -> None:
    store = await make_store(db)
    complaints = db["complaints"]
    reporter, evidence = reporter_side(db)
    tid = await add(store, WEB)
    evidence_id = await upload(db, evidence, tid)
    bare = await add(store, WEB)  # no evidence: the names' `$[]` must not fail on it
    await close(complaints, tid, bare)

    await forget_expired(SETTINGS, store, ManualClock(T0 + timedelta(days=366)))
    doc = await complaints.find_one({"_id": tid})
    assert "reporter" not in doc and "Budi" not in repr(doc)
    assert "evidence" not in await complaints.find_one({"_id": bare})
    assert "Budi" not in repr(await db["evidence.files"].find({}).to_list(None))
    servicer = ReporterServicer(reporter, evidence)
    request = reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code=CODE)
    mine = await servicer.GetMyReport(request, None)  # type: ignore[arg-type]
    assert [e.file_name for e in mine.evidence] == [f"lampiran-{evidence_id}.pdf"]
    await store.close()


async def test_raising_to_anonymous_drops_the_file_names_too(db: Any) -> None:
    store = await make_store(db)
    complaints = db["complaints"]
    _, evidence = reporter_side(db)
    named = await add(store, WEB)
    await upload(db, evidence, named)
    bare = await add(store, WEB)
    for tid in (named, bare):
        assert await store.raise_privacy(tid, Privacy.CONFIDENTIAL, Privacy.ANONYMOUS, T0)
        assert not await store.raise_privacy(tid, Privacy.CONFIDENTIAL, Privacy.ANONYMOUS, T0)
    kept = await docs(complaints)
    for tid in (named, bare):
        doc = kept[tid]
        assert doc["privacy"] == "anonymous" and "reporter" not in doc
        assert "identity_since" not in doc and "Budi" not in repr(doc)
        raised = [e for e in doc["_outbox"] if e["topic"] == REPORTER_ACTIONS]
        assert len(raised) == 1  # one write took the raise
    assert len(kept[named]["evidence"]) == 1 and "evidence" not in kept[bare]
    await store.close()


async def test_a_report_without_an_identity_lists_new_uploads_without_their_names(
    db: Any,
) -> None:
    """Anonymous from the start, raised to anonymous, or erased by the longest keep while
    still open: a file uploaded after that is listed without the name the reporter gave
    it, and the reporter sees the neutral one. A report keeping its identity keeps it."""
    store = await make_store(db)
    complaints = db["complaints"]
    reporter, evidence = reporter_side(db)
    anonymous = await add(store, replace(WEB, privacy=Privacy.ANONYMOUS))
    raised = await add(store, WEB)
    assert await store.raise_privacy(raised, Privacy.CONFIDENTIAL, Privacy.ANONYMOUS, T0)
    backstopped = await add(store, WEB)
    named = await add(store, WEB, at=T0 + timedelta(days=700))
    settings = replace(SETTINGS, identity_max_age=timedelta(days=1095))
    await forget_expired(settings, store, ManualClock(T0 + timedelta(days=1096)))
    assert "reporter" not in await complaints.find_one({"_id": backstopped})

    ids = {tid: await upload(db, evidence, tid) for tid in (anonymous, raised, backstopped)}
    await upload(db, evidence, named)
    kept = await docs(complaints)
    servicer = ReporterServicer(reporter, evidence)
    for tid, evidence_id in ids.items():
        [listed] = kept[tid]["evidence"]
        assert listed["id"] == evidence_id and "name" not in listed
        assert "Budi" not in repr(kept[tid])
        request = reporter_pb2.GetMyReportRequest(tracking_id=tid, follow_up_code=CODE)
        mine = await servicer.GetMyReport(request, None)  # type: ignore[arg-type]
        assert [e.file_name for e in mine.evidence] == [f"lampiran-{evidence_id}.pdf"]
    assert [e["name"] for e in kept[named]["evidence"]] == [NAME]
    await store.close()


async def test_names_older_versions_listed_on_reports_without_an_identity_are_removed(
    db: Any,
) -> None:
    complaints = db["complaints"]
    listing = [{"id": "e1", "name": NAME, "type": "application/pdf", "size": 1}]
    await complaints.insert_many(
        [
            {"_id": "ANON", "privacy": "anonymous", "evidence": listing},
            {"_id": "ERASED", "privacy": "confidential", "evidence": listing},
            {
                "_id": "KEPT",
                "privacy": "confidential",
                "reporter": {"ct": b"x"},
                "evidence": listing,
            },
            {"_id": "BARE", "privacy": "anonymous"},
            {"_id": "EMPTY", "privacy": "anonymous", "evidence": []},
        ]
    )
    assert await drop_unkept_file_names(complaints) == 2
    assert await drop_unkept_file_names(complaints) == 0  # idempotent
    kept = await docs(complaints)
    for tid in ("ANON", "ERASED"):
        assert kept[tid]["evidence"] == [{"id": "e1", "type": "application/pdf", "size": 1}]
    assert kept["KEPT"]["evidence"] == listing
    assert "evidence" not in kept["BARE"] and kept["EMPTY"]["evidence"] == []


async def test_an_identity_goes_the_longest_keep_after_receipt_whatever_the_state(
    db: Any,
) -> None:
    store = await make_store(db)
    complaints = db["complaints"]
    _, evidence = reporter_side(db)
    in_progress = await add(store, SOCIAL, POST)
    await upload(db, evidence, in_progress)
    never_routed = await add(store, INSTITUTION, REFERENCE)
    anonymous = await add(store, replace(WEB, privacy=Privacy.ANONYMOUS))
    recent = await add(store, WEB, at=T0 + timedelta(days=700))
    settings = replace(SETTINGS, identity_max_age=timedelta(days=1095))
    assert (await complaints.find_one({"_id": recent}))["identity_since"] == T0 + timedelta(
        days=700
    )
    assert "identity_since" not in await complaints.find_one({"_id": anonymous})
    indexes = await complaints.index_information()
    assert indexes["identity_since_1"].get("sparse") is True
    before = erased("age")

    clock = ManualClock(T0 + timedelta(days=1094))
    await forget_expired(settings, store, clock)
    assert await complaints.count_documents({"reporter": {"$exists": True}}) == 3

    clock.advance(timedelta(days=2))
    await forget_expired(settings, store, clock)
    kept = await docs(complaints)
    for tid in (in_progress, never_routed):
        doc = kept[tid]
        assert "reporter" not in doc and "identity_since" not in doc
        assert doc["reachable"] is False and doc["follow_up_codes"]
        assert doc["idem"] == f"forgotten:{tid}"
    assert "Budi" not in repr(kept[in_progress])
    assert kept[in_progress]["state"] == "in_progress"  # the case goes on, without them
    assert "reporter" in kept[recent] and kept[recent]["identity_since"] == T0 + timedelta(days=700)
    assert erased("age") - before == 2
    await forget_expired(settings, store, clock)  # again: nothing more
    assert erased("age") - before == 2

    off = replace(settings, identity_max_age=timedelta(0))
    await forget_expired(off, store, ManualClock(T0 + timedelta(days=9999)))
    assert "reporter" in await complaints.find_one({"_id": recent})  # 0: no backstop
    await store.close()


async def test_reports_stored_before_the_backstop_are_dated_from_their_receipt(
    db: Any,
) -> None:
    store = await make_store(db)
    complaints = db["complaints"]
    old = await add(store, WEB)
    anonymous = await add(store, replace(WEB, privacy=Privacy.ANONYMOUS))
    await complaints.update_many({}, {"$unset": {"identity_since": ""}})  # as stored before
    assert await store.date_undated_identities() == 1
    assert await store.date_undated_identities() == 0  # idempotent
    assert (await complaints.find_one({"_id": old}))["identity_since"] == T0
    assert "identity_since" not in await complaints.find_one({"_id": anonymous})
    settings = replace(SETTINGS, identity_max_age=timedelta(days=1095))
    await forget_expired(settings, store, ManualClock(T0 + timedelta(days=1096)))
    assert "reporter" not in await complaints.find_one({"_id": old})
    await store.close()
