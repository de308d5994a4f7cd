"""Indonesia's provinces and regencies/cities with their Kemendagri codes.

The table ships as ``services/common/data/regions.csv`` (see ``data/README.md`` for its
source). Codes are in dotted form: ``51`` is the province of Bali, ``51.08`` Kabupaten
Buleleng, ``51.71`` Kota Denpasar. Pure stdlib; nothing is read at import time.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_REGIONS_CSV = Path(__file__).parent / "data" / "regions.csv"

KINDS = ("province", "regency", "city")
TIMEZONES = ("Asia/Jakarta", "Asia/Makassar", "Asia/Jayapura")

_DOTTED = re.compile(r"([0-9]{2})(?:\.([0-9]{2}))?")
_PLAIN = re.compile(r"([0-9]{2})([0-9]{2})?")


def normalise_region_code(raw: str) -> str | None:
    """``"51.08"``, ``"5108"``, ``" 51.08 "`` -> ``"51.08"``; ``"51"`` -> ``"51"``.

    Returns None when the shape is wrong. Does not check that the region exists.
    """
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    match = _DOTTED.fullmatch(text) or _PLAIN.fullmatch(text)
    if match is None:
        return None
    province, local = match.group(1), match.group(2)
    return province if local is None else f"{province}.{local}"


@dataclass(frozen=True)
class Region:
    code: str  # "51.08"
    name: str  # "Kabupaten Buleleng"
    kind: str  # "province" | "regency" | "city"
    province_code: str  # "51"
    timezone: str  # IANA zone: Asia/Jakarta (WIB), Asia/Makassar (WITA), Asia/Jayapura (WIT)

    @property
    def is_province(self) -> bool:
        return self.kind == "province"


class RegionTable:
    """An in-memory, read-only table of regions keyed by dotted code."""

    def __init__(self, regions: list[Region]) -> None:
        by_code: dict[str, Region] = {}
        for region in regions:
            if region.code in by_code:
                raise ValueError(f"duplicate region code {region.code!r}")
            by_code[region.code] = region
        for region in by_code.values():
            province = by_code.get(region.province_code)
            if province is None or not province.is_province:
                raise ValueError(
                    f"region {region.code!r} refers to unknown province {region.province_code!r}"
                )
        self._by_code = by_code
        self._children: dict[str, list[Region]] = {}
        for region in sorted(by_code.values(), key=lambda r: r.code):
            if not region.is_province:
                self._children.setdefault(region.province_code, []).append(region)

    @classmethod
    def load(cls, path: Path | None = None) -> RegionTable:
        """Reads the csv at ``path`` (default: the shipped table). Not cached."""
        source = path or DEFAULT_REGIONS_CSV
        regions: list[Region] = []
        with source.open(newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(csv.DictReader(handle), start=2):
                regions.append(_parse_row(row, source, line_no))
        return cls(regions)

    def get(self, code: str) -> Region | None:
        normalised = normalise_region_code(code)
        return None if normalised is None else self._by_code.get(normalised)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.get(code) is not None

    def __len__(self) -> int:
        return len(self._by_code)

    def __iter__(self) -> Iterator[Region]:
        return iter(sorted(self._by_code.values(), key=lambda r: r.code))

    def provinces(self) -> list[Region]:
        return sorted((r for r in self._by_code.values() if r.is_province), key=lambda r: r.code)

    def children(self, province_code: str) -> list[Region]:
        """The regencies and cities of a province, by code; [] for an unknown province."""
        normalised = normalise_region_code(province_code)
        if normalised is None:
            return []
        return list(self._children.get(normalised, []))

    def province_of(self, code: str) -> Region | None:
        """The province a region lies in (a province is its own province)."""
        region = self.get(code)
        return None if region is None else self._by_code.get(region.province_code)


def _parse_row(row: dict[str, str], source: Path, line_no: int) -> Region:
    where = f"{source}:{line_no}"
    try:
        raw_code = row["code"]
        name = row["name"].strip()
        kind = row["kind"].strip()
        province_code = row["province_code"].strip()
        timezone = row["timezone"].strip()
    except (KeyError, AttributeError) as exc:
        raise ValueError(f"{where}: missing column {exc}") from exc
    code = normalise_region_code(raw_code)
    if code is None or code != raw_code.strip():
        raise ValueError(f"{where}: bad code {raw_code!r}")
    if kind not in KINDS:
        raise ValueError(f"{where}: bad kind {kind!r}")
    if timezone not in TIMEZONES:
        raise ValueError(f"{where}: bad timezone {timezone!r}")
    if not name:
        raise ValueError(f"{where}: empty name")
    if code[:2] != province_code:
        raise ValueError(f"{where}: province_code {province_code!r} does not match {code!r}")
    if (kind == "province") != (len(code) == 2):
        raise ValueError(f"{where}: kind {kind!r} does not fit code {code!r}")
    return Region(code, name, kind, province_code, timezone)


@functools.lru_cache(maxsize=1)
def default_regions() -> RegionTable:
    """The shipped table, loaded once per process."""
    return RegionTable.load()
