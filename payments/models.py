"""Payment orders and their state history, refunds, the append-only ledger, suspect notifications, reconciliation."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class PayChannel(StrEnum):
    WECHAT = "wechat"
    ALIPAY = "alipay"


class PayScene(StrEnum):
    MINI_PROGRAM = "mini_program"  # WeChat JSAPI, Alipay trade.create
    KIOSK_QR = "kiosk_qr"  # WeChat Native, Alipay trade.precreate


class OrderState(StrEnum):
    CREATED = "created"
    PAYING = "paying"
    PAID = "paid"
    CLOSED = "closed"
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"


class RefundState(StrEnum):
    PROCESSING = "processing"
    SUCCESS = "success"
    FAILED = "failed"


class EntryKind(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


class PaymentOrder(Model):
    """One attempt to collect a case's fees through one channel, in integer fen."""

    id = fields.BigIntField(primary_key=True)
    out_trade_no = fields.CharField(max_length=32, unique=True)
    case_no = fields.CharField(max_length=32, db_index=True)
    hall_id = fields.IntField(db_index=True)
    resident_id = fields.BigIntField(null=True, db_index=True)
    kiosk_id = fields.CharField(max_length=32, null=True)
    channel = fields.CharEnumField(PayChannel, max_length=10)
    scene = fields.CharEnumField(PayScene, max_length=16)
    description = fields.CharField(max_length=127)
    amount_fen = fields.IntField()
    fees: fields.Field = fields.JSONField(default=list)
    state = fields.CharEnumField(OrderState, max_length=20, default=OrderState.CREATED)
    # Holds the case number while this order is the case's open or paid one: unique, so a case
    # never has two at once (NULLs do not collide on SQLite or PostgreSQL).
    case_slot = fields.CharField(max_length=32, null=True, unique=True)
    idempotency_key = fields.CharField(max_length=100, null=True)
    payer = fields.CharField(max_length=128, null=True)
    platform_trade_no = fields.CharField(max_length=64, null=True)
    # What the client needs to pay (wx.requestPayment parameters, Alipay trade_no, a QR payload).
    prepay: fields.Field = fields.JSONField(null=True)
    paid_fen = fields.IntField(default=0)
    refunded_fen = fields.IntField(default=0)
    expires_at = fields.DatetimeField()
    paid_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "payment_order"


class PaymentStateChange(Model):
    """Every state change of an order, with who or what caused it."""

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[PaymentOrder] = fields.ForeignKeyField(
        "palmhall.PaymentOrder", related_name="history", on_delete=fields.CASCADE
    )
    from_state = fields.CharField(max_length=20, null=True)
    to_state = fields.CharField(max_length=20)
    actor = fields.CharField(max_length=64)
    reason = fields.CharField(max_length=255, default="")
    at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "payment_state_change"


class Refund(Model):
    """A refund asked of the platform: out_refund_no (WeChat) or out_request_no (Alipay) is ours."""

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[PaymentOrder] = fields.ForeignKeyField(
        "palmhall.PaymentOrder", related_name="refunds", on_delete=fields.CASCADE
    )
    out_refund_no = fields.CharField(max_length=64, unique=True)
    amount_fen = fields.IntField()
    reason = fields.CharField(max_length=80)
    state = fields.CharEnumField(RefundState, max_length=12, default=RefundState.PROCESSING)
    automatic = fields.BooleanField(default=False)
    requested_by = fields.CharField(max_length=64)
    idempotency_key = fields.CharField(max_length=100, null=True, unique=True)
    platform_refund_id = fields.CharField(max_length=64, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "payment_refund"


class LedgerEntry(Model):
    """Append-only money movements: a payment is positive, a refund negative, never updated or deleted.

    `ref` names the movement on the platform (pay:<trade no> or refund:<out_refund_no>): unique, so a
    notification delivered twice writes one row.
    """

    id = fields.BigIntField(primary_key=True)
    order: fields.ForeignKeyRelation[PaymentOrder] = fields.ForeignKeyField(
        "palmhall.PaymentOrder", related_name="entries", on_delete=fields.RESTRICT
    )
    case_no = fields.CharField(max_length=32, db_index=True)
    channel = fields.CharEnumField(PayChannel, max_length=10)
    kind = fields.CharEnumField(EntryKind, max_length=10)
    amount_fen = fields.IntField()
    ref = fields.CharField(max_length=100, unique=True)
    platform_trade_no = fields.CharField(max_length=64, null=True)
    business_day = fields.DateField(db_index=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "payment_ledger_entry"


class SuspectNotification(Model):
    """A verified notification whose content does not match our order: kept for review, never acted on."""

    id = fields.BigIntField(primary_key=True)
    channel = fields.CharEnumField(PayChannel, max_length=10)
    out_trade_no = fields.CharField(max_length=64, null=True)
    problem = fields.CharField(max_length=64)
    # SHA-256 of channel, problem and content: a retried notification is kept once.
    fingerprint = fields.CharField(max_length=64, unique=True)
    content: fields.Field = fields.JSONField()
    reviewed = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "payment_suspect_notification"


class ReconciliationReport(Model):
    """The outcome of comparing one day's platform bills with our ledger."""

    id = fields.BigIntField(primary_key=True)
    day = fields.DateField(unique=True)
    ok = fields.BooleanField()
    differences: fields.Field = fields.JSONField(default=list)
    summary: fields.Field = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "payment_reconciliation_report"
