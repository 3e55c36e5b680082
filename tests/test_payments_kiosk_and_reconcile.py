"""Kiosk payment QR codes (decoded with a QR reader) and daily reconciliation against planted differences."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from backend import clock
from backend.audit.models import AuditEntry
from backend.identity import service as identity
from backend.identity.models import StaffRole
from backend.settings import VARS
from payments import reconcile
from payments.models import ReconciliationReport
from tests.cases_support import World, build_world, kiosk_headers, staff_headers
from tests.conftest import ROOT, Live, Platforms
from tests.payments_support import FEE, awaiting_case, payer, start_payment, wire


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live, platforms: Platforms) -> World:
    wire(platforms, live)
    return await build_world(live)


def decode_png(data: bytes) -> str:
    return str(zxingcpp.read_barcodes(Image.open(io.BytesIO(data)))[0].text)


def decode_svg(data: bytes) -> str:
    """Rasterise qrcode's SVG path (one unit square per dark module) and read it."""
    text = data.decode()
    size = int(re.search(r'viewBox="0 0 (\d+) (\d+)"', text).group(1))  # type: ignore[union-attr]
    scale = 8
    image = Image.new("L", (size * scale, size * scale), 255)
    draw = ImageDraw.Draw(image)
    for x, y in re.findall(r"M(\d+),(\d+)H", text):
        draw.rectangle([int(x) * scale, int(y) * scale, (int(x) + 1) * scale - 1, (int(y) + 1) * scale - 1], fill=0)
    return str(zxingcpp.read_barcodes(image)[0].text)


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
async def test_kiosk_qr_decodes_to_the_platform_payment_url(live: Live, platforms: Platforms, world: World,
                                                            channel: str) -> None:
    me = await payer(live, platforms, channel)
    case_no = await awaiting_case(live, world, me)
    device, secret = await identity.register_kiosk(hall_code="HX", name="一楼自助机", keyring=live.app.ctx.keyring)
    body = json.dumps({"case_no": case_no, "channel": channel}).encode()
    path = "/api/v1/kiosk/payments"
    r = await live.client.post(path, content=body, headers=kiosk_headers(device.device_id, secret, "POST", path, body))
    assert r.status_code == 201, r.text
    order = r.json()["order"]
    if channel == "wechat":
        trade = platforms.wechatpay.trades[order["out_trade_no"]]
        expected = trade.prepay
        assert trade.trade_type == "NATIVE" and expected.startswith("weixin://wxpay/bizpayurl?pr=")
    else:
        expected = platforms.alipay_trades.trades[order["out_trade_no"]].qr_code
        assert expected.startswith("https://qr.alipay.com/")
    assert r.json()["pay"] == {"qr_content": expected}
    png_path, svg_path = r.json()["qr"]["png"], r.json()["qr"]["svg"]
    png = await live.client.get(png_path, headers=kiosk_headers(device.device_id, secret, "GET", png_path))
    assert png.headers["content-type"] == "image/png" and decode_png(png.content) == expected
    svg = await live.client.get(svg_path, headers=kiosk_headers(device.device_id, secret, "GET", svg_path))
    assert svg.headers["content-type"] == "image/svg+xml" and decode_svg(svg.content) == expected

    # The citizen scans and pays on their phone; the kiosk sees the order paid.
    fake: Any = platforms.wechatpay if channel == "wechat" else platforms.alipay_trades
    await fake.pay(order["out_trade_no"])
    shown_path = f"/api/v1/kiosk/payments/{order['id']}"
    shown = await live.client.get(shown_path, headers=kiosk_headers(device.device_id, secret, "GET", shown_path))
    assert shown.json()["order"]["state"] == "paid"
    gone = await live.client.get(png_path, headers=kiosk_headers(device.device_id, secret, "GET", png_path))
    assert gone.status_code == 409  # nothing left to pay

    # A kiosk of another hall sees neither the case nor the order.
    other, other_secret = await identity.register_kiosk(hall_code="HY", name="双浦自助机",
                                                        keyring=live.app.ctx.keyring)
    r = await live.client.get(shown_path, headers=kiosk_headers(other.device_id, other_secret, "GET", shown_path))
    assert r.status_code == 404


def cli_env(live: Live) -> dict[str, str]:
    settings = live.app.ctx.settings
    env = {k: v for k, v in os.environ.items() if k not in {v.name for v in VARS}}
    env.update({v.name: str(getattr(settings, v.field)) for v in VARS})
    return env


async def run_cli(live: Live, day: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.cli", "payments", "reconcile", "--date", day, cwd=str(ROOT),
        env=cli_env(live), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return int(proc.returncode or 0), out.decode()


async def test_reconciliation_finds_each_planted_difference(live: Live, platforms: Platforms,
                                                            world: World) -> None:
    day = clock.now().astimezone(clock.SHANGHAI).date()
    wx, ali = await payer(live, platforms, "wechat"), await payer(live, platforms, "alipay")
    a = (await start_payment(live, wx, await awaiting_case(live, world, wx))).json()["order"]
    b = (await start_payment(live, ali, await awaiting_case(live, world, ali))).json()["order"]
    c = (await start_payment(live, wx, await awaiting_case(live, world, wx))).json()["order"]
    await platforms.wechatpay.pay(a["out_trade_no"])
    await platforms.alipay_trades.pay(b["out_trade_no"])
    r = await live.client.post(f"/api/v1/staff/payments/{b['id']}/refunds", json={"amount_fen": 500, "reason": "多收"},
                               headers={**world.admin, "Idempotency-Key": "refund-b-0001"})
    assert r.status_code == 201 and r.json()["refund"]["state"] == "success"

    clean = await reconcile.run(day=day, settings=live.app.ctx.settings)
    assert clean["ok"] is True and clean["differences"] == []
    assert clean["summary"] == {"wechat_lines": 1, "alipay_lines": 2, "ledger_lines": 3, "differences": 0}
    code, out = await run_cli(live, day.isoformat())
    assert code == 0 and "OK" in out, out

    # Plant one difference of each kind.
    platforms.wechatpay.bill_drop.add(a["out_trade_no"])  # missing on theirs
    await platforms.wechatpay.pay(c["out_trade_no"], notify=False)  # paid there, still paying here: state
    platforms.alipay_trades.bill_amount[b["out_trade_no"]] = FEE - 1  # amount
    platforms.alipay_trades.bill_extra.append([  # a trade we never made: missing on ours
        "2026000022001400000000000000", "PNOTOURS0000000000000001", "交易", "别家商品", f"{day} 10:00:00",
        f"{day} 10:00:01", "", "", "", "", "2088000000000009", "9.99", "9.99", "0.00", "0.00", "0.00", "0.00",
        "0.00", "", "0.00", "0.00", "", "0.00", "0.00", ""])
    code, out = await run_cli(live, day.isoformat())
    assert code == 1, out
    found = {(d["problem"], d["channel"], d["ref"]) for d in (await ReconciliationReport.get(day=day)).differences}
    assert found == {
        ("missing_theirs", "wechat", a["out_trade_no"]),
        ("state_mismatch", "wechat", c["out_trade_no"]),
        ("amount_mismatch", "alipay", b["out_trade_no"]),
        ("missing_ours", "alipay", "PNOTOURS0000000000000001"),
    }
    for problem in ("missing_theirs", "state_mismatch", "amount_mismatch", "missing_ours"):
        assert problem in out
    # A deployment admin sees the whole report.
    root = await staff_headers(live, "root.admin", "HX", StaffRole.ADMIN)
    shown = await live.client.get("/api/v1/staff/payments/reconciliation", params={"date": day.isoformat()},
                                  headers=root)
    assert shown.status_code == 200 and shown.json()["ok"] is False and len(shown.json()["differences"]) == 4
    amount = next(d for d in shown.json()["differences"] if d["problem"] == "amount_mismatch")
    assert (amount["ours_fen"], amount["theirs_fen"]) == (FEE, FEE - 1)
    assert shown.json()["summary"]["ledger_lines"] == 3
    # A hall admin sees the lines about their hall's orders only, and no deployment totals; another hall's, none.
    mine = await live.client.get("/api/v1/staff/payments/reconciliation", params={"date": day.isoformat()},
                                 headers=world.admin)
    assert {(d["problem"], d["hall_id"]) for d in mine.json()["differences"]} == {
        ("missing_theirs", world.halls["HX"]), ("state_mismatch", world.halls["HX"]),
        ("amount_mismatch", world.halls["HX"])}
    assert mine.json()["summary"] == {"differences": 3}
    hy_admin = await staff_headers(live, "hy.admin", "HY", StaffRole.HALL_ADMIN)
    theirs = await live.client.get("/api/v1/staff/payments/reconciliation", params={"date": day.isoformat()},
                                   headers=hy_admin)
    assert theirs.status_code == 200 and theirs.json()["differences"] == []
    missing = await live.client.get("/api/v1/staff/payments/reconciliation", params={"date": "2020-01-01"},
                                    headers=world.admin)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "payment.report_not_found")
    clerk = await live.client.get("/api/v1/staff/payments/reconciliation", params={"date": day.isoformat()},
                                  headers=world.clerk)
    assert clerk.status_code == 403


async def test_an_admin_reconciles_a_day_now_and_no_one_else_may(live: Live, platforms: Platforms,
                                                                  world: World) -> None:
    day = clock.now().astimezone(clock.SHANGHAI).date().isoformat()
    wx = await payer(live, platforms, "wechat")
    order = (await start_payment(live, wx, await awaiting_case(live, world, wx))).json()["order"]
    await platforms.wechatpay.pay(order["out_trade_no"])
    path = "/api/v1/staff/payments/reconciliation"
    auditor = await staff_headers(live, "hx.auditor", "HX", StaffRole.AUDITOR)
    for who in (world.clerk, world.admin, auditor):  # a hall's people read the report; they do not run one
        r = await live.client.post(path, json={"date": day}, headers=who)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden"), r.text
    assert await ReconciliationReport.all().count() == 0
    assert await AuditEntry.filter(action="payment.reconciled").count() == 0

    root = await staff_headers(live, "root.admin", "HX", StaffRole.ADMIN)
    bad = await live.client.post(path, json={"date": "2026-02-30"}, headers=root)
    assert bad.status_code == 422, bad.text
    r = await live.client.post(path, json={"date": day}, headers=root)
    assert r.status_code == 200, r.text
    assert (r.json()["date"], r.json()["ok"], r.json()["differences"]) == (day, True, [])
    assert r.json()["summary"] == {"wechat_lines": 1, "alipay_lines": 0, "ledger_lines": 1, "differences": 0}
    assert (await ReconciliationReport.get(day=day)).ok is True
    entry = await AuditEntry.filter(action="payment.reconciled").get()
    assert (entry.actor_kind, entry.target_id, entry.details["ok"]) == ("staff", day, True)

    # Run again after the platform's bill changed: the stored report is replaced, and hall admins read their part.
    platforms.wechatpay.bill_amount[order["out_trade_no"]] = FEE + 1
    r = await live.client.post(path, json={"date": day}, headers=root)
    assert r.json()["ok"] is False and [d["problem"] for d in r.json()["differences"]] == ["amount_mismatch"]
    mine = await live.client.get(path, params={"date": day}, headers=world.admin)
    assert [d["hall_id"] for d in mine.json()["differences"]] == [world.halls["HX"]]
    assert await AuditEntry.filter(action="payment.reconciled").count() == 2
