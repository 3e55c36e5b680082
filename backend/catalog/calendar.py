"""The working-day calendar: official holidays and 调休 make-up workdays, hall opening days and local closures.

Where a day's status comes from, in order of precedence:

1. a year an operator loaded (`palmhall calendar load FILE`, tables `calendar_year` and
   `calendar_day`): Monday–Friday work except the listed holidays, plus the listed weekend make-up
   workdays;
2. the `chinese-calendar` library, for the years it covers (it lags the State Council's yearly
   notice by weeks or months);
3. otherwise the year is unknown. Booking a date in an unknown year is refused
   (`calendar.year_unknown`), never guessed; working-day arithmetic that runs into one counts
   weekends only and marks its answer provisional, and `calendar.year_loaded` tells the cases
   package to work such answers out again once the year is loaded.

Working days for time limits (承诺时限, 法定时限) are official workdays: a hall's own closures do
not stop a statutory clock, they only close the hall.

Loaded years are read from the database on every call (two small queries), not cached: a year
loaded by the operator's command in another process must count at once, everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import chinese_calendar
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError

from backend import clock, db
from backend.audit import service as audit
from backend.catalog import hours
from backend.catalog import service as catalog
from backend.catalog.hours import Span
from backend.catalog.models import CalendarDay, CalendarYear, Hall, HallClosure, HallSpecialHours, OpeningHours
from backend.errors import DomainError, FieldErrors, register_codes
from backend.jobs import outbox

register_codes({
    "calendar.year_unknown": (422, "该日期所在年度的法定节假日安排尚未发布，暂不能预约"),
    "calendar.file_invalid": (422, "节假日安排文件有误，请按提示逐项修改后重新导入"),
    "calendar.closure_not_found": (404, "该日没有设置闭厅"),
    "calendar.closure_in_past": (422, "不能设置或取消已经过去的日期的闭厅或特殊办公时间"),
    "calendar.special_hours_not_found": (404, "该日没有设置特殊办公时间"),
    "calendar.weekday_invalid": (422, "星期应为0（星期一）至6（星期日）"),
})

# Outbox topics. `calendar.year_loaded` {"year"}: provisional due dates can be made final.
# `calendar.closure_set` {"hall_id", "day", "reason", "periods"} (periods null: the whole day) and
# `calendar.closure_removed` {"hall_id", "day", "reason"}: the appointments a closure leaves out are cancelled in
# its own transaction (backend.booking.hall_setup), each with its own `appointment.cancelled`.
YEAR_LOADED = "calendar.year_loaded"
CLOSURE_SET = "calendar.closure_set"
CLOSURE_REMOVED = "calendar.closure_removed"

# Years a loaded file may describe: anything else is a typo (2207, 27).
LOADABLE_YEARS = range(2000, 2100)
# Bounds day-by-day counting; statutory limits are tens of working days, never decades.
MAX_WORKING_DAYS = 3660
# Names a PostgreSQL advisory lock so that two loads of a year take turns.
_LOAD_LOCK = 0x63616C64  # "cald"

_LIBRARY_HOLIDAYS: Mapping[date, Any] = chinese_calendar.holidays
_LIBRARY_WORKDAYS: Mapping[date, Any] = chinese_calendar.workdays
# chinese-calendar refuses any year outside the span of its table (NotImplementedError).
LIBRARY_YEARS = range(min(d.year for d in _LIBRARY_HOLIDAYS), max(d.year for d in _LIBRARY_HOLIDAYS) + 1)

WEEKDAY_ZH = ("星期一", "星期二", "星期三", "星期四", "星期五", "星期六", "星期日")
WEEKDAY_EN = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def today() -> date:
    """Today in Asia/Shanghai: the day a hall and its residents call today."""
    return clock.now().astimezone(clock.SHANGHAI).date()


# ---- the pure calendar ----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkingDays:
    """A day found by working-day arithmetic; `provisional` when it ran through an unknown year
    (counted as Monday–Friday) and must be worked out again once that year is loaded."""

    day: date
    provisional: bool


@dataclass(frozen=True)
class OfficialCalendar:
    """Official workdays from loaded years and the library, as plain data: the arithmetic is pure
    so it can be property-tested without a database."""

    loaded_years: frozenset[int] = frozenset()
    # Exceptions to Monday–Friday in loaded years: day -> is_workday (holiday False, make-up True).
    loaded_days: Mapping[date, bool] = field(default_factory=dict)
    # Which years the library answers for; tests narrow it to pretend the library knows less.
    library_years: range = LIBRARY_YEARS
    # The span `loaded_days` was read for (None: unbounded); outside it a loaded day could be missing.
    since: date | None = None
    until: date | None = None

    def source(self, year: int) -> str:
        """'loaded', 'library' or 'unknown'."""
        if year in self.loaded_years:
            return "loaded"
        if year in self.library_years:
            return "library"
        return "unknown"

    def knows(self, year: int) -> bool:
        return self.source(year) != "unknown"

    def is_workday(self, d: date) -> bool | None:
        """Whether `d` is an official workday; None when its year is unknown."""
        source = self.source(d.year)
        if source == "loaded":
            if (self.since is not None and d < self.since) or (self.until is not None and d > self.until):
                # Answering from a snapshot read for other days would silently drop that day's holiday.
                raise ValueError(f"{d} is outside the span this calendar was read for ({self.since}..{self.until})")
            return self.loaded_days.get(d, d.weekday() < 5)
        if source == "library":
            return d in _LIBRARY_WORKDAYS or (d.weekday() < 5 and d not in _LIBRARY_HOLIDAYS)
        return None

    def _counts(self, d: date) -> tuple[bool, bool]:
        """(is a working day, was guessed): an unknown year counts Monday–Friday."""
        known = self.is_workday(d)
        if known is None:
            return d.weekday() < 5, True
        return known, False

    def add(self, start: date, days: int) -> WorkingDays:
        """The `days`-th working day after `start` (start itself not counted; 0 gives start)."""
        if not 0 <= days <= MAX_WORKING_DAYS:
            raise ValueError(f"days must be between 0 and {MAX_WORKING_DAYS}, not {days}")
        d, provisional, left = start, False, days
        while left:
            d += timedelta(days=1)
            works, guessed = self._counts(d)
            provisional |= guessed
            left -= works
        return WorkingDays(day=d, provisional=provisional)

    def between(self, start: date, end: date) -> tuple[int, bool]:
        """Working days in (start, end] and whether any was guessed; (0, False) when end <= start."""
        n, provisional = 0, False
        d = start
        while d < end:
            d += timedelta(days=1)
            works, guessed = self._counts(d)
            provisional |= guessed
            n += works
        return n, provisional


async def official_calendar(*, since: date | None = None, until: date | None = None,
                            using_db: BaseDBAsyncClient | None = None) -> OfficialCalendar:
    """The calendar as the database has it now; loaded exceptions only within [since, until].

    Use one for many computations in a batch; the module's functions each read a fresh one.
    """
    years = frozenset(row.year for row in await CalendarYear.all().using_db(using_db).only("year"))
    relevant = {y for y in years if (since is None or y >= since.year) and (until is None or y <= until.year)}
    days: dict[date, bool] = {}
    if relevant:
        query = CalendarDay.filter(day__gte=date(min(relevant), 1, 1),
                                   day__lte=date(max(relevant), 12, 31)).using_db(using_db)
        for day, is_workday in await query.values_list("day", "is_workday"):
            if day.year in relevant:
                days[day] = bool(is_workday)
    return OfficialCalendar(loaded_years=years, loaded_days=days, since=since, until=until)


# ---- the public questions -------------------------------------------------------------------


async def year_known(year: int) -> bool:
    """Loaded in the database, or covered by the library."""
    return year in LIBRARY_YEARS or await CalendarYear.filter(year=year).exists()


async def is_official_workday(d: date, *, using_db: BaseDBAsyncClient | None = None) -> bool:
    """Whether `d` is an official workday; refuses (`calendar.year_unknown`) a year nobody knows."""
    workday = (await official_calendar(since=d, until=d, using_db=using_db)).is_workday(d)
    if workday is None:
        raise DomainError("calendar.year_unknown", details={"year": d.year})
    return workday


async def add_working_days(start: date, days: int) -> WorkingDays:
    """The `days`-th working day after `start` (start not counted; days=0 gives start)."""
    return (await official_calendar(since=start)).add(start, days)


async def working_days_between(start: date, end: date) -> tuple[int, bool]:
    """Working days in (start, end] and a provisional flag; (0, False) when end <= start."""
    if end <= start:
        return 0, False
    return (await official_calendar(since=start, until=end)).between(start, end)


# ---- halls: weekly hours, special hours and closures ----------------------------------------
#
# A hall's day, in order: special hours set for that date replace everything else (an empty list closes it);
# otherwise an official workday has the weekly hours of its weekday (a 调休 Saturday or Sunday without hours of
# its own works as a Monday), and any other day is closed; then a closure takes the whole day away, or the parts
# of it that it names. A hall that is not active is closed every day.


def _wall_time(t: Any) -> time:
    # Opening hours are Asia/Shanghai wall-clock times; the ORM labels them UTC (use_tz), which
    # would shift them if anyone combined them with a date as they come.
    if isinstance(t, timedelta):  # some drivers answer TIME as an interval since midnight
        return (datetime.min + t).time()
    if isinstance(t, str):
        t = time.fromisoformat(t)
    return t.replace(tzinfo=None)


def _periods_out(spans: Iterable[Span], keys: tuple[str, str]) -> list[dict[str, str]]:
    return [{keys[0]: hours.hhmm(s.start), keys[1]: hours.hhmm(s.end)} for s in spans]


@dataclass(frozen=True)
class Closure:
    hall_id: int
    day: date
    reason: str
    created_by: int | None
    # The closed parts of the day, earliest first; None: the whole day.
    periods: tuple[Span, ...] | None = None

    @property
    def whole_day(self) -> bool:
        return self.periods is None

    def as_dict(self) -> dict[str, Any]:
        return {"hall_id": self.hall_id, "day": self.day.isoformat(), "reason": self.reason,
                "created_by": self.created_by, "whole_day": self.whole_day,
                "periods": None if self.periods is None else _periods_out(self.periods, ("start", "end"))}


@dataclass(frozen=True)
class SpecialHours:
    hall_id: int
    day: date
    reason: str
    created_by: int | None
    periods: tuple[Span, ...]  # empty: closed that day

    def as_dict(self) -> dict[str, Any]:
        return {"hall_id": self.hall_id, "day": self.day.isoformat(), "reason": self.reason,
                "created_by": self.created_by, "closed": not self.periods,
                "periods": _periods_out(self.periods, ("opens", "closes"))}


@dataclass(frozen=True)
class DaySchedule:
    """One day of a hall as bookings, tickets and no-shows see it."""

    hall_id: int
    day: date
    periods: tuple[Span, ...]  # when the hall serves, everything applied; empty: closed
    weekly: tuple[Span, ...]  # the weekly hours that would apply to this date
    workday: bool | None  # the official calendar's answer; None for a year nobody knows
    active: bool
    special: SpecialHours | None
    closure: Closure | None

    def why_closed(self) -> str:
        """Why the hall is closed that day, or at the times it is (for a person, in Chinese)."""
        if not self.active:
            return "服务大厅已停用"
        if self.closure is not None:
            return f"大厅闭厅：{self.closure.reason}"
        if self.special is not None:
            return f"大厅调整办公时间：{self.special.reason}"
        if self.workday is False:
            return "法定节假日或休息日"
        return "大厅该时段不办公"

    def as_dict(self) -> dict[str, Any]:
        return {"hall_id": self.hall_id, "day": self.day.isoformat(), "weekday": self.day.weekday(),
                "weekday_label": WEEKDAY_ZH[self.day.weekday()], "official_workday": self.workday,
                "open": bool(self.periods), "periods": _periods_out(self.periods, ("opens", "closes")),
                "weekly_periods": _periods_out(self.weekly, ("opens", "closes")),
                "special_hours": self.special.as_dict() if self.special else None,
                "closure": self.closure.as_dict() if self.closure else None,
                "closed_reason": None if self.periods and self.closure is None and self.special is None
                else self.why_closed()}


def _closure(row: HallClosure) -> Closure:
    return Closure(hall_id=row.hall_id, day=row.day, reason=row.reason,  # type: ignore[attr-defined]
                   created_by=row.created_by,
                   periods=None if row.periods is None else tuple(hours.from_stored(row.periods)))


def _special(row: HallSpecialHours) -> SpecialHours:
    return SpecialHours(hall_id=row.hall_id, day=row.day, reason=row.reason,  # type: ignore[attr-defined]
                        created_by=row.created_by, periods=tuple(hours.from_stored(row.periods)))


async def weekly_hours(*, hall_id: int, using_db: BaseDBAsyncClient | None = None) -> dict[int, list[Span]]:
    """The hall's periods of each weekday (0 = Monday) that has any, earliest first."""
    week: dict[int, list[Span]] = {}
    rows = await OpeningHours.filter(hall_id=hall_id).using_db(using_db).values_list("weekday", "opens", "closes")
    for weekday, opens, closes in rows:
        week.setdefault(int(weekday), []).append(Span(_wall_time(opens), _wall_time(closes)))
    return {d: sorted(spans) for d, spans in sorted(week.items())}


async def day_schedule(*, hall_id: int, day: date, using_db: BaseDBAsyncClient | None = None) -> DaySchedule:
    """The hall's day (see the rules above); a date of a year nobody knows is refused (`calendar.year_unknown`)
    unless the hall set special hours for it."""
    hall = await Hall.filter(id=hall_id).using_db(using_db).first()
    if hall is None:
        raise DomainError("catalog.hall_not_found", details={"hall_id": hall_id})
    special_row = await HallSpecialHours.filter(hall_id=hall_id, day=day).using_db(using_db).first()
    closure_row = await HallClosure.filter(hall_id=hall_id, day=day).using_db(using_db).first()
    special = _special(special_row) if special_row is not None else None
    closure = _closure(closure_row) if closure_row is not None else None
    workday = (await official_calendar(since=day, until=day, using_db=using_db)).is_workday(day)
    week = await weekly_hours(hall_id=hall_id, using_db=using_db)
    weekly = week.get(day.weekday(), [])
    if not weekly and day.weekday() >= 5 and workday:
        # An official workday on a weekend is a make-up day (调休): it works as a Monday does.
        weekly = week.get(0, [])
    periods: list[Span]
    if not hall.active:
        periods = []
    elif special is not None:
        periods = list(special.periods)
    elif workday is None:
        raise DomainError("calendar.year_unknown", details={"year": day.year})
    else:
        periods = list(weekly) if workday else []
    if closure is not None:
        periods = [] if closure.periods is None else hours.subtract(periods, closure.periods)
    return DaySchedule(hall_id=hall_id, day=day, periods=tuple(periods), weekly=tuple(weekly), workday=workday,
                       active=hall.active, special=special, closure=closure)


async def opening_hours(*, hall_id: int, day: date,
                        using_db: BaseDBAsyncClient | None = None) -> list[tuple[time, time]]:
    """The hall's sessions on `day` (Asia/Shanghai wall-clock, earliest first); empty when closed.

    Open means: special hours set for that date, or else an official workday (an unknown year is refused with
    `calendar.year_unknown`) with hours set for its weekday (a 调休 make-up Saturday or Sunday without hours of
    its own is served with the hall's Monday hours); the hall active; and the times not closed by its admin.
    """
    schedule = await day_schedule(hall_id=hall_id, day=day, using_db=using_db)
    return [(s.start, s.end) for s in schedule.periods]


async def hall_is_open(*, hall_id: int, day: date) -> bool:
    """Whether the hall serves at all on `day` (same rules as `opening_hours`)."""
    return bool(await opening_hours(hall_id=hall_id, day=day))


def _clean_reason(reason: str, what: str = "闭厅原因") -> str:
    text = " ".join(reason.split())
    if not 1 <= len(text) <= 200:
        raise FieldErrors([{"field": "reason", "code": "reason.length", "message": f"{what}应为1至200个字"}])
    return text


def _not_past(day: date) -> None:
    # A day that is over keeps its history: appointments and no-shows on it were judged by it.
    now = today()
    if day < now:
        raise DomainError("calendar.closure_in_past", details={"day": day.isoformat(), "today": now.isoformat()})


def _actor(actor_staff_id: int | None, operator: str) -> tuple[str, str | int]:
    """Who changed a hall's days: a staff member through the API, else the operator (`cli`, `demo`)."""
    return ("staff", actor_staff_id) if actor_staff_id is not None else ("operator", operator)


async def set_closure(*, hall_id: int, day: date, reason: str, actor_staff_id: int | None,
                      periods: Sequence[Span] | None = None, using_db: BaseDBAsyncClient | None = None,
                      operator: str = "cli") -> Closure:
    """Close the hall on `day`, or only the given parts of it (or change the reason or the parts); audited, and
    announced to the outbox. Setting the same closure again changes nothing and records nothing.

    With `using_db` the caller's transaction holds the change (and must keep other writers of the hall's days
    out: `backend.booking.hall_setup` does, and cancels the appointments the closure leaves out).
    """
    reason = _clean_reason(reason)
    _not_past(day)
    spans = tuple(hours.check_day(periods)) if periods else None
    if using_db is not None:
        return await _set_closure(using_db, hall_id, day, reason, spans, actor_staff_id, operator)
    for attempt in range(2):
        try:
            async with db.transaction() as tx:
                return await _set_closure(tx, hall_id, day, reason, spans, actor_staff_id, operator)
        except IntegrityError:
            # Two admins closed the same day at once: the other one's row now exists, update it.
            if attempt:
                raise
    raise AssertionError("unreachable")


async def _set_closure(tx: BaseDBAsyncClient, hall_id: int, day: date, reason: str,
                       spans: tuple[Span, ...] | None, actor_staff_id: int | None, operator: str) -> Closure:
    await catalog.get_hall(hall_id=hall_id, using_db=tx)
    stored = None if spans is None else hours.to_stored(spans)
    row = await HallClosure.filter(hall_id=hall_id, day=day).using_db(tx).select_for_update().first()
    if row is not None and row.reason == reason and row.periods == stored:
        return _closure(row)
    previous = row.reason if row is not None else None
    previous_periods = row.periods if row is not None else None
    if row is None:
        row = await HallClosure.create(hall_id=hall_id, day=day, reason=reason, periods=stored,
                                       created_by=actor_staff_id, using_db=tx)
    else:
        row.reason, row.periods, row.created_by = reason, stored, actor_staff_id
        await row.save(using_db=tx, update_fields=["reason", "periods", "created_by"])
    details: dict[str, Any] = {"day": day.isoformat(), "reason": reason, "previous_reason": previous}
    if stored is not None or previous_periods is not None:
        details.update(periods=stored, previous_periods=previous_periods)
    actor_kind, actor_id = _actor(actor_staff_id, operator)
    await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="hall.closure_set",
                       target_kind="hall", target_id=hall_id, details=details)
    await outbox.emit(CLOSURE_SET, {"hall_id": hall_id, "day": day.isoformat(), "reason": reason, "periods": stored},
                      using_db=tx, ordering_key=f"hall:{hall_id}")
    return _closure(row)


async def remove_closure(*, hall_id: int, day: date, actor_staff_id: int | None,
                         using_db: BaseDBAsyncClient | None = None, operator: str = "cli") -> Closure:
    """Open the hall again on `day` (appointments the closure cancelled stay cancelled); audited, and announced to
    the outbox."""
    _not_past(day)
    if using_db is not None:
        return await _remove_closure(using_db, hall_id, day, actor_staff_id, operator)
    async with db.transaction() as tx:
        return await _remove_closure(tx, hall_id, day, actor_staff_id, operator)


async def _remove_closure(tx: BaseDBAsyncClient, hall_id: int, day: date, actor_staff_id: int | None,
                          operator: str) -> Closure:
    row = await HallClosure.filter(hall_id=hall_id, day=day).using_db(tx).select_for_update().first()
    if row is None:
        raise DomainError("calendar.closure_not_found", details={"hall_id": hall_id, "day": day.isoformat()})
    await HallClosure.filter(id=row.id).using_db(tx).delete()
    actor_kind, actor_id = _actor(actor_staff_id, operator)
    await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id,
                       action="hall.closure_removed", target_kind="hall", target_id=hall_id,
                       details={"day": day.isoformat(), "reason": row.reason})
    await outbox.emit(CLOSURE_REMOVED, {"hall_id": hall_id, "day": day.isoformat(), "reason": row.reason},
                      using_db=tx, ordering_key=f"hall:{hall_id}")
    return _closure(row)


async def list_closures(*, hall_id: int, start: date, end: date) -> list[Closure]:
    """The hall's closures in [start, end], earliest first."""
    await catalog.get_hall(hall_id=hall_id)
    rows = await HallClosure.filter(hall_id=hall_id, day__gte=start, day__lte=end).order_by("day")
    return [_closure(r) for r in rows]


async def set_special_hours(*, hall_id: int, day: date, periods: Sequence[Span], reason: str,
                            actor_staff_id: int | None, using_db: BaseDBAsyncClient,
                            operator: str = "cli") -> SpecialHours:
    """The hall's hours on `day` only, in place of its weekly hours (no periods: closed); audited. In the
    caller's transaction (`backend.booking.hall_setup` cancels the appointments the new hours leave out)."""
    reason = _clean_reason(reason, "调整原因")
    _not_past(day)
    spans = hours.check_day(periods)
    stored = hours.to_stored(spans)
    await catalog.get_hall(hall_id=hall_id, using_db=using_db)
    row = await HallSpecialHours.filter(hall_id=hall_id, day=day).using_db(using_db).select_for_update().first()
    if row is not None and row.reason == reason and row.periods == stored:
        return _special(row)
    before = {"periods": row.periods, "reason": row.reason} if row is not None else None
    if row is None:
        row = await HallSpecialHours.create(hall_id=hall_id, day=day, periods=stored, reason=reason,
                                            created_by=actor_staff_id, using_db=using_db)
    else:
        row.periods, row.reason, row.created_by = stored, reason, actor_staff_id
        await row.save(using_db=using_db, update_fields=["periods", "reason", "created_by"])
    actor_kind, actor_id = _actor(actor_staff_id, operator)
    await audit.record(using_db=using_db, actor_kind=actor_kind, actor_id=actor_id,
                       action="hall.special_hours_set", target_kind="hall", target_id=hall_id,
                       details={"day": day.isoformat(), "periods": stored, "reason": reason, "before": before})
    return _special(row)


async def remove_special_hours(*, hall_id: int, day: date, actor_staff_id: int | None,
                               using_db: BaseDBAsyncClient, operator: str = "cli") -> SpecialHours:
    """Back to the weekly hours on `day`; audited."""
    _not_past(day)
    row = await HallSpecialHours.filter(hall_id=hall_id, day=day).using_db(using_db).select_for_update().first()
    if row is None:
        raise DomainError("calendar.special_hours_not_found", details={"hall_id": hall_id, "day": day.isoformat()})
    await HallSpecialHours.filter(id=row.id).using_db(using_db).delete()
    actor_kind, actor_id = _actor(actor_staff_id, operator)
    await audit.record(using_db=using_db, actor_kind=actor_kind, actor_id=actor_id,
                       action="hall.special_hours_removed", target_kind="hall", target_id=hall_id,
                       details={"day": day.isoformat(), "periods": row.periods, "reason": row.reason})
    return _special(row)


async def list_special_hours(*, hall_id: int, start: date, end: date) -> list[SpecialHours]:
    """The hall's special hours in [start, end], earliest first."""
    await catalog.get_hall(hall_id=hall_id)
    rows = await HallSpecialHours.filter(hall_id=hall_id, day__gte=start, day__lte=end).order_by("day")
    return [_special(r) for r in rows]


def _week_stored(week: Mapping[int, Sequence[Span]]) -> dict[str, list[list[str]]]:
    return {str(d): hours.to_stored(spans) for d, spans in sorted(week.items()) if spans}


async def set_weekly_hours(*, hall_id: int, week: Mapping[int, Sequence[Span]], actor_staff_id: int | None,
                           using_db: BaseDBAsyncClient, operator: str = "cli") -> dict[int, list[Span]]:
    """Replace the hall's weekly hours (weekdays not given are closed); audited when anything changes. In the
    caller's transaction (`backend.booking.hall_setup` cancels the appointments the new hours leave out)."""
    await catalog.get_hall(hall_id=hall_id, using_db=using_db)
    checked: dict[int, list[Span]] = {}
    for weekday, spans in week.items():
        if not 0 <= weekday <= 6:
            raise DomainError("calendar.weekday_invalid", details={"weekday": weekday})
        if spans:
            checked[weekday] = hours.check_day(spans)
    before = await weekly_hours(hall_id=hall_id, using_db=using_db)
    if before == checked:
        return before
    await OpeningHours.filter(hall_id=hall_id).using_db(using_db).delete()
    rows = [OpeningHours(hall_id=hall_id, weekday=d, opens=s.start, closes=s.end)
            for d, spans in sorted(checked.items()) for s in spans]
    if rows:
        await OpeningHours.bulk_create(rows, using_db=using_db)
    actor_kind, actor_id = _actor(actor_staff_id, operator)
    await audit.record(using_db=using_db, actor_kind=actor_kind, actor_id=actor_id, action="hall.hours_set",
                       target_kind="hall", target_id=hall_id,
                       details={"before": _week_stored(before), "after": _week_stored(checked)})
    return checked


# ---- loading a year's official arrangement --------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or, as a warning, odd) in a year file; `field` points into the JSON."""

    field: str
    code: str
    message: str  # Chinese, for the operator
    message_en: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message, "message_en": self.message_en}

    def __str__(self) -> str:
        return f"{self.field}: {self.message} ({self.message_en})"


@dataclass(frozen=True)
class YearArrangement:
    """A validated year file."""

    year: int
    notice: str
    holidays: dict[date, str]  # day -> name, e.g. 春节
    workdays: dict[date, str]  # weekend make-up workday -> name, e.g. 春节调休
    warnings: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class LoadReport:
    year: int
    notice: str
    holidays: int  # days off listed
    workdays: int  # make-up workdays listed
    replaced: bool  # the year had been loaded before
    warnings: tuple[Problem, ...] = ()


_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOP_KEYS = ("year", "source", "holidays", "workdays")
# Days the law fixes every year (全国年节及纪念日放假办法): a file without them is probably wrong.
_FIXED_HOLIDAYS = ((1, 1, "元旦"), (5, 1, "劳动节"), (5, 2, "劳动节"), (10, 1, "国庆节"), (10, 2, "国庆节"),
                   (10, 3, "国庆节"))


def validate_year(data: Any) -> YearArrangement:
    """Check a year file completely; refuse it (`calendar.file_invalid`) listing every problem.

    Shape: {"year": 2027, "source": "<the notice>", "holidays": [{"name": "春节", "days": ["2027-02-05",
    ...]}], "workdays": [{"name": "春节调休", "days": ["2027-02-14"]}]}.
    """
    problems: list[Problem] = []

    def bad(where: str, code: str, zh: str, en: str) -> None:
        problems.append(Problem(where, code, zh, en))

    if not isinstance(data, dict):
        bad("(file)", "not_object", "文件内容应为一个 JSON 对象", "the file must hold one JSON object")
        raise DomainError("calendar.file_invalid", details={"problems": [p.as_dict() for p in problems]})
    for key in data:
        if key not in _TOP_KEYS:
            bad(str(key), "unknown_key", f"不认识的字段“{key}”（可用：year、source、holidays、workdays）",
                f"unknown key {key!r} (expected: year, source, holidays, workdays)")

    year = data.get("year")
    if "year" not in data:
        bad("year", "missing", "缺少年度 year", "year is missing")
        year = None
    elif isinstance(year, bool) or not isinstance(year, int):
        bad("year", "type", "年度 year 应为整数，如 2027", "year must be an integer such as 2027")
        year = None
    elif year not in LOADABLE_YEARS:
        bad("year", "range", f"年度 {year} 不在 {LOADABLE_YEARS.start}–{LOADABLE_YEARS.stop - 1} 之间",
            f"year {year} is outside {LOADABLE_YEARS.start}-{LOADABLE_YEARS.stop - 1}")
        year = None

    notice = data.get("source")
    if not isinstance(notice, str) or not notice.strip():
        bad("source", "missing", "缺少来源 source（通知的名称和文号）",
            "source (the notice's title and number) is missing")
        notice = ""
    elif len(notice.strip()) > 200:
        bad("source", "too_long", "来源 source 不能超过200个字", "source must be at most 200 characters")
    notice = notice.strip()

    seen: dict[date, str] = {}  # day -> where it was listed first

    def days_of(section: str, *, required: bool) -> dict[date, str]:
        found: dict[date, str] = {}
        entries = data.get(section)
        if entries is None and not required:
            return found
        if not isinstance(entries, list) or (required and not entries):
            bad(section, "missing" if entries is None else "type",
                f"{section} 应为非空列表，每项形如 {{\"name\": \"春节\", \"days\": [\"YYYY-MM-DD\", …]}}",
                f"{section} must be a non-empty list of {{\"name\": ..., \"days\": [\"YYYY-MM-DD\", ...]}}")
            return found
        for i, entry in enumerate(entries):
            where = f"{section}[{i}]"
            if not isinstance(entry, dict):
                bad(where, "type", "每项应为含 name 和 days 的对象", "each entry must be an object with name and days")
                continue
            for key in entry:
                if key not in ("name", "days"):
                    bad(f"{where}.{key}", "unknown_key", f"不认识的字段“{key}”（可用：name、days）",
                        f"unknown key {key!r} (expected: name, days)")
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                bad(f"{where}.name", "missing", "缺少名称 name，如“春节”", "name (e.g. 春节) is missing")
                name = ""
            elif len(name.strip()) > 64:
                bad(f"{where}.name", "too_long", "名称 name 不能超过64个字", "name must be at most 64 characters")
            name = name.strip()[:64]
            days = entry.get("days")
            if not isinstance(days, list) or not days:
                bad(f"{where}.days", "missing", "days 应为非空的日期列表（YYYY-MM-DD）",
                    "days must be a non-empty list of dates (YYYY-MM-DD)")
                continue
            for j, raw in enumerate(days):
                at = f"{where}.days[{j}]"
                d = _parse_day(raw)
                if d is None:
                    bad(at, "date_format", f"“{raw}”不是 YYYY-MM-DD 格式的有效日期",
                        f"{raw!r} is not a valid YYYY-MM-DD date")
                    continue
                if year is not None and d.year != year:
                    bad(at, "outside_year", f"{d} 不在 {year} 年内", f"{d} is not in {year}")
                    continue
                if d in seen and not seen[d].startswith(section):
                    bad(at, "holiday_and_workday", f"{d} 已在 {seen[d]} 列为假日，不能同时是调休上班日",
                        f"{d} is a holiday at {seen[d]} and cannot also be a make-up workday")
                    continue
                if d in seen:
                    bad(at, "duplicate", f"{d} 已在 {seen[d]} 列出，一天只能列一次",
                        f"{d} is already listed at {seen[d]}; list each day once")
                    continue
                if section == "workdays" and d.weekday() < 5:
                    bad(at, "not_weekend",
                        f"{d} 是{WEEKDAY_ZH[d.weekday()]}，调休上班日应为星期六或星期日",
                        f"{d} is a {WEEKDAY_EN[d.weekday()]}; a make-up workday must be a Saturday or Sunday")
                seen[d] = at
                found[d] = name
        return found

    holidays = days_of("holidays", required=True)
    workdays = days_of("workdays", required=False)
    if problems or year is None:
        raise DomainError("calendar.file_invalid", details={"problems": [p.as_dict() for p in problems]})

    warnings: list[Problem] = []
    for month, day_of_month, name in _FIXED_HOLIDAYS:
        d = date(year, month, day_of_month)
        if d not in holidays:
            warnings.append(Problem("holidays", "fixed_holiday_missing",
                                    f"{d}（{name}）是法定假日，但文件没有把它列为假日",
                                    f"{d} ({name}) is a statutory holiday but the file does not list it"))
    if "示例" in notice or "example" in notice.lower():
        warnings.append(Problem("source", "example", "这是示例文件，不是国务院办公厅的正式通知",
                                "this is an example file, not the State Council's notice"))
    return YearArrangement(year=year, notice=notice, holidays=holidays, workdays=workdays, warnings=tuple(warnings))


def _parse_day(raw: Any) -> date | None:
    # Only YYYY-MM-DD: fromisoformat alone would also take 20270205 and week dates.
    if not isinstance(raw, str) or not _ISO_DAY.match(raw):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


async def load_year(*, data: dict[str, Any], source_name: str, actor_kind: str = "operator",
                    actor_id: str | int = "cli") -> LoadReport:
    """Validate a year file and make it the year's official arrangement, replacing any earlier load.

    One transaction: the year's days, its `calendar_year` row, an audit row and the
    `calendar.year_loaded` event all commit together or not at all. `source_name` says where the
    file came from (a path, "bench: …"); it goes to the audit log.
    """
    arrangement = validate_year(data)
    year = arrangement.year
    async with db.transaction() as tx:
        if tx.capabilities.dialect == "postgres":
            await tx.execute_query("SELECT pg_advisory_xact_lock($1)", [_LOAD_LOCK])
        previous = await CalendarYear.filter(year=year).using_db(tx).first()
        await CalendarDay.filter(day__gte=date(year, 1, 1), day__lte=date(year, 12, 31)).using_db(tx).delete()
        rows = [CalendarDay(day=d, is_workday=False, name=n) for d, n in sorted(arrangement.holidays.items())]
        rows += [CalendarDay(day=d, is_workday=True, name=n) for d, n in sorted(arrangement.workdays.items())]
        await CalendarDay.bulk_create(rows, using_db=tx)
        if previous is None:
            await CalendarYear.create(year=year, source=arrangement.notice, loaded_at=clock.now(), using_db=tx)
        else:
            await CalendarYear.filter(year=year).using_db(tx).update(source=arrangement.notice,
                                                                     loaded_at=clock.now())
        await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="calendar.year_loaded",
                           target_kind="calendar_year", target_id=year,
                           details={"notice": arrangement.notice, "file": source_name[:200],
                                    "holidays": len(arrangement.holidays), "workdays": len(arrangement.workdays),
                                    "replaced": previous is not None,
                                    "previous_notice": previous.source if previous else None})
        await outbox.emit(YEAR_LOADED, {"year": year}, using_db=tx)
    return LoadReport(year=year, notice=arrangement.notice, holidays=len(arrangement.holidays),
                      workdays=len(arrangement.workdays), replaced=previous is not None,
                      warnings=arrangement.warnings)


def _library_counts(year: int) -> tuple[int, int]:
    return (sum(1 for d in _LIBRARY_HOLIDAYS if d.year == year), sum(1 for d in _LIBRARY_WORKDAYS if d.year == year))


async def status(years: range | Iterable[int] | None = None) -> list[dict[str, Any]]:
    """Per year: where its calendar comes from ("loaded", "library" or "unknown"), the notice and
    time of a load, and how many holidays and make-up workdays it lists.

    By default: last year to next year, and every loaded year.
    """
    loaded = {row.year: row for row in await CalendarYear.all()}
    counts: dict[int, list[int]] = {}
    for day, is_workday in await CalendarDay.all().values_list("day", "is_workday"):
        counts.setdefault(day.year, [0, 0])[1 if is_workday else 0] += 1
    if years is None:
        this = today().year
        years = range(min([this - 1, *loaded]), max([this + 1, *loaded]) + 1)
    answer = []
    for y in years:
        row = loaded.get(y)
        if row is not None:
            holidays, workdays = counts.get(y, [0, 0])
            answer.append({"year": y, "source": "loaded", "notice": row.source, "loaded_at": row.loaded_at,
                           "holidays": holidays, "workdays": workdays, "library": y in LIBRARY_YEARS})
        elif y in LIBRARY_YEARS:
            holidays, workdays = _library_counts(y)
            answer.append({"year": y, "source": "library", "notice": f"chinese-calendar {chinese_calendar.__version__}",
                           "loaded_at": None, "holidays": holidays, "workdays": workdays, "library": True})
        else:
            answer.append({"year": y, "source": "unknown", "notice": None, "loaded_at": None,
                           "holidays": None, "workdays": None, "library": False})
    return answer
