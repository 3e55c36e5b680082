"""Counter routes for the main hall sync: conflicts the state machine would not settle, for staff to resolve."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.bounds import Id32, Input
from backend.counter.auth import staff
from backend.hall_sync import service as hall_sync
from backend.http import parse

bp = Blueprint("staff_sync")


class ConflictQuery(Input):
    model_config = ConfigDict(extra="ignore")
    hall_id: Id32 | None = None
    include_resolved: bool = False
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)


@bp.get("/sync/conflicts")
@openapi.summary("Main hall changes refused by the case state machine, and state differences found by reconciliation")
@openapi.tag("staff")
async def conflicts(request: Request) -> HTTPResponse:
    q = parse(ConflictQuery, {k: request.args.get(k) for k in request.args})
    return json(await hall_sync.list_conflicts(staff=staff(request), hall_id=q.hall_id,
                                               include_resolved=q.include_resolved, limit=q.limit, offset=q.offset),
                ensure_ascii=False)
