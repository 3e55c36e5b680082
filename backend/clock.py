"""The one source of "now", so tests inject time instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def now_ms(self) -> int:
        return int(self.now().timestamp() * 1000)


class SystemClock(Clock):
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FrozenClock(Clock):
    """A clock tests move by hand."""

    def __init__(self, at: datetime) -> None:
        self.set(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        # Always UTC, like the system clock: tortoise compares datetime parameters with stored
        # UTC values as text on SQLite, so a +08:00 parameter would compare wrongly.
        self._at = at.astimezone(UTC)

    def advance(self, seconds: float) -> None:
        from datetime import timedelta

        self._at += timedelta(seconds=seconds)


clock: Clock = SystemClock()


def now() -> datetime:
    return clock.now()


def now_ms() -> int:
    return clock.now_ms()


def use(c: Clock) -> Clock:
    """Swap the process clock (tests); returns the previous one."""
    global clock
    previous, clock = clock, c
    return previous
