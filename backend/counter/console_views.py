"""What the counter console needs beside the rest of /api/v1/staff: the hall's counters, and material files inline."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from backend.cases import files
from backend.cases import service as cases
from backend.catalog import service as catalog
from backend.counter.auth import staff
from backend.errors import DomainError
from backend.identity.models import StaffRole

bp = Blueprint("staff_console")

DESK = (StaffRole.CLERK, StaffRole.HALL_ADMIN)


@bp.get("/halls/<hall_id:int32>/counters")
@openapi.summary("The active counters (窗口) of one of the clerk's halls, to choose where to work")
@openapi.tag("counter")
@openapi.secured("staff")
async def hall_counters(request: Request, hall_id: int) -> HTTPResponse:
    staff(request).require(hall_id, *DESK)
    hall = next((h for h in await catalog.list_halls() if h["id"] == hall_id), None)
    if hall is None:
        raise DomainError("catalog.hall_not_found")
    return json({"hall": {"id": hall["id"], "code": hall["code"], "name": hall["name"]},
                 "counters": hall["counters"]}, ensure_ascii=False)


@bp.get("/cases/<case_no:case_no>/materials/<material_id:int>/content")
@openapi.summary("The file of a case's material, for a clerk of the case's hall to view inline (audited)")
@openapi.description("A case of another hall answers 404 case.not_found, as if it did not exist.")
@openapi.tag("counter")
@openapi.secured("staff")
async def material_content(request: Request, case_no: str, material_id: int) -> HTTPResponse:
    data, content_type = await cases.staff_material_content(
        case_no=case_no, material_id=material_id, staff=staff(request),
        store=files.store_for(request.app.ctx.settings))
    # Only PDF, JPEG, PNG and WebP are stored, decided from the bytes: no image too big to decode, nothing that
    # is also a page or script, no PDF with active content. Opened directly, it runs nothing of ours.
    return raw(data, content_type=content_type, headers={
        "Content-Disposition": f'inline; filename="material-{material_id}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox"})
