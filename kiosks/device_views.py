"""Kiosk device routes: heartbeat."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.http import body, client_ip
from backend.identity import service as identity

bp = Blueprint("kiosk_device")

class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    software_version: str = Field(min_length=1, max_length=64)


@bp.post("/heartbeat")
@openapi.summary("Device heartbeat: last contact and software version")
@openapi.tag("kiosk")
@body(Heartbeat)
async def heartbeat(request: Request, payload: Heartbeat) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    seen = await identity.kiosk_heartbeat(kiosk_id=kiosk.id, software_version=payload.software_version,
                                          ip=client_ip(request))
    return json({"device_id": kiosk.device_id, "hall_id": kiosk.hall_id, "server_time": seen.isoformat()})
