"""Staff routes that set a hall up without touching the database: the hall itself (admins create halls), its
counters, weekly hours with their breaks, special hours for a date, the items it offers; and reading all of it
back for a console. Everything in a hall is for its hall admins (and admins); each change is audited."""

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
from backend.catalog import service as catalog
from backend.catalog.schemas import CounterChange, CounterIn, HallChange, HallIn, HallItemsIn, SpecialHoursIn, WeekIn
from backend.counter.auth import staff
from backend.errors import DomainError, FieldErrors
from backend.http import body, parse

bp = Blueprint("staff_halls")

MAX_RANGE_DAYS = 366


def _error() -> dict[str, Any]:
    return {"application/json": {"error": {"code": str, "message": str, "details": dict}}}


# ---- halls ------------------------------------------------------------------------------------


@bp.get("/halls")
@openapi.summary("The halls the caller works in (an admin: every hall), active or not")
@openapi.tag("counter")
@openapi.secured("staff")
async def list_halls(request: Request) -> HTTPResponse:
    me = staff(request)
    halls = await catalog.halls_for(hall_ids=None if me.is_admin else set(me.grants))
    return json({"halls": halls}, ensure_ascii=False)


@bp.post("/halls")
@openapi.summary("Create a hall (admins); then set its counters, hours, items and rules")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.response(201, {"application/json": {"id": int, "code": str, "name": str, "region_code": str}}, "the hall")
@openapi.response(403, _error(), "auth.forbidden: not an admin")
@openapi.response(409, _error(), "catalog.hall_exists")
@body(HallIn)
async def create_hall(request: Request, payload: HallIn) -> HTTPResponse:
    me = staff(request)
    if not me.is_admin:
        raise DomainError("auth.forbidden", details={"needs": ["admin"]})
    hall = await catalog.create_hall(code=payload.code, name=payload.name, region_code=payload.region_code,
                                     address=payload.address, actor_kind="staff", actor_id=me.id)
    return json(catalog.describe_hall(hall), status=201, ensure_ascii=False)


@bp.patch("/halls/<hall_id:int32>")
@openapi.summary("Change a hall's name or address (and, admins only, its region code); fields not given stay")
@openapi.tag("counter")
@openapi.secured("staff")
@body(HallChange)
async def edit_hall(request: Request, hall_id: int, payload: HallChange) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    if payload.region_code is not None and not me.is_admin:
        raise DomainError("auth.forbidden", message="只有系统管理员可以修改大厅的区划代码",
                          details={"needs": ["admin"]})
    hall = await catalog.update_hall(hall_id=hall_id, changes=payload.model_dump(exclude_unset=True),
                                     actor_kind="staff", actor_id=me.id)
    return json(hall, ensure_ascii=False)


@bp.get("/halls/<hall_id:int32>/setup")
@openapi.summary("A hall's whole set-up: counters, weekly hours, special hours, closures, items and booking rules")
@openapi.tag("counter")
@openapi.secured("staff")
async def setup(request: Request, hall_id: int) -> HTTPResponse:
    staff(request).require_manager(hall_id)
    return json(await hall_setup.setup(hall_id=hall_id), ensure_ascii=False)


# ---- counters ---------------------------------------------------------------------------------


@bp.post("/halls/<hall_id:int32>/counters")
@openapi.summary("Add a counter (窗口): its number, name, and the queue groups or items it serves")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.response(409, _error(), "catalog.counter_number_taken")
@body(CounterIn)
async def add_counter(request: Request, hall_id: int, payload: CounterIn) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    counter = await catalog.create_counter(hall_id=hall_id, number=payload.number, name=payload.name,
                                           groups=payload.groups, items=payload.items, actor_kind="staff",
                                           actor_id=me.id)
    return json(counter, status=201, ensure_ascii=False)


@bp.patch("/halls/<hall_id:int32>/counters/<counter_id:int32>")
@openapi.summary("Rename, renumber, change what a counter serves, close it (active=false) or reopen it")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.response(404, _error(), "catalog.counter_not_found: no such counter in this hall")
@body(CounterChange)
async def edit_counter(request: Request, hall_id: int, counter_id: int, payload: CounterChange) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    counter = await catalog.update_counter(hall_id=hall_id, counter_id=counter_id,
                                           **payload.model_dump(exclude_unset=True), actor_kind="staff",
                                           actor_id=me.id)
    return json(counter, ensure_ascii=False)


# ---- hours ------------------------------------------------------------------------------------


@bp.get("/halls/<hall_id:int32>/hours")
@openapi.summary("The hall's weekly hours: every weekday with its periods (none: closed)")
@openapi.tag("counter")
@openapi.secured("staff")
async def hours(request: Request, hall_id: int) -> HTTPResponse:
    staff(request).require_manager(hall_id)
    return json(await hall_setup.week(hall_id=hall_id), ensure_ascii=False)


@bp.put("/halls/<hall_id:int32>/hours")
@openapi.summary("Replace the hall's weekly hours (several periods a day, e.g. a lunch break between two)")
@openapi.description("Weekdays not listed are closed. Booked appointments from today on that the new hours leave "
                     "out are cancelled in the same transaction (seats freed, residents told).")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.response(422, _error(), "validation.failed: hours.format, hours.outside_day, hours.closes_before_opens, "
                                 "hours.overlap, hours.duplicate_weekday")
@body(WeekIn)
async def set_hours(request: Request, hall_id: int, payload: WeekIn) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    answer = await hall_setup.set_week(hall_id=hall_id, week=payload.week(), staff_id=me.id,
                                       redis=request.app.ctx.redis)
    return json(answer, ensure_ascii=False)


class DaysRange(Input):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    start: Day | None = Field(default=None, alias="from", description="起始日期 YYYY-MM-DD，缺省为今天")
    end: Day | None = Field(default=None, alias="to", description="结束日期 YYYY-MM-DD，缺省为起始日期后一年")


@bp.get("/halls/<hall_id:int32>/special-hours")
@openapi.summary("The hall's special hours in a date range (at most 366 days)")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("from", str, "query", description="起始日期 YYYY-MM-DD，缺省为今天")
@openapi.parameter("to", str, "query", description="结束日期 YYYY-MM-DD，缺省为起始日期后365天")
async def list_special_hours(request: Request, hall_id: int) -> HTTPResponse:
    staff(request).require_manager(hall_id)
    query = parse(DaysRange, {k: v[0] for k, v in request.args.items() if v})
    start = query.start or calendar.today()
    end = query.end or start + timedelta(days=MAX_RANGE_DAYS - 1)
    if end < start:
        raise FieldErrors([{"field": "to", "code": "range.reversed", "message": "结束日期不能早于起始日期"}])
    if (end - start).days >= MAX_RANGE_DAYS:
        raise FieldErrors([{"field": "to", "code": "range.too_long", "message": f"查询范围不能超过{MAX_RANGE_DAYS}天"}])
    rows = await calendar.list_special_hours(hall_id=hall_id, start=start, end=end)
    return json({"hall_id": hall_id, "from": start.isoformat(), "to": end.isoformat(),
                 "special_hours": [r.as_dict() for r in rows]}, ensure_ascii=False)


@bp.put("/halls/<hall_id:int32>/special-hours/<day:ymd>")
@openapi.summary("The hall's hours on one date in place of its weekly hours: shorter, or none (closed)")
@openapi.description("Booked appointments that day outside the new hours are cancelled in the same transaction.")
@openapi.tag("counter")
@openapi.secured("staff")
@body(SpecialHoursIn)
async def put_special_hours(request: Request, hall_id: int, day: date, payload: SpecialHoursIn) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    answer = await hall_setup.set_special_hours(hall_id=hall_id, day=day, periods=[p.span() for p in payload.periods],
                                                reason=payload.reason, staff_id=me.id, redis=request.app.ctx.redis)
    return json(answer, ensure_ascii=False)


@bp.delete("/halls/<hall_id:int32>/special-hours/<day:ymd>")
@openapi.summary("Back to the weekly hours on a date (cancelled appointments stay cancelled)")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.response(204, None, "removed")
@openapi.response(404, _error(), "calendar.special_hours_not_found")
async def delete_special_hours(request: Request, hall_id: int, day: date) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    await hall_setup.clear_special_hours(hall_id=hall_id, day=day, staff_id=me.id, redis=request.app.ctx.redis)
    return empty()


@bp.get("/halls/<hall_id:int32>/days/<day:ymd>")
@openapi.summary("One day of the hall: the hours that apply and why, and the appointments booked in it")
@openapi.tag("counter")
@openapi.secured("staff")
async def day(request: Request, hall_id: int, day: date) -> HTTPResponse:
    staff(request).require_manager(hall_id)
    return json(await hall_setup.day(hall_id=hall_id, day=day), ensure_ascii=False)


# ---- items ------------------------------------------------------------------------------------


@bp.get("/halls/<hall_id:int32>/items")
@openapi.summary("The items (事项) the hall offers")
@openapi.tag("counter")
@openapi.secured("staff")
async def items(request: Request, hall_id: int) -> HTTPResponse:
    staff(request).require_manager(hall_id)
    return json({"hall_id": hall_id, "items": await catalog.hall_items(hall_id=hall_id)}, ensure_ascii=False)


@bp.put("/halls/<hall_id:int32>/items")
@openapi.summary("Set the items the hall offers (the whole list); unknown and stopped items are refused")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.response(422, _error(), "validation.failed: catalog.unknown_item, catalog.item_inactive")
@body(HallItemsIn)
async def set_items(request: Request, hall_id: int, payload: HallItemsIn) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    answer = await catalog.set_hall_items(hall_id=hall_id, codes=payload.items, actor_kind="staff", actor_id=me.id)
    return json(answer, ensure_ascii=False)
