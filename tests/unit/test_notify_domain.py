from services.notify import domain


def test_forwarded_message_names_report_and_institution() -> None:
    m = domain.forwarded("ABCD-EFGH-JKM", "Pemerintah Kabupaten Buleleng")
    assert m.template == "complaint_forwarded"
    assert "ABCD-EFGH-JKM" in m.text and "Buleleng" in m.text


def test_only_a_first_response_breach_is_told_to_the_reporter() -> None:
    assert domain.breached("T", "first_response") is not None
    assert domain.breached("T", "resolution") is None


def test_case_actions_the_reporter_hears_about() -> None:
    expected = {
        "responded": "institution_responded",
        "info_requested": "information_requested",
        "resolved": "complaint_resolved",
        "confirmed": "complaint_closed",
        "auto_closed": "complaint_closed",
        "archived": "complaint_archived",
        "not_authority": "complaint_not_authority",
        "verified": "complaint_forwarded",
        "forwarded": "complaint_forwarded",
    }
    for action, template in expected.items():
        m = domain.for_case_action("T1", action, "Dinas Kesehatan", "Sudah kami tangani.")
        assert m is not None and m.template == template
        assert "T1" in m.text
    for quiet in ("accepted", "declined", "deferred", "handling_class_set", "followed_up"):
        assert domain.for_case_action("T1", quiet, "X", "") is None


def test_the_public_note_is_passed_on() -> None:
    m = domain.for_case_action(
        "T1", "responded", "Disdukcapil", "KTP Anda siap diambil hari Senin."
    )
    assert m is not None and "siap diambil" in m.text
