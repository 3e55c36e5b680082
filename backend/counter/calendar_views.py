"""Staff routes for a hall's own closed days (闭厅), whole or in part: set, remove and list them; hall admins
(and admins) only. Closing cancels the appointments it leaves out (backend.booking.hall_setup)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from backend.booking import hall_setup
from backend.bounds import Day, Input
from backend.catalog import calendar
from backend.catalog.schemas import ClosureIn
from backend.counter.auth import staff
from backend.errors import FieldErrors
from backend.http import body, parse

bp = Blueprint("counter_calendar")

MAX_RANGE_DAYS = 366


class ClosureRange(Input):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    start: Day | None = Field(default=None, alias="from", description="起始日期 YYYY-MM-DD，缺省为今天")
    end: Day | None = Field(default=None, alias="to", description="结束日期 YYYY-MM-DD，缺省为起始日期后一年")


def _error() -> dict[str, Any]:
    return {"application/json": {"error": {"code": str, "message": str, "details": dict}}}


@bp.put("/halls/<hall_id:int32>/closures/<day:ymd>")
@openapi.summary("Close the hall on a day, or parts of it (or change the reason or the parts); hall admins")
@openapi.description("The hall takes no bookings and issues no tickets in the closed times. Booked appointments "
                     "there are cancelled at once, in the same transaction: seats freed, each resident told with the "
                     "reason, never a no-show; closing again cancels nothing more. Statutory time limits keep "
                     "running: only official holidays stop them. Days already past cannot be changed.")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.response(200, {"application/json": {"hall_id": int, "day": str, "reason": str, "created_by": int,
                                             "whole_day": bool, "periods": list, "cancelled_appointments": list}},
                  "the closure as stored, and the appointments it cancelled")
@openapi.response(403, _error(), "auth.forbidden: not a hall admin of this hall")
@openapi.response(422, _error(), "validation.failed or calendar.closure_in_past")
@body(ClosureIn)
async def put_closure(request: Request, hall_id: int, day: date, payload: ClosureIn) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    closure = await hall_setup.close(hall_id=hall_id, day=day, reason=payload.reason, periods=payload.spans(),
                                     staff_id=me.id, redis=request.app.ctx.redis)
    return json(closure, ensure_ascii=False)


@bp.delete("/halls/<hall_id:int32>/closures/<day:ymd>")
@openapi.summary("Open the hall again on a day it was closed; hall admins of that hall")
@openapi.description("Appointments the closure cancelled stay cancelled; their seats are free to book.")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.response(204, None, "removed")
@openapi.response(403, _error(), "auth.forbidden: not a hall admin of this hall")
@openapi.response(404, _error(), "calendar.closure_not_found")
async def delete_closure(request: Request, hall_id: int, day: date) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    await hall_setup.reopen(hall_id=hall_id, day=day, staff_id=me.id, redis=request.app.ctx.redis)
    return empty()


@bp.get("/halls/<hall_id:int32>/closures")
@openapi.summary("The hall's closed days in a date range (at most 366 days); hall admins of that hall")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("from", str, "query", description="起始日期 YYYY-MM-DD，缺省为今天")
@openapi.parameter("to", str, "query", description="结束日期 YYYY-MM-DD，缺省为起始日期后365天")
@openapi.response(200, {"application/json": {"hall_id": int, "from": str, "to": str, "closures": list}},
                  "closures, earliest first")
@openapi.response(403, _error(), "auth.forbidden: not a hall admin of this hall")
@openapi.response(422, _error(), "validation.failed: a date is malformed or the range is wrong")
async def list_closures(request: Request, hall_id: int) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    query = parse(ClosureRange, {k: v[0] for k, v in request.args.items() if v})
    start = query.start or calendar.today()
    end = query.end or start + timedelta(days=MAX_RANGE_DAYS - 1)
    if end < start:
        raise FieldErrors([{"field": "to", "code": "range.reversed", "message": "结束日期不能早于起始日期"}])
    if (end - start).days >= MAX_RANGE_DAYS:
        raise FieldErrors([{"field": "to", "code": "range.too_long", "message": f"查询范围不能超过{MAX_RANGE_DAYS}天"}])
    closures = await calendar.list_closures(hall_id=hall_id, start=start, end=end)
    return json({"hall_id": hall_id, "from": start.isoformat(), "to": end.isoformat(),
                 "closures": [c.as_dict() for c in closures]}, ensure_ascii=False)
