"""Payment operations: orders from a case's fees, verified notifications settled exactly once, refunds, sync."""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Subquery

import payments.errors  # noqa: F401  (registers the error codes)
from backend import clock, db
from backend.audit import service as audit
from backend.cases import service as cases
from backend.errors import DomainError
from backend.identity.models import StaffRole
from backend.identity.service import StaffPrincipal
from backend.jobs.outbox import emit
from backend.settings import Settings
from payments import alipay as ali
from payments import channels as channels_mod
from payments.channels import Channels
from payments.events import (
    PAYMENT_CLOSED,
    PAYMENT_REFUND_FAILED,
    PAYMENT_REFUND_REQUESTED,
    PAYMENT_REFUNDED,
    PAYMENT_SUCCEEDED,
    PAYMENT_SUSPECT,
)
from payments.models import (
    EntryKind,
    LedgerEntry,
    OrderState,
    PayChannel,
    PaymentOrder,
    PaymentStateChange,
    PayScene,
    Refund,
    RefundState,
    SuspectNotification,
)

log = logging.getLogger("palmhall.payments")

S = OrderState
OPEN = (S.CREATED, S.PAYING)
SETTLED = (S.PAID, S.REFUNDING, S.REFUNDED, S.PARTIALLY_REFUNDED)

# The state machine: every allowed move, checked in one place (`_change`).
TRANSITIONS: dict[OrderState, frozenset[OrderState]] = {
    S.CREATED: frozenset({S.PAYING, S.PAID, S.CLOSED}),
    S.PAYING: frozenset({S.PAID, S.CLOSED}),
    S.CLOSED: frozenset({S.PAID}),  # money that arrives after we closed: recorded, then refunded
    S.PAID: frozenset({S.REFUNDING}),
    S.PARTIALLY_REFUNDED: frozenset({S.REFUNDING}),
    S.REFUNDING: frozenset({S.REFUNDED, S.PARTIALLY_REFUNDED, S.PAID}),
    S.REFUNDED: frozenset(),
}



def _local_day(moment: datetime) -> date:
    return moment.astimezone(clock.SHANGHAI).date()


def _new_no(prefix: str) -> str:
    # 1 + 8 + 16 = 25 characters of [A-Z0-9]: within both platforms' 32/64-character limits.
    return prefix + clock.now().astimezone(clock.SHANGHAI).strftime("%Y%m%d") + secrets.token_hex(8).upper()


def _parse_time(text: Any) -> datetime | None:
    """WeChat's RFC 3339 times and Alipay's Beijing 'YYYY-MM-DD HH:MM:SS'."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=clock.SHANGHAI)
    return moment


# ---- reading other packages (their tables, read only) -------------------------------------------


@dataclass(frozen=True)
class Payable:
    case_no: str
    hall_id: int
    resident_id: int | None
    awaiting: bool
    paid: bool
    item_name: str
    fees: list[dict[str, Any]]

    @property
    def amount_fen(self) -> int:
        return sum(int(f.get("amount_fen", 0)) for f in self.fees)


async def _payable(case_no: str) -> Payable:
    from backend.cases.models import Case, CaseStatus

    case = await Case.filter(case_no=case_no).prefetch_related("item_version").first()
    if case is None:
        raise DomainError("case.not_found")
    version = case.item_version
    fees = [{"name": str(f.get("name", "")), "basis": str(f.get("basis", "")), "amount_fen": int(f["amount_fen"])}
            for f in (version.fees or []) if int(f.get("amount_fen", 0)) > 0]
    return Payable(case_no=case.case_no, hall_id=case.hall_id, resident_id=case.resident_id,  # type: ignore[attr-defined]
                   awaiting=case.status == CaseStatus.AWAITING_PAYMENT, paid=case.paid_at is not None,
                   item_name=version.name, fees=fees)


async def _payer(resident_id: int, channel: PayChannel, settings: Settings) -> tuple[str | None, str | None]:
    """(WeChat openid or Alipay open_id, Alipay user_id) of the resident's login on that channel."""
    from backend.identity.models import Channel, ChannelIdentity

    if channel == PayChannel.WECHAT:
        row = await ChannelIdentity.filter(resident_id=resident_id, channel=Channel.WECHAT,
                                           app_id=settings.wechat_app_id).order_by("-id").first()
        if row is None:
            raise DomainError("payment.no_channel_identity")
        return row.subject, None
    row = await ChannelIdentity.filter(resident_id=resident_id, channel=Channel.ALIPAY).order_by("-id").first()
    if row is None or not (row.alipay_open_id or row.alipay_user_id):
        raise DomainError("payment.no_channel_identity")
    return row.alipay_open_id, row.alipay_user_id


# ---- state ------------------------------------------------------------------------------------


async def _change(order: PaymentOrder, to: OrderState, *, actor: str, reason: str, using_db: BaseDBAsyncClient,
                  **extra: Any) -> bool:
    """Move `order` to `to` if it is still where we saw it; False when someone else moved it first."""
    frm = order.state
    if to not in TRANSITIONS[frm]:
        raise DomainError("payment.illegal_transition", details={"from": str(frm), "to": str(to)})
    changed = await PaymentOrder.filter(id=order.id, state=frm).using_db(using_db).update(
        state=to, updated_at=clock.now(), **extra)
    if not changed:
        return False
    await PaymentStateChange.create(order_id=order.id, from_state=frm, to_state=to, actor=actor[:64],
                                    reason=reason[:255], at=clock.now(), using_db=using_db)
    order.state = to
    for key, value in extra.items():
        setattr(order, key, value)
    return True


def describe(order: PaymentOrder) -> dict[str, Any]:
    return {
        "id": order.id, "out_trade_no": order.out_trade_no, "case_no": order.case_no, "channel": str(order.channel),
        "scene": str(order.scene), "amount_fen": order.amount_fen, "fees": order.fees, "state": str(order.state),
        "paid_fen": order.paid_fen, "refunded_fen": order.refunded_fen,
        "expires_at": order.expires_at.isoformat() if order.expires_at else None,
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
    }


def describe_refund(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.id, "order_id": refund.order_id, "out_refund_no": refund.out_refund_no,  # type: ignore[attr-defined]
        "amount_fen": refund.amount_fen, "reason": refund.reason, "state": str(refund.state),
        "automatic": refund.automatic, "finished_at": refund.finished_at.isoformat() if refund.finished_at else None,
    }


async def history(*, order_id: int) -> list[dict[str, Any]]:
    rows = await PaymentStateChange.filter(order_id=order_id).order_by("id")
    return [{"from": r.from_state, "to": r.to_state, "actor": r.actor, "reason": r.reason, "at": r.at.isoformat()}
            for r in rows]


# ---- starting a payment -----------------------------------------------------------------------


@dataclass
class Started:
    order: PaymentOrder
    created: bool
    pay: dict[str, Any]


async def start(*, case_no: str, channel: PayChannel, scene: PayScene, settings: Settings,
                resident_id: int | None = None, kiosk_hall_id: int | None = None, kiosk_id: str | None = None,
                idempotency_key: str | None = None) -> Started:
    """An order for the case's fees, or the case's existing open or paid order: never a second charge.

    Asking for another channel (or scene) while an order is open closes that order at its platform first and
    opens one on the channel asked for; if the open order was paid meanwhile, the answer is that paid order.
    A kiosk replaces only a kiosk's order: one the resident opened on their phone may be being paid there.
    """
    ch = channels_mod.for_settings(settings)
    case = await _payable(case_no)
    if resident_id is not None:
        # The resident's own case, however it was opened (a walk-in at a counter is theirs by their ID number);
        # anyone else's is "not found".
        await cases.owned_case(resident_id, case.case_no)
    if kiosk_hall_id is not None and case.hall_id != kiosk_hall_id:
        raise DomainError("case.not_found")
    order = await PaymentOrder.get_or_none(case_slot=case.case_no)
    if order is not None and order.state in OPEN and (order.channel, order.scene) != (channel, scene) and (
            kiosk_hall_id is None or order.scene == PayScene.KIOSK_QR) and case.awaiting and not case.paid:
        if resident_id is not None and scene == PayScene.MINI_PROGRAM:
            await _payer(resident_id, channel, settings)  # the new channel must work before the old one closes
        order = await _close_for_switch(order, settings=settings, channel=channel)
    created = False
    if order is None:
        if not case.awaiting or case.paid:
            raise DomainError("payment.not_payable")
        if case.amount_fen <= 0:
            raise DomainError("payment.no_fees")
        payer: tuple[str | None, str | None] = (None, None)
        if resident_id is not None and scene == PayScene.MINI_PROGRAM:
            payer = await _payer(resident_id, channel, settings)
        try:
            async with db.transaction() as tx:
                order = await PaymentOrder.create(
                    out_trade_no=_new_no("P"), case_no=case.case_no, hall_id=case.hall_id, resident_id=resident_id,
                    kiosk_id=kiosk_id, channel=channel, scene=scene,
                    description=f"{case.item_name} {case.case_no}"[:120],
                    amount_fen=case.amount_fen, fees=case.fees, state=S.CREATED, case_slot=case.case_no,
                    idempotency_key=idempotency_key, payer=payer[0] or payer[1],
                    expires_at=clock.now() + timedelta(minutes=settings.payment_order_ttl_minutes),
                    using_db=tx)
                await PaymentStateChange.create(order_id=order.id, from_state=None, to_state=S.CREATED,
                                                actor=f"resident:{resident_id}" if resident_id else f"kiosk:{kiosk_id}",
                                                reason="创建支付订单", at=clock.now(), using_db=tx)
            created = True
        except IntegrityError:
            # Another request for this case won the slot: answer its order.
            order = await PaymentOrder.get(case_slot=case.case_no)
    if order.state == S.CREATED and order.prepay is None:
        await _prepay(order, ch)
        await order.refresh_from_db()
    return Started(order=order, created=created, pay=await pay_parameters(order, ch))


CHANNEL_NAMES = {PayChannel.WECHAT: "微信支付", PayChannel.ALIPAY: "支付宝"}


async def _close_for_switch(order: PaymentOrder, *, settings: Settings, channel: PayChannel) -> PaymentOrder | None:
    """Close an open order at its platform so that another may take the case: None once it is closed, or the
    order itself when its payment came first (the case is paid, and no second order is opened)."""
    try:
        await close_order(order=order, settings=settings, reason=f"改用{CHANNEL_NAMES[channel]}支付，关闭本订单")
    except DomainError as exc:
        if exc.code != "payment.channel_failed":
            raise
        # The platform would not close it: paid in the meantime, most likely. Ask it, and settle if so.
        await sync_order(order=order, settings=settings)
        fresh = await PaymentOrder.get(id=order.id)
        if fresh.state in OPEN:
            raise
        order = fresh
    fresh = await PaymentOrder.get(id=order.id)
    return fresh if fresh.state in SETTLED else None


async def _prepay(order: PaymentOrder, ch: Channels) -> None:
    """Ask the platform for the order (outside any transaction: the order row is already committed, so a
    notification that overtakes the answer still finds it)."""
    settings = ch.settings
    ttl = max(1, int((order.expires_at - clock.now()).total_seconds() // 60))
    trade_no: str | None = None
    if order.channel == PayChannel.WECHAT:
        data = await ch.wechatpay.prepay(out_trade_no=order.out_trade_no, description=order.description,
                                         amount_fen=order.amount_fen, time_expire=order.expires_at,
                                         openid=order.payer if order.scene == PayScene.MINI_PROGRAM else None)
        prepay = {k: data[k] for k in ("prepay_id", "code_url") if data.get(k)}
    elif order.scene == PayScene.MINI_PROGRAM:
        open_id = order.payer if order.payer and not order.payer.startswith("2088") else None
        user_id = order.payer if order.payer and order.payer.startswith("2088") else None
        trade_no = await ali.create(ch.alipay, out_trade_no=order.out_trade_no, amount_fen=order.amount_fen,
                                    subject=order.description, notify_url=channels_mod.notify_url(settings, "alipay"),
                                    timeout_minutes=ttl, buyer_open_id=open_id, buyer_id=user_id)
        prepay = {"trade_no": trade_no}
    else:
        qr = await ali.precreate(ch.alipay, out_trade_no=order.out_trade_no, amount_fen=order.amount_fen,
                                 subject=order.description, notify_url=channels_mod.notify_url(settings, "alipay"),
                                 timeout_minutes=ttl)
        prepay = {"qr_code": qr}
    async with db.transaction() as tx:
        await PaymentOrder.filter(id=order.id).using_db(tx).update(prepay=prepay)
        if trade_no:
            await PaymentOrder.filter(id=order.id, platform_trade_no=None).using_db(tx).update(
                platform_trade_no=trade_no)
        fresh = await PaymentOrder.filter(id=order.id).using_db(tx).select_for_update().first()
        if fresh is not None and fresh.state == S.CREATED:
            await _change(fresh, S.PAYING, actor=f"platform:{order.channel}", reason="平台已受理下单", using_db=tx)


async def pay_parameters(order: PaymentOrder, ch: Channels) -> dict[str, Any]:
    """What the client needs to pay an open order: nothing once it is paid or closed."""
    prepay = order.prepay or {}
    if order.state not in OPEN or not prepay:
        return {}
    if prepay.get("prepay_id"):
        return {"wechat": await ch.wechatpay.request_payment_params(str(prepay["prepay_id"]))}
    if prepay.get("code_url"):
        return {"qr_content": prepay["code_url"]}
    if prepay.get("qr_code"):
        return {"qr_content": prepay["qr_code"]}
    return {"alipay": {"trade_no": prepay.get("trade_no")}}


async def own_order(*, order_id: int, resident_id: int | None = None, kiosk_hall_id: int | None = None
                    ) -> PaymentOrder:
    order = await PaymentOrder.get_or_none(id=order_id)
    if order is None or (resident_id is not None and order.resident_id != resident_id) or (
            kiosk_hall_id is not None and order.hall_id != kiosk_hall_id):
        raise DomainError("payment.not_found")
    return order


async def refund_parties(*, refund_id: int) -> dict[str, Any] | None:
    """Ids, amount and reason of a refund, for the payer's notice: who paid (None at a kiosk), for which case."""
    refund = await Refund.get_or_none(id=refund_id).prefetch_related("order")
    if refund is None:
        return None
    order: PaymentOrder = refund.order
    return {"resident_id": order.resident_id, "case_no": order.case_no, "hall_id": order.hall_id,
            "channel": str(order.channel), "amount_fen": refund.amount_fen, "reason": refund.reason,
            "automatic": refund.automatic}


# ---- notifications ----------------------------------------------------------------------------


class Refused(Exception):
    """A verified notification we do not act on: answered with a failure so the platform keeps it."""

    def __init__(self, problem: str, status: int = 400) -> None:
        super().__init__(problem)
        self.problem = problem
        self.status = status


async def _suspect(channel: PayChannel, out_trade_no: str | None, problem: str, content: dict[str, Any]) -> None:
    """Keep a mismatching notification for review and raise it to staff, once per distinct content."""
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    fingerprint = hashlib.sha256(f"{channel}|{problem}|{canonical}".encode()).hexdigest()
    if await SuspectNotification.filter(fingerprint=fingerprint).exists():
        return
    try:
        async with db.transaction() as tx:
            row = await SuspectNotification.create(channel=channel, out_trade_no=out_trade_no, problem=problem,
                                                   fingerprint=fingerprint, content=content, using_db=tx)
            await audit.record(using_db=tx, actor_kind="platform", actor_id=str(channel),
                               action="payment.notification_refused", target_kind="payment_suspect",
                               target_id=row.id, details={"out_trade_no": out_trade_no, "problem": problem})
            await emit(PAYMENT_SUSPECT, {"suspect_id": row.id, "channel": str(channel),
                                         "out_trade_no": out_trade_no, "problem": problem}, using_db=tx)
    except IntegrityError:
        return  # the same notification, delivered concurrently, is already kept
    log.warning("payment notification refused", extra={"channel": str(channel), "out_trade_no": out_trade_no,
                                                        "problem": problem})


async def settle_paid(*, channel: PayChannel, out_trade_no: str, platform_trade_no: str, amount_fen: int,
                      paid_at: datetime | None, source: str) -> str:
    """Record a confirmed payment exactly once: 'paid', 'late' (refund started) or 'duplicate'."""
    when = paid_at or clock.now()
    async with db.transaction() as tx:
        order = await PaymentOrder.filter(out_trade_no=out_trade_no).using_db(tx).select_for_update().first()
        if order is None:
            raise Refused("unknown_order", 404)
        if order.state in SETTLED:
            return "duplicate"
        late = order.state == S.CLOSED
        extra: dict[str, Any] = {"paid_fen": amount_fen, "platform_trade_no": platform_trade_no, "paid_at": when}
        changed = await _change(order, S.PAID, actor=source, using_db=tx, **extra,
                                reason="关闭后到账" if late else "支付成功")
        if not changed:
            return "duplicate"
        await LedgerEntry.create(order_id=order.id, case_no=order.case_no, channel=order.channel,
                                 kind=EntryKind.PAYMENT, amount_fen=amount_fen,
                                 ref=f"pay:{order.channel}:{platform_trade_no}", platform_trade_no=platform_trade_no,
                                 business_day=_local_day(when), using_db=tx)
        await audit.record(using_db=tx, actor_kind="platform", actor_id=str(order.channel), action="payment.paid",
                           target_kind="payment_order", target_id=order.id,
                           details={"out_trade_no": out_trade_no, "amount_fen": amount_fen, "late": late})
        if late:
            refund = await _open_refund(order, amount_fen=amount_fen, reason="订单关闭后到账，自动退款",
                                        automatic=True, requested_by="system", idempotency_key=None, using_db=tx)
            await emit(PAYMENT_REFUND_REQUESTED, {"refund_id": refund.id}, using_db=tx)
            return "late"
        await emit(PAYMENT_SUCCEEDED, {"order_id": order.id, "out_trade_no": out_trade_no, "case_no": order.case_no,
                                       "channel": str(order.channel), "amount_fen": amount_fen}, using_db=tx)
    return "paid"


async def accept_wechat(*, notification: dict[str, Any], settings: Settings) -> str:
    """A verified, decrypted WeChat Pay notification (payment or refund)."""
    event_type = notification["event_type"]
    res = notification["resource"]
    if event_type.startswith("REFUND."):
        return await _accept_wechat_refund(res, event_type, settings)
    no = str(res.get("out_trade_no") or "")
    if event_type != "TRANSACTION.SUCCESS" or res.get("trade_state") != "SUCCESS":
        return "ignored"
    order = await PaymentOrder.get_or_none(out_trade_no=no)
    problem = None
    total = (res.get("amount") or {}).get("total")
    if res.get("mchid") != settings.wechatpay_mchid:
        problem = "merchant_mismatch"
    elif res.get("appid") != settings.wechat_app_id:
        problem = "app_id_mismatch"
    elif order is None:
        problem = "unknown_order"
    elif order.channel != PayChannel.WECHAT:
        problem = "channel_mismatch"
    elif not isinstance(total, int) or total != order.amount_fen:
        problem = "amount_mismatch"
    elif not res.get("transaction_id"):
        problem = "no_transaction_id"
    if problem is not None:
        await _suspect(PayChannel.WECHAT, no or None, problem, res)
        raise Refused(problem, 404 if problem == "unknown_order" else 400)
    return await settle_paid(channel=PayChannel.WECHAT, out_trade_no=no, platform_trade_no=str(res["transaction_id"]),
                             amount_fen=order.amount_fen, paid_at=_parse_time(res.get("success_time")),  # type: ignore[union-attr]
                             source="notify:wechat")


async def _accept_wechat_refund(res: dict[str, Any], event_type: str, settings: Settings) -> str:
    no = str(res.get("out_refund_no") or "")
    refund = await Refund.get_or_none(out_refund_no=no).prefetch_related("order")
    problem = None
    amount = (res.get("amount") or {}).get("refund")
    if res.get("mchid") != settings.wechatpay_mchid:
        problem = "merchant_mismatch"
    elif refund is None:
        problem = "unknown_refund"
    elif refund.order.out_trade_no != res.get("out_trade_no") or amount != refund.amount_fen:
        problem = "amount_mismatch"
    if problem is not None:
        await _suspect(PayChannel.WECHAT, str(res.get("out_trade_no") or "") or None, problem, res)
        raise Refused(problem, 404 if problem == "unknown_refund" else 400)
    status = res.get("refund_status")
    if status == "SUCCESS":
        return await settle_refund(out_refund_no=no, success=True, platform_refund_id=res.get("refund_id"),
                                   at=_parse_time(res.get("success_time")), source="notify:wechat")
    if status in ("CLOSED", "ABNORMAL"):
        return await settle_refund(out_refund_no=no, success=False, platform_refund_id=res.get("refund_id"),
                                   at=None, source="notify:wechat")
    return "ignored"


async def accept_alipay(*, params: dict[str, str], settings: Settings) -> str:
    """A verified Alipay asynchronous notification."""
    no = params.get("out_trade_no", "")
    status = params.get("trade_status", "")
    order = await PaymentOrder.get_or_none(out_trade_no=no) if no else None
    problem = None
    if params.get("app_id") != settings.alipay_app_id:
        problem = "app_id_mismatch"
    elif settings.alipay_seller_id and params.get("seller_id") != settings.alipay_seller_id:
        problem = "seller_mismatch"
    elif order is None:
        problem = "unknown_order"
    elif order.channel != PayChannel.ALIPAY:
        problem = "channel_mismatch"
    else:
        try:
            amount = ali.yuan_to_fen(params.get("total_amount", ""))
        except ValueError:
            amount = -1
        if amount != order.amount_fen:
            problem = "amount_mismatch"
        elif not params.get("trade_no"):
            problem = "no_trade_no"
    if problem is None and params.get("out_biz_no") and params.get("refund_fee"):
        return await _accept_alipay_refund(params, order)  # type: ignore[arg-type]
    if problem is not None:
        content = {k: v for k, v in params.items() if k != "sign"}
        await _suspect(PayChannel.ALIPAY, no or None, problem, content)
        raise Refused(problem, 404 if problem == "unknown_order" else 400)
    if status not in ("TRADE_SUCCESS", "TRADE_FINISHED"):
        # WAIT_BUYER_PAY, or TRADE_CLOSED after a full refund or a close: nothing to record from it.
        return "ignored"
    return await settle_paid(channel=PayChannel.ALIPAY, out_trade_no=no, platform_trade_no=params["trade_no"],
                             amount_fen=order.amount_fen,  # type: ignore[union-attr]
                             paid_at=_parse_time(params.get("gmt_payment")), source="notify:alipay")


async def _accept_alipay_refund(params: dict[str, str], order: PaymentOrder) -> str:
    """Alipay's notification after a refund went through: the trade's notification naming the refund
    (`out_biz_no`), with the trade's whole refunded amount (`refund_fee`) and the refund's time (`gmt_refund`)."""
    no = params["out_biz_no"]
    refund = await Refund.get_or_none(out_refund_no=no, order_id=order.id)
    problem = None
    if refund is None:
        problem = "unknown_refund"
    elif refund.state == RefundState.PROCESSING:
        try:
            refunded = ali.yuan_to_fen(params["refund_fee"])
        except ValueError:
            refunded = -1
        if refunded != order.refunded_fen + refund.amount_fen:
            problem = "amount_mismatch"
    if problem is not None:
        await _suspect(PayChannel.ALIPAY, order.out_trade_no, problem, {k: v for k, v in params.items() if k != "sign"})
        raise Refused(problem, 404 if problem == "unknown_refund" else 400)
    return await settle_refund(out_refund_no=no, success=True, platform_refund_id=params.get("trade_no"),
                               at=_parse_time(params.get("gmt_refund")), source="notify:alipay")


# ---- refunds ----------------------------------------------------------------------------------


async def _open_refund(order: PaymentOrder, *, amount_fen: int, reason: str, automatic: bool, requested_by: str,
                       idempotency_key: str | None, using_db: BaseDBAsyncClient) -> Refund:
    refund = await Refund.create(order_id=order.id, out_refund_no=_new_no("R"), amount_fen=amount_fen,
                                 reason=reason[:80], automatic=automatic, requested_by=requested_by,
                                 idempotency_key=idempotency_key, using_db=using_db)
    if not await _change(order, S.REFUNDING, actor=requested_by, reason=f"退款 {amount_fen} 分：{reason}"[:255],
                         using_db=using_db):
        raise DomainError("payment.refund_in_progress")
    await audit.record(using_db=using_db, actor_kind="system" if automatic else "staff",
                       actor_id=requested_by, action="payment.refund_requested", target_kind="payment_order",
                       target_id=order.id, details={"refund_id": refund.id, "amount_fen": amount_fen,
                                                    "reason": reason, "automatic": automatic})
    return refund


async def request_refund(*, order_id: int, amount_fen: int | None, reason: str, staff: StaffPrincipal,
                         idempotency_key: str, settings: Settings) -> tuple[Refund, bool]:
    """A hall admin refunds all or part of a paid order; the same Idempotency-Key answers the same refund."""
    key = f"{order_id}:{idempotency_key}"
    existing = await Refund.get_or_none(idempotency_key=key)
    if existing is not None:
        return existing, False
    try:
        async with db.transaction() as tx:
            order = await PaymentOrder.filter(id=order_id).using_db(tx).select_for_update().first()
            if order is None:
                raise DomainError("payment.not_found")
            staff.require(order.hall_id, StaffRole.HALL_ADMIN)
            if order.state == S.REFUNDING:
                raise DomainError("payment.refund_in_progress")
            if order.state not in (S.PAID, S.PARTIALLY_REFUNDED):
                raise DomainError("payment.not_refundable", details={"state": str(order.state)})
            left = order.paid_fen - order.refunded_fen
            amount = left if amount_fen is None else amount_fen
            if amount <= 0 or amount > left:
                raise DomainError("payment.refund_too_much", details={"refundable_fen": left})
            refund = await _open_refund(order, amount_fen=amount, reason=reason, automatic=False,
                                        requested_by=f"staff:{staff.id}", idempotency_key=key, using_db=tx)
    except IntegrityError:
        return await Refund.get(idempotency_key=key), False
    await submit_refund(refund_id=refund.id, settings=settings)
    await refund.refresh_from_db()
    return refund, True


async def submit_refund(*, refund_id: int, settings: Settings) -> None:
    """Ask the platform (again, safely: out_refund_no / out_request_no make it idempotent)."""
    ch = channels_mod.for_settings(settings)
    refund = await Refund.get(id=refund_id).prefetch_related("order")
    if refund.state != RefundState.PROCESSING:
        return
    order: PaymentOrder = refund.order
    if order.channel == PayChannel.WECHAT:
        try:
            data = await ch.wechatpay.refund(out_trade_no=order.out_trade_no, out_refund_no=refund.out_refund_no,
                                             refund_fen=refund.amount_fen, total_fen=order.paid_fen,
                                             reason=refund.reason)
        except DomainError as exc:
            if exc.code == "payment.channel_failed":
                await settle_refund(out_refund_no=refund.out_refund_no, success=False, platform_refund_id=None,
                                    at=None, source="platform:wechat")
                return
            raise
        await _apply_wechat_refund_status(refund, data)
        return
    try:
        node = await ali.refund(ch.alipay, out_trade_no=order.out_trade_no, out_request_no=refund.out_refund_no,
                                amount_fen=refund.amount_fen, reason=refund.reason)
    except ali.PlatformRefused:
        await settle_refund(out_refund_no=refund.out_refund_no, success=False, platform_refund_id=None, at=None,
                            source="platform:alipay")
        return
    if node.get("fund_change") == "Y":  # the money went back with this answer
        await settle_refund(out_refund_no=refund.out_refund_no, success=True, platform_refund_id=node.get("trade_no"),
                            at=_parse_time(node.get("gmt_refund_pay")), source="platform:alipay")
        return
    # Accepted, but no money moved with this answer (asked before, or still under way): Alipay's refund query
    # says whether it went back; if not yet, its notification or the periodic query will.
    try:
        found = await ali.query_refund(ch.alipay, out_trade_no=order.out_trade_no,
                                       out_request_no=refund.out_refund_no)
    except DomainError as exc:  # not knowing yet is no failure of the refund: the periodic query asks again
        log.warning("alipay refund query failed", extra={"out_refund_no": refund.out_refund_no, "error": exc.code})
        return
    if found.get("refund_status") == "REFUND_SUCCESS":
        await settle_refund(out_refund_no=refund.out_refund_no, success=True, platform_refund_id=node.get("trade_no"),
                            at=_parse_time(found.get("gmt_refund_pay")), source="query:alipay")


async def _apply_wechat_refund_status(refund: Refund, data: dict[str, Any]) -> None:
    status = data.get("status") or data.get("refund_status")
    if status == "SUCCESS":
        await settle_refund(out_refund_no=refund.out_refund_no, success=True, platform_refund_id=data.get("refund_id"),
                            at=_parse_time(data.get("success_time")), source="platform:wechat")
    elif status in ("CLOSED", "ABNORMAL"):
        await settle_refund(out_refund_no=refund.out_refund_no, success=False,
                            platform_refund_id=data.get("refund_id"), at=None, source="platform:wechat")


async def settle_refund(*, out_refund_no: str, success: bool, platform_refund_id: Any, at: datetime | None,
                        source: str) -> str:
    """A refund's outcome, recorded exactly once: 'refunded', 'failed' or 'duplicate'."""
    when = at or clock.now()
    async with db.transaction() as tx:
        refund = await Refund.filter(out_refund_no=out_refund_no).using_db(tx).select_for_update().first()
        if refund is None:
            raise Refused("unknown_refund", 404)
        changed = await Refund.filter(id=refund.id, state=RefundState.PROCESSING).using_db(tx).update(
            state=RefundState.SUCCESS if success else RefundState.FAILED, finished_at=when,
            platform_refund_id=str(platform_refund_id) if platform_refund_id else None)
        if not changed:
            return "duplicate"
        order = await PaymentOrder.filter(id=refund.order_id).using_db(tx).select_for_update().first()  # type: ignore[attr-defined]
        assert order is not None
        if success:
            await LedgerEntry.create(order_id=order.id, case_no=order.case_no, channel=order.channel,
                                     kind=EntryKind.REFUND, amount_fen=-refund.amount_fen,
                                     ref=f"refund:{order.channel}:{out_refund_no}",
                                     platform_trade_no=order.platform_trade_no, business_day=_local_day(when),
                                     using_db=tx)
            refunded = order.refunded_fen + refund.amount_fen
            to = S.REFUNDED if refunded >= order.paid_fen else S.PARTIALLY_REFUNDED
            await _change(order, to, actor=source, reason=f"退款成功 {refund.amount_fen} 分", using_db=tx,
                          refunded_fen=refunded)
            await emit(PAYMENT_REFUNDED, {"order_id": order.id, "refund_id": refund.id, "case_no": order.case_no,
                                          "amount_fen": refund.amount_fen, "automatic": refund.automatic},
                       using_db=tx)
        else:
            to = S.PARTIALLY_REFUNDED if order.refunded_fen else S.PAID
            await _change(order, to, actor=source, reason="退款失败", using_db=tx)
            await emit(PAYMENT_REFUND_FAILED, {"order_id": order.id, "refund_id": refund.id,
                                               "case_no": order.case_no}, using_db=tx)
        await audit.record(using_db=tx, actor_kind="platform", actor_id=source, action=(
            "payment.refunded" if success else "payment.refund_failed"), target_kind="payment_order",
            target_id=order.id, details={"refund_id": refund.id, "amount_fen": refund.amount_fen})
    return "refunded" if success else "failed"


# ---- when no notification comes ---------------------------------------------------------------


async def sync_order(*, order: PaymentOrder, settings: Settings) -> str:
    """Query the platform about an open order: settle it if paid, close it if it has expired."""
    ch = channels_mod.for_settings(settings)
    if order.channel == PayChannel.WECHAT:
        data = await ch.wechatpay.query(order.out_trade_no)
        if data is not None and data.get("trade_state") in ("SUCCESS", "REFUND"):
            total = (data.get("amount") or {}).get("total")
            if total != order.amount_fen or data.get("mchid") != settings.wechatpay_mchid:
                await _suspect(PayChannel.WECHAT, order.out_trade_no, "query_mismatch", data)
                return "suspect"
            return await settle_paid(channel=PayChannel.WECHAT, out_trade_no=order.out_trade_no,
                                     platform_trade_no=str(data["transaction_id"]), amount_fen=int(total),
                                     paid_at=_parse_time(data.get("success_time")), source="query:wechat")
    else:
        node = await ali.query(ch.alipay, order.out_trade_no)
        if node is not None and node.get("trade_status") in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            if ali.yuan_to_fen(str(node.get("total_amount", "-1"))) != order.amount_fen:
                await _suspect(PayChannel.ALIPAY, order.out_trade_no, "query_mismatch", node)
                return "suspect"
            return await settle_paid(channel=PayChannel.ALIPAY, out_trade_no=order.out_trade_no,
                                     platform_trade_no=str(node["trade_no"]), amount_fen=order.amount_fen,
                                     paid_at=_parse_time(node.get("send_pay_date")), source="query:alipay")
    if order.expires_at > clock.now():
        return "open"
    return await close_order(order=order, settings=settings, reason="超时未支付，订单关闭")


async def close_order(*, order: PaymentOrder, settings: Settings, reason: str) -> str:
    ch = channels_mod.for_settings(settings)
    # Closed there first: once the platform says closed, no payment can start for it any more.
    if order.channel == PayChannel.WECHAT:
        await ch.wechatpay.close(order.out_trade_no)
    else:
        await ali.close(ch.alipay, order.out_trade_no)
    async with db.transaction() as tx:
        fresh = await PaymentOrder.filter(id=order.id).using_db(tx).select_for_update().first()
        if fresh is None or fresh.state not in OPEN:
            return "settled"
        await _change(fresh, S.CLOSED, actor="system", reason=reason, using_db=tx, case_slot=None,
                      closed_at=clock.now())
        await emit(PAYMENT_CLOSED, {"order_id": fresh.id, "case_no": fresh.case_no}, using_db=tx)
    return "closed"


async def sync_open(*, settings: Settings, limit: int = 200) -> dict[str, int]:
    """One pass of the periodic task: open orders and processing refunds that heard nothing for a while."""
    quiet = clock.now() - timedelta(seconds=settings.payment_query_after_seconds)
    counts: dict[str, int] = {}
    orders = await PaymentOrder.filter(state__in=list(OPEN), created_at__lte=quiet).order_by("id").limit(limit)
    for order in orders:
        try:
            outcome = await sync_order(order=order, settings=settings)
        except (DomainError, Refused) as exc:
            log.warning("payment sync failed", extra={"out_trade_no": order.out_trade_no, "error": str(exc)})
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    refunds = await Refund.filter(state=RefundState.PROCESSING, created_at__lte=quiet).order_by("id").limit(limit)
    for refund in refunds:
        try:
            outcome = await sync_refund(refund=refund, settings=settings)
        except DomainError as exc:
            log.warning("refund sync failed", extra={"out_refund_no": refund.out_refund_no, "error": str(exc)})
            outcome = "error"
        counts[f"refund_{outcome}"] = counts.get(f"refund_{outcome}", 0) + 1
    return counts


async def sync_refund(*, refund: Refund, settings: Settings) -> str:
    ch = channels_mod.for_settings(settings)
    await refund.fetch_related("order")
    order: PaymentOrder = refund.order
    if order.channel == PayChannel.WECHAT:
        data = await ch.wechatpay.query_refund(refund.out_refund_no)
        if data is None:
            await submit_refund(refund_id=refund.id, settings=settings)  # never reached WeChat Pay: ask again
        else:
            await _apply_wechat_refund_status(refund, data)
    else:
        node = await ali.query_refund(ch.alipay, out_trade_no=order.out_trade_no, out_request_no=refund.out_refund_no)
        if node.get("refund_status") == "REFUND_SUCCESS":
            await settle_refund(out_refund_no=refund.out_refund_no, success=True, platform_refund_id=None,
                                at=_parse_time(node.get("gmt_refund_pay")), source="query:alipay")
        else:
            await submit_refund(refund_id=refund.id, settings=settings)
    await refund.refresh_from_db()
    return str(refund.state)


# ---- ledger -----------------------------------------------------------------------------------


async def ledger(*, case_no: str) -> dict[str, Any]:
    entries = await LedgerEntry.filter(case_no=case_no).order_by("id")
    return {"case_no": case_no, "balance_fen": sum(e.amount_fen for e in entries), "entries": [
        {"kind": str(e.kind), "amount_fen": e.amount_fen, "ref": e.ref, "business_day": e.business_day.isoformat(),
         "channel": str(e.channel)} for e in entries]}



async def refunds_of(*, order_id: int) -> list[dict[str, Any]]:
    return [describe_refund(r) for r in await Refund.filter(order_id=order_id).order_by("id")]


# Who reviews suspect notifications: hall admins and auditors those of their halls' orders, admins every one.
SUSPECT_READERS = (StaffRole.HALL_ADMIN, StaffRole.AUDITOR)


async def suspects(*, staff: StaffPrincipal, reviewed: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Verified notifications that did not match an order, for staff to review.

    A notification belongs to the hall of the order it names: its content (the payer's openid among it) is for
    that hall's admins and auditors only. One naming no order of ours belongs to no hall, so only an admin (a
    deployment-wide role) sees it, and an admin sees every other one too.
    """
    query = SuspectNotification.filter(reviewed=reviewed)
    if not staff.halls_with(StaffRole.ADMIN):
        halls = staff.halls_with(*SUSPECT_READERS)
        if not halls:
            raise DomainError("auth.forbidden", details={"needs": [r.value for r in (*SUSPECT_READERS,
                                                                                      StaffRole.ADMIN)]})
        query = query.filter(out_trade_no__in=Subquery(
            PaymentOrder.filter(hall_id__in=sorted(halls)).values("out_trade_no")))
    rows = await query.order_by("-id").limit(limit)
    named = sorted({s.out_trade_no for s in rows if s.out_trade_no})
    hall_of = dict(await PaymentOrder.filter(out_trade_no__in=named).values_list("out_trade_no", "hall_id"))
    return [{"id": s.id, "channel": str(s.channel), "out_trade_no": s.out_trade_no, "problem": s.problem,
             "hall_id": hall_of.get(s.out_trade_no), "content": s.content, "received_at": s.created_at.isoformat()}
            for s in rows]
