"""Kiosk routes for cases: progress behind a scanned QR code, and applying for a resident who identified
themselves by showing the kiosk code of their mini program (one use, minutes long: never their access token)."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.cases import service as cases
from backend.cases.models import CaseChannel
from backend.cases.schemas import CaseIn
from backend.errors import DomainError
from backend.http import body
from backend.identity import kiosk_codes
from backend.public.progress_views import progress_answer

bp = Blueprint("kiosk_cases")


@bp.get("/progress/<token:qr_token>")
@openapi.summary("Progress behind a scanned case QR code, personal data masked")
@openapi.tag("kiosk")
async def progress(request: Request, token: str) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    return json(await progress_answer(request, token, f"kiosk:{kiosk.device_id}"), ensure_ascii=False)


async def _resident_at_kiosk(request: Request) -> int:
    """The resident whose kiosk code (shown as a QR by their mini program, `POST /api/v1/mp/kiosk-codes`) is in
    X-Resident-Code: spent by this request, for this purpose, at a kiosk of this hall."""
    kiosk = request.ctx.kiosk
    return await kiosk_codes.redeem(code=request.headers.get("x-resident-code", ""),
                                    purpose=kiosk_codes.Purpose.KIOSK_APPLICATION, hall_id=kiosk.hall_id,
                                    device_id=kiosk.device_id, redis=request.app.ctx.redis)


@bp.post("/cases")
@openapi.summary("Apply at a kiosk for the resident whose kiosk code is in X-Resident-Code")
@openapi.description("The kiosk must be in the chosen hall. The code comes from the resident's mini program "
                     "(`POST /api/v1/mp/kiosk-codes`, shown as a QR): one use, two minutes, applying only; refused "
                     "with kiosk_code.missing, .invalid, .expired or .used (401). Materials are the resident's own "
                     "uploads, reused materials and e-certificates, as in the mini program.")
@openapi.tag("kiosk")
@openapi.parameter("X-Resident-Code", str, "header", required=True)
@body(CaseIn)
async def apply(request: Request, payload: CaseIn) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    if payload.hall_id != kiosk.hall_id:
        raise DomainError("case.hall_not_serving", message="自助终端只能办理本大厅的事项",
                          details={"hall_id": payload.hall_id})
    rid = await _resident_at_kiosk(request)
    s = request.app.ctx.settings
    answer = await cases.apply_as_resident(resident_id=rid, payload=payload, channel=CaseChannel.KIOSK,
                                           keyring=request.app.ctx.keyring, secret=s.secret_key,
                                           base_url=s.public_base_url)
    return json(answer, status=201, ensure_ascii=False)
