"""The platforms' payment callbacks: verified before anything in them is read, answered fast."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import parse_qsl

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json, text
from sanic_ext import openapi

from payments import alipay as ali
from payments import channels, service
from payments.wechatpay import NotificationRefused

log = logging.getLogger("palmhall.payments.callbacks")

bp = Blueprint("payment_callbacks", url_prefix="/api/v1/payments")


def _wechat_fail(status: int, message: str) -> HTTPResponse:
    # WeChat Pay retries anything but 200/204; the body is for its console.
    return json({"code": "FAIL", "message": message}, status=status, ensure_ascii=False)


@bp.post("/callbacks/wechat")
@openapi.summary("WeChat Pay v3 notifications (payments and refunds), signed by the platform key")
@openapi.tag("payments")
async def wechat(request: Request) -> HTTPResponse:
    settings = request.app.ctx.settings
    client = channels.for_settings(settings).wechatpay
    headers = {k: v for k, v in request.headers.items()}
    try:
        notification = await asyncio.to_thread(client.verify_notification, headers, request.body or b"")
    except NotificationRefused as exc:
        log.warning("wechat pay notification not verified", extra={"reason": exc.reason})
        return _wechat_fail(exc.status, "验签失败" if exc.status == 401 else "通知无法解密或格式错误")
    try:
        outcome = await service.accept_wechat(notification=notification, settings=settings)
    except service.Refused as exc:
        return _wechat_fail(exc.status, f"通知与订单不符：{exc.problem}")
    log.info("wechat pay notification", extra={"outcome": outcome, "event_type": notification["event_type"]})
    return empty(status=204)


@bp.post("/callbacks/alipay")
@openapi.summary("Alipay asynchronous notifications, RSA2-signed; answered with the plain text success")
@openapi.tag("payments")
async def alipay(request: Request) -> HTTPResponse:
    settings = request.app.ctx.settings
    client = channels.for_settings(settings).alipay
    try:
        params = dict(parse_qsl((request.body or b"").decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return text("fail", status=400)
    if not await asyncio.to_thread(ali.verify_notification, params, client):
        log.warning("alipay notification not verified")
        return text("fail", status=400)
    try:
        outcome = await service.accept_alipay(params=params, settings=settings)
    except service.Refused as exc:
        return text("fail", status=exc.status)
    log.info("alipay notification", extra={"outcome": outcome, "trade_status": params.get("trade_status")})
    return text("success")
