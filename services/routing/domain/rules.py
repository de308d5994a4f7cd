"""Routing decisions. Each decision names the rule that made it, for explanation."""

from __future__ import annotations

from dataclasses import dataclass

from services.routing.domain.directory import Directory, Institution

VERIFICATION_QUEUE = "verification-queue"


@dataclass(frozen=True)
class Decision:
    institution: Institution | None  # None: the national verification queue decides
    rule: str
    topic: str | None = None
    confidence: float = 0.0

    @property
    def to_verification(self) -> bool:
        return self.institution is None


def route_by_region(region_code: str, directory: Directory) -> Decision:
    """The base rule: a report goes to the government of the region it names."""
    government = directory.government_of(region_code)
    if government is None:
        return Decision(None, "no-government-for-region")
    return Decision(government, f"region-government:{region_code}")
