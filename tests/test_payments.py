"""Payments end to end through the HTTP API against fake WeChat Pay and Alipay servers on loopback."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from backend.cases.models import Case, CaseStatus
from backend.jobs.models import OutboxEvent
from payments.alipay import fen_to_yuan, yuan_to_fen
from payments.models import LedgerEntry, PaymentOrder, SuspectNotification
from tests.cases_support import World, build_world
from tests.conftest import Live, Platforms
from tests.payments_support import FEE, awaiting_case, counts, payer, run_worker, start_payment, wire


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live, platforms: Platforms) -> World:
    wire(platforms, live)
    return await build_world(live)


def test_yuan_and_fen_convert_exactly() -> None:
    assert yuan_to_fen("12.50") == 1250 and yuan_to_fen("0.01") == 1 and yuan_to_fen("12.5") == 1250
    assert yuan_to_fen("100") == 10000 and yuan_to_fen("-3.20") == -320
    assert fen_to_yuan(1250) == "12.50" and fen_to_yuan(1) == "0.01" and fen_to_yuan(-320) == "-3.20"
    # 0.1 + 0.2 style float traps never arise: every value with two decimals round-trips.
    assert all(yuan_to_fen(fen_to_yuan(f)) == f for f in range(0, 100001, 7))
    for bad in ("1.234", "abc", "", "1e3", "01.00", " "):
        with pytest.raises(ValueError):
            yuan_to_fen(bad)


async def test_alipay_full_pay_flow(live: Live, platforms: Platforms, world: World) -> None:
    me = await payer(live, platforms, "alipay")
    case_no = await awaiting_case(live, world, me)
    r = await start_payment(live, me, case_no)
    assert r.status_code == 201, r.text
    order = r.json()["order"]
    assert (order["amount_fen"], order["state"], order["channel"]) == (FEE, "paying", "alipay")
    assert order["fees"] == [{"name": "工本费", "basis": "浙价费〔2020〕1号", "amount_fen": FEE}]
    trade = platforms.alipay_trades.trades[order["out_trade_no"]]
    assert r.json()["pay"] == {"alipay": {"trade_no": trade.trade_no}}
    assert (trade.total_fen, trade.buyer) == (FEE, me.subject)  # "12.50" on the wire, for this buyer_open_id
    # Asking again answers the same order, never a second charge.
    again = await start_payment(live, me, case_no)
    assert again.status_code == 200 and again.json()["order"]["id"] == order["id"]
    assert platforms.alipay.calls["alipay.trade.create"] == 1

    answer = await platforms.alipay_trades.pay(order["out_trade_no"])
    assert answer is not None and (answer.status_code, answer.text) == (200, "success")
    c = await counts(order["out_trade_no"])
    assert (c.state, c.paid_changes, c.ledger_rows, c.balance, c.succeeded_events) == ("paid", 1, 1, FEE, 1)
    event = await OutboxEvent.get(topic="payment.succeeded")
    assert event.payload == {"order_id": order["id"], "out_trade_no": order["out_trade_no"], "case_no": case_no,
                             "channel": "alipay", "amount_fen": FEE}
    assert (await Case.get(case_no=case_no)).status == CaseStatus.AWAITING_PAYMENT  # the outbox moves it on
    await run_worker()
    case = await Case.get(case_no=case_no)
    assert case.status == CaseStatus.IN_REVIEW and case.paid_at is not None and case.paused_since is None
    # Paid: asking to pay answers the paid order with nothing to pay.
    after = await start_payment(live, me, case_no)
    assert after.status_code == 200 and after.json()["order"]["state"] == "paid" and after.json()["pay"] == {}
    shown = await live.client.get(f"/api/v1/mp/payments/{order['id']}", headers=me.headers)
    assert [h["to"] for h in shown.json()["history"]] == ["created", "paying", "paid"]


async def test_wechat_full_pay_flow(live: Live, platforms: Platforms, world: World) -> None:
    me = await payer(live, platforms, "wechat")
    case_no = await awaiting_case(live, world, me)
    r = await start_payment(live, me, case_no)
    assert r.status_code == 201, r.text
    order, pay = r.json()["order"], r.json()["pay"]["wechat"]
    trade = platforms.wechatpay.trades[order["out_trade_no"]]
    assert (trade.total, trade.openid, trade.trade_type) == (FEE, me.subject, "JSAPI")
    assert set(pay) == {"timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert pay["package"] == f"prepay_id={trade.prepay}" and pay["signType"] == "RSA"
    # paySign: SHA256withRSA by the merchant key over appId, timeStamp, nonceStr, package, one per line.
    merchant = serialization.load_der_public_key(base64.b64decode(platforms.wechatpay.keys.merchant_public))
    message = f"{platforms.wechat.app_id}\n{pay['timeStamp']}\n{pay['nonceStr']}\n{pay['package']}\n".encode()
    merchant.verify(base64.b64decode(pay["paySign"]), message, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr, call-arg, arg-type]

    answer = await platforms.wechatpay.pay(order["out_trade_no"])
    assert answer is not None and answer.status_code == 204
    c = await counts(order["out_trade_no"])
    assert (c.state, c.paid_changes, c.ledger_rows, c.balance, c.succeeded_events) == ("paid", 1, 1, FEE, 1)
    entry = await LedgerEntry.get(order_id=order["id"])
    assert entry.ref == f"pay:wechat:{platforms.wechatpay.trades[order['out_trade_no']].transaction_id}"
    await run_worker()
    assert (await Case.get(case_no=case_no)).status == CaseStatus.IN_REVIEW


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
async def test_duplicate_notifications_change_once(live: Live, platforms: Platforms, world: World,
                                                   channel: str) -> None:
    me = await payer(live, platforms, channel)
    case_no = await awaiting_case(live, world, me)
    no = (await start_payment(live, me, case_no)).json()["order"]["out_trade_no"]

    async def deliver() -> tuple[int, str]:
        if channel == "wechat":
            fake = platforms.wechatpay
            headers, body = fake.payment_notification(no)
            r = await fake.deliver(fake.trades[no].notify_url, headers, body)
        else:
            alipay = platforms.alipay_trades
            r = await alipay.deliver(alipay.trades[no].notify_url, alipay.notification(no))
        return r.status_code, r.text

    if channel == "wechat":
        platforms.wechatpay.mark_paid(no)
    else:
        platforms.alipay_trades.mark_paid(no)
    # WeChat retries up to 15 times, Alipay 8: the same notice again and again, then 20 at once.
    sequential = [await deliver() for _ in range(15)]
    concurrent = await asyncio.gather(*[deliver() for _ in range(20)])
    ok = (204, "") if channel == "wechat" else (200, "success")
    assert set(sequential) == {ok} and set(concurrent) == {ok}
    c = await counts(no)
    assert (c.state, c.paid_changes, c.ledger_rows, c.balance, c.succeeded_events) == ("paid", 1, 1, FEE, 1)
    await run_worker()
    assert (await Case.get(case_no=case_no)).status == CaseStatus.IN_REVIEW


async def test_notification_arriving_before_the_prepay_answer(live: Live, platforms: Platforms,
                                                              world: World) -> None:
    me = await payer(live, platforms, "wechat")
    case_no = await awaiting_case(live, world, me)
    fake = platforms.wechatpay
    fake.delay_answers = 1.0
    request = asyncio.create_task(start_payment(live, me, case_no))
    for _ in range(100):
        if fake.trades:
            break
        await asyncio.sleep(0.02)
    no = next(iter(fake.trades))
    answer = await fake.pay(no)  # paid and notified while our prepay call still waits for its answer
    assert answer is not None and answer.status_code == 204
    r = await request
    assert r.status_code == 201, r.text
    assert r.json()["order"]["state"] == "paid" and r.json()["pay"] == {}
    c = await counts(no)
    assert (c.state, c.paid_changes, c.ledger_rows, c.succeeded_events) == ("paid", 1, 1, 1)


async def test_unknown_order_and_unpayable_case_are_refused(live: Live, platforms: Platforms, world: World) -> None:
    me = await payer(live, platforms, "wechat")
    case_no = await awaiting_case(live, world, me)
    r = await live.client.post("/api/v1/mp/payments", json={"case_no": case_no, "channel": "wechat"},
                               headers=me.headers)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "payment.idempotency_key_missing")
    other = await payer(live, platforms, "alipay")
    r = await start_payment(live, other, case_no)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "case.not_found")
    assert await PaymentOrder.all().count() == 0
    assert await SuspectNotification.all().count() == 0


async def test_state_machine_allows_only_its_table(orm: str) -> None:
    from datetime import timedelta

    from backend import clock, db
    from backend.errors import DomainError
    from payments.models import OrderState, PayChannel, PaymentStateChange, PayScene
    from payments.service import TRANSITIONS, _change

    order = await PaymentOrder.create(out_trade_no="PTEST0001", case_no="C1", hall_id=1, channel=PayChannel.ALIPAY,
                                      scene=PayScene.MINI_PROGRAM, description="t", amount_fen=FEE,
                                      expires_at=clock.now() + timedelta(minutes=5))
    checked = 0
    for frm in OrderState:
        for to in OrderState:
            await PaymentOrder.filter(id=order.id).update(state=frm)
            await order.refresh_from_db()
            async with db.transaction() as tx:
                if to in TRANSITIONS[frm]:
                    assert await _change(order, to, actor="test", reason="t", using_db=tx)
                else:
                    with pytest.raises(DomainError) as exc:
                        await _change(order, to, actor="test", reason="t", using_db=tx)
                    assert exc.value.code == "payment.illegal_transition"
            checked += 1
    assert checked == len(OrderState) ** 2
    assert await PaymentStateChange.filter(order_id=order.id).count() == sum(len(v) for v in TRANSITIONS.values())
    # A terminal state stays terminal; money is never marked paid twice by the table itself.
    assert TRANSITIONS[OrderState.REFUNDED] == frozenset() and OrderState.PAID not in TRANSITIONS[OrderState.PAID]
    # A stale view of the order loses: the row moved on, nothing is written.
    await PaymentOrder.filter(id=order.id).update(state=OrderState.PAID)
    order.state = OrderState.PAYING
    async with db.transaction() as tx:
        assert await _change(order, OrderState.PAID, actor="late", reason="t", using_db=tx) is False
