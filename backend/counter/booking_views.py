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
    """A change to a booking rule: only the fields given change (PATCH semantics), the others keep the rule's
    values; an item's own rule starts from the hall's default."""

    model_config = ConfigDict(extra="forbid")
    item: str | None = Field(None, max_length=40, description="item code; omit for the hall's default rule")
    slot_minutes: int | None = Field(None, ge=5, le=240, description="时段长度（分钟）")
    seats_per_slot: int | None = Field(None, ge=1, le=500, description="每个时段的名额")
    horizon_days: int | None = Field(None, ge=1, le=90, description="可提前预约的天数")
    min_notice_minutes: int | None = Field(None, ge=0, le=7 * 24 * 60, description="最晚提前多少分钟预约")
    cancel_cutoff_minutes: int | None = Field(None, ge=0, le=7 * 24 * 60, description="最晚提前多少分钟取消")
    max_active_per_person: int | None = Field(None, ge=1, le=20, description="每人同时有效的预约数")
    release_cooldown_minutes: int | None = Field(None, ge=0, le=24 * 60, description="取消后名额冷却时间（分钟）")
    checkin_early_minutes: int | None = Field(None, ge=0, le=240, description="可提前签到（分钟）")
    checkin_late_minutes: int | None = Field(None, ge=0, le=240, description="可迟到签到（分钟）")
    walkin_daily_quota: int | None = Field(None, ge=0, le=10_000, description="每日现场取号上限（大厅默认规则）")

    def values(self) -> dict[str, int]:
        """The fields given, without nulls (a null is "not given", never "back to the default")."""
        return {k: v for k, v in self.model_dump(exclude={"item"}, exclude_unset=True).items() if v is not None}


@bp.route("/halls/<hall_id:int32>/booking-rule", methods=["PATCH", "PUT"])
@openapi.summary("Change the hall's booking rule (or one item's), field by field: fields not given keep their values")
@openapi.description("A partial update under PATCH and PUT alike: an item's own rule is made from the hall's "
                     "default plus the fields given. Slots already made keep their seats.")
@openapi.tag("counter")
@openapi.secured("staff")
@body(Rule)
async def set_rule(request: Request, hall_id: int, payload: Rule) -> HTTPResponse:
    admin = staff(request)
    admin.require_manager(hall_id)
    return json(await booking.set_rule(hall_id=hall_id, item_code=payload.item, values=payload.values(),
                                       staff_id=admin.id), ensure_ascii=False)


@bp.get("/halls/<hall_id:int32>/booking-rules")
@openapi.summary("The hall's booking rules as they apply: its default, and the rule each item it offers books by")
@openapi.tag("counter")
@openapi.secured("staff")
async def rules(request: Request, hall_id: int) -> HTTPResponse:
    staff(request).require_manager(hall_id)
    return json(await booking.rules(hall_id=hall_id), ensure_ascii=False)


@bp.delete("/halls/<hall_id:int32>/items/<code:item_code>/booking-rule")
@openapi.summary("Drop an item's own booking rule: it books by the hall's default again")
@openapi.tag("counter")
@openapi.secured("staff")
async def reset_rule(request: Request, hall_id: int, code: str) -> HTTPResponse:
    admin = staff(request)
    admin.require_manager(hall_id)
    return json(await booking.reset_rule(hall_id=hall_id, item_code=code, staff_id=admin.id), ensure_ascii=False)


class Ticket(Input):
    model_config = ConfigDict(extra="forbid")
    group: str = Field(pattern=r"^[A-Z]$", description="业务类别（取号字母）")


@bp.post("/halls/<hall_id:int32>/tickets")
@openapi.summary("A walk-in ticket issued at the counter or the reception desk, while the hall is open")
@openapi.description("Refused outside opening hours with a stable code: queue.hall_closed (a closed day), "
                     "queue.before_hours, queue.break_time (lunch break or a closed part of the day), "
                     "queue.after_hours; and queue.quota_reached past the day's quota.")
@openapi.tag("counter")
@openapi.secured("staff")
@body(Ticket)
async def walk_in_ticket(request: Request, hall_id: int, payload: Ticket) -> HTTPResponse:
    clerk = staff(request)
    clerk.require(hall_id, *DESK)
    ticket = await queue.walk_in(hall_id=hall_id, group=payload.group, actor=f"staff:{clerk.id}",
                                 redis=request.app.ctx.redis)
    return json(ticket, status=201, ensure_ascii=False)
