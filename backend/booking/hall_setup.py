"""A hall's hours, special days and closures, and what a change to them does to the appointments booked.

Every change to when a hall is open goes through here, so none can leave an appointment at a time the hall is
closed: in the change's own transaction, each booked appointment whose slot the new hours no longer hold is
cancelled by the hall, with the reason (its seat freed at once, the resident told through `appointment.cancelled`
with "by": "hall", and never a no-show). The change takes the hall's days lock exclusively, so bookings in flight
commit first and are cancelled too, and later ones see the new hours (`booking.service.lock_hall_days`). Doing it
twice cancels nothing more; opening a day again revives nothing. Then the Redis gates of the day's slots are
dropped, so the next booking counts the freed seats from the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from redis.asyncio import Redis
from tortoise.backends.base.client import BaseDBAsyncClient

from backend import db
from backend.booking import service as booking
from backend.booking.models import Appointment, AppointmentStatus, Slot
from backend.catalog import calendar
from backend.catalog import service as catalog
from backend.catalog.hours import Span, hhmm
from backend.catalog.schemas import WEEKDAY_LABELS

HOURS_CHANGED = "服务大厅调整了办公时间"


def _actor(staff_id: int | None, operator: str) -> tuple[str, str | int]:
    """A staff member through the API, else the operator (`cli`, `demo`)."""
    return ("staff", staff_id) if staff_id is not None else ("operator", operator)


async def _cancel_left_out(tx: BaseDBAsyncClient, *, hall_id: int, days: Sequence[date] | None, reason: str,
                           staff_id: int | None, operator: str) -> tuple[list[int], list[int]]:
    """Cancel the hall's booked appointments (on `days`, or on any day from today) that the hall's hours, as this
    transaction now has them, leave out. Returns (appointment ids cancelled, slot ids of the days looked at)."""
    query = Appointment.filter(hall_id=hall_id, status=AppointmentStatus.BOOKED).using_db(tx)
    query = query.filter(day__in=list(days)) if days is not None else query.filter(day__gte=calendar.today())
    booked = await query.order_by("day", "id")
    looked_at = set(days or [])
    looked_at.update(a.day for a in booked)
    slots = {s.id: s for s in await Slot.filter(hall_id=hall_id, day__in=sorted(looked_at)).using_db(tx)}
    schedules: dict[date, calendar.DaySchedule] = {}
    actor_kind, actor_id = _actor(staff_id, operator)
    cancelled = []
    for appointment in booked:
        if appointment.day not in schedules:
            schedules[appointment.day] = await calendar.day_schedule(hall_id=hall_id, day=appointment.day,
                                                                     using_db=tx)
        schedule = schedules[appointment.day]
        slot = slots[appointment.slot_id]  # type: ignore[attr-defined]
        if booking.within(slot, [(p.start, p.end) for p in schedule.periods]):
            continue
        if await booking.cancel_by_hall(tx, appointment=appointment, slot=slot, reason=reason,
                                        actor_kind=actor_kind, actor_id=actor_id):
            cancelled.append(appointment.id)
    return cancelled, sorted(slots)


async def _change(hall_id: int, redis: Redis | None, days: Sequence[date] | None, reason: str,
                  staff_id: int | None, operator: str, write: Any) -> tuple[Any, list[int]]:
    """Run `write(tx)` and the cancellations it calls for in one transaction, under the hall's days lock."""
    async with db.transaction() as tx:
        await booking.lock_hall_days(tx, hall_id, shared=False)
        result = await write(tx)
        cancelled, slot_ids = await _cancel_left_out(tx, hall_id=hall_id, days=days, reason=reason,
                                                     staff_id=staff_id, operator=operator)
    if redis is not None:
        await booking.forget_gates(redis, slot_ids)
    return result, cancelled


# ---- closures -------------------------------------------------------------------------------


async def close(*, hall_id: int, day: date, reason: str, periods: Sequence[Span] | None, staff_id: int | None,
                redis: Redis | None, operator: str = "cli") -> dict[str, Any]:
    """Close the hall on `day`, or the given parts of it, and cancel the appointments that falls on."""
    async def write(tx: BaseDBAsyncClient) -> calendar.Closure:
        return await calendar.set_closure(hall_id=hall_id, day=day, reason=reason, periods=periods,
                                          actor_staff_id=staff_id, using_db=tx, operator=operator)

    closure, cancelled = await _change(hall_id, redis, [day], " ".join(reason.split()), staff_id, operator, write)
    return {**closure.as_dict(), "cancelled_appointments": cancelled}


async def reopen(*, hall_id: int, day: date, staff_id: int | None, redis: Redis | None,
                 operator: str = "cli") -> None:
    """Open the hall again on `day`. Appointments the closure cancelled stay cancelled (their residents were told
    and may have booked elsewhere); their seats are free for anyone to book."""
    async def write(tx: BaseDBAsyncClient) -> calendar.Closure:
        return await calendar.remove_closure(hall_id=hall_id, day=day, actor_staff_id=staff_id, using_db=tx,
                                             operator=operator)

    await _change(hall_id, redis, [day], HOURS_CHANGED, staff_id, operator, write)


# ---- special hours for one date --------------------------------------------------------------


async def set_special_hours(*, hall_id: int, day: date, periods: Sequence[Span], reason: str,
                            staff_id: int | None, redis: Redis | None, operator: str = "cli") -> dict[str, Any]:
    """The hall's hours on `day` only (none: closed that day); appointments outside them are cancelled."""
    async def write(tx: BaseDBAsyncClient) -> calendar.SpecialHours:
        return await calendar.set_special_hours(hall_id=hall_id, day=day, periods=periods, reason=reason,
                                                actor_staff_id=staff_id, using_db=tx, operator=operator)

    special, cancelled = await _change(hall_id, redis, [day], " ".join(reason.split()), staff_id, operator, write)
    return {**special.as_dict(), "cancelled_appointments": cancelled}


async def clear_special_hours(*, hall_id: int, day: date, staff_id: int | None, redis: Redis | None,
                              operator: str = "cli") -> None:
    """Back to the weekly hours on `day` (a holiday stays closed; a closure stays)."""
    async def write(tx: BaseDBAsyncClient) -> calendar.SpecialHours:
        return await calendar.remove_special_hours(hall_id=hall_id, day=day, actor_staff_id=staff_id, using_db=tx,
                                                   operator=operator)

    await _change(hall_id, redis, [day], HOURS_CHANGED, staff_id, operator, write)


# ---- weekly hours ---------------------------------------------------------------------------


def week_out(week: Mapping[int, Sequence[Span]]) -> list[dict[str, Any]]:
    """Every weekday, Monday first, with its periods (none: closed)."""
    return [{"weekday": d, "weekday_label": WEEKDAY_LABELS[d],
             "periods": [{"opens": hhmm(s.start), "closes": hhmm(s.end)} for s in week.get(d, [])]}
            for d in range(7)]


async def set_week(*, hall_id: int, week: Mapping[int, Sequence[Span]], staff_id: int | None,
                   redis: Redis | None, operator: str = "cli") -> dict[str, Any]:
    """Replace the hall's weekly hours (weekdays not given are closed); booked appointments from today on that the
    new hours leave out are cancelled."""
    async def write(tx: BaseDBAsyncClient) -> dict[int, list[Span]]:
        return await calendar.set_weekly_hours(hall_id=hall_id, week=week, actor_staff_id=staff_id, using_db=tx,
                                               operator=operator)

    saved, cancelled = await _change(hall_id, redis, None, HOURS_CHANGED, staff_id, operator, write)
    return {"hall_id": hall_id, "hours": week_out(saved), "cancelled_appointments": cancelled}


async def week(*, hall_id: int) -> dict[str, Any]:
    await catalog.get_hall(hall_id=hall_id)
    return {"hall_id": hall_id, "hours": week_out(await calendar.weekly_hours(hall_id=hall_id))}


async def day(*, hall_id: int, day: date) -> dict[str, Any]:
    """One day of the hall as it stands: the hours that apply and why, and how many appointments are booked in
    it (what a closure would cancel)."""
    schedule = await calendar.day_schedule(hall_id=hall_id, day=day)
    booked = await Appointment.filter(hall_id=hall_id, day=day, status=AppointmentStatus.BOOKED).count()
    return {**schedule.as_dict(), "booked_appointments": booked}


# ---- the whole set-up, read back --------------------------------------------------------------


async def setup(*, hall_id: int) -> dict[str, Any]:
    """Everything a console shows of a hall's set-up: the hall, its counters (closed ones too), its weekly hours,
    special hours and closures from today on, the items it offers and the booking rules they book by."""
    hall = await catalog.get_hall(hall_id=hall_id)
    today = calendar.today()
    far = date(today.year + 2, 12, 31)
    rules = await booking.rules(hall_id=hall_id)
    return {
        "hall": catalog.describe_hall(hall),
        "counters": await catalog.list_counters(hall_id=hall_id),
        "hours": week_out(await calendar.weekly_hours(hall_id=hall_id)),
        "special_hours": [s.as_dict() for s in await calendar.list_special_hours(hall_id=hall_id, start=today,
                                                                                  end=far)],
        "closures": [c.as_dict() for c in await calendar.list_closures(hall_id=hall_id, start=today, end=far)],
        "items": await catalog.hall_items(hall_id=hall_id),
        "booking_rule": rules["default"],
        "item_rules": rules["items"],
    }
