"""Cases' background work: deadline warnings on a schedule, due dates made final when a calendar year loads, and
walk-in cases linked to the resident who binds their ID number."""

from __future__ import annotations

import logging
from datetime import datetime

from backend.cases import deadlines, evaluation, events, service
from backend.jobs.outbox import Event, registry
from backend.jobs.periodic import schedule

log = logging.getLogger("palmhall.cases")


@schedule.every("cases.deadline_warnings", "*/15 * * * *")
async def deadline_warnings(tick: datetime) -> None:
    """Yellow at 80% of the promised limit, red once past it: each once per case (and per reply owed)."""
    on = deadlines.local_day(tick)
    sent = await service.warn_deadlines(on=on)
    replies = await evaluation.warn_replies(on=on)
    if sent or any(replies.values()):
        log.info("deadline warnings", extra={"cases": len(sent), "complaints": len(replies["complaints"]),
                                             "rectifications": len(replies["rectifications"])})


@registry.on(events.CALENDAR_YEAR_LOADED)
async def year_loaded(event: Event) -> None:
    """Due dates that reached into that year were provisional: work them out again (idempotent)."""
    cases = await service.recompute_provisional()
    replies = await evaluation.recompute_provisional()
    log.info("provisional due dates recomputed", extra={"year": event.payload.get("year"), "cases": cases,
                                                        "replies": replies})


@registry.on(events.RESIDENT_REAL_NAME_BOUND)
async def real_name_bound(event: Event) -> None:
    """Cases opened at a counter for this person before they had a verified account become theirs (idempotent)."""
    linked = await service.link_to_resident(resident_id=int(event.payload["resident_id"]))
    if linked:
        log.info("walk-in cases linked to their resident", extra={"cases": len(linked)})
