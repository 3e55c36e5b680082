"""Mini-program routes for cases: uploads, applying, corrections, withdrawal, rating, complaints, certificates."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from backend.cases import evaluation, files
from backend.cases import service as cases
from backend.cases.models import CaseChannel
from backend.cases.schemas import CaseIn, ComplaintIn, CorrectionIn, EvaluationIn, WithdrawIn
from backend.errors import DomainError
from backend.http import body, parse
from miniprogram_api.auth import resident_id
from miniprogram_api.schemas import Page

bp = Blueprint("mp_cases")


class LibraryQuery(Page):
    item: str | None = Field(default=None, max_length=40)


def _args(request: Request) -> dict[str, str | None]:
    return {k: request.args.get(k) for k in request.args}


def _links(request: Request) -> dict[str, str]:
    s = request.app.ctx.settings
    return {"secret": s.secret_key, "base_url": s.public_base_url}


@bp.post("/uploads")
@openapi.summary("Upload one material file (PDF, JPEG, PNG or WebP, decided by its bytes)")
@openapi.description("multipart/form-data with one file in the field `file`. Refusals: upload.missing_file, "
                     "upload.empty, upload.too_large (details.reason: bytes, or pixels for an image of more "
                     "than UPLOAD_MAX_PIXELS), upload.type_not_allowed, upload.truncated, upload.damaged (an "
                     "image whose size cannot be read), upload.mixed_content (a file that is also a web page, "
                     "script, another format, or a PDF with active content), upload.bad_name, upload.daily_limit.")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.body({"multipart/form-data": {"file": bytes}})
async def upload(request: Request) -> HTTPResponse:
    ctx = request.app.ctx
    rid = resident_id(request)
    given = [f for field in (request.files or {}).values() for f in field]
    picked = request.files.getlist("file") if request.files else None
    if not picked or len(given) != 1:
        raise DomainError("upload.missing_file")
    f = picked[0]
    answer = await cases.store_upload(resident_id=rid, data=f.body, name=f.name, store=files.store_for(ctx.settings),
                                      max_bytes=ctx.settings.upload_max_bytes,
                                      max_pixels=ctx.settings.upload_max_pixels,
                                      daily_limit=ctx.settings.upload_daily_limit)
    return json(answer, status=201, ensure_ascii=False)


@bp.get("/uploads/<upload_id:int>")
@openapi.summary("One of own uploads (its metadata)")
@openapi.tag("mini program")
@openapi.secured("resident")
async def upload_info(request: Request, upload_id: int) -> HTTPResponse:
    return json(await cases.own_upload(resident_id=resident_id(request), upload_id=upload_id), ensure_ascii=False)


@bp.get("/uploads/<upload_id:int>/content")
@openapi.summary("The bytes of one of own uploads")
@openapi.tag("mini program")
@openapi.secured("resident")
async def upload_file(request: Request, upload_id: int) -> HTTPResponse:
    data, content_type = await cases.upload_content(resident_id=resident_id(request), upload_id=upload_id,
                                                    store=files.store_for(request.app.ctx.settings))
    # Served as an attachment under a neutral name, never rendered inline as a page of ours.
    return raw(data, content_type=content_type, headers={
        "Content-Disposition": f'attachment; filename="upload-{upload_id}"', "X-Content-Type-Options": "nosniff"})


@bp.get("/materials")
@openapi.summary("Material library: accepted materials and e-certificates that can be attached again")
@openapi.description("With `item`, each entry says which checklist entries of that item it suits. `materials` "
                     "is one page (`limit`, `offset`) of `total`; `certificates` lists every current one.")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("item", str, "query")
@openapi.parameter("limit", int, "query")
@openapi.parameter("offset", int, "query")
async def library(request: Request) -> HTTPResponse:
    q = parse(LibraryQuery, _args(request))
    return json(await cases.material_library(resident_id=resident_id(request), item_code=q.item,
                                             keyring=request.app.ctx.keyring, limit=q.limit, offset=q.offset,
                                             **_links(request)), ensure_ascii=False)


@bp.post("/cases")
@openapi.summary("Apply: item, hall, form, materials and delivery; pre-review runs at once")
@openapi.description("A case missing materials answers 201 in state needs_correction with the complete list "
                     "in `corrections` (一次性告知).")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(CaseIn)
async def apply(request: Request, payload: CaseIn) -> HTTPResponse:
    answer = await cases.apply_as_resident(resident_id=resident_id(request), payload=payload,
                                           channel=CaseChannel.MINI_PROGRAM, keyring=request.app.ctx.keyring,
                                           **_links(request))
    return json(answer, status=201, ensure_ascii=False)


@bp.get("/cases")
@openapi.summary("Own cases, including those a counter opened with this resident's ID number: one page "
                 "(`limit`, `offset`) with the `total`")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("limit", int, "query")
@openapi.parameter("offset", int, "query")
async def list_cases(request: Request) -> HTTPResponse:
    page = parse(Page, _args(request))
    return json(await cases.list_own(resident_id=resident_id(request), limit=page.limit, offset=page.offset),
                ensure_ascii=False)


@bp.get("/cases/<case_no:case_no>")
@openapi.summary("One own case, whole: form, materials, corrections, history, deadline, certificates, rating")
@openapi.tag("mini program")
@openapi.secured("resident")
async def get_case(request: Request, case_no: str) -> HTTPResponse:
    return json(await cases.own_case(resident_id=resident_id(request), case_no=case_no,
                                     keyring=request.app.ctx.keyring, **_links(request)), ensure_ascii=False)


@bp.post("/cases/<case_no:case_no>/corrections")
@openapi.summary("Answer the open correction notice with every material it lists")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(CorrectionIn)
async def corrections(request: Request, case_no: str, payload: CorrectionIn) -> HTTPResponse:
    return json(await cases.answer_correction(resident_id=resident_id(request), case_no=case_no, payload=payload,
                                              keyring=request.app.ctx.keyring, **_links(request)), ensure_ascii=False)


@bp.post("/cases/<case_no:case_no>/withdraw")
@openapi.summary("Withdraw a case not yet accepted")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(WithdrawIn)
async def withdraw(request: Request, case_no: str, payload: WithdrawIn) -> HTTPResponse:
    case = await cases.withdraw(resident_id=resident_id(request), case_no=case_no, reason=payload.reason)
    return json({"case_no": case.case_no, "status": case.status.value}, ensure_ascii=False)


@bp.post("/cases/<case_no:case_no>/evaluation")
@openapi.summary("Rate a completed case once (好差评)")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(EvaluationIn)
async def evaluate(request: Request, case_no: str, payload: EvaluationIn) -> HTTPResponse:
    answer = await evaluation.evaluate(resident_id=resident_id(request), case_no=case_no, payload=payload)
    return json(answer, status=201, ensure_ascii=False)


@bp.post("/complaints")
@openapi.summary("Complain or ask a question; staff answer within the working-day limit")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(ComplaintIn)
async def complain(request: Request, payload: ComplaintIn) -> HTTPResponse:
    answer = await evaluation.complain(resident_id=resident_id(request), payload=payload,
                                       reply_days=request.app.ctx.settings.complaint_reply_days)
    return json(answer, status=201, ensure_ascii=False)


@bp.get("/complaints")
@openapi.summary("Own complaints and questions with their answers: one page (`limit`, `offset`) with the `total`")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("limit", int, "query")
@openapi.parameter("offset", int, "query")
async def list_complaints(request: Request) -> HTTPResponse:
    page = parse(Page, _args(request))
    return json(await evaluation.own_complaints(resident_id=resident_id(request), limit=page.limit,
                                                offset=page.offset), ensure_ascii=False)


@bp.get("/certificates")
@openapi.summary("Own e-certificates, each with its verification QR link: one page (`limit`, `offset`) with the "
                 "`total`")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("limit", int, "query")
@openapi.parameter("offset", int, "query")
async def list_certificates(request: Request) -> HTTPResponse:
    page = parse(Page, _args(request))
    return json(await cases.own_certificates(resident_id=resident_id(request), keyring=request.app.ctx.keyring,
                                             limit=page.limit, offset=page.offset, **_links(request)),
                ensure_ascii=False)
