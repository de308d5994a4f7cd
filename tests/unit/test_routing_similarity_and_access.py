"""Near-duplicate linking, who sees what, and how sla events change a case's deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common import scope
from services.common.errors import NotFound, PermissionDenied
from services.common.mongo import not_older_sla_event
from services.common.regions import default_regions
from services.routing.case_events import deadlines_update, is_older, mark_clock
from services.routing.case_store import FAR_FUTURE
from services.routing.domain import access, similarity
from services.routing.domain.access import Actor
from services.routing.domain.case import Role
from services.routing.domain.classifier import TopicClassifier
from services.routing.domain.directory import Directory, Institution


@pytest.fixture(scope="module")
def directory() -> Directory:
    return Directory.seed(default_regions())


def fingerprint(text: str) -> list[int]:
    return similarity.shingles(TopicClassifier.default().normaliser.words(text))


def test_near_duplicates_link_and_different_reports_do_not() -> None:
    a = fingerprint("Sampah menumpuk di pasar Banyuasri, bau busuk tidak diangkut seminggu")
    b = fingerprint("sampah numpuk di pasar banyuasri bau busuk gk diangkut seminggu!!")
    c = fingerprint("Sampah dibakar warga di lapangan, asapnya masuk rumah tiap sore")
    assert similarity.jaccard(a, b) >= similarity.THRESHOLD
    assert similarity.jaccard(a, c) < similarity.THRESHOLD
    assert similarity.similar(a, [("C", c), ("B", b)]) == [("B", similarity.jaccard(a, b))]


def test_shingles_of_short_and_empty_texts() -> None:
    assert similarity.shingles([]) == []
    assert len(similarity.shingles(["sampah"])) == 1
    assert similarity.jaccard([], [1]) == 0.0


def test_links_are_bounded() -> None:
    same = [1, 2, 3]
    hits = similarity.similar(same, [(f"T{i:03d}", same) for i in range(50)])
    assert len(hits) == similarity.MAX_LINKS and hits[0] == ("T000", 1.0)


def officer(institution: str, role: Role = Role.OFFICER) -> Actor:
    return Actor("someone", institution, role)


def test_officers_see_their_institution_and_its_units(directory: Directory) -> None:
    government = officer("pemda-51.08")
    unit = officer("pemda-51.08/disdukcapil")
    assert access.can_see(government, "pemda-51.08/disdukcapil", directory)
    assert access.can_see(unit, "pemda-51.08/disdukcapil", directory)
    assert not access.can_see(unit, "pemda-51.08/dpupr", directory)
    assert not access.can_see(unit, "pemda-51.08", directory)
    assert not access.can_see(government, "pemda-51.71/disdukcapil", directory)
    assert not access.can_see(government, "verification-queue", directory)
    assert access.can_see(officer("national", Role.NATIONAL_ADMIN), "pemda-51.71", directory)
    with pytest.raises(NotFound, match="tracking_id"):
        access.require_visible(unit, "T-1", "pemda-51.71/disdukcapil", directory)


def test_visible_institutions_is_the_subtree(directory: Directory) -> None:
    ids = access.visible_institutions(officer("pemda-51.08"), directory)
    assert ids is not None and "pemda-51.08" in ids and "pemda-51.08/dpupr" in ids
    assert all(i.startswith("pemda-51.08") for i in ids)
    assert access.visible_institutions(officer("x", Role.NATIONAL_ADMIN), directory) is None


def test_unknown_institutions_and_wrong_roles_are_denied(directory: Directory) -> None:
    with pytest.raises(PermissionDenied):
        access.require_known_institution(officer("pemda-99"), directory)
    with pytest.raises(PermissionDenied):
        access.require_national_admin(officer("pemda-51.08", Role.INSTITUTION_ADMIN))


def unit(id: str, parent: str, kind: str = "unit") -> Institution:
    return Institution(id, "Unit", kind, parent, None, ())


def test_an_institution_admin_edits_only_units_directly_below_its_institution(
    directory: Directory,
) -> None:
    mine = officer("pemda-51.08", Role.INSTITUTION_ADMIN)
    new = unit("pemda-51.08/upt-pasar", "pemda-51.08")
    access.require_may_edit(mine, new, None)  # a new unit of its own
    own_unit = directory.get("pemda-51.08/dpupr")
    access.require_may_edit(mine, unit("pemda-51.08/dpupr", "pemda-51.08"), own_unit)
    national = officer("x", Role.NATIONAL_ADMIN)
    access.require_may_edit(national, unit("pemda-51.71/x", "pemda-51.71"), None)
    refused = [
        (mine, unit("pemda-51.71/x", "pemda-51.71"), None),  # below someone else
        (mine, unit("pemda-51.08/x", "pemda-51.08", kind="agency"), None),  # not a unit
        # Taking over another institution's unit, or a national body, by naming itself
        # as the new parent:
        (mine, unit("pemda-51.71/dpupr", "pemda-51.08"), directory.get("pemda-51.71/dpupr")),
        (
            mine,
            unit("nasional-bpjs-kesehatan", "pemda-51.08"),
            directory.get("nasional-bpjs-kesehatan"),
        ),
        (mine, unit("pemda-51.08", "pemda-51.08"), directory.get("pemda-51.08")),  # itself
        (officer("pemda-51.08"), new, None),  # an officer
    ]
    for actor, record, existing in refused:
        with pytest.raises(PermissionDenied):
            access.require_may_edit(actor, record, existing)


def test_deadlines_order_the_list_and_breaches_mark_overdue() -> None:
    now = datetime(2026, 1, 5, tzinfo=UTC)
    deadlines = [
        {"clock": "first_response", "due_at": now + timedelta(days=3), "state": "running"},
        {"clock": "resolution", "due_at": now + timedelta(days=5), "state": "running"},
    ]
    fields = deadlines_update(deadlines)["$set"]
    assert fields["next_due_at"] == now + timedelta(days=3) and not fields["overdue"]
    breached = mark_clock(deadlines, "first_response", "breached", None)
    fields = deadlines_update(breached)["$set"]
    assert fields["overdue"] and fields["next_due_at"] == now + timedelta(days=5)
    assert deadlines[0]["state"] == "running"  # the input is not changed
    done = [{**d, "state": "met"} for d in deadlines]
    assert deadlines_update(done)["$set"]["due_sort"] == FAR_FUTURE
    added = mark_clock([], "resolution", "warned", now)
    assert added == [{"clock": "resolution", "due_at": now, "state": "warned"}]


def test_sla_events_with_a_version_apply_only_from_that_version_on() -> None:
    due = datetime(2026, 1, 9, tzinfo=UTC)
    deadlines = [{"clock": "resolution", "due_at": due, "state": "running"}]
    # the event's clocks_version is recorded, never lowered, in the same write
    assert deadlines_update(deadlines, 5)["$max"] == {"sla_version": 5}
    assert not_older_sla_event(5) == {
        "sla_version": {"$not": {"$gt": 5}}
    }  # >=: equal versions apply
    # events from before the version existed: no check, no record (as before)
    assert "$max" not in deadlines_update(deadlines) and not_older_sla_event(0) == {}
    assert is_older({"sla_version": 6}, 5) and not is_older({"sla_version": 5}, 5)
    assert not is_older({}, 1) and not is_older({"sla_version": 6}, 0)


def test_ancestors_from_the_event_widen_what_the_directory_knows(directory: Directory) -> None:
    """Services other than routing learn units added at run time from routing's events."""
    added = "pemda-51.08/dpupr/seksi-jalan"  # not in this (shipped) directory
    ancestors = ("pemda-51.08/dpupr", "pemda-51.08")
    assert scope.can_see(officer(added), added, directory)  # the holder itself, always
    assert not scope.can_see(officer("pemda-51.08/dpupr"), added, directory)
    assert scope.can_see(officer("pemda-51.08/dpupr"), added, directory, ancestors)
    assert scope.can_see(officer("pemda-51.08"), added, directory, ancestors)
    assert not scope.can_see(officer("pemda-51.08/disdukcapil"), added, directory, ancestors)
    assert not scope.can_see(officer("pemda-51.71"), added, directory, ancestors)
    assert not scope.can_see(officer(""), "", directory, ())  # nothing held: nobody
