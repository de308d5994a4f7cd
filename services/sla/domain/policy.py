"""SLA deadline policies as data: parsing and strict validation of ``policy.toml``.

Pure: standard library only. The shipped default is ``services/sla/data/policy.toml``
(see its comments for the legal sources and the working/calendar choice per clock).

Every validation problem raises :class:`PolicyError`, whose message names the file, the
line and the dotted key, e.g.::

    policy.toml line 12: clocks.first_response.duration: "-3d" is not a positive duration

``tomllib`` reports no positions for values, so the line is found by scanning the text for
the offending key (or, failing that, its nearest enclosing table).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, cast

__all__ = [
    "HANDLING_CLASSES",
    "REQUIRED_CLOCKS",
    "SUPPORTED_VERSIONS",
    "ClockPolicy",
    "DayKind",
    "Policy",
    "PolicyError",
    "default_policy_path",
    "load_policy",
    "parse_duration",
    "parse_policy",
]

DayKind = Literal["working", "calendar"]
DAY_KINDS: tuple[DayKind, ...] = ("working", "calendar")

SUPPORTED_VERSIONS = (1,)

#: Handling classes of a report; each has a ``clocks.resolution.<class>`` clock.
HANDLING_CLASSES = ("information_request", "complaint", "dispute", "field_inspection")

#: Clock names (dotted, as in the file) that every policy must define.
REQUIRED_CLOCKS = (
    "verification",
    "first_response",
    *(f"resolution.{c}" for c in HANDLING_CLASSES),
    "auto_close",
)

#: Name given to the Ombudsman take-over clock (``[escalation]``).
ESCALATION_CLOCK = "escalation.ombudsman"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^(-?)(\d+)([smhd])$")


class PolicyError(ValueError):
    """An invalid policy file. ``source``, ``line`` (1-based or None) and ``key`` say where."""

    def __init__(self, source: str, line: int | None, key: str | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.key = key
        self.problem = problem
        where = source if line is None else f"{source} line {line}"
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


@dataclass(frozen=True)
class ClockPolicy:
    """One deadline: ``duration`` counted in ``days`` ("working" or "calendar")."""

    name: str
    duration: timedelta
    days: DayKind

    @property
    def whole_days(self) -> int | None:
        """The duration in days if it is a whole number of days, else None (sub-day mode)."""
        days, rest = divmod(self.duration, timedelta(days=1))
        return int(days) if not rest and days > 0 else None


@dataclass(frozen=True)
class Policy:
    version: int
    clocks: dict[str, ClockPolicy]
    warning_fraction: float
    escalation_after: ClockPolicy
    ladder: tuple[str, ...]
    extension_max_count: int
    extension_max_fraction: float
    extra_holidays_file: Path | None
    #: Time a breached clock stays at one rung of the ladder before going one up (None: the
    #: breach reaches the first rung only).
    ladder_interval: timedelta | None = None
    #: Time after the Ombudsman deadline before the hand-over is decided (0: at the deadline):
    #: an action routing stored just before the deadline is published and applied by then
    #: (services/sla/watermark.py checks that every action published before the deadline
    #: plus this margin has been applied).
    handover_margin: timedelta = timedelta(0)

    def clock(self, name: str) -> ClockPolicy:
        try:
            return self.clocks[name]
        except KeyError:
            raise KeyError(
                f"no clock {name!r} in policy (known: {', '.join(sorted(self.clocks))})"
            ) from None

    def resolution_clock(self, handling_class: str) -> ClockPolicy:
        """The resolution clock for a handling class (e.g. ``"complaint"``)."""
        if handling_class not in HANDLING_CLASSES:
            raise KeyError(
                f"unknown handling class {handling_class!r} (known: {', '.join(HANDLING_CLASSES)})"
            )
        return self.clocks[f"resolution.{handling_class}"]


def default_policy_path() -> Path:
    """The policy shipped with the service."""
    return Path(__file__).resolve().parent.parent / "data" / "policy.toml"


def load_policy(path: Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PolicyError(path.name, None, None, f"cannot read policy file: {e}") from e
    return parse_policy(text, path.parent, source=path.name)


def parse_duration(value: str) -> timedelta:
    """Parse ``"3d"``, ``"90s"``, ... into a timedelta. Raises ValueError if malformed."""
    m = _DURATION_RE.match(value.strip())
    if not m:
        raise ValueError(
            f"{_show(value)} is not a valid duration "
            '(a whole number and a unit s, m, h or d, e.g. "3d" or "90s")'
        )
    sign, number, unit = m.groups()
    seconds = int(number) * _UNITS[unit]
    return timedelta(seconds=-seconds if sign else seconds)


def parse_policy(text: str, base_dir: Path, *, source: str = "<policy>") -> Policy:
    """Parse and validate policy text; ``base_dir`` resolves relative file names."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\s*\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else None
        if m:
            msg = msg[: m.start()] + msg[m.end() :]
        raise PolicyError(source, line, None, f"invalid TOML: {msg}") from e
    return _Parser(text, source, Path(base_dir)).parse(data)


# --------------------------------------------------------------------------------------
# Implementation


def _show(value: object) -> str:
    if isinstance(value, str | int | float | bool) or value is None:
        return json.dumps(value)
    return repr(value)


_BARE_OR_QUOTED = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_HEADER_RE = re.compile(
    rf"^\s*\[\[?\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*\]\]?\s*(?:#.*)?$"
)
_KEYVAL_RE = re.compile(rf"^\s*({_BARE_OR_QUOTED}(?:\s*\.\s*{_BARE_OR_QUOTED})*)\s*=")
_SEGMENT_RE = re.compile(_BARE_OR_QUOTED)


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = []
    for seg in _SEGMENT_RE.findall(dotted):
        if seg[:1] in "\"'":
            seg = seg[1:-1]
        parts.append(seg)
    return tuple(parts)


def _line_index(text: str) -> dict[tuple[str, ...], int]:
    """Map each table header and key (as a full dotted path) to the line defining it.

    A line-by-line approximation of TOML: good enough to point at the offending line of
    a hand-written policy file (multi-line strings are not tracked).
    """
    index: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if m := _HEADER_RE.match(stripped):
            table = _split_key(m.group(1))
            index.setdefault(table, lineno)
        elif m := _KEYVAL_RE.match(stripped):
            index.setdefault(table + _split_key(m.group(1)), lineno)
    return index


class _Parser:
    def __init__(self, text: str, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir
        self.index = _line_index(text)

    # -- errors ------------------------------------------------------------------------

    def line_of(self, path: tuple[str, ...]) -> int | None:
        """The line of ``path``, else of its nearest enclosing table (or any of its keys)."""
        for n in range(len(path), 0, -1):
            prefix = path[:n]
            if prefix in self.index:
                return self.index[prefix]
            below = [ln for p, ln in self.index.items() if p[:n] == prefix]
            if below:
                return min(below)
        return None

    def error(self, path: tuple[str, ...], problem: str) -> PolicyError:
        return PolicyError(self.source, self.line_of(path), ".".join(path) or None, problem)

    # -- generic checks ----------------------------------------------------------------

    def table(
        self,
        data: Mapping[str, Any],
        path: tuple[str, ...],
        *,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
        what: str = "key",
    ) -> Mapping[str, Any]:
        """``data[path[-1]]`` must be a table with exactly the allowed keys."""
        value = data.get(path[-1])
        if value is None:
            raise self.error(path, "missing required table")
        if not isinstance(value, dict):
            raise self.error(path, f"{_show(value)} must be a table")
        self.check_keys(value, path, required=required, optional=optional, what=what)
        return value

    def check_keys(
        self,
        table: Mapping[str, Any],
        path: tuple[str, ...],
        *,
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
        what: str = "key",
    ) -> None:
        allowed = required + optional
        for key in table:
            if key not in allowed:
                raise self.error(
                    (*path, key), f"unknown key (expected one of: {', '.join(sorted(allowed))})"
                )
        for key in required:
            if key not in table:
                raise self.error((*path, key), f"missing required {what}")

    def duration(self, table: Mapping[str, Any], path: tuple[str, ...]) -> timedelta:
        value = table[path[-1]]
        if not isinstance(value, str):
            raise self.error(path, f'{_show(value)} must be a duration string such as "3d"')
        try:
            parsed = parse_duration(value)
        except ValueError as e:
            raise self.error(path, str(e)) from None
        if parsed <= timedelta(0):
            raise self.error(path, f"{_show(value)} is not a positive duration")
        return parsed

    def days(self, table: Mapping[str, Any], path: tuple[str, ...]) -> DayKind:
        value = table[path[-1]]
        if value not in DAY_KINDS:
            raise self.error(path, f'{_show(value)} must be "working" or "calendar"')
        return cast(DayKind, value)

    def fraction(
        self, table: Mapping[str, Any], path: tuple[str, ...], *, allow_one: bool = False
    ) -> float:
        value = table[path[-1]]
        ok_type = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok_type or not (0 < value < 1 or (allow_one and value == 1)):
            bounds = "in (0, 1]" if allow_one else "strictly between 0 and 1"
            raise self.error(path, f"{_show(value)} is not a fraction {bounds}")
        return float(value)

    def clock(self, table: Mapping[str, Any], path: tuple[str, ...], name: str) -> ClockPolicy:
        body = self.table(table, path, required=("duration", "days"))
        return ClockPolicy(
            name=name,
            duration=self.duration(body, (*path, "duration")),
            days=self.days(body, (*path, "days")),
        )

    # -- the policy --------------------------------------------------------------------

    def parse(self, data: Mapping[str, Any]) -> Policy:
        self.check_keys(
            data,
            (),
            required=("version", "warning", "clocks", "escalation", "extension"),
            optional=("calendar",),
        )

        version = data["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise self.error(("version",), f"{_show(version)} must be an integer")
        if version not in SUPPORTED_VERSIONS:
            raise self.error(
                ("version",),
                f"unsupported policy version {version} "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})",
            )

        extra_file: Path | None = None
        if "calendar" in data:
            cal = self.table(data, ("calendar",), optional=("extra_holidays_file",))
            if "extra_holidays_file" in cal:
                key = ("calendar", "extra_holidays_file")
                value = cal["extra_holidays_file"]
                if not isinstance(value, str) or not value.strip():
                    raise self.error(key, f"{_show(value)} must be a file name")
                extra_file = (self.base_dir / value).resolve()
                if not extra_file.is_file():
                    raise self.error(key, f"{_show(value)}: no such file ({extra_file})")

        warning = self.table(data, ("warning",), required=("at_fraction",))
        warning_fraction = self.fraction(warning, ("warning", "at_fraction"))

        clocks = self.parse_clocks(data)

        esc = self.table(
            data,
            ("escalation",),
            required=("ombudsman_after", "days", "ladder"),
            optional=("ladder_interval", "handover_margin"),
        )
        escalation_after = ClockPolicy(
            name=ESCALATION_CLOCK,
            duration=self.duration(esc, ("escalation", "ombudsman_after")),
            days=self.days(esc, ("escalation", "days")),
        )
        ladder = self.ladder(esc["ladder"], ("escalation", "ladder"))
        ladder_interval = None
        if "ladder_interval" in esc:
            ladder_interval = self.duration(esc, ("escalation", "ladder_interval"))
        handover_margin = timedelta(0)
        if "handover_margin" in esc:
            handover_margin = self.duration(esc, ("escalation", "handover_margin"))

        ext = self.table(data, ("extension",), required=("max_count", "max_fraction"))
        max_count = ext["max_count"]
        if not isinstance(max_count, int) or isinstance(max_count, bool) or max_count < 0:
            raise self.error(
                ("extension", "max_count"), f"{_show(max_count)} must be a whole number >= 0"
            )
        max_fraction = self.fraction(ext, ("extension", "max_fraction"), allow_one=True)

        return Policy(
            version=version,
            clocks=clocks,
            warning_fraction=warning_fraction,
            escalation_after=escalation_after,
            ladder=ladder,
            extension_max_count=max_count,
            extension_max_fraction=max_fraction,
            extra_holidays_file=extra_file,
            ladder_interval=ladder_interval,
            handover_margin=handover_margin,
        )

    def parse_clocks(self, data: Mapping[str, Any]) -> dict[str, ClockPolicy]:
        top = ("verification", "first_response", "resolution", "auto_close")
        clocks_table = self.table(data, ("clocks",), required=top, what="clock")
        resolution = self.table(
            clocks_table, ("clocks", "resolution"), required=HANDLING_CLASSES, what="clock"
        )
        clocks: dict[str, ClockPolicy] = {}
        for name in REQUIRED_CLOCKS:
            *parents, leaf = name.split(".")
            parent = resolution if parents else clocks_table
            clocks[name] = self.clock(parent, ("clocks", *parents, leaf), name)
        return clocks

    def ladder(self, value: Any, path: tuple[str, ...]) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.error(path, f"{_show(value)} must be a non-empty list of level names")
        seen: list[str] = []
        for item in value:
            if not isinstance(item, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", item):
                raise self.error(path, f"{_show(item)} is not a valid level name")
            if item in seen:
                raise self.error(path, f"{_show(item)} appears twice")
            seen.append(item)
        return tuple(seen)
