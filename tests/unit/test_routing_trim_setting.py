"""LAPOR_ROUTING_CLOSED_TRIM_DAYS: 0 keeps a closed case's replay copy and fingerprint for
good, else at least 60 days (past the 14-day near-duplicate window and the about 60 days an
event can come back through its topic and the dead letters), at most 36500; anything else
stops routing at start naming the setting and the rule (docs/officers-api.md)."""

from __future__ import annotations

import pytest

from services.common.settings import Env, SettingsError
from services.routing.bootstrap import bootstrap
from services.routing.retention import closed_trim_days
from services.stack.devsecrets import generate, service_env
from tests.unit.test_lease import BASE

SETTING = "LAPOR_ROUTING_CLOSED_TRIM_DAYS"
RULE = r"is outside 60\.\.36500 \(0 keeps them\): a closed case's events can be needed"


def test_the_default_is_90_days() -> None:
    assert closed_trim_days(Env({})) == 90
    assert closed_trim_days(Env({SETTING: " "})) == 90


@pytest.mark.parametrize("days", ["0", "60", "61", "365", "36500"])
def test_0_and_60_to_36500_days_are_taken(days: str) -> None:
    assert closed_trim_days(Env({SETTING: days})) == int(days)


@pytest.mark.parametrize("days", ["1", "14", "59", "36501", "-1", "-90"])
def test_a_trim_shorter_than_60_days_or_longer_than_36500_is_refused(days: str) -> None:
    with pytest.raises(SettingsError, match=f"^{SETTING}={days} {RULE}"):
        closed_trim_days(Env({SETTING: days}))


def test_a_trim_that_is_not_a_whole_number_is_refused() -> None:
    with pytest.raises(SettingsError, match=f"^{SETTING}='90d' is not an integer"):
        closed_trim_days(Env({SETTING: "90d"}))


def test_routing_does_not_start_with_a_short_trim() -> None:
    env = {
        **service_env("routing", generate()),
        **BASE,
        SETTING: "30",
    }
    with pytest.raises(SettingsError, match=f"^{SETTING}=30 {RULE}"):
        bootstrap(env=Env(env))
