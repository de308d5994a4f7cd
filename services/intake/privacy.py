"""Privacy can be raised (public → confidential → anonymous), never lowered. Pure."""

from __future__ import annotations

from services.common.errors import FailedPrecondition
from services.intake.domain import Privacy

RANK = {Privacy.PUBLIC: 0, Privacy.CONFIDENTIAL: 1, Privacy.ANONYMOUS: 2}


def check_raise(current: Privacy, wanted: Privacy) -> bool:
    """True when `wanted` raises the privacy, False when it is the same; lowering fails."""
    if RANK[wanted] < RANK[current]:
        raise FailedPrecondition(
            f"privacy: can be raised, never lowered (the report is {current}, not {wanted})"
        )
    return RANK[wanted] > RANK[current]
