"""The use case of every action on a case: check who may act, apply the state machine, and
store the outcome with its CaseAction event in one compare-and-set write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.common.clock import Clock
from services.common.errors import FailedPrecondition, NotFound, Unavailable, Violation, require
from services.common.mongo import Doc
from services.common.outbox import OutboxMessage
from services.common.status import MAX_CASE_ACTIONS
from services.routing.case_store import status_of
from services.routing.codec import case_action_event
from services.routing.domain import access
from services.routing.domain.access import Actor
from services.routing.domain.case import (
    VERIFICATION_QUEUE,
    CaseStatus,
    Command,
    Outcome,
    Role,
    apply,
)
from services.routing.domain.directory import Directory

MAX_ATTEMPTS = 5


class CaseRepository(Protocol):
    """The port the use case needs; :class:`CaseStore` is the MongoDB adapter."""

    async def get(self, tracking_id: str) -> Doc | None: ...

    async def commit(
        self,
        doc: Doc,
        outcome: Outcome,
        message: OutboxMessage,
        now: datetime,
        applied_event_id: str = "",
    ) -> Doc | None: ...


@dataclass
class CaseActions:
    store: CaseRepository
    directory: Callable[[], Directory]
    clock: Clock
    on_stored: Callable[[], None] = lambda: None
    # Whether an institution exists, reading the stored directory on a miss (a target added
    # through another replica since this copy's last refresh); None: this copy only.
    knows: Callable[[str], Awaitable[bool]] | None = None

    async def load(self, actor: Actor | None, tracking_id: str) -> Doc:
        if not tracking_id.strip():
            require([Violation("tracking_id", "must not be empty")])
        doc = await self.store.get(tracking_id)
        if doc is None:
            raise NotFound(f"tracking_id: no report {tracking_id!r}")
        if actor is not None:
            access.require_visible(actor, tracking_id, doc["institution_id"], self.directory())
        return doc

    async def act(
        self,
        actor: Actor | None,
        tracking_id: str,
        command: Command,
        expected_version: int = 0,
        event_id: str = "",
    ) -> Doc:
        """Apply ``command``; ``actor`` None is the reporter or the system (no visibility
        check). With ``event_id`` (the consumed event that asks for it) a redelivered event
        changes nothing, and the CaseAction's id is derived from it and the outcome
        (`codec.case_action_event_id`): applied again after a restore of routing's database,
        with the same outcome, it publishes the same event."""
        for _ in range(MAX_ATTEMPTS):
            doc = await self.load(actor, tracking_id)
            if event_id and event_id in doc.get("_applied", []):
                return doc
            version = int(doc.get("version", 0))
            if expected_version and expected_version != version:
                raise FailedPrecondition(
                    f"expected_version: report {tracking_id} is at version {version}, "
                    f"not {expected_version}"
                )
            if command.role in _CAPPED:
                _require_room(tracking_id, doc)
            status = status_of(doc)
            target = command.institution_id.strip()
            if target and self.knows is not None and command.action in ("verified", "forwarded"):
                await self.knows(target)
            self._check_target(actor, status, command)
            outcome = apply(status, command)
            now = self.clock.now()
            message = case_action_event(tracking_id, outcome, self.directory(), now, event_id)
            stored = await self.store.commit(doc, outcome, message, now, event_id)
            if stored is not None:
                self.on_stored()
                return stored
        raise Unavailable(f"tracking_id: report {tracking_id} is busy; retry")

    def _check_target(self, actor: Actor | None, case: CaseStatus, command: Command) -> None:
        if command.action not in ("verified", "forwarded"):
            return
        target_id = command.institution_id.strip()
        if not target_id:
            return  # the state machine names the empty field
        directory = self.directory()
        if target_id == VERIFICATION_QUEUE or directory.get(target_id) is None:
            require([Violation("institution_id", f"unknown institution {target_id!r}")])
        if target_id == case.institution_id:
            require([Violation("institution_id", "must not be the report's own institution")])
        if command.action == "forwarded" and not command.reason.strip():
            home = (
                case.institution_id
                if actor is None or actor.is_national_admin
                else (actor.institution)
            )
            if not directory.is_within(target_id, home):
                require(
                    [
                        Violation(
                            "reason", "must not be empty when forwarding to another institution"
                        )
                    ]
                )


#: Whose actions are capped per report (MAX_CASE_ACTIONS). The national admins' are not: they
#: can still close or archive a report that reached the cap.
_CAPPED = frozenset({Role.OFFICER, Role.INSTITUTION_ADMIN})
_CAPPED_NAMES = frozenset(r.value for r in _CAPPED)


def _require_room(tracking_id: str, doc: Doc) -> None:
    """Refuse an officer's or institution admin's action on a report that already has
    MAX_CASE_ACTIONS of them (its history would grow towards MongoDB's document limit)."""
    taken = sum(1 for h in doc.get("history", []) if h.get("actor") in _CAPPED_NAMES)
    if taken >= MAX_CASE_ACTIONS:
        raise FailedPrecondition(
            f"tracking_id: report {tracking_id} has reached {MAX_CASE_ACTIONS} actions by "
            "officers and institution admins, the most one report may take; ask the national "
            "admins"
        )
