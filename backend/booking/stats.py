"""Booking figures of a hall over Asia/Shanghai days: appointments, check-ins, no-shows, waits to be called.

Read-only queries for the hall dashboard; callers check who may see them.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date
from typing import Any

from backend.booking.models import Appointment, AppointmentStatus, QueueTicket

ATTENDED = (AppointmentStatus.CHECKED_IN, AppointmentStatus.COMPLETED)


def p90(values: list[float]) -> float | None:
    """The 90th percentile by nearest rank: the smallest value at least 90% of the values do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


async def appointment_figures(*, hall_id: int, start: date, end: date) -> dict[str, Any]:
    """Appointments for days in [start, end] (their slot's day), and what became of them."""
    rows = await Appointment.filter(hall_id=hall_id, day__gte=start, day__lte=end).values_list("day", "status")
    per_day: dict[date, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for day, status in rows:
        status = AppointmentStatus(status)
        kind = ("cancelled" if status == AppointmentStatus.CANCELLED else
                "checked_in" if status in ATTENDED else
                "no_show" if status == AppointmentStatus.NO_SHOW else "booked")
        totals[kind] += 1
        per_day.setdefault(day, Counter())[kind] += 1
    appointments = len(rows) - totals["cancelled"]
    return {
        "appointments": appointments,
        "checked_in": totals["checked_in"],
        "no_shows": totals["no_show"],
        "cancelled": totals["cancelled"],
        "checkin_rate": round(totals["checked_in"] / appointments, 4) if appointments else None,
        "daily": [{"day": d.isoformat(), "appointments": sum(c.values()) - c["cancelled"],
                   "checked_in": c["checked_in"], "no_shows": c["no_show"]} for d, c in sorted(per_day.items())],
    }


async def wait_figures(*, hall_id: int, start: date, end: date) -> dict[str, Any]:
    """Tickets of days in [start, end], and the wait from taking a ticket to its first call."""
    rows = await QueueTicket.filter(hall_id=hall_id, day__gte=start, day__lte=end).values_list(
        "created_at", "called_at", "appointment_id")
    waits = [(called - issued).total_seconds() for issued, called, _ in rows if called is not None]
    return {
        "tickets": len(rows),
        "walk_ins": sum(1 for *_, appointment in rows if appointment is None),
        "called": len(waits),
        "wait_average_seconds": round(sum(waits) / len(waits), 1) if waits else None,
        "wait_p90_seconds": round(p90(waits), 1) if waits else None,  # type: ignore[arg-type]
    }


async def hall_figures(*, hall_id: int, start: date, end: date) -> dict[str, Any]:
    return {**await appointment_figures(hall_id=hall_id, start=start, end=end),
            **await wait_figures(hall_id=hall_id, start=start, end=end)}
