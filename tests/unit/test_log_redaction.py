"""Database driver errors reach the logs without the data they quote
(services/common/logging.py `loggable`, used by grpc_errors and kafka)."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import bson
import grpc
import pytest
from lapor.v1 import events_pb2
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from services.common.grpc_errors import rpc, status_for
from services.common.kafka import Delivery, EventConsumer
from services.common.logging import JsonFormatter, RedactedError, describe_error, loggable
from services.common.settings import KafkaSettings

TITLE = "Pungli-di-kantor-kelurahan-TITLE-5c1e"
BODY = "Petugas-minta-uang-BODY-9d2b"
NAME = "Siti-Rahmawati-NAME-31f0"
CONTACT_HASH = "c0ffee-HASH-77aa19"
SEALED = "sealed-IDENTITY-0b5e"
SECRETS = (TITLE, BODY, NAME, CONTACT_HASH, SEALED)


def leaky_bulk_error() -> BulkWriteError:
    """A duplicate-key refusal of a complaint insert, as the server reports it: the failed
    document (`op`), the key's value (`keyValue`) and a message quoting it (`errmsg`)."""
    complaint = {
        "_id": "LAP-2026-000123",
        "title": TITLE,
        "body": BODY,
        "dedupe_hash": CONTACT_HASH,
        "identity": {"name": NAME, "sealed": SEALED},
    }
    return BulkWriteError(
        {
            "writeErrors": [
                {
                    "index": 0,
                    "code": 11000,
                    "codeName": "DuplicateKey",
                    "errmsg": "E11000 duplicate key error collection: lapor_intake.complaints "
                    f'index: dedupe_hash_1 dup key: {{ dedupe_hash: "{CONTACT_HASH}" }}',
                    "keyPattern": {"dedupe_hash": 1},
                    "keyValue": {"dedupe_hash": CONTACT_HASH},
                    "op": complaint,
                }
            ],
            "writeConcernErrors": [],
            "nInserted": 0,
            "errorLabels": ["NoWritesPerformed"],
        }
    )


def raised(exc: BaseException) -> BaseException:
    """`exc` with a traceback, as a handler's caller catches it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def everything_logged(records: list[logging.LogRecord]) -> str:
    """Every part of the records a handler could write: message, args, extras, the
    formatted exception (as logging's own formatter and as the JSON one render it)."""
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        parts.append(repr(vars(record)))
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
            parts.append(JsonFormatter("test").format(record))
        parts.append(record.exc_text or "")
    return "\n".join(parts)


def assert_redacted(text: str) -> None:
    assert [s for s in SECRETS if s in text] == []
    assert "BulkWriteError" in text
    assert "code=65" in text
    assert "code=11000" in text and "codeName=DuplicateKey" in text
    assert "index=0" in text
    assert "errorLabels=NoWritesPerformed" in text


def test_the_leaky_error_really_quotes_the_complaint() -> None:
    """What the redaction is for: the driver's own text carries the document."""
    text = str(leaky_bulk_error())
    assert all(s in text for s in SECRETS)


def test_status_for_logs_a_bulk_write_error_without_its_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    code, message, _ = status_for(raised(leaky_bulk_error()))
    assert code == grpc.StatusCode.INTERNAL
    assert [s for s in SECRETS if s in message] == []
    [record] = [r for r in caplog.records if r.getMessage() == "unexpected error"]
    assert record.exc_info and record.exc_info[0] is RedactedError
    text = everything_logged(caplog.records) + caplog.text
    assert_redacted(text)
    assert "Traceback" in text and "raised" in text  # the stack is kept, with its frames


class FakeContext:
    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.aborted = (code, message)
        raise grpc.aio.AbortError()

    def code(self) -> grpc.StatusCode | None:
        return self.aborted[0] if self.aborted else None


class Servicer:
    @rpc("Test/Store")
    async def Store(self, request: Any, context: Any) -> None:  # noqa: N802 (gRPC's naming)
        await asyncio.sleep(0)
        raise leaky_bulk_error()


async def test_a_servicer_method_logs_a_bulk_write_error_without_its_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        await Servicer().Store(object(), context)  # type: ignore[arg-type]
    assert context.aborted is not None
    code, message = context.aborted
    assert code == grpc.StatusCode.INTERNAL and message.startswith("internal error (reference ")
    assert caplog.records
    text = everything_logged(caplog.records) + caplog.text
    assert_redacted(text)
    assert "in Store" in text  # the frame that raised is in the traceback


async def test_a_consumer_logs_a_failing_handler_without_the_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    parked: list[tuple[str, bytes | None, str]] = []

    async def handle(deliveries: list[Delivery[events_pb2.ComplaintReceived]]) -> None:
        raise leaky_bulk_error()

    async def dead_letter(topic: str, value: bytes | None, reason: str) -> None:
        parked.append((topic, value, reason))

    consumer = EventConsumer(
        KafkaSettings("127.0.0.1:9", "PLAINTEXT", None, None, None, None),
        "lapor.complaints.received",
        "test-group",
        events_pb2.ComplaintReceived,
        handle,
        dead_letter,
        max_attempts=1,
    )
    delivery = Delivery(events_pb2.ComplaintReceived(title="t"), "LAP-1", 0, 7)
    await consumer._handle_with_retry([delivery], asyncio.Event())
    assert [(t, r) for t, _, r in parked] == [
        ("lapor.complaints.received", "handler failed: BulkWriteError")
    ]
    [record] = [r for r in caplog.records if r.getMessage() == "handler failed"]
    assert record.levelno == logging.ERROR
    assert vars(record)["topic"] == "lapor.complaints.received"
    text = everything_logged(caplog.records) + caplog.text
    assert_redacted(text)
    assert "in handle" in text


def test_the_json_formatter_redacts_whoever_logged_the_error() -> None:
    """Sites that still pass the raw exception (log.exception) are covered in production."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    logger = logging.getLogger("tests.redaction.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise leaky_bulk_error()
        except BulkWriteError:
            logger.exception("relay failed; retrying")
    finally:
        logger.removeHandler(handler)
    assert_redacted(stream.getvalue())
    assert "relay failed; retrying" in stream.getvalue()


def test_an_error_raised_while_handling_a_driver_error_keeps_its_text_not_the_drivers() -> None:
    def fail() -> None:
        try:
            raise leaky_bulk_error()
        except BulkWriteError as exc:
            raise RuntimeError("could not store the batch") from exc

    try:
        fail()
    except RuntimeError as exc:
        caught: BaseException = exc
    clean = loggable(caught)
    assert clean is not caught
    text = logging.Formatter().formatException((type(clean), clean, clean.__traceback__))
    assert_redacted(text)
    assert "RuntimeError: could not store the batch" in text
    assert "direct cause" in text  # the chain is kept
    assert caught.__cause__ is not None and "op" in str(caught.__cause__)  # original untouched


def test_an_implicit_context_and_an_exception_group_are_redacted_too() -> None:
    try:
        try:
            raise leaky_bulk_error()
        except BulkWriteError:
            raise KeyError("tracking_id")  # noqa: B904 (the implicit context is the point)
    except KeyError as exc:
        context: BaseException = exc
    group = raised(ExceptionGroup("batch", [raised(leaky_bulk_error()), ValueError("plain")]))
    for exc in (context, group):
        clean = loggable(exc)
        text = logging.Formatter().formatException((type(clean), clean, clean.__traceback__))
        assert_redacted(text)
    assert "ValueError: plain" in logging.Formatter().formatException(
        (ExceptionGroup, loggable(group), group.__traceback__)
    )


def test_a_duplicate_key_error_names_its_code_not_the_key() -> None:
    exc = DuplicateKeyError(
        f'E11000 duplicate key error dup key: {{ _id: "{CONTACT_HASH}" }}',
        11000,
        {"code": 11000, "codeName": "DuplicateKey", "keyValue": {"_id": CONTACT_HASH}},
    )
    text = describe_error(exc)
    assert CONTACT_HASH not in text
    assert "pymongo.errors.DuplicateKeyError" in text
    assert "code=11000" in text and "codeName=DuplicateKey" in text


def test_a_server_error_keeps_its_labels_and_code_name() -> None:
    exc = OperationFailure(
        f"Document failed validation: {TITLE}",
        121,
        {"code": 121, "codeName": "DocumentValidationFailure", "errorLabels": ["X"]},
    )
    text = describe_error(exc)
    assert TITLE not in text
    assert "code=121 codeName=DocumentValidationFailure errorLabels=X" in text


def test_a_value_bson_cannot_encode_is_not_quoted() -> None:
    class Unencodable:
        def __repr__(self) -> str:
            return BODY

    try:
        bson.encode({"body": Unencodable()})
    except Exception as exc:
        caught: BaseException = exc
    assert BODY in str(caught)
    clean = loggable(caught)
    assert BODY not in str(clean) and "InvalidDocument" in str(clean)


def test_other_errors_are_logged_as_they_are() -> None:
    exc = raised(ValueError("limit must be positive"))
    assert loggable(exc) is exc


def test_many_failed_writes_are_named_up_to_a_bound() -> None:
    errors = [
        {"index": i, "code": 11000, "errmsg": CONTACT_HASH, "op": {"title": TITLE}}
        for i in range(50)
    ]
    text = describe_error(BulkWriteError({"writeErrors": errors, "writeConcernErrors": []}))
    assert TITLE not in text and CONTACT_HASH not in text
    assert "index=9 " in text and "index=10 " not in text and "+40 more" in text
