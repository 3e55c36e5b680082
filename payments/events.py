"""Outbox topics the payments package emits. Payloads carry ids, order numbers and amounts in fen."""

from __future__ import annotations

from backend.jobs.topics import Topic

PAYMENT_SUCCEEDED = "payment.succeeded"
PAYMENT_REFUND_REQUESTED = "payment.refund_requested"
PAYMENT_REFUNDED = "payment.refunded"
PAYMENT_REFUND_FAILED = "payment.refund_failed"
PAYMENT_SUSPECT = "payment.suspect_notification"
PAYMENT_CLOSED = "payment.closed"

CATALOGUE = (
    Topic(PAYMENT_SUCCEEDED, ("order_id", "out_trade_no", "case_no", "channel", "amount_fen"), ("payments",),
          about="a fee was paid: the case goes on (the platform itself gives the payer a receipt)"),
    Topic(PAYMENT_REFUND_REQUESTED, ("refund_id",), ("payments",), about="a refund is to be sent to the platform"),
    Topic(PAYMENT_REFUNDED, ("order_id", "refund_id", "case_no", "amount_fen", "automatic"), ("notifications",),
          "resident", "the platform returned the money: the payer is told the amount"),
    Topic(PAYMENT_REFUND_FAILED, ("order_id", "refund_id", "case_no"),
          about="the platform refused a refund; the order is paid again and staff see it in the order's history"),
    Topic(PAYMENT_SUSPECT, ("suspect_id", "channel", "out_trade_no", "problem"),
          about="a verified notification that does not match its order, kept for review"),
    Topic(PAYMENT_CLOSED, ("order_id", "case_no"), about="an unpaid order was closed; the case may be paid anew"),
)
