"""The messaging platforms' delivery receipts: WeChat's message push and Aliyun's SMS status reports.

Each request is verified before anything in it is believed (WeChat: SHA-1 signatures with the push
Token, then AES decryption with the EncodingAESKey; Aliyun: the secret token in the URL it was given),
and only a message we sent, named by its msgid or BizId, can be moved.
"""

from __future__ import annotations

import logging
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, text
from sanic_ext import openapi

from backend import clock
from backend.errors import DomainError, register_codes
from backend.signatures import timestamp_of
from notifications import service, sms, wechat_push
from notifications.models import NotifyChannel

log = logging.getLogger("palmhall.notifications.callbacks")

bp = Blueprint("notification_callbacks", url_prefix="/api/v1/notifications")

NONCE_PREFIX = "palmhall:notify:push-nonce:"
MAX_BODY = 64 * 1024  # a receipt push is a few hundred bytes

register_codes({
    "notify.push_refused": (401, "消息推送签名无效或无法解密"),
    "notify.push_stale": (401, "消息推送时间戳超出允许范围"),
    "notify.push_replayed": (401, "消息推送已处理过（重放）"),
    "notify.push_not_configured": (503, "消息推送未配置"),
    "notify.report_refused": (403, "状态报告地址无效"),
    "notify.report_invalid": (400, "状态报告格式不正确"),
})


def _policy(request: Request) -> service.Policy:
    """Built once per app: the templates are read from disk."""
    policy = getattr(request.app.ctx, "notify_policy", None)
    if policy is None:
        policy = service.Policy.from_settings(request.app.ctx.settings)
        request.app.ctx.notify_policy = policy
    return policy


def _crypto(request: Request) -> wechat_push.PushCrypto:
    s = request.app.ctx.settings
    crypto = wechat_push.PushCrypto(token=s.wechat_push_token, aes_key=s.wechat_push_aes_key, app_id=s.wechat_app_id)
    if not crypto.configured:
        raise DomainError("notify.push_not_configured")
    return crypto


def _arg(request: Request, name: str) -> str:
    return str(request.args.get(name) or "")


@bp.get("/callbacks/wechat")
@openapi.summary("WeChat message push: URL verification (signature over Token, timestamp, nonce; answers echostr)")
@openapi.tag("notifications")
async def wechat_verify(request: Request) -> HTTPResponse:
    crypto = _crypto(request)
    if not crypto.verify_url(signature=_arg(request, "signature"), timestamp=_arg(request, "timestamp"),
                             nonce=_arg(request, "nonce")):
        raise DomainError("notify.push_refused")
    return text(_arg(request, "echostr"))


def wechat_reports(event: dict[str, Any]) -> list[service.DeliveryReport]:
    out = []
    for r in wechat_push.receipts(event):
        status = r.error_status.lower()
        reason = None if r.delivered else (
            "user_refused" if ("refuse" in status or "block" in status) else f"receipt_{r.error_code}")
        out.append(service.DeliveryReport(channel=NotifyChannel.WECHAT, provider_id=r.msg_id, delivered=r.delivered,
                                          reason=reason, answer=r.as_answer()))
    return out


@bp.post("/callbacks/wechat")
@openapi.summary("WeChat message push in safe mode: subscribe_msg_sent_event receipts (XML or JSON, AES-encrypted)")
@openapi.tag("notifications")
async def wechat_push_event(request: Request) -> HTTPResponse:
    crypto = _crypto(request)
    settings = request.app.ctx.settings
    body = request.body or b""
    if len(body) > MAX_BODY:
        raise DomainError("notify.push_refused")
    timestamp, nonce = _arg(request, "timestamp"), _arg(request, "nonce")
    try:
        # The signature over the ciphertext is checked before it is decrypted or anything is read.
        event = crypto.open(body=body, content_type=request.headers.get("content-type", ""),
                            msg_signature=_arg(request, "msg_signature"), timestamp=timestamp, nonce=nonce)
    except wechat_push.PushRefused as exc:
        log.warning("wechat push refused", extra={"reason": exc.reason})
        raise DomainError("notify.push_refused") from None
    sent_at = timestamp_of(timestamp)
    if sent_at is None or abs(clock.now().timestamp() - sent_at) > settings.wechat_push_skew_seconds:
        raise DomainError("notify.push_stale")
    redis = request.app.ctx.redis
    seen = f"{NONCE_PREFIX}{timestamp}:{nonce}"
    if await redis.exists(seen):
        raise DomainError("notify.push_replayed")
    counts = await service.record_receipts(wechat_reports(event), policy=_policy(request), redis=redis)
    # Remembered once handled: a push that failed half-way may come again and is applied then.
    await redis.set(seen, "1", ex=settings.wechat_push_skew_seconds * 2)
    if any(counts.values()):
        log.info("wechat delivery receipts", extra=counts)
    return text("success")


@bp.post("/callbacks/sms")
@openapi.summary("Aliyun SMS status reports (SmsReport, HTTP batch push); the URL carries our secret token")
@openapi.tag("notifications")
@openapi.response(200, {"application/json": {"code": int, "msg": str}}, "received (Aliyun pushes again otherwise)")
async def sms_reports(request: Request) -> HTTPResponse:
    settings = request.app.ctx.settings
    if not sms.report_token_ok(settings.sms_report_token, request.args.get("token")):
        raise DomainError("notify.report_refused")
    try:
        reports = sms.parse_reports(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise DomainError("notify.report_invalid") from None
    counts = await service.record_receipts([
        service.DeliveryReport(channel=NotifyChannel.SMS, provider_id=r.biz_id, delivered=r.success,
                               reason=None if r.success else (r.err_code or "undelivered"), answer=r.as_answer())
        for r in reports], policy=_policy(request), redis=request.app.ctx.redis)
    log.info("sms status reports", extra=counts)
    return json(sms.REPORT_ACK, ensure_ascii=False)
