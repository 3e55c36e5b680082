"""Kiosk device routes: enrollment from a one-time link, heartbeat, and the device's own hall."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.bounds import Input
from backend.catalog import service as catalog
from backend.http import body, client_ip, limit
from backend.identity import service as identity

bp = Blueprint("kiosk_device")


class Heartbeat(Input):
    model_config = ConfigDict(extra="forbid")
    software_version: str = Field(min_length=1, max_length=64)


class Enroll(Input):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=20, max_length=100, pattern=r"^[A-Za-z0-9_-]+$",
                      description="the code after # in the enrollment link")


@bp.post("/enroll", ctx_public=True)
@openapi.summary("Enroll this browser as the kiosk of a one-time link: burns the link, answers a NEW secret")
@openapi.description("Anonymous (the link is the credential) and rate-limited per client address. The device's "
                     "earlier secret stops working at once. Refusals: kiosk.enroll_invalid (404), "
                     "kiosk.enroll_used (409), kiosk.enroll_expired (410), kiosk.enroll_disabled (403).")
@openapi.tag("kiosk")
@body(Enroll)
async def enroll(request: Request, payload: Enroll) -> HTTPResponse:
    ip = client_ip(request)
    await limit(request, f"kiosk-enroll:ip:{ip}", request.app.ctx.settings.rate_login_ip)
    answer = await identity.redeem_enrollment(code=payload.code, keyring=request.app.ctx.keyring, ip=ip)
    # The secret is in this one answer only: never cached or stored on the way.
    return json(answer, headers={"Cache-Control": "no-store"}, ensure_ascii=False)


@bp.post("/heartbeat")
@openapi.summary("Device heartbeat: last contact and software version")
@openapi.tag("kiosk")
@body(Heartbeat)
async def heartbeat(request: Request, payload: Heartbeat) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    seen = await identity.kiosk_heartbeat(kiosk_id=kiosk.id, software_version=payload.software_version,
                                          ip=client_ip(request))
    return json({"device_id": kiosk.device_id, "hall_id": kiosk.hall_id, "server_time": seen.isoformat()})


@bp.get("/hall")
@openapi.summary("This kiosk's hall: its name and the queue groups a walk-in ticket may be taken for")
@openapi.tag("kiosk")
async def hall(request: Request) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    answer = await catalog.queue_groups(hall_id=kiosk.hall_id)
    return json({**answer, "device_id": kiosk.device_id, "name": kiosk.name}, ensure_ascii=False)
