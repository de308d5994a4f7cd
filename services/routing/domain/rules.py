"""Routing rules as data: topic x region level (x region prefix) -> institution or unit.

A :class:`RuleSet` is parsed from a TOML document (``services/routing/data/rules.toml``) and
checked against the directory, so a rule naming an unknown topic, institution or unit is
refused as a whole. Every :class:`Decision` names the rule (with the rules version) and keeps
the classification that led to it, for the admins' explanation.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.regions import Region
from services.routing.domain.case import VERIFICATION_QUEUE
from services.routing.domain.classifier import Classification
from services.routing.domain.directory import DATA_DIR, TOPICS, Directory, Institution

__all__ = ["VERIFICATION_QUEUE", "Decision", "Rule", "RuleSet", "RulesError", "route_by_region"]

DEFAULT_RULES_FILE = DATA_DIR / "rules.toml"
LEVELS = frozenset({"province", "regency", "city"})
TARGET_KINDS = ("unit", "institution", "government")


class RulesError(ValueError):
    """The rules file is malformed or names something unknown."""


@dataclass(frozen=True)
class Decision:
    institution: Institution | None  # None: the national verification queue decides
    rule: str
    topic: str | None = None
    confidence: float = 0.0
    scores: tuple[tuple[str, float], ...] = ()
    matched_terms: tuple[str, ...] = ()
    rules_version: str = ""
    hint: str = ""  # the institution the reporter named, when it is known

    @property
    def to_verification(self) -> bool:
        return self.institution is None

    @property
    def institution_id(self) -> str:
        return self.institution.id if self.institution else VERIFICATION_QUEUE


@dataclass(frozen=True)
class Rule:
    name: str
    topic: str
    target_kind: str  # unit | institution | government
    target: str  # unit slug, institution id, or "" for the government
    levels: frozenset[str] = LEVELS
    regions: tuple[str, ...] = ()  # region code prefixes ("51", "51.08"); empty = anywhere

    def matches(self, topic: str, region: Region) -> bool:
        if topic != self.topic or region.kind not in self.levels:
            return False
        return not self.regions or any(
            region.code == p or region.code.startswith(p + ".") for p in self.regions
        )

    def resolve(self, region: Region, directory: Directory) -> Institution | None:
        government = directory.government_of(region.code)
        if self.target_kind == "institution":
            return directory.get(self.target)
        if government is None:
            return None
        if self.target_kind == "government":
            return government
        return directory.get(f"{government.id}/{self.target}")


@dataclass(frozen=True)
class RuleSet:
    version: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    @classmethod
    def load(cls, path: Path, directory: Directory, *, known_institutions: bool = True) -> RuleSet:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise RulesError(f"{path}: cannot read ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise RulesError(f"{path}: {exc}") from None
        return cls.parse(data, directory, known_institutions=known_institutions)

    @classmethod
    def parse(
        cls, data: Mapping[str, Any], directory: Directory, *, known_institutions: bool = True
    ) -> RuleSet:
        """The rules of `data`, checked against `directory`. With ``known_institutions``
        false an ``institution:<id>`` target need not be in it yet (at start, before the
        institutions added at run time are read: routing checks again once they are)."""
        version = data.get("version")
        if not isinstance(version, str) or not version.strip():
            raise RulesError("version: must be a non-empty string")
        unknown = set(data) - {"version", "rule"}
        if unknown:  # e.g. a misspelt [[rules]]: its rules would be silently left out
            raise RulesError(f"unknown top-level keys {sorted(unknown)} (expected version, rule)")
        if "rule" not in data:  # no rule at all sends every report to the verification queue
            raise RulesError("rule: the file has no [[rule]] tables (write rule = [] to mean none)")
        raw_rules = data["rule"]
        if not isinstance(raw_rules, list):
            raise RulesError("rule: must be an array of tables ([[rule]])")
        units = {i.id.split("/", 1)[1] for i in directory.all() if i.kind == "unit" and "/" in i.id}
        rules: list[Rule] = []
        names: set[str] = set()
        for n, raw in enumerate(raw_rules, start=1):
            rule = _parse_rule(n, raw, directory, units, known_institutions)
            if rule.name in names:
                raise RulesError(f"rule {n}: duplicate name {rule.name!r}")
            names.add(rule.name)
            rules.append(rule)
        return cls(version.strip(), tuple(rules))

    def route(
        self,
        region: Region | None,
        classification: Classification,
        directory: Directory,
        hint: str = "",
    ) -> Decision:
        """The institution for a classified report; the verification queue when unsure."""
        known_hint = hint if hint and directory.get(hint) is not None else ""

        def decision(institution: Institution | None, rule: str) -> Decision:
            return Decision(
                institution,
                rule,
                classification.topic,
                classification.confidence,
                classification.scores,
                classification.matched_terms,
                self.version,
                known_hint,
            )

        if classification.topic is None:
            return decision(None, "no-topic")
        if classification.needs_verification:
            return decision(None, "low-confidence")
        if region is None:
            return decision(None, "unknown-region")
        for rule in self.rules:
            if rule.matches(classification.topic, region):
                target = rule.resolve(region, directory)
                if target is not None:
                    return decision(target, f"rule:{rule.name}@{self.version}")
        return decision(None, "no-rule")


def _parse_rule(
    n: int, raw: object, directory: Directory, units: set[str], known_institutions: bool = True
) -> Rule:
    where = f"rule {n}"
    if not isinstance(raw, dict):
        raise RulesError(f"{where}: must be a table")
    unknown = set(raw) - {"name", "topic", "to", "levels", "regions"}
    if unknown:
        raise RulesError(f"{where}: unknown keys {sorted(unknown)}")
    name, topic, to = raw.get("name"), raw.get("topic"), raw.get("to")
    if not isinstance(name, str) or not name.strip():
        raise RulesError(f"{where}: name must be a non-empty string")
    where = f"rule {n} ({name})"
    if not isinstance(topic, str) or topic not in TOPICS:
        raise RulesError(f"{where}: unknown topic {topic!r} (one topic per rule)")
    if not isinstance(to, str) or ":" not in to and to != "government":
        raise RulesError(f"{where}: to must be 'unit:<slug>', 'institution:<id>' or 'government'")
    kind, _, target = to.partition(":")
    if kind not in TARGET_KINDS:
        raise RulesError(f"{where}: unknown target kind {kind!r}")
    if kind == "unit" and target not in units:
        raise RulesError(f"{where}: unknown unit {target!r}")
    if kind == "institution" and not target:
        raise RulesError(f"{where}: unknown institution {target!r}")
    if kind == "institution" and known_institutions and directory.get(target) is None:
        raise RulesError(f"{where}: unknown institution {target!r}")
    levels = raw.get("levels", sorted(LEVELS))
    if (
        not isinstance(levels, list)
        or not levels
        or not all(isinstance(level, str) and level in LEVELS for level in levels)
    ):
        raise RulesError(f"{where}: levels must be a non-empty list of {sorted(LEVELS)}")
    regions = raw.get("regions", [])
    if not isinstance(regions, list) or not all(isinstance(r, str) and r for r in regions):
        raise RulesError(f"{where}: regions must be a list of region code prefixes")
    return Rule(name.strip(), topic, kind, target, frozenset(levels), tuple(regions))


def route_by_region(region_code: str, directory: Directory) -> Decision:
    """The fallback rule: a report goes to the government of the region it names."""
    government = directory.government_of(region_code)
    if government is None:
        return Decision(None, "no-government-for-region")
    return Decision(government, f"region-government:{region_code}")
