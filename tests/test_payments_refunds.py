"""When no notification comes (query settles, expiry closes), late payments refunded, and staff refunds."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend import clock
from backend.audit.models import AuditEntry
from backend.cases.models import Case, CaseStatus
from backend.jobs.models import OutboxEvent
from payments import service
from payments.models import LedgerEntry, PaymentOrder, Refund
from tests.cases_support import World, build_world
from tests.conftest import Live, Platforms
from tests.payments_support import FEE, awaiting_case, counts, payer, run_worker, start_payment, wire


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files"), "payment_query_after_seconds": 0}


@pytest.fixture
async def world(live: Live, platforms: Platforms) -> World:
    wire(platforms, live)
    return await build_world(live)


async def sync(live: Live) -> dict[str, int]:
    return await service.sync_open(settings=live.app.ctx.settings)


async def paid_order(live: Live, platforms: Platforms, world: World, channel: str) -> dict[str, Any]:
    me = await payer(live, platforms, channel)
    order = (await start_payment(live, me, await awaiting_case(live, world, me))).json()["order"]
    fake = platforms.wechatpay if channel == "wechat" else platforms.alipay_trades
    await fake.pay(order["out_trade_no"])
    assert (await counts(order["out_trade_no"])).state == "paid"
    return dict(order)


async def refund(live: Live, headers: dict[str, str], order_id: int, key: str | None = None,
                 **body: Any) -> httpx.Response:
    return await live.client.post(f"/api/v1/staff/payments/{order_id}/refunds", json={"reason": "多收退还", **body},
                                  headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex})


async def balance(case_no: str) -> int:
    return sum(e.amount_fen for e in await LedgerEntry.filter(case_no=case_no))


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
async def test_query_settles_an_order_whose_notification_never_came(live: Live, platforms: Platforms,
                                                                    world: World, channel: str) -> None:
    me = await payer(live, platforms, channel)
    case_no = await awaiting_case(live, world, me)
    no = (await start_payment(live, me, case_no)).json()["order"]["out_trade_no"]
    assert await sync(live) == {"open": 1}  # unpaid and not expired: left open
    fake = platforms.wechatpay if channel == "wechat" else platforms.alipay_trades
    await fake.pay(no, notify=False)
    assert await sync(live) == {"paid": 1}
    c = await counts(no)
    assert (c.state, c.paid_changes, c.ledger_rows, c.balance, c.succeeded_events) == ("paid", 1, 1, FEE, 1)
    await run_worker()
    assert (await Case.get(case_no=case_no)).status == CaseStatus.IN_REVIEW
    assert await sync(live) == {}  # nothing open any more


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
async def test_close_then_late_payment_is_refunded_automatically(live: Live, platforms: Platforms, world: World,
                                                                 channel: str) -> None:
    me = await payer(live, platforms, channel)
    case_no = await awaiting_case(live, world, me)
    order = (await start_payment(live, me, case_no)).json()["order"]
    no = order["out_trade_no"]
    await PaymentOrder.filter(id=order["id"]).update(expires_at=clock.now() - timedelta(minutes=1))
    assert await sync(live) == {"closed": 1}
    fake: Any = platforms.wechatpay if channel == "wechat" else platforms.alipay_trades
    if channel == "wechat":
        assert fake.trades[no].state == "CLOSED"
    else:
        assert fake.trades[no].status == "TRADE_CLOSED"
    assert (await counts(no)).state == "closed"
    # The case may be paid with a new order now: the closed one no longer holds it.
    again = await start_payment(live, me, case_no)
    assert again.status_code == 201 and again.json()["order"]["id"] != order["id"]

    answer = await fake.pay(no, late=True)
    assert answer is not None and answer.status_code in (200, 204)
    c = await counts(no)
    assert (c.state, c.ledger_rows, c.balance, c.succeeded_events) == ("refunding", 1, FEE, 0)
    auto = await Refund.get(order_id=order["id"])
    assert (auto.automatic, auto.amount_fen, str(auto.state)) == (True, FEE, "processing")
    await run_worker()  # payment.refund_requested: the refund goes to the platform
    if channel == "wechat":
        assert fake.refunds[auto.out_refund_no].refund == FEE
        r = await fake.finish_refund(auto.out_refund_no)  # WeChat's refund notification
        assert r is not None and r.status_code == 204
    c = await counts(no)
    assert (c.state, c.ledger_rows, c.balance) == ("refunded", 2, 0)
    shown = await live.client.get(f"/api/v1/staff/payments/{order['id']}", headers=world.admin)
    assert [h["to"] for h in shown.json()["history"]] == ["created", "paying", "closed", "paid", "refunding",
                                                          "refunded"]
    assert shown.json()["refunds"][0]["automatic"] is True
    assert (await Case.get(case_no=case_no)).status == CaseStatus.AWAITING_PAYMENT
    assert await OutboxEvent.filter(topic="payment.refunded").count() == 1


async def test_partial_then_full_refund_on_alipay(live: Live, platforms: Platforms, world: World) -> None:
    order = await paid_order(live, platforms, world, "alipay")
    r = await refund(live, world.clerk, order["id"], amount_fen=500)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    r = await refund(live, world.admin, order["id"], amount_fen=FEE + 1)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "payment.refund_too_much")
    key = uuid.uuid4().hex
    r = await refund(live, world.admin, order["id"], key, amount_fen=500)
    assert r.status_code == 201, r.text
    assert (r.json()["refund"]["state"], r.json()["order"]["state"]) == ("success", "partially_refunded")
    again = await refund(live, world.admin, order["id"], key, amount_fen=500)
    assert again.status_code == 200 and again.json()["refund"]["id"] == r.json()["refund"]["id"]
    assert await balance(order["case_no"]) == FEE - 500
    assert platforms.alipay_trades.trades[order["out_trade_no"]].refunded_fen == 500

    r = await refund(live, world.admin, order["id"])  # the rest
    assert r.status_code == 201 and r.json()["refund"]["amount_fen"] == FEE - 500
    assert r.json()["order"]["state"] == "refunded" and await balance(order["case_no"]) == 0
    r = await refund(live, world.admin, order["id"], amount_fen=1)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "payment.not_refundable")
    assert await AuditEntry.filter(action="payment.refund_requested").count() == 2
    assert await AuditEntry.filter(action="payment.refunded").count() == 2
    assert await OutboxEvent.filter(topic="payment.refunded").count() == 2


async def test_wechat_refund_by_notification_then_by_query(live: Live, platforms: Platforms, world: World) -> None:
    order = await paid_order(live, platforms, world, "wechat")
    fake = platforms.wechatpay
    r = await refund(live, world.admin, order["id"], amount_fen=250)
    assert r.status_code == 201 and r.json()["refund"]["state"] == "processing"
    assert r.json()["order"]["state"] == "refunding"
    busy = await refund(live, world.admin, order["id"], amount_fen=1)
    assert (busy.status_code, busy.json()["error"]["code"]) == (409, "payment.refund_in_progress")
    first = r.json()["refund"]["out_refund_no"]
    for _ in range(3):  # a retried refund notification counts once
        answer = await fake.deliver(fake.refunds[first].notify_url or "", *fake.notification(
            {**fake.refund_resource(fake.refunds[first]), "refund_status": "SUCCESS"},
            event_type="REFUND.SUCCESS", original_type="refund"))
        assert answer.status_code == 204
    assert (await counts(order["out_trade_no"])).state == "partially_refunded"
    assert await balance(order["case_no"]) == FEE - 250

    # A forged refund notification is refused like a forged payment notification.
    headers, body = fake.notification(fake.refund_resource(fake.refunds[first]), event_type="REFUND.SUCCESS",
                                      original_type="refund")
    forged = await live.client.post("/api/v1/payments/callbacks/wechat", content=body.replace(b"a", b"b", 1),
                                    headers=headers)
    assert forged.status_code == 401

    r = await refund(live, world.admin, order["id"])
    second = r.json()["refund"]["out_refund_no"]
    await fake.finish_refund(second, notify=False)  # WeChat refunded but its notification is lost
    assert await sync(live) == {"refund_success": 1}
    c = await counts(order["out_trade_no"])
    assert (c.state, c.balance, c.ledger_rows) == ("refunded", 0, 3)
    assert [e.amount_fen for e in await LedgerEntry.filter(case_no=order["case_no"]).order_by("id")] == [
        FEE, -250, -(FEE - 250)]


async def simulate_refund(platforms: Platforms, channel: str, out_refund_no: str, outcome: str) -> dict[str, Any]:
    """What a developer does with the fakes (no phone, no bank): say how the refund ends at the platform."""
    fake = "wechatpay" if channel == "wechat" else "alipay"
    async with httpx.AsyncClient(base_url=platforms.url) as client:
        r = await client.post(f"/{fake}/simulate/refund/{out_refund_no}", params={"outcome": outcome})
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
async def test_a_refund_waits_at_the_fake_until_it_succeeds_and_is_notified(live: Live, platforms: Platforms,
                                                                             world: World, channel: str) -> None:
    platforms.alipay_trades.refunds_wait = True  # as in development: the refund waits for the developer
    order = await paid_order(live, platforms, world, channel)
    r = await refund(live, world.admin, order["id"])
    assert r.status_code == 201, r.text
    assert (r.json()["refund"]["state"], r.json()["order"]["state"]) == ("processing", "refunding")
    no = r.json()["refund"]["out_refund_no"]
    assert await sync(live) == {"refund_processing": 1}  # asked again, still under way at the platform
    if channel == "alipay":
        # A refund notification whose refunded total does not add up is refused and kept for review.
        forged = platforms.alipay_trades.refund_notification(no, refund_fee="0.01")
        answer = await live.client.post("/api/v1/payments/callbacks/alipay", data=forged)
        assert (answer.status_code, answer.text) == (400, "fail")
        assert [s["problem"] for s in (await live.client.get(
            "/api/v1/staff/payments/suspects", headers=world.admin)).json()["suspects"]] == ["amount_mismatch"]

    shown = await simulate_refund(platforms, channel, no, "success")
    # The platform's own notification, signed as it signs them, reached the callback and was taken.
    assert shown["notified"] == (204 if channel == "wechat" else "success"), shown
    c = await counts(order["out_trade_no"])
    assert (c.state, c.ledger_rows, c.balance) == ("refunded", 2, 0)
    done = await Refund.get(out_refund_no=no)
    assert str(done.state) == "success" and done.finished_at is not None
    entry = await LedgerEntry.filter(order_id=order["id"], kind="refund").get()
    assert (entry.amount_fen, entry.ref) == (-FEE, f"refund:{channel}:{no}")
    refunded = [e for e in await OutboxEvent.filter(topic="payment.refunded") if e.payload["refund_id"] == done.id]
    assert [e.payload["amount_fen"] for e in refunded] == [FEE]
    assert await AuditEntry.filter(action="payment.refunded").count() == 1
    shown = await live.client.get(f"/api/v1/staff/payments/{order['id']}", headers=world.admin)
    assert shown.json()["refunds"][0]["state"] == "success"
    assert shown.json()["history"][-1]["actor"] == f"notify:{channel}"


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
async def test_a_refund_that_fails_at_the_fake_leaves_the_order_paid(live: Live, platforms: Platforms,
                                                                     world: World, channel: str) -> None:
    platforms.alipay_trades.refunds_wait = True
    order = await paid_order(live, platforms, world, channel)
    r = await refund(live, world.admin, order["id"], amount_fen=500)
    no = r.json()["refund"]["out_refund_no"]
    shown = await simulate_refund(platforms, channel, no, "failure")
    if channel == "wechat":
        assert shown["notified"] == 204  # REFUND.ABNORMAL, notified like a success
    else:
        # Alipay does not notify a failed refund: its refund query no longer shows it under way, and asking
        # again is answered with the reason, which the periodic sync records.
        assert shown["notified"] is None
        assert await sync(live) == {"refund_failed": 1}
    failed = await Refund.get(out_refund_no=no)
    assert str(failed.state) == "failed"
    c = await counts(order["out_trade_no"])
    assert (c.state, c.ledger_rows, c.balance) == ("paid", 1, FEE)
    assert await OutboxEvent.filter(topic="payment.refund_failed").count() == 1
    assert await OutboxEvent.filter(topic="payment.refunded").count() == 0
    # The hall admin may try again: the order is refundable as before.
    again = await refund(live, world.admin, order["id"], amount_fen=500)
    assert again.status_code == 201 and again.json()["order"]["state"] == "refunding"
