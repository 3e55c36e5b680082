"""Periods of a hall's day (Asia/Shanghai wall-clock): "HH:MM" in and out, one day's periods checked (inside the
day, closing after opening, none overlapping), and the arithmetic closures need (open periods minus closed ones,
whether a slot lies inside them). Pure: no database, so the rules are the same for the API, the CLI and the demo."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

from backend.errors import InvalidValue

_HHMM = re.compile(r"^([0-9]{1,2}):([0-9]{2})$")
MAX_PERIODS = 6  # a day with more sessions than this is a typo, not a timetable


@dataclass(frozen=True, order=True)
class Span:
    """[start, end) of one day, wall-clock."""

    start: time
    end: time

    def text(self) -> str:
        return f"{hhmm(self.start)}–{hhmm(self.end)}"

    def as_list(self) -> list[str]:
        """How a period is stored (JSON): ["09:00", "12:00"]."""
        return [hhmm(self.start), hhmm(self.end)]


def hhmm(t: time) -> str:
    return t.strftime("%H:%M")


def parse_time(value: Any) -> time:
    """'09:00' (or '9:00') -> time(9); a time outside the day or in another shape is refused in Chinese."""
    if isinstance(value, time):
        return value.replace(tzinfo=None, second=0, microsecond=0)
    match = _HHMM.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise InvalidValue("hours.format", "时间格式应为 HH:MM，例如 09:00")
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise InvalidValue("hours.outside_day", f"时间“{value.strip()}”不在一天之内（00:00 至 23:59）")
    return time(hour, minute)


def span(start: Any, end: Any) -> Span:
    """One period; the end must come after the start on the same day."""
    s, e = parse_time(start), parse_time(end)
    if e <= s:
        raise InvalidValue("hours.closes_before_opens",
                           f"结束时间 {hhmm(e)} 应晚于开始时间 {hhmm(s)}（时段不能跨过午夜）")
    return Span(s, e)


def check_day(spans: Iterable[Span]) -> list[Span]:
    """A day's periods, earliest first; overlapping ones are refused (touching ones are fine)."""
    ordered = sorted(spans)
    if len(ordered) > MAX_PERIODS:
        raise InvalidValue("hours.too_many", f"一天最多设置{MAX_PERIODS}个时段")
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise InvalidValue("hours.overlap", f"时段 {before.text()} 与 {after.text()} 重叠")
    return ordered


def from_stored(rows: Sequence[Sequence[str]] | None) -> list[Span]:
    """Periods as a JSON column holds them ([["09:00", "12:00"], ...])."""
    return sorted(Span(parse_time(a), parse_time(b)) for a, b in rows or [])


def to_stored(spans: Iterable[Span]) -> list[list[str]]:
    return [s.as_list() for s in sorted(spans)]


def subtract(open_spans: Iterable[Span], closed: Iterable[Span]) -> list[Span]:
    """What is left of `open_spans` once every `closed` period is taken out of them."""
    left = sorted(open_spans)
    for c in sorted(closed):
        out: list[Span] = []
        for o in left:
            if c.end <= o.start or c.start >= o.end:
                out.append(o)
                continue
            if o.start < c.start:
                out.append(Span(o.start, c.start))
            if c.end < o.end:
                out.append(Span(c.end, o.end))
        left = out
    return left


def covers(spans: Iterable[Span], start: time, end: time) -> bool:
    """Whether [start, end) lies wholly inside one of `spans` (a slot half inside a closure is not served)."""
    return any(s.start <= start and end <= s.end for s in spans)


def where(spans: Sequence[Span], moment: time) -> tuple[str, Span | None]:
    """Where `moment` falls in a day of `spans` (earliest first): ("open", the period), ("before", the first),
    ("between", the next), ("after", None), or ("closed", None) when the day has no period at all."""
    if not spans:
        return "closed", None
    for s in spans:
        if s.start <= moment < s.end:
            return "open", s
    if moment < spans[0].start:
        return "before", spans[0]
    for s in spans:
        if moment < s.start:
            return "between", s
    return "after", None
