"""How a CaseAction changes the tracking view (pure), and the masking of a contact."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from lapor.v1 import common_pb2, events_pb2

from services.common.errors import ValidationError
from services.intake.case_view import case_update
from services.intake.domain import Contact
from services.intake.listing import Cursor, build_query, encode_token
from services.intake.reporter_rules import mask_handle, mask_phone, masked, visible_history

AT = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)


def action(**fields: object) -> events_pb2.CaseAction:
    ts = Timestamp()
    ts.FromDatetime(AT)
    meta = common_pb2.EventMeta(event_id="e1", tracking_id="T1", occurred_at=ts, producer="routing")
    return events_pb2.CaseAction(meta=meta, **fields)  # type: ignore[arg-type]


def test_accepted_sets_state_status_colour_and_institution() -> None:
    update = case_update(
        action(
            action="accepted",
            actor_role="officer",
            actor_id="officer-4711",
            from_state="assigned",
            to_state="in_progress",
            institution=common_pb2.Institution(id="pemda-51.08/pupr", name="Dinas PUPR"),
            holder_ancestors=["pemda-51.08"],
            public_note="Laporan diterima dan sedang ditangani",
        )
    )
    assert update["$set"] == {
        "responded": True,
        "state": "in_progress",
        "status": "in_progress",
        "colour": "yellow",
        "institution": {
            "id": "pemda-51.08/pupr",
            "name": "Dinas PUPR",
            "ancestors": ["pemda-51.08"],
        },
    }
    entry = update["$push"]["history"]
    assert entry == {
        "at": AT,
        "action": "accepted",
        "actor": "officer",
        "detail": "",
        "note": "Laporan diterima dan sedang ditangani",
        "public": True,
        "state": "in_progress",
    }
    assert "officer-4711" not in repr(update)
    assert update["$inc"] == {"case_seq": 1}


def test_resolved_is_green_and_followed_up() -> None:
    update = case_update(action(action="resolved", from_state="in_progress", to_state="resolved"))
    assert update["$set"]["colour"] == "green"
    assert update["$set"]["status"] == "followed_up"


def test_internal_actions_stay_out_of_public_history_and_keep_the_state() -> None:
    update = case_update(action(action="handling_class_set", actor_role="officer"))
    assert update["$push"]["history"]["public"] is False
    assert "state" not in update.get("$set", {})
    assert "$inc" not in update  # no state change: the reporter's next action waits


def test_rejection_carries_the_reopen_count() -> None:
    update = case_update(
        action(
            action="rejected",
            actor_role="reporter",
            from_state="resolved",
            to_state="in_progress",
            reopen_count=1,
        )
    )
    assert update["$max"] == {"reopen_count": 1}
    assert update["$set"]["state"] == "in_progress"


def test_unknown_roles_and_states_are_not_trusted() -> None:
    update = case_update(action(action="verified", actor_role="Budi Santoso", to_state="limbo"))
    assert update["$push"]["history"]["actor"] == "system"
    assert "state" not in update.get("$set", {})


def test_masks() -> None:
    assert mask_phone("+6281234567890") == "+62812****7890"
    assert mask_handle("twitter:@sitirahma") == "twitter:@s***"
    shown = masked(Contact("Siti Rahma", "+6281234567890", "siti.rahma@contoh.id"))
    assert shown == Contact("S*** R***", "+62812****7890", "s***@contoh.id")
    assert masked(None) == Contact()


def test_page_token_only_fits_its_filters() -> None:
    q = build_query("51", None, "", "", 10, "")
    token = encode_token(Cursor(AT, "X"), q)
    assert build_query("51", None, "", "", 10, token).after == Cursor(AT, "X")
    with pytest.raises(ValidationError, match="other filters"):
        build_query("52", None, "", "", 10, token)


def test_who_sees_which_history() -> None:
    notes = [
        {"at": AT, "action": "received", "actor": "intake", "detail": "via web"},
        {"at": AT, "action": "notified", "actor": "notify", "detail": "complaint_forwarded"},
        case_update(action(action="accepted", actor_role="officer", public_note="Ditinjau"))[
            "$push"
        ]["history"],
        case_update(action(action="declined", actor_role="officer", public_note="Bukan kami"))[
            "$push"
        ]["history"],
    ]

    def seen(privacy: str, public: bool) -> list[tuple[str, str]]:
        report = {"privacy": privacy, "history": notes}
        return [(h["action"], h["detail"]) for h in visible_history(report, public=public)]

    assert seen("public", True) == [("received", "via web"), ("accepted", "Ditinjau")]
    assert seen("confidential", True) == [("received", "via web"), ("accepted", "")]
    assert seen("anonymous", False) == [
        ("received", "via web"),
        ("notified", "complaint_forwarded"),
        ("accepted", "Ditinjau"),
        ("declined", "Bukan kami"),
    ]


def test_a_privacy_raise_does_not_let_a_waiting_reporter_act_again() -> None:
    """Routing applies the reporter's RaisePrivacy as a CaseAction of theirs with no state
    change: it must not count as routing having handled their pending confirm or reject."""
    raised = case_update(
        action(
            action="privacy_raised",
            actor_role="reporter",
            from_state="resolved",
            to_state="resolved",
        )
    )
    assert "$inc" not in raised
    for gated in ("info_provided", "confirmed", "rejected"):
        # even when routing leaves the state (a refusal is its own event; this is applied)
        update = case_update(
            action(action=gated, actor_role="reporter", from_state="resolved", to_state="resolved")
        )
        assert update["$inc"] == {"case_seq": 1}
