"""Working-day calendar arithmetic (services/sla/domain/calendar.py).

Every expected date below was worked out by hand; the reasoning is in the comment above
each case. Calendar facts used (SKB 3 Menteri 2025 and 2026, cross-checked with
python-holidays):

* 2025: Nyepi Sat 29 Mar (cuti bersama Fri 28 Mar); Idul Fitri Mon 31 Mar + Tue 1 Apr,
  cuti bersama Wed 2, Thu 3, Fri 4 and Mon 7 Apr; Christmas Thu 25 Dec, cuti bersama
  Fri 26 Dec.
* 2026: New Year Thu 1 Jan; Nyepi Thu 19 Mar (cuti bersama Wed 18 Mar); Idul Fitri
  Sat 21 + Sun 22 Mar, cuti bersama Fri 20, Mon 23 and Tue 24 Mar. Nothing in
  23 Feb - 17 Mar 2026 (used as ordinary weeks).

Day-based deadlines end at 23:59:59.999999 local time on the Nth day *after* the day of
receipt (the day of receipt is day 0).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.sla.domain.calendar import (
    CalendarDataError,
    ExtensionError,
    ExtraDay,
    WorkingCalendar,
    extend,
    load_extra_days,
    warning_at,
)
from services.sla.domain.policy import (
    ClockPolicy,
    Policy,
    default_policy_path,
    load_policy,
)

WIB = "Asia/Jakarta"  # UTC+7
WITA = "Asia/Makassar"  # UTC+8
WIT = "Asia/Jayapura"  # UTC+9
JKT = ZoneInfo(WIB)


def wib(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=JKT)


def eod(y: int, m: int, d: int, tz: str = WIB) -> datetime:
    return datetime(y, m, d, 23, 59, 59, 999999, tzinfo=ZoneInfo(tz))


def working(days: int) -> ClockPolicy:
    return ClockPolicy("test", timedelta(days=days), "working")


def calendar_days(days: int) -> ClockPolicy:
    return ClockPolicy("test", timedelta(days=days), "calendar")


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(default_policy_path())


@pytest.fixture(scope="module")
def cal(policy: Policy) -> WorkingCalendar:
    return WorkingCalendar.from_policy(policy)


# -- working days ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "is_working"),
    [
        (date(2026, 3, 13), True),  # ordinary Friday
        (date(2026, 3, 14), False),  # Saturday
        (date(2026, 3, 15), False),  # Sunday
        (date(2026, 3, 16), True),  # ordinary Monday
        (date(2026, 3, 18), False),  # cuti bersama Nyepi
        (date(2026, 3, 19), False),  # Nyepi (public holiday)
        (date(2026, 3, 20), False),  # cuti bersama Idul Fitri
        (date(2026, 3, 23), False),  # cuti bersama Idul Fitri (Monday)
        (date(2026, 3, 24), False),  # cuti bersama Idul Fitri (Tuesday)
        (date(2026, 3, 25), True),  # first working day after Lebaran
        (date(2025, 3, 31), False),  # Idul Fitri 2025
        (date(2025, 4, 7), False),  # cuti bersama Idul Fitri 2025
        (date(2025, 4, 8), True),
        (date(2025, 8, 18), False),  # extra national holiday 2025
        (date(2025, 12, 25), False),  # Christmas
        (date(2025, 12, 26), False),  # cuti bersama Christmas
        (date(2026, 1, 1), False),  # New Year
        (date(2026, 1, 2), True),  # a Friday, not a cuti bersama
    ],
)
def test_is_working_day(cal: WorkingCalendar, day: date, is_working: bool) -> None:
    assert cal.is_working_day(day) is is_working


def test_holiday_names(cal: WorkingCalendar) -> None:
    assert cal.holiday_name(date(2026, 3, 18)) == (
        "Cuti Bersama Hari Suci Nyepi Tahun Baru Saka 1948"
    )  # from the CSV
    assert cal.holiday_name(date(2026, 3, 19))  # from the library
    assert cal.holiday_name(date(2026, 3, 16)) is None


def test_library_alone_has_cuti_bersama() -> None:
    # python-holidays keeps cuti bersama in its "government" category, which the calendar
    # loads: even without the CSV, the 2026 Lebaran collective leave is non-working.
    bare = WorkingCalendar()
    assert not bare.is_working_day(date(2026, 3, 23))
    assert not bare.is_working_day(date(2025, 12, 26))


def test_extra_days_are_unioned() -> None:
    # Tuesday 3 March 2026 is an ordinary working day; an extra (e.g. regional) holiday
    # makes it non-working, and the library's holidays still apply.
    extra = WorkingCalendar([ExtraDay(date(2026, 3, 3), "Hari jadi kabupaten", "holiday")])
    assert not extra.is_working_day(date(2026, 3, 3))
    assert not extra.is_working_day(date(2026, 3, 19))
    assert extra.holiday_name(date(2026, 3, 3)) == "Hari jadi kabupaten"
    # Mon 2 Mar + 2 working days: Tue 3 is skipped -> Wed 4 (1), Thu 5 (2).
    assert extra.add_working_days(wib(2026, 3, 2, 9), 2, WIB) == eod(2026, 3, 5)


def test_shipped_extra_days_file(policy: Policy) -> None:
    assert policy.extra_holidays_file is not None
    days = {d.day: d for d in load_extra_days(policy.extra_holidays_file)}
    assert {d.day.year for d in days.values()} == {2025, 2026}
    assert days[date(2026, 3, 23)].kind == "cuti_bersama"
    assert days[date(2025, 8, 18)].kind == "holiday"
    assert all(d.day.weekday() < 5 for d in days.values())  # leave days are weekdays


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("day,name\n", "header"),
        ("date,name,kind\n2026-13-01,x,holiday\n", "line 2: '2026-13-01' is not a"),
        ("# c\ndate,name,kind\n2026-03-03,x,libur\n", "line 3: kind 'libur'"),
        ("date,name,kind\n2026-03-03,x\n", "line 2: expected 3 fields"),
    ],
)
def test_bad_extra_days_file(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "extra.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CalendarDataError, match=problem):
        load_extra_days(path)


# -- adding working days ---------------------------------------------------------------


def test_three_working_days_in_a_week_without_holidays(cal: WorkingCalendar) -> None:
    # Received Friday 27 Feb 2026 14:00 WIB. Friday is day 0; Mon 2 Mar (1), Tue 3 (2),
    # Wed 4 (3) -> end of Wednesday 4 March.
    assert cal.add_working_days(wib(2026, 2, 27, 14), 3, WIB) == eod(2026, 3, 4)


def test_three_working_days_into_nyepi_and_lebaran_2026(cal: WorkingCalendar) -> None:
    # Received Friday 13 Mar 2026 14:00 WIB. Without holidays this would end Wed 18 Mar.
    # But: Mon 16 (1), Tue 17 (2), Wed 18 cuti bersama Nyepi, Thu 19 Nyepi, Fri 20 cuti
    # bersama, Sat 21 / Sun 22 Idul Fitri, Mon 23 / Tue 24 cuti bersama, Wed 25 (3).
    assert cal.add_working_days(wib(2026, 3, 13, 14), 3, WIB) == eod(2026, 3, 25)


@pytest.mark.parametrize(
    "received",
    [
        wib(2026, 2, 28, 9),  # Saturday
        wib(2026, 3, 1, 23, 30),  # Sunday late evening
        wib(2026, 2, 27, 0, 0),  # Friday just after midnight: same as Friday 14:00
    ],
)
def test_receipt_on_weekend_counts_from_next_working_day(
    cal: WorkingCalendar, received: datetime
) -> None:
    # Weekend receipt: the first counted day is the next working day, Mon 2 Mar (1),
    # Tue 3 (2), Wed 4 (3) -> the same deadline as a Friday receipt.
    assert cal.add_working_days(received, 3, WIB) == eod(2026, 3, 4)


def test_receipt_on_a_holiday(cal: WorkingCalendar) -> None:
    # Received on Nyepi, Thu 19 Mar 2026. Next working days: Wed 25 (1), Thu 26 (2),
    # Fri 27 (3).
    assert cal.add_working_days(wib(2026, 3, 19, 10), 3, WIB) == eod(2026, 3, 27)


def test_lebaran_week_2025(cal: WorkingCalendar) -> None:
    # Received Thu 27 Mar 2025 10:00 WIB, 5 working days. Fri 28 cuti bersama Nyepi,
    # Sat 29 Nyepi, Sun 30, Mon 31 + Tue 1 Apr Idul Fitri, Wed 2 - Fri 4 cuti bersama,
    # Sat 5, Sun 6, Mon 7 cuti bersama; then Tue 8 (1), Wed 9 (2), Thu 10 (3), Fri 11 (4),
    # Mon 14 (5).
    assert cal.add_working_days(wib(2025, 3, 27, 10), 5, WIB) == eod(2025, 4, 14)


def test_christmas_and_new_year(cal: WorkingCalendar) -> None:
    # Received Wed 24 Dec 2025. Thu 25 Christmas, Fri 26 cuti bersama, weekend;
    # Mon 29 (1), Tue 30 (2), Wed 31 (3); Thu 1 Jan New Year; Fri 2 Jan (4), Mon 5 Jan (5).
    start = wib(2025, 12, 24, 10)
    assert cal.add_working_days(start, 3, WIB) == eod(2025, 12, 31)
    assert cal.add_working_days(start, 5, WIB) == eod(2026, 1, 5)


def test_zero_working_days_is_end_of_receipt_day(cal: WorkingCalendar) -> None:
    assert cal.add_working_days(wib(2026, 3, 14, 10), 0, WIB) == eod(2026, 3, 14)


def test_naive_datetimes_are_rejected(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cal.add_working_days(datetime(2026, 3, 2, 9), 3, WIB)


# -- time zones ------------------------------------------------------------------------


def test_same_local_date_in_different_zones(cal: WorkingCalendar) -> None:
    # Received Fri 27 Feb 2026 14:00 WIB (= 07:00 UTC = 15:00 WITA = 16:00 WIT): the same
    # local date everywhere, so the deadline is the end of Wed 4 Mar in each zone, i.e.
    # three different UTC instants, one hour apart.
    start = wib(2026, 2, 27, 14)
    utc_ends = {tz: cal.add_working_days(start, 3, tz).astimezone(UTC) for tz in (WIB, WITA, WIT)}
    assert utc_ends[WIB] == datetime(2026, 3, 4, 16, 59, 59, 999999, tzinfo=UTC)
    assert utc_ends[WITA] == datetime(2026, 3, 4, 15, 59, 59, 999999, tzinfo=UTC)
    assert utc_ends[WIT] == datetime(2026, 3, 4, 14, 59, 59, 999999, tzinfo=UTC)
    assert cal.add_working_days(start, 3, WIT).tzinfo == ZoneInfo(WIT)


def test_an_instant_on_different_local_days(cal: WorkingCalendar) -> None:
    # Thu 12 Mar 2026 23:30 WIB = 16:30 UTC = Fri 13 Mar 01:30 WIT.
    # In Jakarta it was received on Thursday: Fri 13 (1), Mon 16 (2), Tue 17 (3).
    # In Jayapura on Friday: Mon 16 (1), Tue 17 (2), then Lebaran, Wed 25 (3).
    start = datetime(2026, 3, 12, 16, 30, tzinfo=UTC)
    assert cal.add_working_days(start, 3, WIB) == eod(2026, 3, 17, WIB)
    assert cal.add_working_days(start, 3, WIT) == eod(2026, 3, 25, WIT)
    assert eod(2026, 3, 17, WIB).astimezone(UTC) == datetime(
        2026, 3, 17, 16, 59, 59, 999999, tzinfo=UTC
    )


# -- calendar days ---------------------------------------------------------------------


def test_calendar_days(cal: WorkingCalendar) -> None:
    # Fri 13 Mar 2026 14:00 + 3 calendar days: Sat 14 (1), Sun 15 (2), Mon 16 (3).
    assert cal.add_calendar_days(wib(2026, 3, 13, 14), 3, WIB) == eod(2026, 3, 16)
    # Holidays do not matter: Tue 17 + 5 -> Sun 22 (Idul Fitri).
    assert cal.add_calendar_days(wib(2026, 3, 17, 8), 5, WIB) == eod(2026, 3, 22)


def test_deadline_calendar_vs_working(cal: WorkingCalendar, policy: Policy) -> None:
    # Same receipt, Fri 13 Mar 2026 14:00 WIB:
    start = wib(2026, 3, 13, 14)
    # first response: 3 calendar days -> Mon 16 Mar.
    assert cal.deadline(start, policy.clocks["first_response"], WIB) == eod(2026, 3, 16)
    # verification: 3 working days -> Wed 25 Mar (see the Nyepi/Lebaran case above).
    assert cal.deadline(start, policy.clocks["verification"], WIB) == eod(2026, 3, 25)
    # complaint: 5 working days -> Mon 16 (1), Tue 17 (2), Wed 25 (3), Thu 26 (4),
    # Fri 27 (5).
    assert cal.deadline(start, policy.resolution_clock("complaint"), WIB) == eod(2026, 3, 27)
    # Ombudsman: 60 calendar days -> 13 Mar + 60 days = 12 May 2026 (18 days left in
    # March, 30 in April, 12 in May).
    assert cal.deadline(start, policy.escalation_after, WIB) == eod(2026, 5, 12)


# -- seconds mode ----------------------------------------------------------------------


@pytest.mark.parametrize("days", ["working", "calendar"])
def test_sub_day_duration_is_plain_elapsed_time(cal: WorkingCalendar, days: str) -> None:
    # Sunday, on Lebaran: sub-day clocks ignore the calendar entirely.
    clock = ClockPolicy("test", timedelta(seconds=30), days)  # type: ignore[arg-type]
    start = wib(2026, 3, 22, 10)
    assert cal.deadline(start, clock, WIB) == start + timedelta(seconds=30)
    # A 10 s pause that starts 5 s in adds 10 s.
    paused = [(start + timedelta(seconds=5), start + timedelta(seconds=15))]
    assert cal.deadline(start, clock, WIB, paused) == start + timedelta(seconds=40)
    # A pause after the clock ran out changes nothing.
    late = [(start + timedelta(seconds=31), start + timedelta(seconds=90))]
    assert cal.deadline(start, clock, WIB, late) == start + timedelta(seconds=30)


def test_sub_day_deadline_is_in_region_zone(cal: WorkingCalendar) -> None:
    start = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    end = cal.deadline(start, ClockPolicy("t", timedelta(hours=36), "working"), WIT)
    assert end == start + timedelta(hours=36)
    assert end.tzinfo == ZoneInfo(WIT)


# -- pauses ----------------------------------------------------------------------------

# Base case for the pause tests: received Mon 2 Mar 2026 09:00 WIB, 3 working days:
# Tue 3 (1), Wed 4 (2), Thu 5 (3) -> end of Thu 5 Mar. No holidays 2 - 13 Mar.
START = wib(2026, 3, 2, 9)


def test_no_pause(cal: WorkingCalendar) -> None:
    assert cal.deadline(START, working(3), WIB) == eod(2026, 3, 5)


def test_pause_adds_back_covered_working_days(cal: WorkingCalendar) -> None:
    # Paused Tue 3 10:00 -> Thu 5 08:00: working days after Tue 3 up to Thu 5 are Wed 4
    # and Thu 5 -> +2 -> the 5th working day after Mon 2: Fri 6 (4), Mon 9 (5).
    paused = [(wib(2026, 3, 3, 10), wib(2026, 3, 5, 8))]
    assert cal.deadline(START, working(3), WIB, paused) == eod(2026, 3, 9)


def test_pause_within_one_day_adds_nothing(cal: WorkingCalendar) -> None:
    paused = [(wib(2026, 3, 3, 10), wib(2026, 3, 3, 15))]
    assert cal.deadline(START, working(3), WIB, paused) == eod(2026, 3, 5)


def test_pause_over_a_weekend_adds_one_working_day(cal: WorkingCalendar) -> None:
    # 5 working days from Mon 2 -> Mon 9. Paused Fri 6 16:00 -> Mon 9 08:00: working days
    # after Fri 6 up to Mon 9 = Mon 9 only -> +1 -> Tue 10.
    paused = [(wib(2026, 3, 6, 16), wib(2026, 3, 9, 8))]
    assert cal.deadline(START, working(5), WIB, paused) == eod(2026, 3, 10)


def test_pause_over_holidays_counts_only_working_days(cal: WorkingCalendar) -> None:
    # Received Mon 16 Mar 2026, 3 working days: Tue 17 (1), Wed 25 (2), Thu 26 (3).
    # Paused Tue 17 10:00 -> Wed 25 10:00: the only working day after 17 up to 25 is
    # Wed 25 -> +1 -> Fri 27.
    start = wib(2026, 3, 16, 9)
    assert cal.deadline(start, working(3), WIB) == eod(2026, 3, 26)
    paused = [(wib(2026, 3, 17, 10), wib(2026, 3, 25, 10))]
    assert cal.deadline(start, working(3), WIB, paused) == eod(2026, 3, 27)


def test_pause_after_the_deadline_is_ignored(cal: WorkingCalendar) -> None:
    paused = [(wib(2026, 3, 6, 10), wib(2026, 3, 11, 10))]
    assert cal.deadline(START, working(3), WIB, paused) == eod(2026, 3, 5)


def test_pauses_chain(cal: WorkingCalendar) -> None:
    # First pause Wed 4 10:00 -> Thu 5 10:00 (+1: Thu 5) moves the deadline to Fri 6.
    # The second pause Fri 6 10:00 -> Mon 9 10:00 now starts before it (+1: Mon 9): 3 + 2
    # = the 5th working day after Mon 2 -> Mon 9. Without the first pause, the second would
    # start after the deadline (Thu 5) and change nothing.
    first = (wib(2026, 3, 4, 10), wib(2026, 3, 5, 10))
    second = (wib(2026, 3, 6, 10), wib(2026, 3, 9, 10))
    assert cal.deadline(START, working(3), WIB, [second, first]) == eod(2026, 3, 9)
    assert cal.deadline(START, working(3), WIB, [second]) == eod(2026, 3, 5)


def test_overlapping_pauses_are_merged(cal: WorkingCalendar) -> None:
    # Tue 3 10:00 -> Thu 5 08:00 and Wed 4 08:00 -> Thu 5 09:00 merge into
    # Tue 3 10:00 -> Thu 5 09:00: +2 (Wed 4, Thu 5), not 2 + 1 -> Mon 9.
    paused = [
        (wib(2026, 3, 3, 10), wib(2026, 3, 5, 8)),
        (wib(2026, 3, 4, 8), wib(2026, 3, 5, 9)),
    ]
    assert cal.deadline(START, working(3), WIB, paused) == eod(2026, 3, 9)


def test_open_pause_runs_until_now(cal: WorkingCalendar) -> None:
    # Paused since Tue 3 10:00, still open on Wed 4 12:00: +1 (Wed 4) -> Fri 6.
    paused = [(wib(2026, 3, 3, 10), None)]
    assert cal.deadline(START, working(3), WIB, paused, now=wib(2026, 3, 4, 12)) == eod(2026, 3, 6)
    with pytest.raises(ValueError, match="needs `now`"):
        cal.deadline(START, working(3), WIB, paused)


def test_pause_before_start_is_clipped(cal: WorkingCalendar) -> None:
    # Sat 28 Feb -> Tue 3 10:00 is clipped to Mon 2 09:00 -> Tue 3 10:00: +1 (Tue 3).
    paused = [(wib(2026, 2, 28, 10), wib(2026, 3, 3, 10))]
    assert cal.deadline(START, working(3), WIB, paused) == eod(2026, 3, 6)


def test_pause_on_a_calendar_clock_adds_calendar_days(cal: WorkingCalendar) -> None:
    # 3 calendar days from Mon 2 -> Thu 5. Paused Tue 3 10:00 -> Wed 4 11:00: days after
    # Tue 3 up to Wed 4 = Wed 4 -> +1 -> Fri 6.
    paused = [(wib(2026, 3, 3, 10), wib(2026, 3, 4, 11))]
    assert cal.deadline(START, calendar_days(3), WIB) == eod(2026, 3, 5)
    assert cal.deadline(START, calendar_days(3), WIB, paused) == eod(2026, 3, 6)


def test_pause_ending_before_it_starts_is_rejected(cal: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        cal.deadline(START, working(3), WIB, [(wib(2026, 3, 4), wib(2026, 3, 3))])


# -- warnings --------------------------------------------------------------------------


def test_warning_at() -> None:
    # 10 days from 1 Mar 00:00 to 11 Mar 00:00; 80% = 8 days -> 9 Mar 00:00.
    assert warning_at(wib(2026, 3, 1), wib(2026, 3, 11), 0.8) == wib(2026, 3, 9)
    # Seconds mode: 80% of 30 s = 24 s; the result is in the deadline's zone.
    start = datetime(2026, 3, 1, 3, tzinfo=UTC)
    warn = warning_at(start, (start + timedelta(seconds=30)).astimezone(JKT), 0.8)
    assert warn == start + timedelta(seconds=24)
    assert warn.tzinfo == JKT


# -- extensions ------------------------------------------------------------------------


def test_extension_within_cap_on_a_working_clock(cal: WorkingCalendar, policy: Policy) -> None:
    # Complaint, 5 working days from Mon 2 Mar -> Mon 9 Mar. Cap = 50% of 5 days = 2.5 days,
    # so 2 days are allowed: Tue 10 (1), Wed 11 (2).
    clock = policy.resolution_clock("complaint")
    due = cal.deadline(START, clock, WIB)
    assert due == eod(2026, 3, 9)
    new = extend(
        due, clock.duration, timedelta(days=2), 0, policy, days="working", calendar=cal, tz=WIB
    )
    assert new == eod(2026, 3, 11)


def test_extension_skips_holidays(cal: WorkingCalendar, policy: Policy) -> None:
    # Deadline Tue 17 Mar 2026, + 2 working days: Wed 25 (1), Thu 26 (2).
    new = extend(
        eod(2026, 3, 17),
        timedelta(days=5),
        timedelta(days=2),
        0,
        policy,
        days="working",
        calendar=cal,
        tz=WIB,
    )
    assert new == eod(2026, 3, 26)


def test_extension_beyond_cap(policy: Policy) -> None:
    # 3 days > 2.5 days (50% of 5).
    with pytest.raises(ExtensionError, match="exceeds the cap of 50% of the original 5 days"):
        extend(eod(2026, 3, 9), timedelta(days=5), timedelta(days=3), 0, policy)


def test_extension_beyond_count(policy: Policy) -> None:
    with pytest.raises(ExtensionError, match="1 already granted, the policy allows 1"):
        extend(eod(2026, 3, 9), timedelta(days=5), timedelta(days=1), 1, policy)


def test_extension_on_a_calendar_clock(policy: Policy) -> None:
    # Field inspection, 60 calendar days: the cap is exactly 30 days.
    due = eod(2026, 5, 12)
    assert extend(due, timedelta(days=60), timedelta(days=30), 0, policy) == eod(2026, 6, 11)
    with pytest.raises(ExtensionError):
        extend(due, timedelta(days=60), timedelta(days=31), 0, policy)


def test_extension_in_seconds_mode(policy: Policy) -> None:
    due = wib(2026, 3, 2, 9, 0, 30)
    assert extend(due, timedelta(seconds=30), timedelta(seconds=15), 0, policy) == (
        due + timedelta(seconds=15)
    )
    with pytest.raises(ExtensionError):
        extend(due, timedelta(seconds=30), timedelta(seconds=16), 0, policy)


def test_extension_cap_is_cumulative(policy: Policy) -> None:
    from dataclasses import replace

    two = replace(policy, extension_max_count=2)
    due = eod(2026, 3, 9)
    first = extend(due, timedelta(days=5), timedelta(days=1), 0, two)
    with pytest.raises(ExtensionError, match="on top of 1 day"):
        extend(
            first, timedelta(days=5), timedelta(days=2), 1, two, extended_so_far=timedelta(days=1)
        )


def test_extension_must_be_positive_and_working_needs_calendar(policy: Policy) -> None:
    with pytest.raises(ExtensionError, match="positive"):
        extend(eod(2026, 3, 9), timedelta(days=5), timedelta(0), 0, policy)
    with pytest.raises(ValueError, match="needs `calendar` and `tz`"):
        extend(eod(2026, 3, 9), timedelta(days=5), timedelta(days=1), 0, policy, days="working")
