"""Translate domain errors into gRPC statuses at the edge, and record request metrics.

Every servicer method is wrapped with ``@rpc``: a domain error becomes its status code with
a message naming the field and the rule (INVALID_ARGUMENT carries google.rpc.BadRequest
field violations); a database that cannot be reached, or a commit whose outcome is
unknown, becomes UNAVAILABLE; a write conflict that outlasted the transaction helper's
retries becomes ABORTED (both safe to retry); an unexpected error becomes INTERNAL with a
reference, never UNKNOWN and never a stack trace.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common import errors
from services.common.logging import loggable
from services.common.metrics import GRPC_LATENCY, GRPC_REQUESTS
from services.common.mongo import is_transient, write_conflict

log = logging.getLogger(__name__)

_CODES: list[tuple[type[errors.DomainError], grpc.StatusCode]] = [
    (errors.ValidationError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
]


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str, list[Any]]:
    """(code, message, detail messages) for an exception."""
    if isinstance(exc, errors.DomainError):
        code = next((c for t, c in _CODES if isinstance(exc, t)), grpc.StatusCode.INTERNAL)
        details: list[Any] = []
        if isinstance(exc, errors.ValidationError):
            details.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.rule
                        )
                        for v in exc.violations
                    ]
                )
            )
        if isinstance(exc, errors.ResourceExhausted):
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(int(exc.retry_after_seconds * 1000))
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return code, str(exc), details
    if write_conflict(exc):
        return (
            grpc.StatusCode.ABORTED,
            "a concurrent request changed the same record; retry",
            [],
        )
    if is_transient(exc):
        return (
            grpc.StatusCode.UNAVAILABLE,
            "storage temporarily unavailable; retry with the same idempotency key",
            [],
        )
    reference = uuid.uuid4().hex[:12]
    # A database error's text may quote the stored document: logged without it.
    log.error("unexpected error", exc_info=loggable(exc), extra={"reference": reference})
    return grpc.StatusCode.INTERNAL, f"internal error (reference {reference})", []


async def abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str, details: list[Any]
) -> None:
    if not details:
        await context.abort(code, message)
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=packed)
    await context.abort_with_status(rpc_status.to_status(status))


T = TypeVar("T")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[T]]


def rpc(method: str) -> Callable[[Handler[T]], Handler[T]]:
    def decorate(fn: Handler[T]) -> Handler[T]:
        @functools.wraps(fn)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await fn(self, request, context)
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError):
                    code = context.code() or grpc.StatusCode.UNKNOWN  # type: ignore[assignment]
                    raise
                code, message, details = status_for(exc)
                await abort(context, code, message, details)
                raise  # unreachable: abort raises
            finally:
                GRPC_REQUESTS.labels(method=method, code=code.name).inc()
                GRPC_LATENCY.labels(method=method).observe(time.perf_counter() - started)

        return wrapper

    return decorate
