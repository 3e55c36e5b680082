"""Main hall sync's background work: push cases and appointments as their events come, reconcile on a schedule."""

from __future__ import annotations

import logging
from datetime import datetime

from backend.hall_sync import service
from backend.jobs.outbox import Event, registry
from backend.jobs.periodic import schedule

log = logging.getLogger("palmhall.hall_sync")


async def push_to_hall(event: Event) -> None:
    """Raises when the hall did not acknowledge: the worker retries with backoff and the case's later
    steps wait behind this one (same ordering key)."""
    await service.push_event(event)


for _topic in service.ALL_TOPICS:
    registry.on(_topic)(push_to_hall)


@schedule.every("hall_sync.reconcile", "*/5 * * * *", timeout_seconds=240)
async def reconcile(tick: datetime) -> None:
    counts = await service.reconcile()
    if any(counts.values()):
        log.info("hall reconciliation", extra=counts)
