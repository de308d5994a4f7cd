"""The directory in force: the shipped seed plus the institutions admins added or changed at
run time (collection ``institutions``), rebuilt and checked as a whole on every change."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable

from pymongo import ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection

from services.common.errors import ValidationError, Violation, require
from services.common.mongo import Doc
from services.common.outbox import in_transaction
from services.routing.domain.case import VERIFICATION_QUEUE
from services.routing.domain.directory import KINDS, TOPICS, Directory, Institution

log = logging.getLogger(__name__)


def to_doc(inst: Institution) -> Doc:
    return {
        "_id": inst.id,
        "name": inst.name,
        "kind": inst.kind,
        "parent_id": inst.parent_id,
        "region_code": inst.region_code,
        "topics": list(inst.topics),
    }


def from_doc(doc: Doc) -> Institution:
    return Institution(
        doc["_id"],
        doc["name"],
        doc["kind"],
        doc.get("parent_id"),
        doc.get("region_code"),
        tuple(doc.get("topics", [])),
    )


#: A top-level body's or a government's id (``nasional-pln``, ``pemda-51.08``), and a unit's
#: last segment (``pemda-51.08/dpupr``): what the shipped directory uses, and what the rules
#: (``unit:<slug>``) and the scope checks (``<parent>/...``) rely on.
TOP_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,119}")
UNIT_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,59}")
#: Ids the directory must never hold: the national verification queue is a case's holder
#: like an institution, so an institution with its id would see and receive queued reports.
RESERVED_IDS = frozenset({VERIFICATION_QUEUE})


def id_rule(inst: Institution) -> str:
    """The id rule `inst` breaks ("" when none)."""
    if inst.id in RESERVED_IDS:
        return f"{inst.id!r} is reserved (the national verification queue)"
    if inst.kind == "unit":
        parent = inst.parent_id or ""
        slug = inst.id.removeprefix(parent + "/") if parent else ""
        if not parent or slug == inst.id or not UNIT_SLUG.fullmatch(slug):
            return (
                "a unit's id must be its parent's id, '/', and a slug of lower-case letters, "
                "digits and '-' (e.g. pemda-51.08/dpupr)"
            )
        return ""
    if not TOP_ID.fullmatch(inst.id):
        return (
            "must be 1..120 lower-case letters, digits, '.' and '-', starting with a letter or "
            "digit (e.g. nasional-pln, pemda-51.08)"
        )
    return ""


def validate(inst: Institution) -> None:
    violations = []
    if not inst.id.strip() or inst.id != inst.id.strip() or len(inst.id) > 120:
        violations.append(Violation("institution.id", "must be 1..120 characters, no spaces"))
    elif rule := id_rule(inst):
        violations.append(Violation("institution.id", rule))
    if not inst.name.strip() or len(inst.name) > 300:
        violations.append(Violation("institution.name", "must be 1..300 characters"))
    if inst.kind not in KINDS:
        violations.append(
            Violation("institution.kind", f"must be one of {', '.join(sorted(KINDS))}")
        )
    unknown = sorted(set(inst.topics) - TOPICS)
    if unknown:
        violations.append(Violation("institution.topics", f"unknown topics {unknown}"))
    require(violations)


class InstitutionRegistry:
    def __init__(self, collection: AsyncCollection[Doc], seed: Directory) -> None:
        self._collection = collection
        self._seed = seed
        self.directory = seed
        self._version = 0  # the stored directory's change counter this copy reflects

    def __call__(self) -> Directory:
        return self.directory

    def _merged(self, changes: list[Institution]) -> Directory:
        by_id = {i.id: i for i in self._seed.all()}
        for change in changes:
            if change.id in RESERVED_IDS:  # stored before the id was refused: never in force
                log.error("stored institution with a reserved id ignored", extra={"id": change.id})
                continue
            by_id[change.id] = change
        return Directory(by_id.values())

    def _meta(self) -> AsyncCollection[Doc]:
        return self._collection.database[f"{self._collection.name}_meta"]

    async def load(self) -> None:
        """Read the stored changes (the periodic refresh). A copy read before this
        replica's own latest change committed does not replace the newer one."""
        meta = await self._meta().find_one({"_id": "directory"})
        version = int(meta["version"]) if meta else 0
        docs = await self._collection.find({}).to_list(None)
        directory = self._merged([from_doc(d) for d in docs])
        if version >= self._version:
            self.directory, self._version = directory, version

    async def knows(self, institution_id: str) -> bool:
        """Whether `institution_id` is in the directory, reading the stored changes when
        this copy does not have it (added through another replica less than a refresh ago),
        so a new unit can act and receive reports through any replica at once. One indexed
        read per miss; the whole directory is read again only when the id is stored."""
        if self.directory.get(institution_id) is not None:
            return True
        if await self._collection.find_one({"_id": institution_id}, {"_id": 1}) is None:
            return False
        await self.load()
        return self.directory.get(institution_id) is not None

    async def upsert(
        self,
        inst: Institution,
        may_replace: Callable[[Institution | None], None | Awaitable[None]],
    ) -> Institution:
        """Store `inst` (new, or replacing the institution with its id) once the whole
        directory with it still holds together. `may_replace` is shown what `inst` would
        replace (None for a new id), read from the stored changes just now, not from this
        replica's copy (up to 10 s old), and raises if the caller may not replace it."""

        versions: list[int] = []  # the counter as this change left it (the last attempt's)

        async def write(session: AsyncClientSession) -> Directory:
            # Every change first bumps one counter, so two admins' changes at the same moment
            # conflict and the second is decided again on the first's result (no parent loop
            # or takeover can slip between two checks).
            counter = await self._meta().find_one_and_update(
                {"_id": "directory"},
                {"$inc": {"version": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            versions.append(int(counter["version"]) if counter else 0)
            docs = await self._collection.find({}, session=session).to_list(None)
            stored = [from_doc(d) for d in docs]
            current = {i.id: i for i in self._seed.all()} | {i.id: i for i in stored}
            allowed = may_replace(current.get(inst.id))  # who may, before what
            if inspect.isawaitable(allowed):  # a check that needs to read something itself
                await allowed
            validate(inst)
            changes = [i for i in stored if i.id != inst.id] + [inst]
            try:
                directory = self._merged(changes)
            except ValueError as exc:
                raise ValidationError([Violation("institution", str(exc))]) from None
            await self._collection.replace_one(
                {"_id": inst.id}, to_doc(inst), upsert=True, session=session
            )
            return directory

        self.directory = await in_transaction(self._collection.database.client, write)
        self._version = max(self._version, versions[-1])
        return inst
