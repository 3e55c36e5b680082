"""Counter payment routes: a hall admin refunds (idempotently) and reads an order; daily reconciliation reports."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.bounds import Day, Fen, Input
from backend.counter.auth import staff
from backend.http import body, idempotency_key, parse
from backend.identity.models import StaffRole
from payments import reconcile
from payments import service as payments

bp = Blueprint("staff_payments")


class RefundIn(Input):
    model_config = ConfigDict(extra="forbid")
    amount_fen: Fen | None = Field(None, gt=0, description="omit for everything still refundable")
    reason: str = Field(min_length=2, max_length=80)


class DayQuery(Input):
    model_config = ConfigDict(extra="ignore")
    day: Day = Field(alias="date", description="YYYY-MM-DD")


class ReconcileIn(Input):
    model_config = ConfigDict(extra="forbid")
    day: Day = Field(alias="date", description="the business day to reconcile, YYYY-MM-DD (Asia/Shanghai)")


@bp.post("/payments/<order_id:int>/refunds")
@openapi.summary("Refund all or part of a paid order (hall admin); the same Idempotency-Key answers the same refund")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("Idempotency-Key", str, "header", required=True)
@body(RefundIn)
async def refund(request: Request, order_id: int, payload: RefundIn) -> HTTPResponse:
    key = idempotency_key(request, missing="payment.idempotency_key_missing")
    found, created = await payments.request_refund(
        order_id=order_id, amount_fen=payload.amount_fen, reason=payload.reason, staff=staff(request),
        idempotency_key=key, settings=request.app.ctx.settings)
    order = await payments.own_order(order_id=order_id)
    return json({"refund": payments.describe_refund(found), "order": payments.describe(order)},
                status=201 if created else 200, ensure_ascii=False)


@bp.get("/payments/<order_id:int>")
@openapi.summary("A payment order of one's hall with its state history and refunds")
@openapi.tag("counter")
@openapi.secured("staff")
async def show(request: Request, order_id: int) -> HTTPResponse:
    order = await payments.own_order(order_id=order_id)
    staff(request).require(order.hall_id, StaffRole.CLERK, StaffRole.HALL_ADMIN, StaffRole.AUDITOR)
    return json({"order": payments.describe(order), "history": await payments.history(order_id=order.id),
                 "refunds": await payments.refunds_of(order_id=order.id)}, ensure_ascii=False)


@bp.get("/payments/suspects")
@openapi.summary("Signed payment notifications that did not match our orders (amount, merchant, unknown order)")
@openapi.description("Hall admins and auditors see those naming an order of their halls; those naming no order "
                     "of ours belong to no hall and only admins see them (and every other one).")
@openapi.tag("counter")
@openapi.secured("staff")
async def suspects(request: Request) -> HTTPResponse:
    return json({"suspects": await payments.suspects(staff=staff(request))}, ensure_ascii=False)


@bp.get("/payments/reconciliation")
@openapi.summary("The stored reconciliation report of a day (?date=YYYY-MM-DD): every difference, line by line")
@openapi.description("Admins see the whole report; hall admins and auditors only the differences about orders of "
                     "their halls (the day's totals and lines naming no order of ours belong to no hall).")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("date", str, "query", required=True, description="YYYY-MM-DD")
async def reconciliation(request: Request) -> HTTPResponse:
    halls = reconcile.scope_for(staff(request))
    query = parse(DayQuery, {k: request.args.get(k) for k in request.args})
    return json(await reconcile.stored(day=query.day, halls=halls), ensure_ascii=False)


@bp.post("/payments/reconciliation")
@openapi.summary("Reconcile a day now (admins): fetch both platforms' bills again, compare, store, answer the report")
@openapi.description("What the daily task does at 10:30 for the day before, on demand and for any day; audited. "
                     "The answer is the stored report, as GET .../reconciliation shows it to an admin.")
@openapi.tag("counter")
@openapi.secured("staff")
@body(ReconcileIn)
async def reconcile_now(request: Request, payload: ReconcileIn) -> HTTPResponse:
    report = await reconcile.run_for(day=payload.day, staff=staff(request), settings=request.app.ctx.settings)
    return json(report, ensure_ascii=False)
