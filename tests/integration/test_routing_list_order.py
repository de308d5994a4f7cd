"""OfficerService.ListReports against the real database: an officer's reports come nearest
deadline first (the earliest open clock; reports with no open clock last), ties by tracking
id; the colour and overdue filters narrow that list without reordering it, and paging walks
it without losing or repeating a report, also across a tie at a page boundary.

The cases are stored as routing stores them: the deadline fields (``next_due_at``,
``due_sort``, ``overdue``) are written by ``deadlines_update``, the code that applies the sla
service's deadlines, warnings and breaches. ``received_at`` and the tracking ids are chosen
so that neither sorts the reports in deadline order."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lapor.v1 import common_pb2
from lapor.v1 import officer_pb2 as pb

from services.common.auth import TokenVerifier, issue_token
from services.common.clock import ManualClock
from services.common.mongo import Doc
from services.common.regions import default_regions
from services.common.settings import Secret
from services.common.status import CaseState, Colour, colour_of
from services.routing.actions import CaseActions
from services.routing.case_events import deadlines_update
from services.routing.case_store import CaseStore
from services.routing.domain.access import Actor
from services.routing.domain.case import Role
from services.routing.domain.directory import Directory
from services.routing.domain.rules import DEFAULT_RULES_FILE
from services.routing.grpc_api import Api, OfficerServicer
from services.routing.institutions import InstitutionRegistry
from services.routing.queries import CaseQueries
from services.routing.rules_source import RulesSource
from tests.integration.test_sla_store import T0

OWNER = "pemda-51.08/disdukcapil"
OTHER_REGENCY = "pemda-51.71/disdukcapil"
SIBLING_UNIT = "pemda-51.08/dpupr"  # below the owner's own government, still not the owner's
H = timedelta(hours=1)
S = CaseState


def clock(name: str, due_at: datetime, state: str = "running") -> Doc:
    return {"clock": name, "due_at": due_at, "state": state}


def case(
    tracking_id: str,
    state: CaseState,
    received_at: datetime,
    deadlines: list[Doc],
    *,
    institution: str = OWNER,
    responded: bool = False,
) -> Doc:
    doc: Doc = {
        "_id": tracking_id,
        "received_at": received_at,
        "privacy": "PRIVACY_PUBLIC",
        "classification": "CLASSIFICATION_COMPLAINT",
        "title": f"Laporan {tracking_id}",
        "body": "KK belum dicetak",
        "region_code": institution.split("/")[0].removeprefix("pemda-"),
        "institution_id": institution,
        "state": state.value,
        "version": 3,
        "responded": responded,
        "reopen_count": 0,
        "handling_class": "",
        "colour": colour_of(state, responded).value,
        "topic": "adminduk",
        "similar": [],
        "history": [],
    }
    doc.update(deadlines_update(deadlines)["$set"])
    return doc


# The owner's reports, listed here in the order ListReports must give them.
OWN = [
    # the earliest open clock of all (a warned one counts)
    case("C-06", S.ASSIGNED, T0 - 2 * H, [clock("first_response", T0 + 0.5 * H, "warned")]),
    case(
        "C-05",
        S.ASSIGNED,
        T0 - 5 * H,
        [clock("first_response", T0 + H), clock("resolution", T0 + 240 * H)],
    ),
    # overdue: the breached clock's own due time does not count, the next open one does;
    # C-02 and C-03 are due at the same time: the tracking id decides, not received_at
    case(
        "C-02",
        S.ASSIGNED,
        T0 - 3 * H,
        [clock("first_response", T0 - H, "breached"), clock("resolution", T0 + 2 * H)],
    ),
    case(
        "C-03",
        S.IN_PROGRESS,
        T0 - 30 * H,
        [
            clock("first_response", T0 - 2 * H, "breached"),
            clock("resolution", T0 + 2 * H, "warned"),
        ],
    ),
    case(
        "C-01",
        S.IN_PROGRESS,
        T0 - H,
        [clock("first_response", T0 - 20 * H, "met"), clock("resolution", T0 + 72 * H)],
        responded=True,
    ),
    case(
        "C-07",
        S.AWAITING_REPORTER,
        T0 - 50 * H,
        [clock("first_response", T0 - 40 * H, "breached"), clock("resolution", T0 + 96 * H)],
    ),
    # no open clock: last, by tracking id (next_due_at is null for both, which a sort on
    # next_due_at would put first)
    case("C-00", S.ASSIGNED, T0, []),  # routed; the sla service's deadlines not here yet
    case(
        "C-04",
        S.RESOLVED,
        T0 - 100 * H,
        [clock("first_response", T0 - 90 * H, "met"), clock("resolution", T0 - 80 * H, "met")],
        responded=True,
    ),
]
ORDER = [c["_id"] for c in OWN]

# Others' reports, due before all of the owner's and matching every filter used below.
FOREIGN = [
    case(
        "B-01",
        S.ASSIGNED,
        T0 - 4 * H,
        [clock("first_response", T0 - 3 * H, "breached"), clock("resolution", T0 + 0.1 * H)],
        institution=OTHER_REGENCY,
    ),
    case(
        "B-02",
        S.IN_PROGRESS,
        T0 - 4 * H,
        [clock("first_response", T0 - 3 * H, "breached"), clock("resolution", T0 + 0.2 * H)],
        institution=SIBLING_UNIT,
        responded=True,
    ),
    case("B-03", S.CLOSED, T0 - 4 * H, [], institution=OTHER_REGENCY, responded=True),
]


def ids(page: Any) -> list[str]:
    return [d["_id"] for d in page.docs]


async def stored_cases(db: Any) -> CaseQueries:
    store = CaseStore(db["cases"])
    await store.ensure_indexes()  # the index the list uses, as routing creates it
    await db["cases"].insert_many([*FOREIGN, *OWN])
    directory = Directory.seed(default_regions())
    return CaseQueries(store, lambda: directory)


def test_the_fixture_cases_are_what_they_claim() -> None:
    """Guards the data the ordering test depends on (not the code under test)."""
    assert sorted(ORDER) != ORDER
    assert [c["_id"] for c in sorted(OWN, key=lambda c: c["received_at"])] != ORDER
    assert [c["overdue"] for c in OWN] == [False, False, True, True, False, True, False, False]
    assert OWN[2]["next_due_at"] == OWN[3]["next_due_at"]  # the tie C-02 / C-03
    assert OWN[2]["received_at"] > OWN[3]["received_at"]
    assert [c["next_due_at"] for c in OWN[-2:]] == [None, None]
    assert all(f["due_sort"] < OWN[0]["due_sort"] for f in FOREIGN[:2])


async def test_reports_come_nearest_deadline_first_ties_by_tracking_id(db: Any) -> None:
    queries = await stored_cases(db)
    officer = Actor("officer-1", OWNER, Role.OFFICER)

    page = await queries.reports(officer, page_size=100)
    assert ids(page) == ORDER
    assert page.next_token == ""

    everyone = await queries.reports(Actor("admin-1", "national", Role.NATIONAL_ADMIN))
    assert ids(everyone) == ["B-01", "B-02", *ORDER[:6], "B-03", *ORDER[6:]]


async def test_colour_and_overdue_filters_keep_the_deadline_order(db: Any) -> None:
    queries = await stored_cases(db)
    officer = Actor("officer-1", OWNER, Role.OFFICER)

    async def listed(**filters: Any) -> list[str]:
        page = await queries.reports(officer, page_size=100, **filters)
        assert page.next_token == ""
        return ids(page)

    assert await listed(colour=Colour.RED) == ["C-06", "C-05", "C-02", "C-00"]
    assert await listed(colour=Colour.YELLOW) == ["C-03", "C-01", "C-07"]
    assert await listed(colour=Colour.GREEN) == ["C-04"]
    assert await listed(overdue_only=True) == ["C-02", "C-03", "C-07"]
    assert await listed(overdue_only=False) == ORDER
    assert await listed(colour=Colour.YELLOW, overdue_only=True) == ["C-03", "C-07"]
    assert await listed(colour=Colour.GREEN, overdue_only=True) == []
    assert await listed(state="in_progress", colour=Colour.YELLOW) == ["C-03", "C-01"]


async def test_pages_walk_the_order_across_a_tie_at_the_boundary(db: Any) -> None:
    queries = await stored_cases(db)
    officer = Actor("officer-1", OWNER, Role.OFFICER)

    async def walk(size: int, **filters: Any) -> list[list[str]]:
        pages, token = [], ""
        while True:
            page = await queries.reports(officer, page_size=size, page_token=token, **filters)
            pages.append(ids(page))
            token = page.next_token
            if not token:
                return pages
            assert len(pages) < 10, "paging does not end"

    # the tie C-02 / C-03 straddles the first boundary; the last page is short
    assert await walk(3) == [["C-06", "C-05", "C-02"], ["C-03", "C-01", "C-07"], ["C-00", "C-04"]]
    # a last page that is exactly full carries no token
    assert await walk(4) == [ORDER[:4], ORDER[4:]]
    assert await walk(2, colour=Colour.RED) == [["C-06", "C-05"], ["C-02", "C-00"]]
    assert await walk(1, overdue_only=True) == [["C-02"], ["C-03"], ["C-07"]]


class _Context:
    """What the servicer reads of a gRPC call: its metadata. Aborting fails the test."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def abort(self, code: object, message: str) -> None:
        raise AssertionError(f"{code}: {message}")

    async def abort_with_status(self, status: object) -> None:
        raise AssertionError(f"aborted: {status}")


async def test_list_reports_request_filters_reach_the_query(db: Any) -> None:
    """The request's StatusColour and overdue_only become the query's filters, and each
    report shows the colour, overdue flag and next deadline it was listed by."""
    store = (await stored_cases(db)).store
    registry = InstitutionRegistry(db["institutions"], Directory.seed(default_regions()))
    key, issuer = "k" * 40, "lapor-test"
    api = Api(
        TokenVerifier(Secret(key), issuer),
        CaseActions(store, registry, ManualClock(T0)),
        CaseQueries(store, registry),
        registry,
        RulesSource(DEFAULT_RULES_FILE, registry),
    )
    servicer = OfficerServicer(api)
    context = _Context(issue_token(key, issuer, "officer-1", OWNER, "officer"))
    by_id = {c["_id"]: c for c in OWN}

    async def listed(**fields: Any) -> list[pb.Report]:
        request = pb.ListReportsRequest(page_size=100, **fields)
        reply = await servicer.ListReports(request, context)
        return list(reply.reports)

    assert [r.tracking_id for r in await listed()] == ORDER
    assert [r.tracking_id for r in await listed(colour=common_pb2.STATUS_COLOUR_UNSPECIFIED)] == (
        ORDER
    )
    red = await listed(colour=common_pb2.STATUS_COLOUR_RED)
    assert [r.tracking_id for r in red] == ["C-06", "C-05", "C-02", "C-00"]
    green = await listed(colour=common_pb2.STATUS_COLOUR_GREEN)
    assert [r.tracking_id for r in green] == ["C-04"]
    yellow_overdue = await listed(colour=common_pb2.STATUS_COLOUR_YELLOW, overdue_only=True)
    assert [r.tracking_id for r in yellow_overdue] == ["C-03", "C-07"]
    for report in yellow_overdue:
        assert report.colour == common_pb2.STATUS_COLOUR_YELLOW and report.overdue
        assert (
            report.next_due_at.ToDatetime(tzinfo=T0.tzinfo)
            == by_id[report.tracking_id]["next_due_at"]
        )
    overdue = await listed(overdue_only=True)
    assert [(r.tracking_id, r.overdue) for r in overdue] == [
        ("C-02", True),
        ("C-03", True),
        ("C-07", True),
    ]
    assert not (await listed(colour=common_pb2.STATUS_COLOUR_GREEN))[0].HasField("next_due_at")
