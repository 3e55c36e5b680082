"""The payments domain's error codes."""

from __future__ import annotations

from backend.errors import register_codes

register_codes({
    "payment.channel_unavailable": (503, "支付平台暂时不可用，请稍后重试"),
    "payment.channel_failed": (502, "支付平台未能受理，请稍后重试"),
    "payment.not_payable": (409, "该办件当前无需缴费"),
    "payment.no_fees": (409, "该办件没有需缴纳的费用"),
    "payment.no_channel_identity": (409, "请先使用该渠道登录后再支付"),
    "payment.idempotency_key_missing": (400, "请求缺少 Idempotency-Key 头（8-100 个字符）"),
    "payment.not_found": (404, "未找到该支付订单"),
    "payment.not_refundable": (409, "该订单当前不能退款"),
    "payment.refund_in_progress": (409, "该订单有正在处理的退款，请稍后再试"),
    "payment.refund_too_much": (422, "退款金额超过可退金额"),
    "payment.open_elsewhere": (409, "该办件已有一笔在其他渠道进行中的支付订单"),
    "payment.illegal_transition": (409, "支付订单状态不允许该操作"),
    "payment.report_not_found": (404, "该日尚无对账结果"),
})
