"""Who may see and act on which report, and who may edit which institution.

National admins see every report; officers and institution admins see the reports held by
their institution or any unit below it. A report outside one's reach is reported as not
found (see docs/officers-api.md), so ids of other institutions' reports leak nothing. The
rule is services/common/scope.py, shared with intake's evidence API.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common import scope
from services.common.errors import PermissionDenied
from services.routing.domain.case import Role
from services.routing.domain.directory import Directory, Institution


@dataclass(frozen=True)
class Actor:
    subject: str
    institution: str
    role: Role

    @property
    def is_national_admin(self) -> bool:
        return self.role == Role.NATIONAL_ADMIN


def require_known_institution(actor: Actor, directory: Directory) -> None:
    """A token for an institution the directory does not know grants nothing."""
    if actor.is_national_admin:
        return
    if directory.get(actor.institution) is None:
        raise PermissionDenied(f"authorization: unknown institution {actor.institution!r}")


# The visibility rule itself lives in services/common/scope.py (intake's evidence API uses
# it too); these names stay so routing's callers read as before.


def can_see(actor: Actor, holder_id: str, directory: Directory) -> bool:
    return scope.can_see(actor, holder_id, directory)


def require_visible(actor: Actor, tracking_id: str, holder_id: str, directory: Directory) -> None:
    scope.require_visible(actor, tracking_id, holder_id, directory)


def visible_institutions(actor: Actor, directory: Directory) -> list[str] | None:
    """The institution ids whose reports ``actor`` sees; None for everything."""
    return scope.visible_institutions(actor, directory)


def require_national_admin(actor: Actor) -> None:
    if not actor.is_national_admin:
        raise PermissionDenied(f"role {actor.role.value} may not use the verification queue")


def require_may_edit(actor: Actor, record: Institution, existing: Institution | None) -> None:
    """National admins add and change any institution. An institution admin adds and
    changes only units (kind ``unit``) directly below its own institution: the record's
    parent must be its institution, and so must the parent of the record already stored
    under that id (`existing`, None for a new id), or an admin could take over another
    institution's unit, or a ministry, by naming itself as its new parent."""
    if actor.is_national_admin:
        return
    denied = f"role {actor.role.value} of {actor.institution} may not edit institution {record.id}"
    if actor.role != Role.INSTITUTION_ADMIN:
        raise PermissionDenied(denied)
    if record.parent_id != actor.institution:
        raise PermissionDenied(f"{denied}: institution.parent_id must be {actor.institution}")
    if record.kind != "unit":
        raise PermissionDenied(f"{denied}: institution.kind must be unit")
    if existing is not None and existing.parent_id != actor.institution:
        raise PermissionDenied(
            f"{denied}: it exists and is not a unit directly below {actor.institution}"
        )
