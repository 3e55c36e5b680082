"""Payment callbacks: anything not signed by the platform, stale, or not matching our order is refused and
changes nothing; mismatches that are genuinely signed are kept for review and raised to staff."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from backend import clock
from backend.audit.models import AuditEntry
from backend.identity.models import StaffRole
from backend.jobs.models import OutboxEvent
from payments.models import PaymentOrder, SuspectNotification
from tests.cases_support import World, build_world, staff_headers
from tests.conftest import Live, Platforms
from tests.payments_support import awaiting_case, counts, payer, start_payment, wire

WECHAT_URL = "/api/v1/payments/callbacks/wechat"
ALIPAY_URL = "/api/v1/payments/callbacks/alipay"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live, platforms: Platforms) -> World:
    wire(platforms, live)
    return await build_world(live)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def assert_untouched(no: str) -> None:
    c = await counts(no)
    assert (c.state, c.paid_changes, c.ledger_rows, c.balance, c.succeeded_events) == ("paying", 0, 0, 0, 0)


async def test_wechat_refuses_what_it_cannot_trust(live: Live, platforms: Platforms, world: World,
                                                   other_key: rsa.RSAPrivateKey) -> None:
    me = await payer(live, platforms, "wechat")
    no = (await start_payment(live, me, await awaiting_case(live, world, me))).json()["order"]["out_trade_no"]
    fake = platforms.wechatpay
    trade = fake.mark_paid(no)
    good = fake.transaction(trade)

    async def post(headers: dict[str, str], body: bytes) -> httpx.Response:
        return await live.client.post(WECHAT_URL, content=body, headers=headers)

    # Not verifiable: refused with FAIL before anything in it is read or stored.
    headers, body = fake.payment_notification(no)
    forged = {**headers, "Wechatpay-Signature": base64.b64encode(os.urandom(256)).decode()}
    wrong_key = fake.payment_notification(no, key=other_key)
    unknown_serial = fake.payment_notification(no, serial="PUB_KEY_ID_0000000000000000000000000000")
    stale = fake.payment_notification(no, timestamp=int(clock.now().timestamp()) - 301)
    future = fake.payment_notification(no, timestamp=int(clock.now().timestamp()) + 301)
    envelope = json.loads(body)
    envelope["resource"]["ciphertext"] = base64.b64encode(os.urandom(64)).decode()
    altered = json.dumps(envelope).encode()
    wrong_apiv3 = fake.notification(good, apiv3_key="0" * 32)
    for h, b, status in [(forged, body, 401), (*wrong_key, 401), (*unknown_serial, 401), (*stale, 401),
                         (*future, 401), (headers, altered, 401), (*wrong_apiv3, 400),
                         ({"Content-Type": "application/json"}, body, 401)]:
        r = await post(h, b)
        assert r.status_code == status, (r.status_code, r.text)
        assert r.json()["code"] == "FAIL" and r.json()["message"]
    await assert_untouched(no)
    assert await SuspectNotification.all().count() == 0

    # Genuinely signed but not ours or not matching: refused, kept for review, raised to staff.
    mismatches = [
        ({**good, "amount": {**good["amount"], "total": 1}}, "amount_mismatch", 400),
        ({**good, "mchid": "1900000999"}, "merchant_mismatch", 400),
        ({**good, "appid": "wx0000000000000bad"}, "app_id_mismatch", 400),
        ({**good, "out_trade_no": "P20260101NOSUCHORDER0000"}, "unknown_order", 404),
    ]
    for resource, problem, status in mismatches:
        for _ in range(2):  # a retried mismatch is kept once
            r = await post(*fake.notification(resource))
            assert r.status_code == status and r.json()["code"] == "FAIL" and problem in r.json()["message"]
    await assert_untouched(no)
    kept = await SuspectNotification.all().order_by("id")
    assert [s.problem for s in kept] == [m[1] for m in mismatches]
    assert await OutboxEvent.filter(topic="payment.suspect_notification").count() == 4
    assert await AuditEntry.filter(action="payment.notification_refused").count() == 4
    # The order's hall admin reviews those naming it; the unknown order's one is for admins (see below).
    listed = await live.client.get("/api/v1/staff/payments/suspects", headers=world.admin)
    assert sorted(s["problem"] for s in listed.json()["suspects"]) == sorted(m[1] for m in mismatches[:3])
    assert (await live.client.get("/api/v1/staff/payments/suspects", headers=world.clerk)).status_code == 403

    # The genuine one still goes through afterwards.
    r = await post(*fake.payment_notification(no))
    assert r.status_code == 204
    assert (await counts(no)).state == "paid"


async def test_alipay_refuses_what_it_cannot_trust(live: Live, platforms: Platforms, world: World,
                                                   other_key: rsa.RSAPrivateKey) -> None:
    me = await payer(live, platforms, "alipay")
    no = (await start_payment(live, me, await awaiting_case(live, world, me))).json()["order"]["out_trade_no"]
    ali = platforms.alipay_trades
    ali.mark_paid(no)

    async def post(params: dict[str, str]) -> httpx.Response:
        return await live.client.post(ALIPAY_URL, data=params)

    good = ali.notification(no)
    altered = {**good, "total_amount": "0.01"}
    unsigned = {k: v for k, v in good.items() if k != "sign"}
    rsa1 = {**good, "sign_type": "RSA"}
    for params in (ali.notification(no, key=other_key), altered, unsigned, rsa1,
                   {**good, "sign": base64.b64encode(os.urandom(256)).decode()}):
        r = await post(params)
        assert (r.status_code, r.text) == (400, "fail")
    await assert_untouched(no)
    assert await SuspectNotification.all().count() == 0

    mismatches = [
        (ali.notification(no, total_amount="0.01"), "amount_mismatch"),
        (ali.notification(no, seller_id="2088999999999999"), "seller_mismatch"),
        (ali.notification(no, app_id="2021009999999999"), "app_id_mismatch"),
        (ali.notification(no, out_trade_no="P20260101NOSUCHORDER0000"), "unknown_order"),
    ]
    for params, _ in mismatches:
        r = await post(params)
        assert r.text == "fail" and r.status_code in (400, 404)
    await assert_untouched(no)
    assert [s.problem for s in await SuspectNotification.all().order_by("id")] == [m[1] for m in mismatches]
    assert await OutboxEvent.filter(topic="payment.suspect_notification").count() == 4

    # Waiting for the buyer is acknowledged and changes nothing; then the payment itself.
    r = await post(ali.notification(no, status="WAIT_BUYER_PAY"))
    assert r.text == "success"
    await assert_untouched(no)
    r = await post(ali.notification(no, status="TRADE_FINISHED"))
    assert r.text == "success"
    assert (await counts(no)).state == "paid"
    assert await PaymentOrder.filter(state="paid").count() == 1


async def test_suspects_are_shown_only_in_the_hall_of_their_order(live: Live, platforms: Platforms,
                                                                  world: World) -> None:
    """A hall admin (or auditor) sees the suspect notifications naming their halls' orders, with the payer's
    openid in them, and no other hall's; one naming no order of ours belongs to no hall: admins only."""
    zhang, li = await payer(live, platforms, "wechat"), await payer(live, platforms, "alipay")
    x_no = (await start_payment(live, zhang, await awaiting_case(live, world, zhang))).json()["order"]["out_trade_no"]
    y_no = (await start_payment(live, li, await awaiting_case(live, world, li, "HY"))).json()["order"]["out_trade_no"]
    wechat, ali = platforms.wechatpay, platforms.alipay_trades
    x_paid = wechat.transaction(wechat.mark_paid(x_no))
    ali.mark_paid(y_no)
    for headers, body in (wechat.notification({**x_paid, "amount": {**x_paid["amount"], "total": 1}}),
                          wechat.notification({**x_paid, "out_trade_no": "P20260101NOSUCHORDER0000"})):
        assert (await live.client.post(WECHAT_URL, content=body, headers=headers)).status_code in (400, 404)
    r = await live.client.post(ALIPAY_URL, data=ali.notification(y_no, total_amount="0.01"))
    assert r.text == "fail"
    kept = {s.out_trade_no: s.id for s in await SuspectNotification.all()}
    assert set(kept) == {x_no, y_no, "P20260101NOSUCHORDER0000"}

    async def seen(headers: dict[str, str]) -> list[tuple[str | None, str]]:
        r = await live.client.get("/api/v1/staff/payments/suspects", headers=headers)
        assert r.status_code == 200, r.text
        return sorted((s["out_trade_no"], s["problem"]) for s in r.json()["suspects"])

    x_halls, y_halls = world.halls["HX"], world.halls["HY"]
    y_admin = await staff_headers(live, "hy.admin", "HY", StaffRole.HALL_ADMIN)
    y_auditor = await staff_headers(live, "hy.auditor", "HY", StaffRole.AUDITOR)
    root = await staff_headers(live, "root", "HY", StaffRole.ADMIN)
    assert await seen(world.admin) == [(x_no, "amount_mismatch")]
    assert await seen(y_admin) == [(y_no, "amount_mismatch")]
    assert await seen(y_auditor) == [(y_no, "amount_mismatch")]
    assert await seen(root) == sorted([(x_no, "amount_mismatch"), (y_no, "amount_mismatch"),
                                       ("P20260101NOSUCHORDER0000", "unknown_order")])
    shown = (await live.client.get("/api/v1/staff/payments/suspects", headers=world.admin)).json()["suspects"][0]
    assert shown["hall_id"] == x_halls and shown["content"]["payer"]["openid"] == zhang.subject
    everything = (await live.client.get("/api/v1/staff/payments/suspects", headers=root)).json()["suspects"]
    assert {s["out_trade_no"]: s["hall_id"] for s in everything} == {
        x_no: x_halls, y_no: y_halls, "P20260101NOSUCHORDER0000": None}
    for clerk in (world.clerk, world.other_clerk):
        r = await live.client.get("/api/v1/staff/payments/suspects", headers=clerk)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
