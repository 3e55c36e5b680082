"""Kiosk routes for cases: progress behind a scanned QR code, and applying for a resident who identified
themselves by showing their mini program's login code."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.cases import service as cases
from backend.cases.models import CaseChannel
from backend.cases.schemas import CaseIn
from backend.errors import DomainError
from backend.http import body, token_shaped
from backend.identity import service as identity
from backend.identity import tokens
from backend.public.progress_views import progress_answer

bp = Blueprint("kiosk_cases")


@bp.get("/progress/<token:qr_token>")
@openapi.summary("Progress behind a scanned case QR code, personal data masked")
@openapi.tag("kiosk")
async def progress(request: Request, token: str) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    return json(await progress_answer(request, token, f"kiosk:{kiosk.device_id}"), ensure_ascii=False)


async def _resident_at_kiosk(request: Request) -> int:
    """The resident's access token, scanned from their phone into X-Resident-Token: the kiosk applies for
    that resident only, and only while the token is fresh."""
    ctx = request.app.ctx
    token = request.headers.get("x-resident-token", "").strip()
    if not token:
        raise DomainError("auth.token_missing")
    claims = tokens.verify(token_shaped(token), secret=ctx.settings.secret_key, kind="resident")
    if await identity.family_revoked(redis=ctx.redis, family=claims.family):
        raise DomainError("auth.token_invalid")
    return int(claims.subject)


@bp.post("/cases")
@openapi.summary("Apply at a kiosk for the resident whose token is in X-Resident-Token")
@openapi.description("The kiosk must be in the chosen hall. Materials are the resident's own uploads, reused "
                     "materials and e-certificates, as in the mini program.")
@openapi.tag("kiosk")
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
