"""Domain errors, free of gRPC; entrypoints translate them to status codes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


class DomainError(Exception):
    pass


class ValidationError(DomainError):
    """The request breaks one or more field rules (INVALID_ARGUMENT)."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(str(v) for v in violations))


class NotFound(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class Unauthenticated(DomainError):
    pass


class ResourceExhausted(DomainError):
    def __init__(self, message: str, retry_after_seconds: float) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(message)


class Unavailable(DomainError):
    pass


class DeadlineExceeded(DomainError):
    """The caller took longer than the server allows (e.g. a stream that stalls)."""


def require(violations: list[Violation]) -> None:
    if violations:
        raise ValidationError(violations)
