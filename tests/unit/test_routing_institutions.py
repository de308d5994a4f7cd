"""What an admin may store as an institution: ids the rules, the scope checks and the
verification queue rely on (services/routing/institutions.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from services.common.errors import ValidationError
from services.common.regions import default_regions
from services.routing.domain.directory import Directory, Institution
from services.routing.institutions import InstitutionRegistry, validate


def unit(id: str, parent: str | None = "pemda-51.08") -> Institution:
    return Institution(id, "UPT Pasar", "unit", parent, "51.08", ())


@pytest.mark.parametrize(
    ("inst", "rule"),
    [
        # the national verification queue's id: an institution holding it would see the queue
        (unit("verification-queue"), "reserved"),
        (Institution("verification-queue", "Antrean", "agency", None, None, ()), "reserved"),
        # a unit's id is its parent's id and a slug (rules: unit:<slug>; scope: <parent>/...)
        (unit("upt-pasar"), "a unit's id must be its parent's id"),
        (unit("pemda-52.71/upt-pasar"), "a unit's id must be its parent's id"),
        (unit("pemda-51.08/UPT Pasar"), "a unit's id must be its parent's id"),
        (unit("pemda-51.08/upt_pasar"), "a unit's id must be its parent's id"),
        (unit("pemda-51.08/a/b"), "a unit's id must be its parent's id"),
        (unit("pemda-51.08/"), "a unit's id must be its parent's id"),
        (unit("pemda-51.08/upt-pasar", parent=None), "a unit's id must be its parent's id"),
        (Institution("Nasional-BPOM", "BPOM", "agency", None, None, ()), "lower-case"),
        (Institution("nasional/bpom", "BPOM", "agency", None, None, ()), "lower-case"),
    ],
)
def test_ids_that_would_break_routing_or_scope_are_refused(inst: Institution, rule: str) -> None:
    with pytest.raises(ValidationError) as refused:
        validate(inst)
    [violation] = refused.value.violations
    assert violation.field == "institution.id" and rule in violation.rule


@pytest.mark.parametrize(
    "inst",
    [
        unit("pemda-51.08/upt-pasar"),
        Institution("nasional-bpom", "BPOM", "agency", None, None, ("bpjs_kesehatan",)),
        Institution("pemda-51.08", "Pemkab Badung", "regency", None, "51.08", ()),
    ],
)
def test_ids_of_the_shipped_shape_are_accepted(inst: Institution) -> None:
    validate(inst)


def test_every_shipped_institution_has_an_id_admins_could_store() -> None:
    for inst in Directory.seed(default_regions()).all():
        validate(inst)


def test_a_stored_institution_with_the_queue_id_is_never_in_force() -> None:
    """Stored before the id was refused: the directory leaves it out."""
    seed = Directory.seed(default_regions())
    registry = InstitutionRegistry(cast(Any, None), seed)
    merged = registry._merged([unit("verification-queue"), unit("pemda-51.08/upt-pasar")])
    assert merged.get("verification-queue") is None
    assert merged.get("pemda-51.08/upt-pasar") is not None
