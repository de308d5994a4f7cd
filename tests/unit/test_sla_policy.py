"""SLA policy parsing and strict validation (services/sla/domain/policy.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from services.sla.domain.policy import (
    HANDLING_CLASSES,
    REQUIRED_CLOCKS,
    PolicyError,
    default_policy_path,
    load_policy,
    parse_duration,
    parse_policy,
)

# A minimal valid policy; the line numbers used in the tests below refer to this text
# (line 1 is `version = 1`).
VALID = """\
version = 1
[warning]
at_fraction = 0.8
[clocks.verification]
duration = "3d"
days = "working"
[clocks.first_response]
duration = "3d"
days = "calendar"
[clocks.resolution.information_request]
duration = "5d"
days = "working"
[clocks.resolution.complaint]
duration = "5d"
days = "working"
[clocks.resolution.dispute]
duration = "14d"
days = "working"
[clocks.resolution.field_inspection]
duration = "60d"
days = "calendar"
[clocks.auto_close]
duration = "10d"
days = "working"
[escalation]
ombudsman_after = "60d"
days = "calendar"
ladder = ["unit", "institution_admins", "national_admins"]
[extension]
max_count = 1
max_fraction = 0.5
"""


def line_of(text: str, needle: str, *, after: str | None = None) -> int:
    """1-based number of the first line containing ``needle`` (after line ``after``)."""
    lines = text.splitlines()
    start = 0
    if after is not None:
        start = next(i for i, ln in enumerate(lines) if after in ln) + 1
    return next(i for i in range(start, len(lines)) if needle in lines[i]) + 1


def parse(text: str, tmp_path: Path | None = None):
    return parse_policy(text, tmp_path or Path("."), source="policy.toml")


def replace_once(text: str, old: str, new: str, *, after: str | None = None) -> str:
    """Replace the first ``old`` found after the line containing ``after``."""
    pos = text.index(after) if after else 0
    i = text.index(old, pos)
    return text[:i] + new + text[i + len(old) :]


# -- the shipped default ------------------------------------------------------------------


def test_default_policy_loads() -> None:
    policy = load_policy(default_policy_path())
    assert policy.version == 1
    assert set(policy.clocks) == set(REQUIRED_CLOCKS)
    days = timedelta(days=1)
    assert policy.clocks["verification"].duration == 3 * days
    assert policy.clocks["verification"].days == "working"
    assert policy.clocks["first_response"].duration == 3 * days
    assert policy.clocks["first_response"].days == "calendar"
    assert policy.resolution_clock("information_request").duration == 5 * days
    assert policy.resolution_clock("complaint").duration == 5 * days
    assert policy.resolution_clock("dispute").duration == 14 * days
    assert policy.resolution_clock("field_inspection").duration == 60 * days
    assert policy.resolution_clock("field_inspection").days == "calendar"
    assert policy.clocks["auto_close"].duration == 10 * days
    assert policy.escalation_after.duration == 60 * days
    assert policy.escalation_after.days == "calendar"
    assert policy.ladder == ("unit", "institution_admins", "national_admins")
    assert policy.warning_fraction == 0.8
    assert policy.extension_max_count == 1
    assert policy.extension_max_fraction == 0.5
    assert policy.extra_holidays_file is not None
    assert policy.extra_holidays_file.is_file()
    assert policy.extra_holidays_file.parent == default_policy_path().parent


def test_resolution_clock_helper() -> None:
    policy = parse(VALID)
    for cls in HANDLING_CLASSES:
        assert policy.resolution_clock(cls).name == f"resolution.{cls}"
    with pytest.raises(KeyError, match="unknown handling class 'aspiration'"):
        policy.resolution_clock("aspiration")


def test_minimal_policy_without_calendar_table() -> None:
    assert parse(VALID).extra_holidays_file is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3d", timedelta(days=3)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("36h", timedelta(hours=36)),
        ("-3d", timedelta(days=-3)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["3", "d", "3 days", "3w", "1.5d", "3d12h", ""])
def test_parse_duration_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="is not a valid duration"):
        parse_duration(text)


def test_seconds_mode_policy() -> None:
    text = VALID.replace('"3d"', '"30s"')
    policy = parse(text)
    assert policy.clocks["verification"].duration == timedelta(seconds=30)
    assert policy.clocks["verification"].whole_days is None
    assert policy.clocks["auto_close"].whole_days == 10


# -- validation errors name the file, the line and the key --------------------------------


def test_unknown_key() -> None:
    text = replace_once(VALID, 'days = "working"\n', 'days = "working"\ndayz = 3\n')
    with pytest.raises(PolicyError) as err:
        parse(text)
    line = line_of(text, "dayz")  # 7
    assert line == 7
    assert str(err.value).startswith(
        f"policy.toml line {line}: clocks.verification.dayz: unknown key"
    )
    assert err.value.line == line
    assert err.value.key == "clocks.verification.dayz"


def test_unknown_top_level_table() -> None:
    text = VALID + "[sanctions]\nred = true\n"
    with pytest.raises(PolicyError, match=r"^policy.toml line 32: sanctions: unknown key"):
        parse(text)


def test_unknown_clock() -> None:
    text = VALID + '[clocks.resolution.aspiration]\nduration = "5d"\ndays = "working"\n'
    with pytest.raises(
        PolicyError, match=r"^policy.toml line 32: clocks.resolution.aspiration: unknown key"
    ):
        parse(text)


def test_negative_duration() -> None:
    text = replace_once(VALID, '"3d"', '"-3d"', after="[clocks.first_response]")
    line = line_of(text, "duration", after="[clocks.first_response]")
    assert line == 8
    with pytest.raises(PolicyError) as err:
        parse(text)
    assert str(err.value) == (
        'policy.toml line 8: clocks.first_response.duration: "-3d" is not a positive duration'
    )


def test_zero_duration() -> None:
    text = replace_once(VALID, '"14d"', '"0d"')
    with pytest.raises(PolicyError) as err:
        parse(text)
    assert str(err.value) == (
        'policy.toml line 17: clocks.resolution.dispute.duration: "0d" is not a positive duration'
    )


def test_malformed_duration() -> None:
    text = replace_once(VALID, '"60d"', '"60 hari"')
    with pytest.raises(
        PolicyError,
        match=r"^policy.toml line 20: clocks.resolution.field_inspection.duration: "
        r'"60 hari" is not a valid duration',
    ):
        parse(text)


def test_duration_of_wrong_type() -> None:
    text = replace_once(VALID, '"10d"', "10")
    with pytest.raises(
        PolicyError, match=r"^policy.toml line 23: clocks.auto_close.duration: 10 must be"
    ):
        parse(text)


def test_bad_days_value() -> None:
    text = replace_once(VALID, 'days = "calendar"', 'days = "weekdays"')
    with pytest.raises(PolicyError) as err:
        parse(text)
    assert str(err.value) == (
        'policy.toml line 9: clocks.first_response.days: "weekdays" must be "working" or "calendar"'
    )


def test_bad_escalation_days() -> None:
    text = replace_once(VALID, 'days = "calendar"', 'days = "kerja"', after="[escalation]")
    with pytest.raises(PolicyError, match=r"^policy.toml line 27: escalation.days: \"kerja\""):
        parse(text)


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2", '"0.8"', "true"])
def test_warning_fraction_out_of_range(value: str) -> None:
    text = VALID.replace("at_fraction = 0.8", f"at_fraction = {value}")
    with pytest.raises(PolicyError) as err:
        parse(text)
    assert str(err.value).startswith("policy.toml line 3: warning.at_fraction: ")
    assert "is not a fraction strictly between 0 and 1" in str(err.value)


@pytest.mark.parametrize("value", ["0", "1.01", "-1"])
def test_extension_fraction_out_of_range(value: str) -> None:
    text = VALID.replace("max_fraction = 0.5", f"max_fraction = {value}")
    with pytest.raises(
        PolicyError, match=r"^policy.toml line 31: extension.max_fraction: .* is not a fraction"
    ):
        parse(text)


def test_extension_fraction_one_is_allowed() -> None:
    assert (
        parse(VALID.replace("max_fraction = 0.5", "max_fraction = 1")).extension_max_fraction == 1
    )


def test_negative_extension_count() -> None:
    text = VALID.replace("max_count = 1", "max_count = -1")
    with pytest.raises(PolicyError, match=r"^policy.toml line 30: extension.max_count: -1"):
        parse(text)


def test_missing_required_clock() -> None:
    start = VALID.index("[clocks.resolution.dispute]")
    end = VALID.index("[clocks.resolution.field_inspection]")
    text = VALID[:start] + VALID[end:]
    # The clock's table is gone: the error points at the first line of its parent table
    # (`[clocks.resolution.information_request]`, line 10).
    with pytest.raises(PolicyError) as err:
        parse(text)
    assert str(err.value) == (
        "policy.toml line 10: clocks.resolution.dispute: missing required clock"
    )


def test_missing_key_points_at_its_table() -> None:
    text = VALID.replace('ladder = ["unit", "institution_admins", "national_admins"]\n', "")
    with pytest.raises(PolicyError) as err:
        parse(text)
    assert str(err.value) == "policy.toml line 25: escalation.ladder: missing required key"


def test_missing_table_has_no_line() -> None:
    text = VALID.replace("[warning]\nat_fraction = 0.8\n", "")
    with pytest.raises(PolicyError) as err:
        parse(text)
    assert str(err.value) == "policy.toml: warning: missing required key"
    assert err.value.line is None


@pytest.mark.parametrize(
    ("ladder", "problem"),
    [
        ("[]", "must be a non-empty list"),
        ('["unit", "unit"]', '"unit" appears twice'),
        ('["Unit Kerja"]', '"Unit Kerja" is not a valid level name'),
    ],
)
def test_bad_ladder(ladder: str, problem: str) -> None:
    text = VALID.replace('["unit", "institution_admins", "national_admins"]', ladder)
    with pytest.raises(PolicyError, match=rf"^policy.toml line 28: escalation.ladder: .*{problem}"):
        parse(text)


def test_unsupported_version() -> None:
    with pytest.raises(
        PolicyError, match=r"^policy.toml line 1: version: unsupported policy version 2"
    ):
        parse(VALID.replace("version = 1", "version = 2"))


def test_invalid_toml_reports_line() -> None:
    text = VALID.replace("at_fraction = 0.8", "at_fraction 0.8")
    with pytest.raises(PolicyError, match=r"^policy.toml line 3: invalid TOML: "):
        parse(text)


def test_inline_tables_and_dotted_keys_are_located() -> None:
    text = VALID.replace(
        '[clocks.verification]\nduration = "3d"\ndays = "working"\n',
        '[clocks]\nverification = { duration = "3d", days = "daily" }\n',
    )
    with pytest.raises(
        PolicyError, match=r'^policy.toml line 5: clocks.verification.days: "daily"'
    ):
        parse(text)
    text = VALID.replace('[clocks.first_response]\nduration = "3d"\ndays = "calendar"\n', "")
    text = text.replace(
        "[warning]", '[clocks]\nfirst_response.duration = "3d"\nfirst_response.days = 1\n[warning]'
    )
    with pytest.raises(
        PolicyError, match=r"^policy.toml line 4: clocks.first_response.days: 1 must"
    ):
        parse(text)


def test_extra_holidays_file_is_resolved_relative_to_the_policy(tmp_path: Path) -> None:
    (tmp_path / "extra.csv").write_text("date,name,kind\n", encoding="utf-8")
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        VALID.replace("[warning]", '[calendar]\nextra_holidays_file = "extra.csv"\n[warning]'),
        encoding="utf-8",
    )
    policy = load_policy(policy_file)
    assert policy.extra_holidays_file == (tmp_path / "extra.csv").resolve()


def test_missing_extra_holidays_file(tmp_path: Path) -> None:
    text = VALID.replace("[warning]", '[calendar]\nextra_holidays_file = "nope.csv"\n[warning]')
    with pytest.raises(
        PolicyError, match=r"^policy.toml line 3: calendar.extra_holidays_file: \"nope.csv\": no"
    ):
        parse(text, tmp_path)


def test_load_policy_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "regional.toml"
    bad.write_text(VALID.replace('"5d"', '"-5d"', 1), encoding="utf-8")
    with pytest.raises(PolicyError, match=r"^regional.toml line 11: clocks.resolution"):
        load_policy(bad)
