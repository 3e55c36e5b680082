"""Mini-program payment routes: pay a case's fees with WeChat Pay (JSAPI) or Alipay (my.tradePay), see an order."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.bounds import Input
from backend.http import body, idempotency_key
from miniprogram_api.auth import resident_id
from payments import service as payments
from payments.channels import for_settings
from payments.models import PayChannel, PayScene

bp = Blueprint("mp_payments")


class PayIn(Input):
    model_config = ConfigDict(extra="forbid")
    case_no: str = Field(min_length=4, max_length=32)
    channel: Literal["wechat", "alipay"]


@bp.post("/payments")
@openapi.summary("Pay a case's fees: WeChat answers wx.requestPayment's parameters, Alipay the trade_no for "
                 "my.tradePay. A case already paid or with an open order on this channel answers that order (200), "
                 "never a second")
@openapi.description("Asking for the other channel while an order is open closes that order at its platform "
                     "and opens one on the channel asked for (201). If the open order was paid in the meantime, "
                     "the answer is that order, in state `paid`, with nothing to pay (200): a case is never paid "
                     "twice.")
@openapi.tag("mini program")
@openapi.secured("resident")
@openapi.parameter("Idempotency-Key", str, "header", required=True)
@body(PayIn)
async def pay(request: Request, payload: PayIn) -> HTTPResponse:
    rid = resident_id(request)
    key = idempotency_key(request, missing="payment.idempotency_key_missing")
    settings = request.app.ctx.settings
    started = await payments.start(case_no=payload.case_no.strip(), channel=PayChannel(payload.channel),
                                   scene=PayScene.MINI_PROGRAM, settings=settings, resident_id=rid,
                                   idempotency_key=key)
    return json({"order": payments.describe(started.order), "pay": started.pay},
                status=201 if started.created else 200, ensure_ascii=False)


@bp.get("/payments/<order_id:int>")
@openapi.summary("One of the resident's payment orders, with its state history")
@openapi.tag("mini program")
@openapi.secured("resident")
async def show(request: Request, order_id: int) -> HTTPResponse:
    order = await payments.own_order(order_id=order_id, resident_id=resident_id(request))
    return json({"order": payments.describe(order),
                 "pay": await payments.pay_parameters(order, for_settings(request.app.ctx.settings)),
                 "history": await payments.history(order_id=order.id)}, ensure_ascii=False)
