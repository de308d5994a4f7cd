"""Read side of the officers' API: lists of cases an actor may see, nearest deadline first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.common.errors import Violation, require
from services.common.mongo import Doc
from services.common.status import CaseState, Colour
from services.routing.case_store import CaseStore
from services.routing.domain import access
from services.routing.domain.access import Actor
from services.routing.domain.directory import TOPICS, Directory

MAX_PAGE = 100
DEFAULT_PAGE = 20
QUEUE_STATES = (CaseState.IN_VERIFICATION.value, CaseState.DEFERRED.value)


@dataclass(frozen=True)
class Page:
    docs: list[Doc]
    next_token: str


def page_window(page_size: int, page_token: str, maximum: int = MAX_PAGE) -> tuple[int, int]:
    violations = []
    if page_size < 0 or page_size > maximum:
        violations.append(Violation("page_size", f"must be 0..{maximum}"))
    if page_token and not (page_token.isdigit() and len(page_token) < 10):
        violations.append(Violation("page_token", "is not a token this server issued"))
    require(violations)
    return (int(page_token) if page_token else 0), (page_size or DEFAULT_PAGE)


@dataclass
class CaseQueries:
    store: CaseStore
    directory: Callable[[], Directory]

    async def reports(
        self,
        actor: Actor,
        state: str = "",
        colour: Colour | None = None,
        overdue_only: bool = False,
        topic: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> Page:
        violations = []
        if state and state not in {s.value for s in CaseState}:
            violations.append(Violation("state", f"unknown state {state!r}"))
        if topic and topic not in TOPICS:
            violations.append(Violation("topic", f"unknown topic {topic!r}"))
        require(violations)
        skip, size = page_window(page_size, page_token)
        query: Doc = {}
        visible = access.visible_institutions(actor, self.directory())
        if visible is not None:
            query["institution_id"] = {"$in": visible}
        if state:
            query["state"] = state
        if colour is not None:
            query["colour"] = colour.value
        if overdue_only:
            query["overdue"] = True
        if topic:
            query["topic"] = topic
        return await self._page(query, [("due_sort", 1), ("_id", 1)], skip, size)

    async def queue(
        self, actor: Actor, state: str = "", page_size: int = 0, page_token: str = ""
    ) -> Page:
        access.require_national_admin(actor)
        if state and state not in QUEUE_STATES:
            require([Violation("state", f"must be one of {', '.join(QUEUE_STATES)}")])
        skip, size = page_window(page_size, page_token)
        query: Doc = {"state": state} if state else {"state": {"$in": list(QUEUE_STATES)}}
        return await self._page(query, [("received_at", 1), ("_id", 1)], skip, size)

    async def _page(self, query: Doc, sort: list[tuple[str, int]], skip: int, size: int) -> Page:
        docs = await self.store.find(query, sort, skip, size + 1)
        more = len(docs) > size
        return Page(docs[:size], str(skip + size) if more else "")
