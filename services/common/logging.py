"""JSON logs to stdout with severity and timestamp. Never log report content or identity.

Database driver errors break that rule by themselves: a pymongo error's text is the
server's whole answer, and for a bulk write the document that failed (a complaint's title,
body, hashed keys and sealed identity), and a duplicate-key message names the key's value.
So such an error is never logged as it is: pass ``exc_info=loggable(exc)``, which hands
over a stand-in (`RedactedError`) that keeps the traceback and names the error's type,
code, code name, error labels and, for a bulk write, each failed write's index, code and
code name only. `JsonFormatter` applies the same to every exception it formats, whoever
logged it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from bson.errors import BSONError
from pymongo.errors import PyMongoError

_RESERVED = set(vars(logging.makeLogRecord({})))

# Errors whose text may echo stored documents or values: the driver's (server answers,
# failed operations) and BSON's (a value that cannot be encoded is quoted).
WITHHELD: tuple[type[BaseException], ...] = (PyMongoError, BSONError)
_MAX_WRITE_ERRORS = 10  # a bulk write of hundreds may fail everywhere: name the first ones

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class RedactedError(Exception):
    """Stands in, in logs, for an exception whose text may hold report content: its
    message says what the original was without quoting it, its traceback is the
    original's."""


def _qualified(kind: type[BaseException]) -> str:
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _codes(entry: Mapping[str, Any], *keys: str) -> str:
    return " ".join(f"{k}={entry[k]}" for k in keys if isinstance(entry.get(k), int | str))


def describe_error(exc: BaseException) -> str:
    """What can be logged of a database driver error: its type, code, code name and error
    labels, and for a bulk write the index, code and code name of each failed write (never
    the message, the failed document or the duplicate key's value)."""
    parts = [_qualified(type(exc))]
    details = getattr(exc, "details", None)
    details = details if isinstance(details, Mapping) else {}
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        parts.append(f"code={code}")
    if isinstance(details.get("codeName"), str):
        parts.append(f"codeName={details['codeName']}")
    labels = sorted(str(label) for label in getattr(exc, "_error_labels", ()) or ())
    if labels:
        parts.append(f"errorLabels={','.join(labels)}")
    for key in ("writeErrors", "writeConcernErrors"):
        entries = details.get(key)
        if not isinstance(entries, list) or not entries:
            continue
        shown = [
            f"({_codes(e, 'index', 'idx', 'code', 'codeName')})"
            for e in entries[:_MAX_WRITE_ERRORS]
            if isinstance(e, Mapping)
        ]
        more = (
            f" +{len(entries) - _MAX_WRITE_ERRORS} more" if len(entries) > _MAX_WRITE_ERRORS else ""
        )
        parts.append(f"{key}=[{' '.join(shown)}{more}]")
    parts.append("(message withheld: it may quote stored data)")
    return " ".join(parts)


def _linked(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions a traceback of `exc` shows besides `exc` itself, one step away."""
    if exc.__cause__ is not None:
        yield exc.__cause__
    if exc.__context__ is not None:
        yield exc.__context__
    if isinstance(exc, BaseExceptionGroup):
        yield from exc.exceptions


def _tainted(exc: BaseException) -> bool:
    """Whether `exc`, or anything its traceback would show, is a withheld error."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, WITHHELD):
            return True
        todo.extend(_linked(current))
    return False


def loggable(exc: BaseException) -> BaseException:
    """What to log for `exc` (as ``exc_info``): `exc` itself, unless it or an exception its
    traceback shows (cause, context, group member) is a database driver error; then a
    `RedactedError` with the same traceback and chain, in which every driver error is
    replaced by `describe_error` and every other exception keeps its type name and text."""
    if not _tainted(exc):
        return exc
    return _stand_in(exc, {})


def _stand_in(exc: BaseException, done: dict[int, BaseException]) -> BaseException:
    if id(exc) in done:
        return done[id(exc)]
    if not _tainted(exc):
        done[id(exc)] = exc
        return exc
    if isinstance(exc, BaseExceptionGroup) and not isinstance(exc, WITHHELD):
        members = [_stand_in(m, done) for m in exc.exceptions]
        plain = type(exc) in (BaseExceptionGroup, ExceptionGroup)
        message = exc.message if plain else f"{_qualified(type(exc))}: {exc.message}"
        stand_in: BaseException = BaseExceptionGroup(message, members)
    elif isinstance(exc, WITHHELD):
        stand_in = RedactedError(describe_error(exc))
    else:
        stand_in = RedactedError(f"{_qualified(type(exc))}: {exc}")
    done[id(exc)] = stand_in
    stand_in.__traceback__ = exc.__traceback__
    stand_in.__suppress_context__ = exc.__suppress_context__
    if exc.__cause__ is not None:
        stand_in.__cause__ = _stand_in(exc.__cause__, done)
    if exc.__context__ is not None:
        stand_in.__context__ = _stand_in(exc.__context__, done)
    return stand_in


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "severity": record.levelname,
            "service": self._service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)

    def formatException(self, ei: ExcInfo) -> str:
        if ei[1] is not None:
            clean = loggable(ei[1])
            if clean is not ei[1]:
                ei = (type(clean), clean, clean.__traceback__)
        return super().formatException(ei)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO")
    for noisy in ("aiokafka", "kafka", "pymongo", "grpc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
