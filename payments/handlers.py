"""Payments' background work: the case moves on after a payment, refunds are submitted, open orders and
refunds without notification are queried, unpaid orders closed, and each day is reconciled."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from backend import db, runtime
from backend.cases import service as cases
from backend.errors import DomainError
from backend.jobs.outbox import Event, registry
from backend.jobs.periodic import schedule
from payments import events, reconcile, service

log = logging.getLogger("palmhall.payments")


@registry.on(events.PAYMENT_SUCCEEDED)
async def case_paid(event: Event) -> None:
    """Review goes on and the case's paused clock resumes (mark_paid is safe to repeat)."""
    async with db.transaction() as tx:
        try:
            await cases.mark_paid(case_no=event.payload["case_no"], actor=f"order:{event.payload['out_trade_no']}",
                                  using_db=tx)
        except DomainError as exc:
            if exc.code != "case.illegal_transition":
                raise
            # The case left awaiting_payment some other way (closed, withdrawn): staff decide on a refund.
            log.warning("paid case no longer awaits payment", extra={"case_no": event.payload["case_no"]})


@registry.on(events.PAYMENT_REFUND_REQUESTED)
async def refund_requested(event: Event) -> None:
    await service.submit_refund(refund_id=int(event.payload["refund_id"]), settings=runtime.current().settings)


@schedule.every("payments.sync_open", "* * * * *", timeout_seconds=120)
async def sync_open(tick: datetime) -> None:
    """Orders and refunds no notification settled: ask the platform; close what expired unpaid."""
    counts = await service.sync_open(settings=runtime.current().settings)
    if counts:
        log.info("payments synced", extra={"counts": counts})


@schedule.every("payments.reconcile_daily", "30 10 * * *", timeout_seconds=600)
async def reconcile_daily(tick: datetime) -> None:
    """Bills of the day before are ready by 10:00 Beijing on both platforms."""
    day = (tick - timedelta(days=1)).date()
    report = await reconcile.run(day=day, settings=runtime.current().settings)
    if not report["ok"]:
        log.error("reconciliation found differences", extra={"date": report["date"],
                                                             "differences": len(report["differences"])})
