"""Officers see and act only on their institution's reports; bad input changes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from lapor.v1 import officer_pb2 as pb

from services.stack.supervisor import Stack
from tests.e2e.officer_support import Metadata, Officers, admin, auth, code_of, submit, token
from tests.support import marker

KTP = {
    "title": "KK belum dicetak",
    "body": "Pengajuan kartu keluarga baru di disdukcapil sudah sebulan belum dicetak juga.",
    "region_code": "51.08",
}
OWNER = "pemda-51.08/disdukcapil"


@pytest.fixture(scope="module")
def report(stack: Stack) -> str:
    tracking_id = submit(stack, **KTP)
    with Officers(stack) as api:
        assert api.routed(tracking_id).institution.id == OWNER
    return tracking_id


def test_officer_of_another_institution_can_neither_see_nor_act(stack: Stack, report: str) -> None:
    other = auth("pemda-51.71/disdukcapil")
    with Officers(stack) as api:
        assert code_of(lambda: api.get(report, other)) == grpc.StatusCode.NOT_FOUND
        accept = pb.CaseActionRequest(tracking_id=report)
        assert (
            code_of(lambda: api.officer.Accept(accept, metadata=other, timeout=5))
            == grpc.StatusCode.NOT_FOUND
        )
        listed = api.officer.ListReports(pb.ListReportsRequest(page_size=100), metadata=other)
        assert report not in [r.tracking_id for r in listed.reports]
        assert all(r.institution.id.startswith("pemda-51.71") for r in listed.reports)
        mine = api.officer.ListReports(
            pb.ListReportsRequest(topic="adminduk", page_size=100), metadata=auth(OWNER)
        )
        assert report in [r.tracking_id for r in mine.reports]
        assert api.get(report, admin()).version == 1  # nothing changed


def test_tokens_and_roles_are_checked(stack: Stack, report: str) -> None:
    expired = token(OWNER, now=time.time() - 7200)
    with Officers(stack) as api:
        for metadata in (
            (),
            (("authorization", "Bearer not-a-jwt"),),
            (("authorization", f"Bearer {expired}"),),
            (("authorization", f"Basic {token(OWNER)}"),),
        ):
            assert code_of(lambda m=metadata: api.get(report, m)) == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[misc]
        queue = pb.ListQueueRequest()
        assert (
            code_of(lambda: api.admin.ListQueue(queue, metadata=auth(OWNER), timeout=5))
            == grpc.StatusCode.PERMISSION_DENIED
        )
        unknown = auth("pemda-99.99/nowhere")
        assert code_of(lambda: api.get(report, unknown)) == grpc.StatusCode.PERMISSION_DENIED
        reload = pb.ReloadRulesRequest()
        assert (
            code_of(
                lambda: api.admin.ReloadRules(reload, metadata=auth(OWNER, "institution_admin"))
            )
            == grpc.StatusCode.PERMISSION_DENIED
        )


def _violation(exc: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    fields = []
    for detail in status.details if status else []:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            fields += [v.field for v in bad.field_violations]
    return fields


@pytest.mark.parametrize(
    ("method", "request_fields", "code", "field"),
    [
        ("Forward", {"institution_id": "pemda-00/nothing", "reason": "r"}, "INVALID_ARGUMENT", "institution_id"),
        ("Forward", {"institution_id": OWNER, "reason": "r"}, "INVALID_ARGUMENT", "institution_id"),
        ("Forward", {"institution_id": ""}, "INVALID_ARGUMENT", "institution_id"),
        ("Respond", {"text": "  "}, "INVALID_ARGUMENT", "text"),
        ("Respond", {"text": "x" * 5000}, "INVALID_ARGUMENT", "text"),
        ("Decline", {"reason": ""}, "INVALID_ARGUMENT", "reason"),
        ("SetHandlingClass", {"handling_class": "urgent"}, "INVALID_ARGUMENT", "handling_class"),
        ("Resolve", {"text": "selesai"}, "FAILED_PRECONDITION", "action resolved is not allowed in state assigned"),
        ("Accept", {"expected_version": 99}, "FAILED_PRECONDITION", "expected_version"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field_and_changes_nothing(
    stack: Stack, report: str, method: str, request_fields: dict[str, object], code: str, field: str
) -> None:
    requests = {
        "Forward": pb.ForwardRequest,
        "Respond": pb.TextRequest,
        "Decline": pb.ReasonRequest,
        "SetHandlingClass": pb.SetHandlingClassRequest,
        "Resolve": pb.ResolveRequest,
        "Accept": pb.CaseActionRequest,
    }
    request = requests[method](tracking_id=report, **request_fields)  # type: ignore[operator]
    with Officers(stack) as api:
        before = api.get(report, admin())
        with pytest.raises(grpc.RpcError) as info:
            getattr(api.officer, method)(request, metadata=auth(OWNER), timeout=5)
        assert info.value.code().name == code  # type: ignore[attr-defined]
        assert field in info.value.details()  # type: ignore[attr-defined]
        if code == "INVALID_ARGUMENT":
            assert _violation(info.value) == [field]
        after = api.get(report, admin())
        assert (after.version, after.state, len(after.history)) == (
            before.version,
            before.state,
            len(before.history),
        )


def test_unknown_tracking_id_is_not_found(stack: Stack) -> None:
    with Officers(stack) as api:
        assert code_of(lambda: api.get("NOPE-NOPE-NOP", admin())) == grpc.StatusCode.NOT_FOUND
        assert code_of(lambda: api.get("", admin())) == grpc.StatusCode.INVALID_ARGUMENT


def test_concurrent_officers_cannot_both_win(stack: Stack) -> None:
    from concurrent.futures import ThreadPoolExecutor

    tracking_id = submit(stack, **KTP)
    with Officers(stack) as api:
        api.routed(tracking_id)
        request = pb.CaseActionRequest(tracking_id=tracking_id)

        def accept(_: int) -> str:
            try:
                api.officer.Accept(request, metadata=auth(OWNER), timeout=10)
            except grpc.RpcError as exc:
                return exc.code().name  # type: ignore[attr-defined,no-any-return]
            return "OK"

        with ThreadPoolExecutor(6) as pool:
            outcomes = sorted(pool.map(accept, range(6)))
        assert outcomes == ["FAILED_PRECONDITION"] * 5 + ["OK"]
        report = api.get(tracking_id, admin())
        assert [h.action for h in report.history] == ["routed", "accepted"]
        assert report.version == 2


# Callers who do not hold OWNER's reports: a unit of another regency, the government above
# it, and a sibling unit below OWNER's own government.
FOREIGN = (
    ("pemda-51.71/disdukcapil", "officer"),
    ("pemda-51.71", "institution_admin"),
    ("pemda-51.08/dpupr", "officer"),
)

# Every OfficerService rpc that acts on one report by its tracking id: the action it records,
# the state its report is put in (one where OWNER's officer may take that action), and the
# rest of a request OWNER's officer may send there. A foreign caller's NOT_FOUND can then
# come from nothing but the scope. (GetReport, the one read, is tested above.)
ACTIONS: dict[str, tuple[str, str, Callable[..., object], dict[str, object]]] = {
    "Accept": ("accepted", "assigned", pb.CaseActionRequest, {}),
    "Forward": (
        "forwarded",
        "assigned",
        pb.ForwardRequest,
        {"institution_id": "pemda-51.08/dpupr", "reason": "jalan, bukan adminduk"},
    ),
    "Decline": ("declined", "assigned", pb.ReasonRequest, {"reason": "bukan kewenangan kami"}),
    "Respond": ("responded", "assigned", pb.TextRequest, {"text": "Sedang kami periksa."}),
    "RequestInformation": (
        "info_requested",
        "in_progress",
        pb.TextRequest,
        {"text": "Mohon kirim nomor registrasi."},
    ),
    "SetHandlingClass": (
        "handling_class_set",
        "assigned",
        pb.SetHandlingClassRequest,
        {"handling_class": "complaint"},
    ),
    "PostFollowUp": ("followed_up", "in_progress", pb.TextRequest, {"text": "Blanko sudah ada."}),
    "Resolve": ("resolved", "in_progress", pb.ResolveRequest, {"text": "KK sudah dicetak."}),
}


def test_every_tracking_id_rpc_of_officer_service_is_covered() -> None:
    service = pb.DESCRIPTOR.services_by_name["OfficerService"]
    by_tracking_id = {
        m.name for m in service.methods if "tracking_id" in m.input_type.fields_by_name
    }
    assert by_tracking_id == {*ACTIONS, "GetReport"}


@pytest.fixture(scope="module")
def targets(stack: Stack) -> dict[str, str]:
    """A report of OWNER's for each action, in the state the action needs."""
    reports = {method: submit(stack, **KTP) for method in ACTIONS}
    with Officers(stack) as api:
        for method, tracking_id in reports.items():
            assert api.routed(tracking_id).institution.id == OWNER
            if ACTIONS[method][1] == "in_progress":
                accept = pb.CaseActionRequest(tracking_id=tracking_id)
                api.officer.Accept(accept, metadata=auth(OWNER), timeout=5)
    return reports


def _changeable(report: pb.Report) -> tuple[object, ...]:
    """What an action changes (deadlines are left out: the sla service sets them without a
    new version, whenever its event arrives)."""
    return (
        report.version,
        report.state,
        report.institution.id,
        report.responded,
        report.handling_class,
        report.reopen_count,
        [h.SerializeToString(deterministic=True) for h in report.history],
    )


@pytest.mark.parametrize("method", list(ACTIONS))
def test_every_action_on_a_foreign_report_is_not_found_and_changes_nothing(
    stack: Stack, targets: dict[str, str], method: str
) -> None:
    action, state, request_type, fields = ACTIONS[method]
    tracking_id = targets[method]
    unknown_id = f"NOPE-{marker()[:8].upper()}"
    with Officers(stack) as api:
        call = getattr(api.officer, method)
        before = api.get(tracking_id, admin())
        assert before.state == state
        assert action in api.get(tracking_id, auth(OWNER)).allowed_actions

        def refusal(tid: str, version: int, metadata: Metadata) -> tuple[grpc.StatusCode, str]:
            request = request_type(tracking_id=tid, expected_version=version, **fields)
            with pytest.raises(grpc.RpcError) as info:
                call(request, metadata=metadata, timeout=5)
            return info.value.code(), info.value.details()  # type: ignore[attr-defined]

        # with no version, the current one, and a stale one (a FAILED_PRECONDITION for a
        # stale version would tell the caller the report exists)
        for version in (0, before.version, before.version + 7):
            for institution, role in FOREIGN:
                caller = auth(institution, role)
                code, details = refusal(tracking_id, version, caller)
                unknown_code, unknown_details = refusal(unknown_id, version, caller)
                assert code == unknown_code == grpc.StatusCode.NOT_FOUND, (institution, version)
                assert details.replace(tracking_id, "ID") == unknown_details.replace(
                    unknown_id, "ID"
                )

        assert _changeable(api.get(tracking_id, admin())) == _changeable(before)

        # The very same request from OWNER's officer is valid: it acts.
        request = request_type(tracking_id=tracking_id, expected_version=before.version, **fields)
        done = call(request, metadata=auth(OWNER), timeout=5)
        assert done.version == before.version + 1
        assert [h.action for h in done.history] == [*(h.action for h in before.history), action]
