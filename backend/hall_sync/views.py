"""The main hall's callbacks (signed, verified before anything is read) and the signed material links it follows."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from backend import clock
from backend.bounds import Input
from backend.errors import DomainError
from backend.hall_sync import service
from backend.hall_sync.client import H_APP, H_NONCE, H_TS, verify_signature
from backend.http import json_body, parse
from backend.signatures import timestamp_of

bp = Blueprint("hall_callbacks", url_prefix="/api/v1/hall")

NONCE_PREFIX = "palmhall:hall:nonce:"


class CorrectionItemIn(Input):
    model_config = ConfigDict(extra="ignore")
    code: str = Field(min_length=1, max_length=32)
    reason: str = Field(default="", max_length=200)


class HallCallbackIn(Input):
    model_config = ConfigDict(extra="ignore")
    event_id: str = Field(min_length=1, max_length=64, description="the hall's event id (idempotency)")
    case_no: str = Field(min_length=1, max_length=32)
    hall_case_id: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=24,
                        description="accepted, needs_correction, approved, rejected, certificate_issued, delivered")
    items: list[CorrectionItemIn] = Field(default_factory=list, max_length=100)
    reason: str = Field(default="", max_length=500)


async def verify(request: Request) -> None:
    """App id, a timestamp within the allowed skew, the HMAC signature, then a nonce never seen before."""
    settings = request.app.ctx.settings
    skew = settings.hall_callback_skew_seconds
    if request.headers.get(H_APP) != settings.hall_app_id:
        raise DomainError("hall.signature_invalid")
    ts = timestamp_of(request.headers.get(H_TS))
    if ts is None:
        raise DomainError("hall.signature_invalid")
    if not verify_signature(secret=settings.hall_app_secret, method=request.method, path=request.path,
                            headers=request.headers, body=request.body or b""):
        raise DomainError("hall.signature_invalid")
    if abs(clock.now().timestamp() - ts) > skew:
        raise DomainError("hall.timestamp_stale")
    nonce = request.headers.get(H_NONCE, "")
    if not 8 <= len(nonce) <= 128:
        raise DomainError("hall.signature_invalid")
    if not await request.app.ctx.redis.set(NONCE_PREFIX + nonce, "1", nx=True, ex=skew * 2):
        raise DomainError("hall.nonce_replayed")


@bp.post("/callbacks")
@openapi.summary("The main hall reports a status change of a case (HMAC-signed)")
@openapi.tag("hall")
@openapi.body({"application/json": HallCallbackIn.model_json_schema()})
@openapi.response(200, {"application/json": {"outcome": str, "duplicate": bool}}, "applied, unchanged or seen before")
@openapi.response(409, {"application/json": {"error": dict}}, "refused by the state machine: a conflict")
async def callback(request: Request) -> HTTPResponse:
    await verify(request)
    payload = parse(HallCallbackIn, json_body(request))
    result: dict[str, Any] = await service.apply_change(
        hall_event_id=payload.event_id, case_no=payload.case_no, status=payload.status,
        items=[i.model_dump() for i in payload.items], reason=payload.reason, hall_case_id=payload.hall_case_id,
        source="callback")
    return json(result)


@bp.get("/materials/<material_id:int>")
@openapi.summary("A material file, for the main hall, behind a signed link that expires")
@openapi.tag("hall")
async def material(request: Request, material_id: int) -> HTTPResponse:
    expires = timestamp_of(request.args.get("expires"))
    if expires is None:
        raise DomainError("hall.link_invalid")
    data, content_type = await service.material_content(
        material_id=material_id, expires=expires, sig=request.args.get("sig", ""), settings=request.app.ctx.settings)
    return raw(data, content_type=content_type, headers={"Cache-Control": "private, no-store"})
