"""Outbox topics the catalog package emits (the calendar names them where it emits them)."""

from __future__ import annotations

from backend.catalog.calendar import CLOSURE_REMOVED, CLOSURE_SET, YEAR_LOADED
from backend.jobs.topics import Topic

CATALOGUE = (
    Topic(CLOSURE_SET, ("hall_id", "day", "reason"),
          about="a hall closes for a day; the appointments it cancels are told by their own events"),
    Topic(CLOSURE_REMOVED, ("hall_id", "day", "reason"), about="a hall's closure of a day is lifted"),
    Topic(YEAR_LOADED, ("year",), ("cases",), about="a year's official calendar was loaded: due dates become final"),
)
