"""Kiosk payment routes: a case's fees as a QR the citizen scans with their own phone (PNG or SVG)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.bounds import Input
from backend.errors import DomainError
from backend.http import body
from miniprogram_api.booking_views import qr_response
from payments import service as payments
from payments.channels import for_settings
from payments.models import PayChannel, PayScene

bp = Blueprint("kiosk_payments")


class KioskPayIn(Input):
    model_config = ConfigDict(extra="forbid")
    case_no: str = Field(min_length=4, max_length=32)
    channel: Literal["wechat", "alipay"]


def _links(order_id: int) -> dict[str, str]:
    return {"png": f"/api/v1/kiosk/payments/{order_id}/qr.png", "svg": f"/api/v1/kiosk/payments/{order_id}/qr.svg"}


@bp.post("/payments")
@openapi.summary("A QR to pay a case of this hall: WeChat Native code_url or Alipay precreate qr_code")
@openapi.tag("kiosk")
@body(KioskPayIn)
async def pay(request: Request, payload: KioskPayIn) -> HTTPResponse:
    kiosk = request.ctx.kiosk
    started = await payments.start(case_no=payload.case_no.strip(), channel=PayChannel(payload.channel),
                                   scene=PayScene.KIOSK_QR, settings=request.app.ctx.settings,
                                   kiosk_hall_id=kiosk.hall_id, kiosk_id=kiosk.device_id)
    answer = {"order": payments.describe(started.order), "pay": started.pay}
    if started.pay.get("qr_content"):
        answer["qr"] = _links(started.order.id)
    elif started.pay:
        # The case's open order was started in the mini program: no QR to show, and no second order.
        raise DomainError("payment.open_elsewhere", details={"order": payments.describe(started.order)})
    return json(answer, status=201 if started.created else 200, ensure_ascii=False)


@bp.get("/payments/<order_id:int>")
@openapi.summary("An order of this hall: has it been paid yet")
@openapi.tag("kiosk")
async def show(request: Request, order_id: int) -> HTTPResponse:
    order = await payments.own_order(order_id=order_id, kiosk_hall_id=request.ctx.kiosk.hall_id)
    return json({"order": payments.describe(order)}, ensure_ascii=False)


@bp.get("/payments/<order_id:int>/qr.png", name="qr_png", ctx_format="png")
@bp.get("/payments/<order_id:int>/qr.svg", name="qr_svg", ctx_format="svg")
@openapi.summary("The order's payment QR (the platform's payment URL), while the order is open")
@openapi.tag("kiosk")
async def qr(request: Request, order_id: int) -> HTTPResponse:
    fmt = request.route.ctx.format if request.route else "png"
    order = await payments.own_order(order_id=order_id, kiosk_hall_id=request.ctx.kiosk.hall_id)
    pay = await payments.pay_parameters(order, for_settings(request.app.ctx.settings))
    if not pay.get("qr_content"):
        raise DomainError("payment.not_payable")
    return qr_response(str(pay["qr_content"]), fmt)
