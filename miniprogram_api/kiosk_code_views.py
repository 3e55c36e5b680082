"""Mini-program route for the code a resident shows a kiosk (as a QR) so that it may apply for them once."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.bounds import Id32, Input
from backend.clock import SHANGHAI
from backend.http import body
from backend.identity import kiosk_codes
from miniprogram_api.auth import resident_id

bp = Blueprint("mp_kiosk_codes")


class KioskCodeIn(Input):
    model_config = ConfigDict(extra="forbid")
    hall_id: Id32 | None = Field(default=None, description="when given, only this hall's kiosks accept the code")


@bp.post("/kiosk-codes")
@openapi.summary("A code to show a kiosk as a QR, so that it applies for this resident: one use, within two "
                 "minutes, for that purpose only (the kiosk sends it in X-Resident-Code)")
@openapi.description("The code is spent by the first kiosk request that presents it, whatever that request's "
                     "outcome: show a fresh one to try again. Ending the session that made it ends the code.")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(KioskCodeIn)
async def issue(request: Request, payload: KioskCodeIn) -> HTTPResponse:
    issued = await kiosk_codes.issue(resident_id=resident_id(request), purpose=kiosk_codes.Purpose.KIOSK_APPLICATION,
                                     hall_id=payload.hall_id, family=request.ctx.session_family)
    return json({"code": issued.code, "purpose": issued.purpose.value, "hall_id": issued.hall_id,
                 "expires_at": issued.expires_at.astimezone(SHANGHAI).isoformat(),
                 "expires_in": int(kiosk_codes.TTL.total_seconds())}, status=201, ensure_ascii=False)
