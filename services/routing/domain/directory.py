"""The directory of institutions (instansi) that receive reports.

Seeded from two csv files in ``services/routing/data`` and the region table:

- ``institutions_national.csv``: ministries, agencies and state-owned enterprises
  (``nasional-<slug>``), each with the topics it is the national owner of;
- ``opd_units.csv``: the work units (OPD) every local government has, with their topics.

Every province, regency and city gets a government (``pemda-<code>``) and, under it, one
unit per OPD template (``pemda-<code>/<slug>``). Regional governments are autonomous, so a
regency's government is not placed under its province's: each is a root of its own tree.
Pure stdlib; files are read only by :meth:`Directory.seed`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from services.common.regions import Region, RegionTable, normalise_region_code
from services.routing.domain.topics import TOPICS as ALL_TOPICS

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_NATIONAL_CSV = DATA_DIR / "institutions_national.csv"
DEFAULT_UNITS_CSV = DATA_DIR / "opd_units.csv"

TOPICS = frozenset(ALL_TOPICS)
NATIONAL_KINDS = frozenset({"ministry", "agency", "soe"})
GOVERNMENT_KINDS = frozenset({"province", "regency", "city"})
KINDS = NATIONAL_KINDS | GOVERNMENT_KINDS | {"unit"}

# Short names used in "Pemerintah Provinsi ..." where the official one is long.
_PROVINCE_SHORT_NAMES = {"31": "DKI Jakarta"}


@dataclass(frozen=True)
class Institution:
    id: str  # "nasional-pln", "pemda-51", "pemda-51.08", "pemda-51.08/disdukcapil"
    name: str
    kind: str  # ministry|agency|soe|province|regency|city|unit
    parent_id: str | None
    region_code: str | None
    topics: tuple[str, ...]


@dataclass(frozen=True)
class _UnitTemplate:
    slug: str
    name: str
    topics: tuple[str, ...]


def government_id(region_code: str) -> str:
    return f"pemda-{region_code}"


class Directory:
    """Read-only lookup over the seeded institutions."""

    def __init__(self, institutions: Iterable[Institution]) -> None:
        by_id: dict[str, Institution] = {}
        for inst in institutions:
            if inst.id in by_id:
                raise ValueError(f"duplicate institution id {inst.id!r}")
            if inst.kind not in KINDS:
                raise ValueError(f"{inst.id}: unknown kind {inst.kind!r}")
            unknown = set(inst.topics) - TOPICS
            if unknown:
                raise ValueError(f"{inst.id}: unknown topics {sorted(unknown)}")
            by_id[inst.id] = inst
        children: dict[str, list[Institution]] = {}
        for inst in by_id.values():
            if inst.parent_id is None:
                continue
            if inst.parent_id not in by_id:
                raise ValueError(f"{inst.id}: unknown parent {inst.parent_id!r}")
            children.setdefault(inst.parent_id, []).append(inst)
        for inst in by_id.values():  # every chain of parents ends at a top-level body
            seen = {inst.id}
            parent = inst.parent_id
            while parent is not None:
                if parent in seen:
                    raise ValueError(f"{inst.id}: parent {inst.parent_id!r} makes a cycle")
                seen.add(parent)
                parent = by_id[parent].parent_id
        self._by_id = by_id
        self._children = children
        self._national_by_topic: dict[str, Institution] = {}
        for inst in by_id.values():
            if inst.kind in NATIONAL_KINDS:
                for topic in inst.topics:
                    self._national_by_topic.setdefault(topic, inst)

    @classmethod
    def seed(
        cls,
        regions: RegionTable,
        national_csv: Path | None = None,
        units_csv: Path | None = None,
    ) -> Directory:
        institutions = list(_read_national(national_csv or DEFAULT_NATIONAL_CSV))
        templates = _read_units(units_csv or DEFAULT_UNITS_CSV)
        for province in regions.provinces():
            for region in [province, *regions.children(province.code)]:
                government = _government(region)
                institutions.append(government)
                institutions.extend(_unit(government, region, t) for t in templates)
        return cls(institutions)

    def get(self, id: str) -> Institution | None:
        return self._by_id.get(id)

    def government_of(self, region_code: str) -> Institution | None:
        code = normalise_region_code(region_code)
        return None if code is None else self._by_id.get(government_id(code))

    def unit_for(self, region_code: str, topic: str) -> Institution | None:
        """The first OPD of the region's government whose topics include ``topic``."""
        government = self.government_of(region_code)
        if government is None:
            return None
        for unit in self._children.get(government.id, []):
            if topic in unit.topics:
                return unit
        return None

    def national_for(self, topic: str) -> Institution | None:
        return self._national_by_topic.get(topic)

    def children(self, id: str) -> list[Institution]:
        return list(self._children.get(id, []))

    def is_within(self, id: str, ancestor_id: str) -> bool:
        """True when ``id`` is ``ancestor_id`` or lies below it."""
        return id in self._by_id and (id == ancestor_id or ancestor_id in self.ancestors(id))

    def ancestors(self, id: str) -> list[str]:
        """The ids above ``id``, nearest first; [] for an unknown or top-level id. (Every
        parent is known and no chain loops: checked when the directory is built.)"""
        result: list[str] = []
        current = self._by_id.get(id)
        while current is not None and current.parent_id is not None:
            current = self._by_id[current.parent_id]
            result.append(current.id)
        return result

    def __len__(self) -> int:
        return len(self._by_id)

    def all(self) -> Iterable[Institution]:
        return list(self._by_id.values())


def _government(region: Region) -> Institution:
    if region.is_province:
        short = _PROVINCE_SHORT_NAMES.get(region.code, region.name)
        name = f"Pemerintah Provinsi {short}"
    else:
        name = f"Pemerintah {region.name}"  # "Kabupaten Buleleng" / "Kota Denpasar"
    return Institution(government_id(region.code), name, region.kind, None, region.code, ())


def _unit(government: Institution, region: Region, template: _UnitTemplate) -> Institution:
    if region.is_province:
        where = f"Provinsi {_PROVINCE_SHORT_NAMES.get(region.code, region.name)}"
    else:
        where = region.name
    return Institution(
        id=f"{government.id}/{template.slug}",
        name=f"{template.name} {where}",
        kind="unit",
        parent_id=government.id,
        region_code=region.code,
        topics=template.topics,
    )


def _split_topics(raw: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (raw or "").split(";") if t.strip())


def _read_national(path: Path) -> list[Institution]:
    result: list[Institution] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            inst_id, kind = row["id"].strip(), row["kind"].strip()
            if not inst_id.startswith("nasional-"):
                raise ValueError(f"{path}: national id {inst_id!r} must start with 'nasional-'")
            if kind not in NATIONAL_KINDS:
                raise ValueError(f"{path}: {inst_id}: kind {kind!r} is not a national kind")
            result.append(
                Institution(
                    inst_id, row["name"].strip(), kind, None, None, _split_topics(row["topics"])
                )
            )
    return result


def _read_units(path: Path) -> list[_UnitTemplate]:
    result: list[_UnitTemplate] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            slug = row["slug"].strip()
            if not slug or "/" in slug:
                raise ValueError(f"{path}: bad unit slug {slug!r}")
            result.append(_UnitTemplate(slug, row["name"].strip(), _split_topics(row["topics"])))
    return result
