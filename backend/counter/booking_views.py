"""Counter routes for appointments and the queue: check a visitor in, call, recall, mark missed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.booking import queue
from backend.booking import service as booking
from backend.booking.models import Appointment
from backend.bounds import Input
from backend.counter.auth import staff
from backend.counter.scan import resolver
from backend.errors import DomainError
from backend.http import body
from backend.identity.models import StaffRole
from backend.identity.service import StaffPrincipal

bp = Blueprint("staff_booking")

DESK = (StaffRole.CLERK, StaffRole.HALL_ADMIN)


@resolver("appointment")
async def scanned_appointment(appointment_id: int, clerk: StaffPrincipal) -> dict[str, Any]:
    appointment = await Appointment.get_or_none(id=appointment_id)
    if appointment is None:
        raise DomainError("booking.not_found")
    clerk.require(appointment.hall_id, *DESK)  # type: ignore[attr-defined]
    card = await booking.describe(appointment)
    actions = ["check_in"] if appointment.status.value == "booked" else []
    return {"appointment": card, "actions": actions}


@bp.post("/appointments/<appointment_id:int>/check-in")
@openapi.summary("Check a visitor in (after a scan): they get a priority queue ticket")
@openapi.tag("counter")
@openapi.secured("staff")
async def check_in(request: Request, appointment_id: int) -> HTTPResponse:
    clerk = staff(request)
    appointment = await Appointment.get_or_none(id=appointment_id)
    if appointment is None:
        raise DomainError("booking.not_found")
    clerk.require(appointment.hall_id, *DESK)  # type: ignore[attr-defined]
    answer = await queue.check_in(appointment_id=appointment_id, hall_id=appointment.hall_id,  # type: ignore[attr-defined]
                                  actor=f"staff:{clerk.id}", redis=request.app.ctx.redis)
    return json(answer, ensure_ascii=False)


async def _counter_for(request: Request, counter_id: int) -> int:
    counter = await queue.counter_of(counter_id=counter_id)
    staff(request).require(counter.hall_id, *DESK)  # type: ignore[attr-defined]
    return counter.id


QueueAction = Callable[..., Awaitable[dict[str, Any]]]


async def _at_counter(request: Request, counter_id: int, action: QueueAction) -> HTTPResponse:
    """The queue actions share their checks: the counter exists and is in one of the clerk's halls."""
    cid = await _counter_for(request, counter_id)
    return json(await action(counter_id=cid, staff_id=staff(request).id, redis=request.app.ctx.redis),
                ensure_ascii=False)


@bp.post("/counters/<counter_id:int32>/call-next")
@openapi.summary("Finish the current ticket and call the next one for this counter")
@openapi.tag("counter")
@openapi.secured("staff")
async def call_next(request: Request, counter_id: int) -> HTTPResponse:
    return await _at_counter(request, counter_id, queue.call_next)


@bp.post("/counters/<counter_id:int32>/recall")
@openapi.summary("Call the current ticket again (the third call without showing makes it missed)")
@openapi.tag("counter")
@openapi.secured("staff")
async def recall(request: Request, counter_id: int) -> HTTPResponse:
    return await _at_counter(request, counter_id, queue.recall)


@bp.post("/counters/<counter_id:int32>/missed")
@openapi.summary("Mark the current ticket missed")
@openapi.tag("counter")
@openapi.secured("staff")
async def missed(request: Request, counter_id: int) -> HTTPResponse:
    return await _at_counter(request, counter_id, queue.mark_missed)


class Rule(Input):
    model_config = ConfigDict(extra="forbid")
    item: str | None = Field(None, max_length=40, description="item code; omit for the hall's default rule")
    slot_minutes: int = Field(30, ge=5, le=240)
    seats_per_slot: int = Field(4, ge=1, le=500)
    horizon_days: int = Field(14, ge=1, le=90)
    min_notice_minutes: int = Field(60, ge=0, le=7 * 24 * 60)
    cancel_cutoff_minutes: int = Field(120, ge=0, le=7 * 24 * 60)
    max_active_per_person: int = Field(3, ge=1, le=20)
    release_cooldown_minutes: int = Field(30, ge=0, le=24 * 60)
    checkin_early_minutes: int = Field(30, ge=0, le=240)
    checkin_late_minutes: int = Field(15, ge=0, le=240)
    walkin_daily_quota: int = Field(100, ge=0, le=10_000)


@bp.put("/halls/<hall_id:int32>/booking-rule")
@openapi.summary("Set the hall's booking rule (or one item's): slots, seats, horizon, notice, limits")
@openapi.tag("counter")
@openapi.secured("staff")
@body(Rule)
async def set_rule(request: Request, hall_id: int, payload: Rule) -> HTTPResponse:
    admin = staff(request)
    admin.require(hall_id, StaffRole.HALL_ADMIN, StaffRole.ADMIN)
    values = payload.model_dump(exclude={"item"})
    return json(await booking.set_rule(hall_id=hall_id, item_code=payload.item, values=values, staff_id=admin.id),
                ensure_ascii=False)
