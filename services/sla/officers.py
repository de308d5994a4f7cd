"""Use cases for officers and admins: extend a deadline, read a report's status, report
cards. Authorisation: officers act only on cases their institution (or a unit below it)
holds; national admins on every case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from services.common import scope
from services.common.auth import Principal
from services.common.clock import Clock
from services.common.errors import (
    FailedPrecondition,
    NotFound,
    ValidationError,
    Violation,
    require,
)
from services.common.mongo import Doc
from services.common.outbox import outbox_update
from services.sla.codec import case_fields, case_from_doc, deadlines_set_event
from services.sla.domain.actions import ClockError, ExtensionTooLong, Rules, extend_resolution
from services.sla.domain.clocks import RESOLUTION, CaseClocks
from services.sla.metrics import EXTENSIONS
from services.sla.tally import cas_and_count, change

MAX_REASON = 2000


@dataclass(frozen=True)
class ExtendDeadline:
    tracking_id: str
    clock: str
    extension: timedelta
    reason: str


def validate(cmd: ExtendDeadline) -> None:
    problems = []
    if not cmd.tracking_id.strip():
        problems.append(Violation("tracking_id", "must not be empty"))
    if cmd.clock not in ("", RESOLUTION):
        problems.append(Violation("clock", "only the resolution deadline can be extended"))
    if cmd.extension <= timedelta(0):
        problems.append(Violation("extension", "must be a positive duration"))
    if not cmd.reason.strip():
        problems.append(Violation("reason", "must not be empty (say why more time is needed)"))
    elif len(cmd.reason) > MAX_REASON:
        problems.append(Violation("reason", f"must be at most {MAX_REASON} characters"))
    require(problems)


@dataclass
class Officers:
    cases: AsyncCollection[Doc]
    rules: Rules
    hierarchy: scope.InstitutionTree
    clock: Clock
    on_stored: Callable[[], None] = lambda: None

    async def _load(self, tracking_id: str) -> Doc:
        doc = await self.cases.find_one({"_id": tracking_id})
        if doc is None or "clocks" not in doc:
            raise NotFound(f"tracking_id: no report {tracking_id!r}")
        return doc

    def _authorise(self, who: Principal, case: CaseClocks, doc: Doc) -> None:
        """Another institution's report answers as an unknown one (services/common/scope);
        the ids above the holder come from routing's last event (units added at run time)."""
        ancestors = doc.get("institution_ancestors") or ()
        scope.require_visible(who, case.tracking_id, case.institution_id, self.hierarchy, ancestors)

    async def status(self, who: Principal, tracking_id: str) -> tuple[CaseClocks, Doc]:
        if not tracking_id.strip():
            raise ValidationError([Violation("tracking_id", "must not be empty")])
        doc = await self._load(tracking_id)
        case = case_from_doc(doc)
        self._authorise(who, case, doc)
        return case, doc

    async def extend(self, who: Principal, cmd: ExtendDeadline) -> tuple[CaseClocks, Doc]:
        validate(cmd)
        for _ in range(20):
            doc = await self._load(cmd.tracking_id)
            case = case_from_doc(doc)
            self._authorise(who, case, doc)
            now = self.clock.now()
            try:
                updated = extend_resolution(case, cmd.extension, now, self.rules)
            except ExtensionTooLong as exc:
                raise ValidationError(
                    [Violation("extension", str(exc).split(": ", 1)[1])]
                ) from None
            except ClockError as exc:
                raise FailedPrecondition(str(exc)) from None
            resolution = updated.clock(RESOLUTION)
            assert resolution is not None
            cause = f"extension-{resolution.cycle}-{resolution.extensions}"
            version = doc["version"] + 1
            event = deadlines_set_event(updated, cause, now, version)
            entry = {
                "at": now,
                "action": "extended",
                "actor": who.role,
                "detail": f"resolution due {resolution.due_at.isoformat()}: {cmd.reason}",
                # Who, for the institutions' and the Ombudsman's audit (kept in sla's own
                # timeline; the Ombudsman event carries the role, like routing's history).
                "actor_id": who.subject,
                "actor_institution": who.institution,
            }
            extra = outbox_update([event])
            update: dict[str, Any] = {
                "$set": {
                    **case_fields(updated, doc["received_at"]),
                    "version": version,
                    **extra["$set"],
                },
                "$push": {**extra["$push"], "timeline": entry},
            }
            counts = change(
                doc.get("card"), doc.get("rating"), update["$set"]["card"], doc.get("rating")
            )
            if await cas_and_count(self.cases, cmd.tracking_id, doc["version"], update, counts):
                EXTENSIONS.inc()
                self.on_stored()
                return updated, {**doc, "institution_id": updated.institution_id}
        raise FailedPrecondition("tracking_id: the report is changing too fast; retry")
