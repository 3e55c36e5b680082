"""Time limits (承诺时限, 法定时限) in working days from acceptance, stopped while a case waits on the applicant.

Counting follows the usual rule: the day of acceptance is not counted, day 1 is the next working
day. A pause that starts on day P and ends on day R removes the working days in (P, R] from the
count. Due dates are worked out from the acceptance day, the limits and the list of pauses, so
they can be recomputed at any time (e.g. when the official calendar of a new year is loaded and a
provisional date becomes final).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from backend import clock
from backend.cases.models import Case, CaseStatus, WarningLevel
from backend.catalog import calendar

# States in which the clock runs; in the others it has not started, stopped or ended.
RUNNING = frozenset({CaseStatus.ACCEPTED, CaseStatus.IN_REVIEW})
# States that wait on the applicant (a correction, a payment): the clock stops.
PAUSING = frozenset({CaseStatus.NEEDS_CORRECTION, CaseStatus.AWAITING_PAYMENT})
# States after a decision: the limit no longer applies.
ENDED = frozenset({CaseStatus.APPROVED, CaseStatus.REJECTED, CaseStatus.CERTIFICATE_ISSUED,
                   CaseStatus.DELIVERED, CaseStatus.CLOSED, CaseStatus.WITHDRAWN})

YELLOW_SHARE = 0.8


class Calendar(Protocol):
    """What the catalog calendar offers (backend/catalog/calendar.py); tests may pass another."""

    async def add(self, start: date, days: int) -> tuple[date, bool]: ...

    async def between(self, start: date, end: date) -> tuple[int, bool]: ...


class CatalogCalendar:
    """Official working days as the catalog has them (loaded years, then chinese-calendar)."""

    async def add(self, start: date, days: int) -> tuple[date, bool]:
        found = await calendar.add_working_days(start, days)
        return found.day, found.provisional

    async def between(self, start: date, end: date) -> tuple[int, bool]:
        return await calendar.working_days_between(start, end)


CATALOG = CatalogCalendar()


def today() -> date:
    """Today in Asia/Shanghai: the day a clerk and a resident both call today."""
    return clock.now().astimezone(clock.SHANGHAI).date()


def local_day(moment: datetime) -> date:
    return moment.astimezone(clock.SHANGHAI).date()


@dataclass(frozen=True)
class Due:
    day: date
    provisional: bool


async def due_date(start: date, days: int, pauses: list[tuple[date, date]], cal: Calendar = CATALOG) -> Due:
    """The working day on which `days` working days outside `pauses` have passed since `start`.

    Each pause (P, R] that begins before the due date found so far moves it on by the working
    days it holds. A pause that begins after the due date changes nothing (the case was late).
    """
    day, provisional = await cal.add(start, days)
    for paused, resumed in sorted(pauses):
        if paused < day:
            held, p1 = await cal.between(paused, resumed)
            if held:
                day, p2 = await cal.add(day, held)
                provisional = provisional or p2
            provisional = provisional or p1
    return Due(day, provisional)


def _pauses(case: Case) -> list[tuple[date, date]]:
    return [(date.fromisoformat(a), date.fromisoformat(b)) for a, b in case.pauses]


async def recompute(case: Case, cal: Calendar = CATALOG) -> None:
    """Set the due dates from acceptance, limits and ended pauses (the current pause, if any, not yet)."""
    if case.accepted_on is None:
        return
    pauses = _pauses(case)
    promised = await due_date(case.accepted_on, case.promised_days, pauses, cal)
    statutory = await due_date(case.accepted_on, case.statutory_days, pauses, cal)
    provisional = promised.provisional or statutory.provisional
    case.promised_due, case.statutory_due = promised.day, statutory.day
    yellow_days = math.ceil(case.promised_days * YELLOW_SHARE)
    if case.promised_days > 0 and yellow_days < case.promised_days:
        yellow = await due_date(case.accepted_on, yellow_days, pauses, cal)
        case.yellow_on = yellow.day
        provisional = provisional or yellow.provisional
    else:
        # 即办 (0 days) or a limit so short that 80% is the whole of it: only red applies.
        case.yellow_on = None
    case.due_provisional = provisional


async def apply(case: Case, before: CaseStatus, after: CaseStatus, on: date, cal: Calendar = CATALOG) -> None:
    """Start, stop or resume the clock for one transition (called by the state machine)."""
    if after == CaseStatus.ACCEPTED and case.accepted_on is None:
        case.accepted_on = on
        await recompute(case, cal)
        return
    if case.accepted_on is None:
        return
    if after in PAUSING and case.paused_since is None:
        case.paused_since = on
    elif before in PAUSING and case.paused_since is not None and after not in PAUSING:
        case.pauses = [*case.pauses, [case.paused_since.isoformat(), on.isoformat()]]
        case.paused_since = None
        await recompute(case, cal)


async def elapsed(case: Case, on: date, cal: Calendar = CATALOG) -> int:
    """Working days of the limit used up by `on`."""
    if case.accepted_on is None:
        return 0
    used, _ = await cal.between(case.accepted_on, on)
    spans = _pauses(case)
    if case.paused_since is not None:
        spans.append((case.paused_since, on))
    for paused, resumed in spans:
        if paused < on:
            held, _ = await cal.between(paused, min(resumed, on))
            used -= held
    return used


def level_on(case: Case, on: date) -> WarningLevel:
    """The warning level of a running clock on `on` (from the stored dates)."""
    if case.status not in RUNNING or case.promised_due is None:
        return WarningLevel.NONE
    if on > case.promised_due:
        return WarningLevel.RED
    if case.yellow_on is not None and on >= case.yellow_on:
        return WarningLevel.YELLOW
    return WarningLevel.NONE


def describe(case: Case) -> dict[str, object]:
    """The deadline as shown to residents and clerks."""
    return {
        "statutory_days": case.statutory_days,
        "promised_days": case.promised_days,
        "accepted_on": case.accepted_on.isoformat() if case.accepted_on else None,
        "promised_due": case.promised_due.isoformat() if case.promised_due else None,
        "statutory_due": case.statutory_due.isoformat() if case.statutory_due else None,
        "provisional": case.due_provisional,
        "paused": case.paused_since is not None,
        "running": case.status in RUNNING,
        "warning_level": case.warning_level.value,
    }
