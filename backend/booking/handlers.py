"""Booking's periodic tasks: seats back after cool-down, no-shows and bars, day-before reminders."""

from __future__ import annotations

from datetime import datetime

from backend import runtime
from backend.booking import service
from backend.jobs.periodic import schedule


def policy() -> service.Policy:
    s = runtime.current().settings
    return service.Policy(no_show_grace_minutes=s.no_show_grace_minutes, no_show_limit=s.no_show_limit,
                          no_show_window_days=90, no_show_bar_days=s.no_show_bar_days)


@schedule.every("booking.release_seats", "* * * * *")
async def release_seats(tick: datetime) -> None:
    await service.release_cooled_down_seats(redis=runtime.current().redis)


@schedule.every("booking.no_shows", "*/5 * * * *")
async def no_shows(tick: datetime) -> None:
    await service.mark_no_shows(policy=policy())


@schedule.every("booking.reminders", "0 * * * *")
async def reminders(tick: datetime) -> None:
    await service.emit_reminders()
