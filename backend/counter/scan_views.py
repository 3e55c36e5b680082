"""POST /api/v1/staff/scan: one scan field for every QR code a citizen shows at the counter."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend import qr
from backend.bounds import Input
from backend.counter.auth import staff
from backend.counter.scan import RESOLVERS
from backend.errors import DomainError
from backend.http import body

bp = Blueprint("staff_scan")


class Scan(Input):
    model_config = ConfigDict(extra="forbid")
    # What the scanner typed: the whole QR URL or just its token.
    code: str = Field(min_length=10, max_length=500)


@bp.post("/scan")
@openapi.summary("Resolve a scanned QR code to what it is and what this clerk may do")
@openapi.tag("counter")
@openapi.secured("staff")
@body(Scan)
async def scan(request: Request, payload: Scan) -> HTTPResponse:
    token = payload.code.strip().rstrip("/").rsplit("/", 1)[-1]
    kind, object_id = qr.read_token(request.app.ctx.settings.secret_key, token)
    resolve = RESOLVERS.get(kind)
    if resolve is None:
        raise DomainError("qr.invalid")
    card = await resolve(object_id, staff(request))
    return json({"kind": kind, **card}, ensure_ascii=False)
