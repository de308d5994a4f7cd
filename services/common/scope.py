"""Which reports an officer or admin may see: the one rule, used by routing's officers' API
and by intake's evidence API (docs/officers-api.md, "Who sees what").

National admins see every report; officers and institution admins see the reports held by
their institution or any unit below it. A report outside one's reach is answered exactly
like an unknown tracking id (NOT_FOUND), so ids of other institutions' reports leak
nothing. Pure: the institution tree is a port (routing's directory satisfies it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol

from services.common.errors import NotFound


class Viewer(Protocol):
    """Who asks: routing's ``Actor`` and the token's ``Principal`` both fit."""

    @property
    def institution(self) -> str: ...

    @property
    def is_national_admin(self) -> bool: ...


class InstitutionTree(Protocol):
    def is_within(self, id: str, ancestor_id: str) -> bool:
        """True when ``id`` is ``ancestor_id`` or lies below it."""
        ...


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


class BrowsableTree(InstitutionTree, Protocol):
    def children(self, id: str) -> Iterable[_HasId]: ...


def can_see(
    viewer: Viewer, holder_id: str, tree: InstitutionTree, ancestors: Collection[str] = ()
) -> bool:
    """``ancestors``: the ids above the holder as routing's event carried them (the
    services that are not routing learn units added at run time from them); ``tree`` is
    asked as well, for what was stored before events carried them."""
    if viewer.is_national_admin:
        return True
    if holder_id and (viewer.institution == holder_id or viewer.institution in ancestors):
        return True
    return tree.is_within(holder_id, viewer.institution)


def require_visible(
    viewer: Viewer,
    tracking_id: str,
    holder_id: str,
    tree: InstitutionTree,
    ancestors: Collection[str] = (),
) -> None:
    """NOT_FOUND, worded as for an unknown tracking id, unless ``viewer`` sees the report."""
    if not can_see(viewer, holder_id, tree, ancestors):
        raise NotFound(f"tracking_id: no report {tracking_id!r}")


def visible_institutions(viewer: Viewer, tree: BrowsableTree) -> list[str] | None:
    """The institution ids whose reports ``viewer`` sees; None for everything."""
    if viewer.is_national_admin:
        return None
    result: list[str] = []
    pending = [viewer.institution]
    while pending:
        current = pending.pop()
        if current in result:
            continue
        result.append(current)
        pending.extend(child.id for child in tree.children(current))
    return result
