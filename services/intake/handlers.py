"""Intake's use cases, written against ports so they run over fakes in unit tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.common.clock import Clock
from services.common.errors import NotFound, ValidationError, Violation, require
from services.common.ids import MalformedTrackingId, parse_tracking_id
from services.intake.domain import Complaint, SubmitComplaint, receive, validate


@dataclass(frozen=True)
class Stored:
    tracking_id: str
    received_at: datetime
    duplicate: bool
    fingerprint: str


class ComplaintStore(Protocol):
    async def add(self, complaint: Complaint) -> Stored:
        """Store the complaint with its ComplaintReceived event, or return the complaint
        already stored under the same idempotency scope (duplicate=True)."""
        ...

    async def get(self, tracking_id: str) -> dict[str, object] | None: ...


@dataclass
class IntakeHandlers:
    store: ComplaintStore
    clock: Clock
    new_tracking_id: Callable[[], str]
    known_region: Callable[[str], bool]

    async def submit(self, cmd: SubmitComplaint) -> Stored:
        require(validate(cmd, self.known_region))
        complaint = receive(cmd, self.new_tracking_id(), self.clock.now())
        stored = await self.store.add(complaint)
        if stored.duplicate and stored.fingerprint != complaint.fingerprint:
            raise ValidationError(
                [
                    Violation(
                        "idempotency_key", "was already used for a different report on this channel"
                    )
                ]
            )
        return stored

    async def get(self, raw_tracking_id: str) -> dict[str, object]:
        try:
            tracking_id = parse_tracking_id(raw_tracking_id)
        except MalformedTrackingId as exc:
            raise ValidationError([Violation("tracking_id", str(exc))]) from None
        doc = await self.store.get(tracking_id)
        if doc is None:
            raise NotFound(f"tracking_id: no report {tracking_id}")
        return doc
