"""Working-day calendar arithmetic for SLA deadlines (pure: stdlib + ``holidays``).

Rules (all times timezone-aware; a region's time zone is an IANA name such as
``Asia/Jakarta`` (WIB), ``Asia/Makassar`` (WITA) or ``Asia/Jayapura`` (WIT)):

* **Working day**: Monday-Friday and neither an Indonesian public holiday nor a day of
  collective leave (cuti bersama). Holidays come from ``holidays.country_holidays("ID")``
  with both its ``public`` and ``government`` categories (the latter is where the library
  keeps cuti bersama), unioned with the extra-days CSV named by the policy.
* **Day counting** (whole-day durations): the day of receipt (in the region's time zone) is
  day 0 and is never counted; the deadline is the **end** (23:59:59.999999 local) of the
  Nth working (or calendar) day *after* it. So a report received on a non-working day
  starts counting on the next working day, and one received on Friday 14:00 with
  3 working days is due at the end of Wednesday.
* **Sub-day durations** ("seconds mode", e.g. ``"30s"``; any duration that is not a whole
  number of days): the deadline is simply ``start + duration`` (plus paused time); the
  calendar, time zone and ``days`` setting play no part.
* **Pauses** (waiting for the reporter): pauses are clipped to start at ``start`` at the
  earliest and merged when they overlap. A pause that begins after the (running) deadline
  has no effect: that clock had already run out. Otherwise

  - day clocks get back the number of days the pause covered, counted with the same rule
    as deadlines: the days D (working days for a working clock, every day for a calendar
    clock) with ``local date of pause start < D <= local date of pause end``. A pause
    within a single day gives nothing back; Friday 16:00 to Monday 08:00 gives back one
    working day (Monday). The deadline stays at an end of day.
  - sub-day clocks get back the exact paused time.

  An open pause (end ``None``) runs until ``now``, which must then be given.
* **Warning**: at ``start + fraction * (deadline - start)`` (wall-clock time).
* **Extensions**: at most ``policy.extension_max_count`` of them, adding in total at most
  ``policy.extension_max_fraction`` of the clock's original duration. A whole-day
  extension of a working clock moves the deadline to the end of the Nth working day after
  the current deadline's date; anything else is added as elapsed time.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import holidays

from services.sla.domain.policy import ClockPolicy, DayKind, Policy

__all__ = [
    "END_OF_DAY",
    "CalendarDataError",
    "ExtensionError",
    "ExtraDay",
    "Pause",
    "WorkingCalendar",
    "end_of_day",
    "extend",
    "load_extra_days",
    "warning_at",
]

ONE_DAY = timedelta(days=1)
#: Local time at which a day-based deadline falls.
END_OF_DAY = time.max

ExtraKind = Literal["cuti_bersama", "holiday"]
_EXTRA_KINDS: tuple[ExtraKind, ...] = ("cuti_bersama", "holiday")

#: A pause: (start, end); end None means still paused.
Pause = tuple[datetime, datetime | None]


class CalendarDataError(ValueError):
    """A malformed extra-days file."""


class ExtensionError(ValueError):
    """An extension the policy does not allow."""


@dataclass(frozen=True)
class ExtraDay:
    day: date
    name: str
    kind: ExtraKind


def load_extra_days(path: Path) -> list[ExtraDay]:
    """Read a ``date,name,kind`` CSV (lines starting with ``#`` are comments)."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        numbered = [(n, line) for n, line in enumerate(f, start=1) if not line.startswith("#")]
    rows = list(csv.reader(line for _, line in numbered))
    if not rows or [c.strip() for c in rows[0]] != ["date", "name", "kind"]:
        raise CalendarDataError(f"{path.name}: expected the header line 'date,name,kind'")
    days: list[ExtraDay] = []
    for (lineno, _), row in zip(numbered[1:], rows[1:], strict=True):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 3:
            raise CalendarDataError(f"{path.name} line {lineno}: expected 3 fields, got {row}")
        raw_day, name, kind = (c.strip() for c in row)
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            raise CalendarDataError(
                f"{path.name} line {lineno}: {raw_day!r} is not a YYYY-MM-DD date"
            ) from None
        if kind not in _EXTRA_KINDS:
            raise CalendarDataError(
                f"{path.name} line {lineno}: kind {kind!r} must be one of {_EXTRA_KINDS}"
            )
        days.append(ExtraDay(day, name, kind))
    return days


def _zone(tz: str | tzinfo) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")


def end_of_day(day: date, tz: str | tzinfo) -> datetime:
    """23:59:59.999999 on ``day`` in ``tz``."""
    return datetime.combine(day, END_OF_DAY, tzinfo=_zone(tz))


def _local_date(moment: datetime, tz: str | tzinfo) -> date:
    return moment.astimezone(_zone(tz)).date()


def _normalise_pauses(
    start: datetime, paused: Iterable[Pause], now: datetime | None
) -> list[tuple[datetime, datetime]]:
    """Close open pauses at ``now``, clip to ``start``, drop empty ones, sort and merge."""
    spans: list[tuple[datetime, datetime]] = []
    for p_start, p_end in paused:
        _require_aware(p_start, "pause start")
        if p_end is None:
            if now is None:
                raise ValueError("an open pause (end None) needs `now`")
            _require_aware(now, "now")
            p_end = max(now, p_start)
        _require_aware(p_end, "pause end")
        if p_end < p_start:
            raise ValueError(f"pause ends before it starts: {p_start} .. {p_end}")
        p_start = max(p_start, start)
        if p_end > p_start:
            spans.append((p_start, p_end))
    spans.sort()
    merged: list[tuple[datetime, datetime]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


class WorkingCalendar:
    """Indonesian working days: the ``holidays`` library's data plus extra days."""

    def __init__(self, extra_days: Iterable[ExtraDay] = (), *, country: str = "ID") -> None:
        # No explicit years: the library fills in each year on first lookup.
        self._library = holidays.country_holidays(
            country, categories=(holidays.PUBLIC, holidays.GOVERNMENT)
        )
        self._extra: dict[date, ExtraDay] = {d.day: d for d in extra_days}

    @classmethod
    def from_policy(cls, policy: Policy) -> WorkingCalendar:
        extra = load_extra_days(policy.extra_holidays_file) if policy.extra_holidays_file else []
        return cls(extra)

    # -- days ------------------------------------------------------------------------

    def holiday_name(self, d: date) -> str | None:
        """Why ``d`` is a holiday / cuti bersama, or None if it is not one."""
        if d in self._extra:
            return self._extra[d].name
        name = self._library.get(d)
        return str(name) if name else None

    def is_working_day(self, d: date) -> bool:
        return d.weekday() < 5 and d not in self._extra and d not in self._library

    def nth_working_day_after(self, d: date, n: int) -> date:
        """The Nth working day strictly after ``d`` (``d`` itself when n == 0)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        while n:
            d += ONE_DAY
            if self.is_working_day(d):
                n -= 1
        return d

    def working_days_between(self, after: date, until: date) -> int:
        """Number of working days D with ``after < D <= until``."""
        count, d = 0, after
        while d < until:
            d += ONE_DAY
            count += self.is_working_day(d)
        return count

    # -- deadlines -------------------------------------------------------------------

    def add_working_days(self, start: datetime, n: int, tz: str) -> datetime:
        """End of the Nth working day after the local date of ``start`` (in ``tz``)."""
        _require_aware(start, "start")
        return end_of_day(self.nth_working_day_after(_local_date(start, tz), n), tz)

    def add_calendar_days(self, start: datetime, n: int, tz: str) -> datetime:
        """End of the Nth calendar day after the local date of ``start`` (in ``tz``)."""
        _require_aware(start, "start")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return end_of_day(_local_date(start, tz) + n * ONE_DAY, tz)

    def _add_days(self, kind: DayKind, day: date, n: int) -> date:
        if kind == "working":
            return self.nth_working_day_after(day, n)
        return day + n * ONE_DAY

    def _days_covered(self, kind: DayKind, after: date, until: date) -> int:
        if kind == "working":
            return self.working_days_between(after, until)
        return max((until - after).days, 0)

    def deadline(
        self,
        start: datetime,
        clock: ClockPolicy,
        tz: str,
        paused: Sequence[Pause] = (),
        *,
        now: datetime | None = None,
    ) -> datetime:
        """When ``clock`` started at ``start`` runs out, in ``tz``, pauses added back.

        See the module docstring for the exact rules; ``now`` closes an open pause.
        """
        _require_aware(start, "start")
        zone = _zone(tz)
        spans = _normalise_pauses(start, paused, now)

        n = clock.whole_days
        if n is None:  # sub-day / seconds mode: elapsed time
            end = start + clock.duration
            for s, e in spans:
                if s > end:
                    break
                end += e - s
            return end.astimezone(zone)

        received = _local_date(start, zone)
        end = end_of_day(self._add_days(clock.days, received, n), zone)
        for s, e in spans:
            if s > end:
                break
            n += self._days_covered(clock.days, _local_date(s, zone), _local_date(e, zone))
            end = end_of_day(self._add_days(clock.days, received, n), zone)
        return end


def warning_at(start: datetime, deadline: datetime, fraction: float) -> datetime:
    """The moment ``fraction`` of the time from ``start`` to ``deadline`` has passed."""
    _require_aware(start, "start")
    _require_aware(deadline, "deadline")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    return (start + (deadline - start) * fraction).astimezone(deadline.tzinfo)


def extend(
    deadline: datetime,
    original_duration: timedelta,
    extension: timedelta,
    count_so_far: int,
    policy: Policy,
    *,
    days: DayKind = "calendar",
    calendar: WorkingCalendar | None = None,
    tz: str | None = None,
    extended_so_far: timedelta = timedelta(0),
) -> datetime:
    """The deadline after one more extension, or :class:`ExtensionError` if not allowed.

    ``count_so_far`` / ``extended_so_far``: extensions already granted on this clock and
    their total length. For a working clock (``days="working"``) with a whole-day
    extension, ``calendar`` and ``tz`` are required: the new deadline is the end of the Nth
    working day after the current deadline's local date.
    """
    _require_aware(deadline, "deadline")
    if extension <= timedelta(0):
        raise ExtensionError(f"an extension must be positive, got {extension}")
    if count_so_far >= policy.extension_max_count:
        raise ExtensionError(
            f"no more extensions allowed: {count_so_far} already granted, "
            f"the policy allows {policy.extension_max_count}"
        )
    cap = original_duration * policy.extension_max_fraction
    if extended_so_far + extension > cap:
        already = f" on top of {extended_so_far} already granted" if extended_so_far else ""
        raise ExtensionError(
            f"extension of {extension}{already} exceeds the cap of "
            f"{policy.extension_max_fraction:.0%} of the original {original_duration} ({cap})"
        )
    whole, rest = divmod(extension, ONE_DAY)
    if days == "working" and not rest:
        if calendar is None or tz is None:
            raise ValueError("extending a working-day clock needs `calendar` and `tz`")
        return end_of_day(calendar.nth_working_day_after(_local_date(deadline, tz), whole), tz)
    return deadline + extension
