"""The sending channels behind one interface: WeChat subscribe message, Alipay template message, SMS."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.errors import DomainError
from backend.identity.alipay import AlipayClient, AlipayError
from backend.identity.wechat import WeChatClient
from backend.settings import Settings
from notifications.models import NotifyChannel
from notifications.sms import AliyunSms, Outcome, SmsProvider

log = logging.getLogger("palmhall.notifications")

SUBSCRIBE_SEND = "/cgi-bin/message/subscribe/send"
ALIPAY_METHOD = "alipay.open.app.mini.templatemessage.send"

# WeChat errcodes worth another try later: system busy, frequency limits.
WECHAT_TEMPORARY = frozenset({-1, 45009, 45011, 45015, 45047})
# And the ones that will never succeed as sent: no consent or quota used (43101), bad data (47003,
# 47001), bad openid (40003), bad template or page (40037, 41030), blocked user (43004, 43005).
WECHAT_PERMANENT = frozenset({43101, 47003, 47001, 40003, 40037, 41030, 43004, 43005, 43100})
ALIPAY_TEMPORARY_SUBCODES = frozenset({"isp.unknow-error", "aop.ACQ.SYSTEM_ERROR", "isp.system-error"})


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    answer: dict[str, Any]
    provider_id: str | None = None
    reason: str | None = None  # one word for the operator: no_consent, bad_data, busy, ...


class Sender(Protocol):
    channel: NotifyChannel

    async def send(self, *, target: str, message: dict[str, Any]) -> SendResult: ...


@dataclass
class WeChatSender:
    client: WeChatClient
    channel: NotifyChannel = NotifyChannel.WECHAT

    async def send(self, *, target: str, message: dict[str, Any]) -> SendResult:
        payload = {"touser": target, **message}
        try:
            # A refused access_token (40001/42001) is refreshed once inside post_with_token.
            answer = await self.client.post_with_token(SUBSCRIBE_SEND, payload)
        except DomainError as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            outcome: Outcome = "temporary" if details.get("retryable") else "permanent"
            return SendResult(outcome, {"error": exc.code, **details}, reason=exc.code)
        errcode = int(answer.get("errcode") or 0)
        if errcode == 0:
            return SendResult("sent", answer, str(answer.get("msgid") or "") or None)
        reason = {43101: "no_consent", 47003: "bad_data", 47001: "bad_data"}.get(errcode, f"errcode_{errcode}")
        if errcode in WECHAT_TEMPORARY:
            return SendResult("temporary", answer, reason="busy")
        # Unknown errcodes are final too: the operator sees the answer and can retry by hand.
        return SendResult("permanent", answer, reason=reason)


@dataclass
class AlipaySender:
    client: AlipayClient | None
    channel: NotifyChannel = NotifyChannel.ALIPAY

    async def send(self, *, target: str, message: dict[str, Any]) -> SendResult:
        if self.client is None:
            return SendResult("permanent", {"error": "alipay_not_configured"}, reason="not_configured")
        # Alipay user ids (older apps) start with 2088; newer apps only get an open_id.
        to = "to_user_id" if target.startswith("2088") and target.isdigit() else "to_open_id"
        biz = {to: target, "user_template_id": message["user_template_id"],
               "page": message.get("page", ""), "data": message["data"]}
        try:
            node = await self.client.execute(ALIPAY_METHOD, biz)
        except AlipayError as exc:
            answer = {"error": exc.code, "code": exc.alipay_code, "sub_code": exc.sub_code, "sub_msg": exc.sub_msg}
            temporary = exc.code == "auth.alipay_unavailable" or exc.sub_code in ALIPAY_TEMPORARY_SUBCODES
            return SendResult("temporary" if temporary else "permanent", answer,
                              reason="busy" if temporary else (exc.sub_code or exc.code))
        return SendResult("sent", node)


@dataclass
class SmsSender:
    provider: SmsProvider
    channel: NotifyChannel = NotifyChannel.SMS

    async def send(self, *, target: str, message: dict[str, Any]) -> SendResult:
        result = await self.provider.send(phone=target, template_code=message["template_code"],
                                          params=message["params"])
        reason = None if result.outcome == "sent" else str(result.answer.get("Code") or result.answer.get("error"))
        return SendResult(result.outcome, result.answer, result.provider_id, reason)


@dataclass
class Senders:
    by_channel: dict[NotifyChannel, Sender]
    closers: list[Any] = field(default_factory=list)

    def get(self, channel: NotifyChannel) -> Sender:
        return self.by_channel[channel]

    async def aclose(self) -> None:
        for c in self.closers:
            await c.aclose()


def build(settings: Settings, redis: Any) -> Senders:
    """Real clients from settings (each pointing at a loopback fake in development and tests)."""
    wechat = WeChatClient(base_url=settings.wechat_api_base, app_id=settings.wechat_app_id,
                          app_secret=settings.wechat_app_secret, redis=redis)
    alipay: AlipayClient | None
    try:
        alipay = AlipayClient(gateway=settings.alipay_gateway, app_id=settings.alipay_app_id,
                              app_private_key=settings.alipay_app_private_key,
                              alipay_public_key=settings.alipay_public_key)
    except ValueError:
        log.warning("alipay keys do not load: alipay template messages are off in this process")
        alipay = None
    sms = AliyunSms(endpoint=settings.sms_endpoint, access_key_id=settings.sms_access_key_id,
                    access_key_secret=settings.sms_access_key_secret, sign_name=settings.sms_sign_name)
    closers: list[Any] = [wechat, sms, *([alipay] if alipay else [])]
    return Senders(by_channel={NotifyChannel.WECHAT: WeChatSender(wechat), NotifyChannel.ALIPAY: AlipaySender(alipay),
                               NotifyChannel.SMS: SmsSender(sms)}, closers=closers)
