"""Kiosk routes for the queue: QR check-in gives a ticket, walk-ins take one."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend import qr
from backend.booking import queue
from backend.bounds import Input
from backend.http import body

bp = Blueprint("kiosk_booking")


class CheckIn(Input):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=10, max_length=500, description="the scanned QR: URL or token")


class WalkIn(Input):
    model_config = ConfigDict(extra="forbid")
    group: str = Field(pattern=r"^[A-Z]$", description="item group letter shown on the kiosk")


@bp.post("/check-in")
@openapi.summary("Scan an appointment QR on the day: checked in, ticket issued")
@openapi.tag("kiosk")
@body(CheckIn)
async def check_in(request: Request, payload: CheckIn) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    token = payload.code.strip().rstrip("/").rsplit("/", 1)[-1]
    _, appointment_id = qr.read_token(request.app.ctx.settings.secret_key, token, kind="appointment")
    answer = await queue.check_in(appointment_id=appointment_id, hall_id=kiosk.hall_id,
                                  actor=f"kiosk:{kiosk.device_id}", redis=request.app.ctx.redis)
    return json(answer, ensure_ascii=False)


@bp.post("/tickets")
@openapi.summary("A walk-in ticket for an item group, while the hall is open and within its daily quota")
@openapi.description("Refused outside opening hours with a stable code and a Chinese message saying when to come: "
                     "queue.hall_closed (a closed day), queue.before_hours, queue.break_time (lunch break or a "
                     "closed part of the day), queue.after_hours.")
@openapi.tag("kiosk")
@body(WalkIn)
async def walk_in(request: Request, payload: WalkIn) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    ticket = await queue.walk_in(hall_id=kiosk.hall_id, group=payload.group, actor=f"kiosk:{kiosk.device_id}",
                                 redis=request.app.ctx.redis)
    return json(ticket, status=201, ensure_ascii=False)
