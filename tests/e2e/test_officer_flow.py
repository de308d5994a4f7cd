"""Officers and admins handle reports through gRPC against the running services."""

from __future__ import annotations

import grpc
import pytest
from lapor.v1 import common_pb2, events_pb2
from lapor.v1 import officer_pb2 as pb

from services.common.topics import CASE_ACTIONS
from services.stack.supervisor import Stack
from tests.e2e.officer_support import Officers, admin, auth, submit
from tests.support import eventually, marker, read_topic

KTP = {
    "title": "E-KTP belum jadi",
    "body": "Sudah 3 bulan rekam e-KTP di Disdukcapil tapi blm jd juga, katanya blanko habis.",
    "region_code": "51.08",
}


def test_report_is_routed_by_topic_and_region_to_the_unit(stack: Stack) -> None:
    tracking_id = submit(stack, **KTP)
    with Officers(stack) as api:
        seen_by_admin = api.routed(tracking_id)
        assert seen_by_admin.institution.id == "pemda-51.08/disdukcapil"
        assert seen_by_admin.state == "assigned"
        assert seen_by_admin.colour == common_pb2.STATUS_COLOUR_RED
        explanation = seen_by_admin.routing
        assert explanation.rule.startswith("rule:adminduk-disdukcapil@")
        assert explanation.topic == "adminduk" and explanation.confidence >= 0.5
        assert explanation.matched_terms and explanation.scores[0].topic == "adminduk"
        unit = api.get(tracking_id, auth("pemda-51.08/disdukcapil"))
        assert unit.allowed_actions[:1] == ["accepted"]
        assert not unit.HasField("routing")  # the explanation is for admins
        government = api.get(tracking_id, auth("pemda-51.08", "institution_admin"))
        assert government.tracking_id == tracking_id

        def deadlines_known() -> pb.Report | None:
            report = api.get(tracking_id, admin())
            return report if report.deadlines else None

        with_deadlines = eventually(deadlines_known, what="the sla service's deadlines")
        assert {d.clock for d in with_deadlines.deadlines} >= {"first_response", "resolution"}
        first = next(d for d in with_deadlines.deadlines if d.clock == "first_response")
        assert with_deadlines.next_due_at == first.due_at


def test_admins_edit_the_directory_at_run_time(stack: Stack) -> None:
    unit = pb.InstitutionRecord(
        id=f"pemda-51.08/upt-{marker()}",
        name="UPT Pasar Buleleng",
        kind="unit",
        parent_id="pemda-51.08",
        region_code="51.08",
        topics=["sampah"],
    )
    with Officers(stack) as api:
        saved = api.admin.UpsertInstitution(
            pb.UpsertInstitutionRequest(institution=unit),
            metadata=auth("pemda-51.08", "institution_admin"),
            timeout=5,
        )
        assert saved == unit
        children = api.admin.ListInstitutions(
            pb.ListInstitutionsRequest(parent_id="pemda-51.08", page_size=500),
            metadata=admin(),
            timeout=5,
        )
        assert unit.id in [i.id for i in children.institutions]
        foreign = pb.InstitutionRecord(
            id="pemda-51.71/upt-x", name="x", kind="unit", parent_id="pemda-51.71"
        )
        with pytest.raises(grpc.RpcError) as denied:
            api.admin.UpsertInstitution(
                pb.UpsertInstitutionRequest(institution=foreign),
                metadata=auth("pemda-51.08", "institution_admin"),
                timeout=5,
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        # Naming itself as the new parent of another government's unit, or of a national
        # body, takes over nothing (their reports would have become its own).
        for target in ("pemda-51.71/dpupr", "nasional-bpjs-kesehatan"):
            takeover = pb.InstitutionRecord(
                id=target, name="diambil alih", kind="unit", parent_id="pemda-51.08"
            )
            with pytest.raises(grpc.RpcError) as taken:
                api.admin.UpsertInstitution(
                    pb.UpsertInstitutionRequest(institution=takeover),
                    metadata=auth("pemda-51.08", "institution_admin"),
                    timeout=5,
                )
            assert taken.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
            assert "not a unit directly below pemda-51.08" in taken.value.details()  # type: ignore[attr-defined]
        kept = api.admin.ListInstitutions(
            pb.ListInstitutionsRequest(parent_id="pemda-51.71", page_size=500),
            metadata=admin(),
            timeout=5,
        )
        assert "pemda-51.71/dpupr" in [i.id for i in kept.institutions]
        loop = pb.InstitutionRecord(
            id="pemda-51.08", name="Kabupaten Buleleng", kind="regency", parent_id=unit.id
        )
        with pytest.raises(grpc.RpcError) as looped:
            api.admin.UpsertInstitution(
                pb.UpsertInstitutionRequest(institution=loop), metadata=admin(), timeout=5
            )
        assert looped.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "cycle" in looped.value.details()  # type: ignore[attr-defined]
        orphan = pb.InstitutionRecord(id="nasional-x", name="x", kind="agency", parent_id="nope")
        with pytest.raises(grpc.RpcError) as bad:
            api.admin.UpsertInstitution(
                pb.UpsertInstitutionRequest(institution=orphan), metadata=admin(), timeout=5
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "unknown parent" in bad.value.details()  # type: ignore[attr-defined]


def test_near_duplicates_are_linked_both_ways(stack: Stack) -> None:
    place = f"Desa Banyuasri {marker()}"
    body = "Sampah menumpuk di pinggir jalan dekat pasar, bau busuk dan tidak diangkut seminggu."
    first = submit(stack, title=f"Sampah menumpuk {place}", body=body, region_code="51.08")
    with Officers(stack) as api:
        api.routed(first)
        second = submit(stack, title=f"Sampah menumpuk {place}", body=body + " Tolong.")
        report = api.routed(second)
        assert first in report.similar_reports
        eventually(lambda: second in api.get(first, admin()).similar_reports, what="the back link")
        holder = auth(report.institution.id)
        assert second in api.get(first, holder).similar_reports  # both are its own
        api.officer.Forward(
            pb.ForwardRequest(
                tracking_id=second, institution_id="nasional-klh", reason="limbah, bukan sampah"
            ),
            metadata=holder,
            timeout=5,
        )
        # Forwarded elsewhere: the link no longer shows the holder another institution's
        # report (its id is not even named); a national admin still sees both ends.
        assert second not in api.get(first, holder).similar_reports
        assert first not in api.get(second, auth("nasional-klh")).similar_reports
        assert second in api.get(first, admin()).similar_reports
        assert first in api.get(second, admin()).similar_reports


def test_decline_returns_to_the_queue_and_an_admin_verifies_elsewhere(stack: Stack) -> None:
    tracking_id = submit(stack, **KTP)
    unit = auth("pemda-51.08/disdukcapil")
    with Officers(stack) as api:
        api.routed(tracking_id)
        declined = api.officer.Decline(
            pb.ReasonRequest(tracking_id=tracking_id, reason="bukan kewenangan kami"),
            metadata=unit,
            timeout=5,
        )
        assert (declined.state, declined.institution.id) == (
            "in_verification",
            "verification-queue",
        )
        with pytest.raises(grpc.RpcError) as gone:
            api.get(tracking_id, unit)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        queue = api.admin.ListQueue(pb.ListQueueRequest(page_size=100), metadata=admin(), timeout=5)
        ids = [r.tracking_id for r in queue.reports]
        while tracking_id not in ids and queue.next_page_token:
            queue = api.admin.ListQueue(
                pb.ListQueueRequest(page_size=100, page_token=queue.next_page_token),
                metadata=admin(),
                timeout=5,
            )
            ids = [r.tracking_id for r in queue.reports]
        assert tracking_id in ids
        verified = api.admin.Verify(
            pb.ForwardRequest(tracking_id=tracking_id, institution_id="pemda-51/disdukcapil"),
            metadata=admin(),
            timeout=5,
        )
        assert (verified.state, verified.institution.id) == ("assigned", "pemda-51/disdukcapil")
        assert [h.action for h in verified.history] == ["routed", "declined", "verified"]
        assert verified.history[1].reason == "bukan kewenangan kami"


def test_forward_chain_to_resolution_publishes_every_action_in_order(stack: Stack) -> None:
    tracking_id = submit(stack, region_code="51.08")  # a pothole: the public works unit
    with Officers(stack) as api:
        assert api.routed(tracking_id).institution.id == "pemda-51.08/dpupr"
        dpupr = auth("pemda-51.08/dpupr")
        with pytest.raises(grpc.RpcError) as no_reason:
            api.officer.Forward(
                pb.ForwardRequest(tracking_id=tracking_id, institution_id="pemda-51.08/dishub"),
                metadata=dpupr,
                timeout=5,
            )
        assert no_reason.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "reason" in no_reason.value.details()  # type: ignore[attr-defined]
        api.officer.Forward(
            pb.ForwardRequest(
                tracking_id=tracking_id,
                institution_id="pemda-51.08/dishub",
                reason="jalan di depan terminal, urusan perhubungan",
            ),
            metadata=dpupr,
            timeout=5,
        )
        dishub = auth("pemda-51.08/dishub")
        api.officer.Accept(
            pb.CaseActionRequest(tracking_id=tracking_id), metadata=dishub, timeout=5
        )
        api.officer.Forward(
            pb.ForwardRequest(
                tracking_id=tracking_id,
                institution_id="nasional-kemen-pu",
                reason="jalan nasional",
            ),
            metadata=dishub,
            timeout=5,
        )
        pu = auth("nasional-kemen-pu")
        steps = [
            ("Accept", pb.CaseActionRequest(tracking_id=tracking_id)),
            ("SetHandlingClass", pb.SetHandlingClassRequest(tracking_id=tracking_id, handling_class="field_inspection")),
            ("Respond", pb.TextRequest(tracking_id=tracking_id, text="Laporan diterima, tim akan survei.")),
            ("PostFollowUp", pb.TextRequest(tracking_id=tracking_id, text="Survei selesai, perbaikan dijadwalkan.")),
            ("Resolve", pb.ResolveRequest(tracking_id=tracking_id, text="Jalan sudah ditambal.", evidence=["foto/after.jpg"])),
        ]  # fmt: skip
        for method, request in steps:
            report = getattr(api.officer, method)(request, metadata=pu, timeout=5)
        assert report.state == "resolved" and report.colour == common_pb2.STATUS_COLOUR_GREEN
        assert report.handling_class == "field_inspection"
        assert report.history[-1].evidence == ["foto/after.jpg"]
    expected = [
        "forwarded", "accepted", "forwarded", "accepted", "handling_class_set", "responded",
        "followed_up", "resolved",
    ]  # fmt: skip

    def published() -> list[events_pb2.CaseAction] | None:
        events = [
            events_pb2.CaseAction.FromString(v)
            for k, v in read_topic(stack.bootstrap_servers, CASE_ACTIONS)
            if k == tracking_id.encode() and v is not None
        ]
        return events if len(events) >= len(expected) else None

    events = eventually(published, what="every CaseAction")
    assert [e.action for e in events] == expected
    assert events[0].institution.id == "pemda-51.08/dishub"
    assert events[0].reason == "jalan di depan terminal, urusan perhubungan"
    assert events[-1].to_state == "resolved" and events[-1].public_note == "Jalan sudah ditambal."
    assert len({e.meta.event_id for e in events}) == len(events)
