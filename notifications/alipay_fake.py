"""The Alipay template-message method on the fake Alipay gateway: records what it was asked to send."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.identity.alipay_fake import FakeAlipay, GatewayError
from notifications.channels import ALIPAY_METHOD


@dataclass
class AlipayMessages:
    sent: list[dict[str, Any]] = field(default_factory=list)  # the biz_content of each accepted message
    refused: set[str] = field(default_factory=set)  # open_ids / user_ids without a subscription


def install(alipay: FakeAlipay) -> AlipayMessages:
    state = AlipayMessages()

    def send(params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        to = biz.get("to_open_id") or biz.get("to_user_id")
        if not to or not biz.get("user_template_id"):
            raise GatewayError("isv.missing-parameter", "缺少必选参数")
        if to in state.refused:
            raise GatewayError("USER_TEMPLATE_ILLEGAL", "用户未订阅该模板")
        state.sent.append(biz)
        return {"code": "10000", "msg": "Success"}

    alipay.handlers[ALIPAY_METHOD] = send
    return state
