"""Changing one's mind about the channel: the open order is closed at its platform and one opens on the other,
and a case is never paid twice; through the HTTP API against the WeChat Pay and Alipay fakes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.cases.models import Case, CaseStatus
from backend.identity import service as identity
from payments.models import LedgerEntry, PaymentOrder
from tests.cases_support import ZHANG, World, build_world, kiosk_headers
from tests.conftest import Live, Platforms
from tests.payments_support import FEE, Payer, awaiting_case, counts, payer, run_worker, wire
from tests.test_identity import alipay_login, join_with_code


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live, platforms: Platforms) -> World:
    wire(platforms, live)
    return await build_world(live)


async def on_both(live: Live, platforms: Platforms) -> Payer:
    """Zhang on WeChat, who joined his Alipay login to the same account."""
    me = await payer(live, platforms, "wechat")
    await join_with_code(live, platforms, await alipay_login(live, platforms, open_id=f"ali_{uuid.uuid4().hex[:8]}"),
                         ZHANG)
    return me


async def pay_with(live: Live, me: Payer, case_no: str, channel: str) -> httpx.Response:
    return await live.client.post("/api/v1/mp/payments", json={"case_no": case_no, "channel": channel},
                                  headers={**me.headers, "Idempotency-Key": uuid.uuid4().hex})


async def test_asking_for_alipay_closes_the_open_wechat_order_and_opens_an_alipay_one(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await on_both(live, platforms)
    case_no = await awaiting_case(live, world, me)
    first = await pay_with(live, me, case_no, "wechat")
    assert first.status_code == 201, first.text
    wechat = first.json()["order"]
    assert wechat["state"] == "paying"

    r = await pay_with(live, me, case_no, "alipay")
    assert r.status_code == 201, r.text
    alipay = r.json()["order"]
    assert (alipay["channel"], alipay["state"], alipay["amount_fen"]) == ("alipay", "paying", FEE)
    trade = platforms.alipay_trades.trades[alipay["out_trade_no"]]
    assert r.json()["pay"] == {"alipay": {"trade_no": trade.trade_no}}
    # The WeChat order is closed, there and here, and says why.
    assert platforms.wechatpay.trades[wechat["out_trade_no"]].state == "CLOSED"
    shown = (await live.client.get(f"/api/v1/mp/payments/{wechat['id']}", headers=me.headers)).json()
    assert shown["order"]["state"] == "closed" and shown["pay"] == {}
    assert [h["to"] for h in shown["history"]] == ["created", "paying", "closed"]
    assert shown["history"][-1]["reason"] == "改用支付宝支付，关闭本订单"
    # Asking for Alipay again answers the same Alipay order.
    again = await pay_with(live, me, case_no, "alipay")
    assert (again.status_code, again.json()["order"]["id"]) == (200, alipay["id"])

    answer = await platforms.alipay_trades.pay(alipay["out_trade_no"])
    assert answer is not None and answer.text == "success"
    await run_worker()
    assert (await Case.get(case_no=case_no)).status == CaseStatus.IN_REVIEW
    # Paid once, through Alipay; WeChat Pay takes no payment for the closed order.
    platforms.wechatpay.mark_paid(wechat["out_trade_no"])
    assert platforms.wechatpay.trades[wechat["out_trade_no"]].state == "CLOSED"
    assert [(e.channel, e.amount_fen) for e in await LedgerEntry.filter(case_no=case_no)] == [("alipay", FEE)]


async def test_a_wechat_order_paid_meanwhile_is_the_answer_and_nothing_opens(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await on_both(live, platforms)
    case_no = await awaiting_case(live, world, me)
    wechat = (await pay_with(live, me, case_no, "wechat")).json()["order"]
    # Paid on the phone a moment ago; WeChat Pay's notification has not arrived yet.
    platforms.wechatpay.mark_paid(wechat["out_trade_no"])

    r = await pay_with(live, me, case_no, "alipay")
    assert r.status_code == 200, r.text
    assert (r.json()["order"]["id"], r.json()["order"]["channel"], r.json()["order"]["state"]) == (
        wechat["id"], "wechat", "paid")
    assert r.json()["pay"] == {}
    assert platforms.alipay_trades.trades == {}
    assert await PaymentOrder.all().count() == 1
    c = await counts(wechat["out_trade_no"])
    assert (c.state, c.paid_changes, c.ledger_rows, c.balance, c.succeeded_events) == ("paid", 1, 1, FEE, 1)
    # The notification that comes later changes nothing.
    fake = platforms.wechatpay
    headers, body = fake.payment_notification(wechat["out_trade_no"])
    assert (await fake.deliver(fake.trades[wechat["out_trade_no"]].notify_url, headers, body)).status_code == 204
    c = await counts(wechat["out_trade_no"])
    assert (c.paid_changes, c.ledger_rows, c.balance) == (1, 1, FEE)


async def test_without_an_alipay_login_the_wechat_order_stays_open(live: Live, platforms: Platforms,
                                                                   world: World) -> None:
    me = await payer(live, platforms, "wechat")
    case_no = await awaiting_case(live, world, me)
    wechat = (await pay_with(live, me, case_no, "wechat")).json()["order"]
    r = await pay_with(live, me, case_no, "alipay")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "payment.no_channel_identity")
    assert platforms.wechatpay.trades[wechat["out_trade_no"]].state == "NOTPAY"
    assert (await PaymentOrder.get(id=wechat["id"])).state == "paying"


async def test_a_kiosk_switches_its_own_qr_but_never_a_phones_order(live: Live, platforms: Platforms,
                                                                    world: World) -> None:
    me = await on_both(live, platforms)
    device, secret = await identity.register_kiosk(hall_code="HX", name="一楼自助机", keyring=live.app.ctx.keyring)

    async def at_kiosk(case_no: str, channel: str) -> httpx.Response:
        body = json.dumps({"case_no": case_no, "channel": channel}).encode()
        path = "/api/v1/kiosk/payments"
        return await live.client.post(path, content=body,
                                      headers=kiosk_headers(device.device_id, secret, "POST", path, body))

    # The citizen at the kiosk shows the WeChat QR, then asks for Alipay's: the WeChat one is closed.
    case_no = await awaiting_case(live, world, me)
    shown = await at_kiosk(case_no, "wechat")
    assert shown.status_code == 201, shown.text
    r = await at_kiosk(case_no, "alipay")
    assert r.status_code == 201, r.text
    shown_alipay = r.json()["order"]["out_trade_no"]
    assert r.json()["pay"] == {"qr_content": platforms.alipay_trades.trades[r.json()["order"]["out_trade_no"]].qr_code}
    assert platforms.wechatpay.trades[shown.json()["order"]["out_trade_no"]].state == "CLOSED"
    # The resident then pays on the phone instead: the kiosk's QR is closed for it.
    r = await pay_with(live, me, case_no, "wechat")
    assert (r.status_code, r.json()["order"]["scene"]) == (201, "mini_program")
    assert platforms.alipay_trades.trades[shown_alipay].status == "TRADE_CLOSED"

    # An order the resident opened on the phone is theirs to finish: the kiosk does not close it.
    other_case = await awaiting_case(live, world, me)
    phone = (await pay_with(live, me, other_case, "wechat")).json()["order"]
    r = await at_kiosk(other_case, "alipay")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "payment.open_elsewhere")
    assert platforms.wechatpay.trades[phone["out_trade_no"]].state == "NOTPAY"
    assert (await PaymentOrder.get(id=phone["id"])).state == "paying"
