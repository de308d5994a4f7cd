"""The status a servicer answers for each kind of error (services.common.grpc_errors)."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from services.common import errors
from services.common.grpc_errors import status_for
from services.common.mongo import (
    WRITE_CONCERN_TIMEOUT_MS,
    create_client,
    is_transient,
    write_conflict,
)
from services.common.settings import Secret


def labelled(*labels: str) -> OperationFailure:
    """A server error as the driver raises it, with the server's error labels."""
    return OperationFailure("WriteConflict", 112, {"errorLabels": list(labels), "code": 112})


def test_a_broken_rule_is_invalid_argument_naming_field_and_rule() -> None:
    code, message, details = status_for(
        errors.ValidationError([errors.Violation("sms.text", "at most 1530 characters")])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "sms.text" in message
    [bad] = details
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("sms.text", "at most 1530 characters")
    ]


def test_an_unreachable_database_or_an_unknown_commit_is_unavailable() -> None:
    for exc in (
        AutoReconnect("connection reset"),
        ServerSelectionTimeoutError("no server"),
        labelled("UnknownTransactionCommitResult"),
        labelled("TransientTransactionError", "UnknownTransactionCommitResult"),
    ):
        assert is_transient(exc) and not write_conflict(exc), exc
        assert status_for(exc)[0] == grpc.StatusCode.UNAVAILABLE, exc


def test_a_lasting_write_conflict_is_aborted() -> None:
    exc = labelled("TransientTransactionError")
    assert is_transient(exc) and write_conflict(exc)
    code, message, _ = status_for(exc)
    assert code == grpc.StatusCode.ABORTED and "retry" in message


def test_other_errors_are_internal_with_a_reference_and_not_transient() -> None:
    for exc in (ValueError("secret detail"), OperationFailure("bad update", 9), labelled()):
        assert not is_transient(exc)
        code, message, details = status_for(exc)
        assert code == grpc.StatusCode.INTERNAL and details == []
        assert message.startswith("internal error (reference ")
        assert "secret detail" not in message and "bad update" not in message


def test_unconfirmed_write_concern_in_a_bulk_write_is_unavailable() -> None:
    """w: majority not confirmed in time, as a bulk write reports it: the writes were made,
    the retry finds them (idempotent work); a real write error is not transient."""
    concern = {"code": 64, "errmsg": "waiting for replication timed out"}
    unconfirmed = BulkWriteError({"writeErrors": [], "writeConcernErrors": [concern]})
    assert is_transient(unconfirmed)
    assert status_for(unconfirmed)[0] == grpc.StatusCode.UNAVAILABLE
    refused = BulkWriteError(
        {
            "writeErrors": [{"index": 0, "code": 121, "errmsg": "validation"}],
            "writeConcernErrors": [concern],
        }
    )
    assert not is_transient(refused)
    assert status_for(refused)[0] == grpc.StatusCode.INTERNAL


def test_clients_wait_for_a_majority_for_a_bounded_time_unless_the_uri_says_otherwise() -> None:
    default = create_client(Secret("mongodb://db.example:27017/x"), "t")
    assert default.write_concern.document == {"w": "majority", "wtimeout": WRITE_CONCERN_TIMEOUT_MS}
    chosen = create_client(Secret("mongodb://db.example:27017/x?w=2&wtimeoutMS=2500"), "t")
    assert chosen.write_concern.document == {"w": 2, "wtimeout": 2500}
