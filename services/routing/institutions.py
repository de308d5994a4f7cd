"""The directory in force: the shipped seed plus the institutions admins added or changed at
run time (collection ``institutions``), rebuilt and checked as a whole on every change."""

from __future__ import annotations

from collections.abc import Callable

from pymongo.asynchronous.collection import AsyncCollection

from services.common.errors import ValidationError, Violation, require
from services.common.mongo import Doc
from services.routing.domain.directory import KINDS, TOPICS, Directory, Institution


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


def validate(inst: Institution) -> None:
    violations = []
    if not inst.id.strip() or inst.id != inst.id.strip() or len(inst.id) > 120:
        violations.append(Violation("institution.id", "must be 1..120 characters, no spaces"))
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

    def __call__(self) -> Directory:
        return self.directory

    def _merged(self, changes: list[Institution]) -> Directory:
        by_id = {i.id: i for i in self._seed.all()}
        by_id.update({i.id: i for i in changes})
        return Directory(by_id.values())

    async def load(self) -> None:
        docs = await self._collection.find({}).to_list(None)
        self.directory = self._merged([from_doc(d) for d in docs])

    async def upsert(
        self, inst: Institution, may_replace: Callable[[Institution | None], None]
    ) -> Institution:
        """Store `inst` (new, or replacing the institution with its id) once the whole
        directory with it still holds together. `may_replace` is shown what `inst` would
        replace (None for a new id), read from the stored changes just now, not from this
        replica's copy (up to 10 s old), and raises if the caller may not replace it."""
        validate(inst)
        docs = await self._collection.find({}).to_list(None)
        stored = [from_doc(d) for d in docs]
        current = {i.id: i for i in self._seed.all()} | {i.id: i for i in stored}
        may_replace(current.get(inst.id))
        changes = [i for i in stored if i.id != inst.id] + [inst]
        try:
            directory = self._merged(changes)
        except ValueError as exc:
            raise ValidationError([Violation("institution", str(exc))]) from None
        await self._collection.replace_one({"_id": inst.id}, to_doc(inst), upsert=True)
        self.directory = directory
        return inst
