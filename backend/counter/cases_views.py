"""Counter routes for cases: work list, walk-in applications, transitions, statistics, ratings, complaints."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend import runtime
from backend.bounds import Day, Id32, Input
from backend.cases import certificates, evaluation
from backend.cases import service as cases
from backend.cases.models import CaseStatus, NoticeRequestState, TicketState, WarningLevel
from backend.cases.schemas import (
    AnswerIn,
    CloseRectificationIn,
    NoticeDecisionIn,
    NoticeRequestIn,
    RevokeIn,
    TransitionIn,
    WalkInCaseIn,
)
from backend.counter.auth import staff
from backend.counter.scan import resolver
from backend.crypto import KeyRing
from backend.http import body, parse
from backend.identity.models import StaffRole
from backend.identity.service import StaffPrincipal

bp = Blueprint("staff_cases")


def _query(request: Request) -> dict[str, Any]:
    return {k: request.args.get(k) for k in request.args}


def _links(request: Request) -> dict[str, str]:
    s = request.app.ctx.settings
    return {"secret": s.secret_key, "base_url": s.public_base_url}


@resolver("case")
async def scanned_case(case_id: int, clerk: StaffPrincipal) -> dict[str, Any]:
    return {"case": await cases.scan_card(case_id=case_id, staff=clerk)}


@resolver("certificate")
async def scanned_certificate(cert_id: int, clerk: StaffPrincipal) -> dict[str, Any]:
    # Anyone may verify a certificate: the clerk sees what the public verification says.
    keyring = KeyRing.parse(runtime.current().settings.data_keys)
    return {"verification": await certificates.verify(certificate_id=cert_id, keyring=keyring)}


class WorkListQuery(Input):
    model_config = ConfigDict(extra="ignore")
    hall_id: Id32 | None = None
    status: CaseStatus | None = None
    item: str | None = Field(default=None, max_length=40)
    warning: WarningLevel | None = None
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)


@bp.get("/cases")
@openapi.summary("Work list: cases of own halls by state, item, deadline warning level and hall")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("hall_id", int, "query")
@openapi.parameter("status", str, "query")
@openapi.parameter("item", str, "query")
@openapi.parameter("warning", str, "query", description="none, yellow or red")
async def work_list(request: Request) -> HTTPResponse:
    q = parse(WorkListQuery, _query(request))
    return json(await cases.work_list(staff=staff(request), hall_id=q.hall_id, status=q.status, item_code=q.item,
                                      warning=q.warning, limit=q.limit, offset=q.offset), ensure_ascii=False)


@bp.post("/cases")
@openapi.summary("Open a case for a walk-in applicant (linked to their account by ID number)")
@openapi.tag("counter")
@openapi.secured("staff")
@body(WalkInCaseIn)
async def walk_in(request: Request, payload: WalkInCaseIn) -> HTTPResponse:
    ctx = request.app.ctx
    answer = await cases.open_walk_in(payload=payload, staff=staff(request), keyring=ctx.keyring,
                                      hash_key=ctx.settings.hash_key, **_links(request))
    return json(answer, status=201, ensure_ascii=False)


@bp.get("/cases/<case_no:case_no>")
@openapi.summary("One case of own hall, whole (ID number masked)")
@openapi.tag("counter")
@openapi.secured("staff")
async def get_case(request: Request, case_no: str) -> HTTPResponse:
    return json(await cases.staff_view(case_no=case_no, staff=staff(request), keyring=request.app.ctx.keyring,
                                       **_links(request)), ensure_ascii=False)


@bp.post("/cases/<case_no:case_no>/transitions")
@openapi.summary("Act on a case: accept, request_correction, start_review, approve, reject, issue_certificate, "
                 "deliver, close")
@openapi.description("Anything the state machine does not allow now answers 409 case.illegal_transition and "
                     "changes nothing.")
@openapi.tag("counter")
@openapi.secured("staff")
@body(TransitionIn)
async def act(request: Request, case_no: str, payload: TransitionIn) -> HTTPResponse:
    return json(await cases.act(case_no=case_no, payload=payload, staff=staff(request),
                                keyring=request.app.ctx.keyring, **_links(request)), ensure_ascii=False)


@bp.post("/cases/<case_no:case_no>/notice-requests")
@openapi.summary("Ask a hall admin to approve a further correction notice (再次告知) after an answered one")
@openapi.description("一次性告知: once a notice a clerk wrote was answered, `request_correction` answers 409 "
                     "case.notice_needs_approval. The clerk asks here with the materials, the note for the resident "
                     "and the reason; nothing reaches the resident until a hall admin approves "
                     "(POST /notice-requests/{id}/decision). One pending request per case.")
@openapi.tag("counter")
@openapi.secured("staff")
@body(NoticeRequestIn)
async def ask_further_notice(request: Request, case_no: str, payload: NoticeRequestIn) -> HTTPResponse:
    return json(await cases.ask_further_notice(case_no=case_no, payload=payload, staff=staff(request)), status=201,
                ensure_ascii=False)


class NoticeRequestsQuery(Input):
    model_config = ConfigDict(extra="ignore")
    hall_id: Id32
    state: NoticeRequestState | None = None


@bp.get("/notice-requests")
@openapi.summary("Requests for further correction notices in a hall, oldest first (pending ones for its hall admins)")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("hall_id", int, "query", required=True)
@openapi.parameter("state", str, "query", description="pending, approved or refused")
async def notice_requests(request: Request) -> HTTPResponse:
    q = parse(NoticeRequestsQuery, _query(request))
    return json({"requests": await cases.notice_requests(staff=staff(request), hall_id=q.hall_id, state=q.state)},
                ensure_ascii=False)


@bp.post("/notice-requests/<request_id:int>/decision")
@openapi.summary("Approve (the notice goes to the resident as the next round) or refuse a further notice, with a "
                 "reason (a hall admin of the case's hall, not the clerk who asked)")
@openapi.tag("counter")
@openapi.secured("staff")
@body(NoticeDecisionIn)
async def decide_further_notice(request: Request, request_id: int, payload: NoticeDecisionIn) -> HTTPResponse:
    return json(await cases.decide_further_notice(request_id=request_id, payload=payload, staff=staff(request)),
                ensure_ascii=False)


class PeriodQuery(Input):
    model_config = ConfigDict(extra="ignore")
    hall_id: Id32
    start: Day = Field(alias="from")
    end: Day = Field(alias="to")

    @model_validator(mode="after")
    def _order(self) -> PeriodQuery:
        if self.end < self.start or (self.end - self.start).days > 366:
            raise ValueError("统计期间须为起止日期，且不超过一年")
        return self


def hall_period_statistics(handler: Any) -> Any:
    """A hall's figures for a period (`?hall_id&from&to`), as the OpenAPI document shows them."""
    for decorate in reversed((
        openapi.tag("counter"), openapi.secured("staff"),
        openapi.parameter("hall_id", int, "query", required=True),
        openapi.parameter("from", str, "query", required=True, description="YYYY-MM-DD"),
        openapi.parameter("to", str, "query", required=True, description="YYYY-MM-DD"),
    )):
        handler = decorate(handler)
    return handler


@bp.get("/stats/materials")
@openapi.summary("Per item and period: required materials met by reuse or an e-certificate versus handed in fresh")
@hall_period_statistics
async def material_stats(request: Request) -> HTTPResponse:
    q = parse(PeriodQuery, _query(request))
    return json(await cases.material_stats(staff=staff(request), hall_id=q.hall_id, start=q.start, end=q.end),
                ensure_ascii=False)


@bp.get("/evaluations")
@openapi.summary("Ratings of a period: counts per level and satisfaction rate per hall, item and counter")
@hall_period_statistics
async def evaluations(request: Request) -> HTTPResponse:
    q = parse(PeriodQuery, _query(request))
    return json(await evaluation.stats(staff=staff(request), hall_id=q.hall_id, start=q.start, end=q.end),
                ensure_ascii=False)


class HallStateQuery(Input):
    model_config = ConfigDict(extra="ignore")
    hall_id: Id32
    state: TicketState | None = None
    warning: WarningLevel | None = None


@bp.get("/rectifications")
@openapi.summary("Rectifications of bad ratings in a hall")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("hall_id", int, "query", required=True)
@openapi.parameter("state", str, "query", description="open or closed")
async def rectifications(request: Request) -> HTTPResponse:
    q = parse(HallStateQuery, _query(request))
    return json({"rectifications": await evaluation.rectifications(staff=staff(request), hall_id=q.hall_id,
                                                                   state=q.state)}, ensure_ascii=False)


@bp.post("/rectifications/<rectification_id:int>/close")
@openapi.summary("Close a rectification with a written response the resident can read (hall admin)")
@openapi.tag("counter")
@openapi.secured("staff")
@body(CloseRectificationIn)
async def close_rectification(request: Request, rectification_id: int, payload: CloseRectificationIn
                              ) -> HTTPResponse:
    return json(await evaluation.close_rectification(rectification_id=rectification_id, staff=staff(request),
                                                     response=payload.response), ensure_ascii=False)


@bp.get("/complaints")
@openapi.summary("Complaints and questions of a hall, by state and warning level")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("hall_id", int, "query", required=True)
@openapi.parameter("state", str, "query", description="open or closed")
@openapi.parameter("warning", str, "query", description="none, yellow or red")
async def complaints(request: Request) -> HTTPResponse:
    q = parse(HallStateQuery, _query(request))
    return json({"complaints": await evaluation.hall_complaints(staff=staff(request), hall_id=q.hall_id,
                                                                state=q.state, warning=q.warning)},
                ensure_ascii=False)


@bp.post("/complaints/<complaint_id:int>/answer")
@openapi.summary("Answer a complaint or question")
@openapi.tag("counter")
@openapi.secured("staff")
@body(AnswerIn)
async def answer_complaint(request: Request, complaint_id: int, payload: AnswerIn) -> HTTPResponse:
    return json(await evaluation.answer_complaint(complaint_id=complaint_id, staff=staff(request),
                                                  answer=payload.answer), ensure_ascii=False)


@bp.post("/certificates/<cert_no:cert_no>/revoke")
@openapi.summary("Revoke an e-certificate of own hall (hall admin); verification then answers revoked")
@openapi.tag("counter")
@openapi.secured("staff")
@body(RevokeIn)
async def revoke(request: Request, cert_no: str, payload: RevokeIn) -> HTTPResponse:
    return json(await certificates.revoke(cert_no=cert_no, staff=staff(request), reason=payload.reason,
                                          roles=(StaffRole.HALL_ADMIN,)), ensure_ascii=False)
