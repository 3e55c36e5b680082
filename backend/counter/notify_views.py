"""Staff inbox: deadline warnings and complaint alerts of the halls the caller works in."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.bounds import Id32, Input
from backend.counter.auth import staff
from backend.errors import DomainError
from backend.http import parse
from backend.identity.models import StaffRole
from notifications import service

bp = Blueprint("staff_notify")

_ROLES = (StaffRole.CLERK, StaffRole.HALL_ADMIN, StaffRole.ADMIN)


class StaffInboxQuery(Input):
    model_config = ConfigDict(extra="forbid")
    hall_id: Id32 | None = None
    unread: bool = False
    limit: int = Field(50, ge=1, le=100)


def _halls(request: Request, hall_id: int | None) -> set[int]:
    mine = staff(request).halls_with(*_ROLES)
    if hall_id is not None:
        staff(request).require(hall_id, *_ROLES)
        return {hall_id}
    if not mine:
        raise DomainError("auth.forbidden", details={"needs": [r.value for r in _ROLES]})
    return mine


@bp.get("/inbox")
@openapi.summary("The staff inbox of the caller's halls (or one of them), newest first")
@openapi.tag("staff")
@openapi.secured("staff")
async def inbox(request: Request) -> HTTPResponse:
    q = parse(StaffInboxQuery, {k: request.args.get(k) for k in request.args})
    return json(await service.staff_inbox(hall_ids=_halls(request, q.hall_id), unread_only=q.unread,
                                          limit=q.limit), ensure_ascii=False)


@bp.post("/inbox/<notification_id:int>/read")
@openapi.summary("Mark a staff message read")
@openapi.tag("staff")
@openapi.secured("staff")
async def read(request: Request, notification_id: int) -> HTTPResponse:
    await service.staff_mark_read(hall_ids=_halls(request, None), notification_id=notification_id)
    return json({"read": True})
