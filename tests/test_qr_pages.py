"""What a scanned QR code opens (/q/{token}) in Chromium: an appointment's hall, time, check-in window and
checklist; a case's progress; a certificate's verification; a friendly 404 for anything else, counted against
the address like the API's misses; the WeChat and Alipay domain check files; and QR links that follow PORT."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend import qr
from backend.booking.models import BookingRule
from backend.catalog.models import Hall, OpeningHours
from tests.browser_support import assert_accessible, new_page, screenshot
from tests.cases_support import RESIDENCE, ZHANG, World, act, application, build_world, resident, upload_id
from tests.conftest import Live, Platforms
from tests.payments_support import awaiting_case, payer, start_payment, wire

PHONE = {"width": 390, "height": 844}  # a phone's browser, where a QR scanned outside WeChat and Alipay opens
MONDAY_8AM = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files"), "rate_qr_miss_ip": "3/600"}


@pytest.fixture
async def world(live: Live, platforms: Platforms, frozen_clock: Any) -> World:
    frozen_clock.set(MONDAY_8AM)
    wire(platforms, live)
    world = await build_world(live)
    hx = world.halls["HX"]
    for weekday in range(5):
        await OpeningHours.create(hall_id=hx, weekday=weekday, opens=time(9), closes=time(12))
        await OpeningHours.create(hall_id=hx, weekday=weekday, opens=time(13, 30), closes=time(17))
    await BookingRule.create(hall_id=hx, item=None, slot_minutes=30, seats_per_slot=10, horizon_days=14,
                             min_notice_minutes=10, cancel_cutoff_minutes=120, max_active_per_person=3,
                             release_cooldown_minutes=30, checkin_early_minutes=30, checkin_late_minutes=15,
                             walkin_daily_quota=100)
    return world


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[-1]


async def booked(live: Live, world: World, headers: dict[str, str], at: str = "09:00") -> dict[str, Any]:
    r = await live.client.get(f"/api/v1/halls/{world.halls['HX']}/availability",
                              params={"item": RESIDENCE, "date": "2026-03-02"})
    assert r.status_code == 200, r.text
    slot = next(s["slot_id"] for s in r.json()["slots"] if s["starts_at"][11:16] == at)
    r = await live.client.post("/api/v1/mp/appointments", json={"slot_id": slot},
                               headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def field(page: Any, name: str) -> str:
    return (await page.locator(f"[data-field={name}]").inner_text()).strip()


def assert_nothing_personal(html: str, person: dict[str, str]) -> None:
    """Neither the name, the ID number (nor its unmasked middle), the phone nor the form's address."""
    for secret in (person["name"], person["id_number"], person["id_number"][6:14], person["phone"], "象山路1号"):
        assert secret not in html, secret


async def check_large_type(page: Any, label: str) -> None:
    await page.click("#large-type-toggle")
    assert await page.evaluate("document.documentElement.classList.contains('large-type')")
    assert await page.locator("#large-type-toggle").get_attribute("aria-pressed") == "true"
    await screenshot(page, f"{label}-large-type")
    await assert_accessible(page, f"{label} large type")
    await page.reload()  # the phone remembers the choice
    assert await page.evaluate("document.documentElement.classList.contains('large-type')")


async def test_an_appointment_qr_opens_its_hall_time_check_in_window_and_checklist(
        live: Live, platforms: Platforms, world: World, browser: Any, frozen_clock: Any) -> None:
    await Hall.filter(id=world.halls["HX"]).update(address="杭州市西湖区转塘街道美院南街8号")
    me = await resident(live, platforms, ZHANG)
    appointment = await booked(live, world, me)
    assert appointment["qr_url"].startswith(live.app.ctx.settings.public_base_url + "/q/")
    url = f"{live.url}/q/{token_of(appointment['qr_url'])}"

    page = await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    await page.goto(url)
    assert await page.title() == "预约信息 · 掌上办"
    assert await field(page, "status") == "已预约，待签到"
    assert await field(page, "item") == "居住证明开具"
    assert await field(page, "hall") == "转塘街道便民服务中心"
    assert await field(page, "address") == "杭州市西湖区转塘街道美院南街8号"
    assert await field(page, "slot") == "2026年3月2日（星期一） 09:00–09:30"
    assert await field(page, "checkin") == "当天 08:30 至 09:15"  # 30 minutes before to 15 after, the hall's rule
    materials = [" ".join(t.split()) for t in await page.locator("#materials li").all_inner_texts()]
    assert materials == ["居民身份证 原件 1 份 已有“居民身份证”电子证照的可免交", "申请表 原件 1 份",
                         "租赁合同 复印件 1 份", "近期照片 电子件（选交）"]
    assert_nothing_personal(await page.content(), ZHANG)
    await screenshot(page, "qr-appointment")
    await assert_accessible(page, "/q appointment")
    await check_large_type(page, "qr-appointment")

    # Rendered on the server: a phone without JavaScript reads the same.
    bare = await new_page(browser, viewport=PHONE, java_script_enabled=False)
    await bare.goto(url)
    assert await field(bare, "checkin") == "当天 08:30 至 09:15" and await bare.locator("#materials li").count() == 4

    # Checked in at the counter: the page shows the ticket, and no longer what to bring.
    frozen_clock.set(MONDAY_8AM + timedelta(minutes=40))
    r = await live.client.post(f"/api/v1/staff/appointments/{appointment['id']}/check-in", headers=world.clerk)
    assert r.status_code == 200, r.text
    await page.reload()
    assert await field(page, "status") == "已签到" and await field(page, "ticket") == "A001"
    assert await page.locator("#materials").count() == 0 and await page.locator("[data-field=checkin]").count() == 0
    assert page.errors == [] and bare.errors == []


async def test_a_case_qr_shows_its_progress_and_steps_masked(live: Live, platforms: Platforms, world: World,
                                                             browser: Any) -> None:
    me = await resident(live, platforms, ZHANG)
    mats = [{"code": c, "upload_id": await upload_id(live, me)} for c in ("ID", "FORM", "LEASE")]
    r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(world.halls["HX"], RESIDENCE, mats))
    assert r.status_code == 201, r.text
    case_no = r.json()["case_no"]
    assert (await act(live, world.clerk, case_no, "accept")).status_code == 200
    shown = (await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me)).json()
    url = f"{live.url}/q/{token_of(shown['progress_url'])}"

    page = await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    await page.goto(url)
    assert await page.title() == "办件进度 · 掌上办"
    assert await field(page, "case-no") == case_no
    assert await field(page, "item") == "居住证明开具"
    assert await field(page, "hall") == "转塘街道便民服务中心"
    assert await field(page, "applicant") == "张*丰"
    assert await field(page, "status") == shown["status_label"] == "已受理"
    due = datetime.fromisoformat(shown["deadline"]["promised_due"])
    assert await field(page, "promised-due") == f"{due.year}年{due.month}月{due.day}日（星期" \
        f"{'一二三四五六日'[due.weekday()]}）前"
    steps = [s.split()[0] for s in await page.locator("#steps li").all_inner_texts()]
    assert steps == ["受理", "提交申请"]  # newest first
    assert "2026年3月2日（星期一） 08:00" in await page.locator("#steps").inner_text()
    assert_nothing_personal(await page.content(), ZHANG)
    await screenshot(page, "qr-case")
    await assert_accessible(page, "/q case")
    await check_large_type(page, "qr-case")
    assert page.errors == []


async def issued_certificate(live: Live, platforms: Platforms, world: World) -> dict[str, Any]:
    me = await resident(live, platforms, ZHANG)
    mats = [{"code": c, "upload_id": await upload_id(live, me)} for c in ("ID", "FORM", "LEASE")]
    r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(world.halls["HX"], RESIDENCE, mats))
    case_no = r.json()["case_no"]
    for action in ("accept", "start_review", "approve"):
        assert (await act(live, world.clerk, case_no, action)).status_code == 200
    return dict((await live.client.get("/api/v1/mp/certificates", headers=me)).json()["certificates"][-1])


async def test_a_certificate_qr_verifies_it_genuine_then_revoked(live: Live, platforms: Platforms, world: World,
                                                                 browser: Any) -> None:
    cert = await issued_certificate(live, platforms, world)
    url = f"{live.url}/q/{token_of(cert['verify_url'])}"
    page = await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    await page.goto(url)
    assert await page.title() == "电子证照核验 · 掌上办"
    assert await field(page, "result") == "真实有效"
    assert await field(page, "cert-type") == "居住证明" and await field(page, "cert-no") == cert["cert_no"]
    assert await field(page, "issuer") == "转塘街道办事处"
    assert await field(page, "valid-until") == "长期"
    assert await field(page, "holder") == "张*丰"
    assert await field(page, "holder-id") == ZHANG["id_number"][:4] + "*" * 10 + ZHANG["id_number"][-4:]
    assert await page.locator("[data-field=revoked-at]").count() == 0
    assert_nothing_personal(await page.content(), ZHANG)
    await screenshot(page, "qr-certificate")
    await assert_accessible(page, "/q certificate")
    await check_large_type(page, "qr-certificate")

    r = await live.client.post(f"/api/v1/staff/certificates/{cert['cert_no']}/revoke", headers=world.admin,
                               json={"reason": "申请人户籍迁出"})
    assert r.status_code == 200, r.text
    await page.reload()
    assert await field(page, "result") == "已注销"
    assert (await field(page, "revoked-at")).startswith("2026年3月2日（星期一）")
    await assert_accessible(page, "/q certificate revoked")
    assert page.errors == []


async def test_forged_and_unknown_tokens_answer_a_404_page_counted_against_the_address(
        live: Live, platforms: Platforms, world: World, browser: Any) -> None:
    me = await resident(live, platforms, ZHANG)
    genuine = token_of((await booked(live, world, me))["qr_url"])
    secret = live.app.ctx.settings.secret_key
    page = await new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    forged = genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB")
    answer = await page.goto(f"{live.url}/q/{forged}")
    assert answer.status == 404
    assert await page.title() == "二维码无效 · 掌上办"
    assert await page.get_by_role("heading", name="二维码无效或已失效").is_visible()
    await screenshot(page, "qr-not-found")
    await assert_accessible(page, "/q not found")
    assert [e for e in page.errors if "404" not in e] == []

    # A genuine token of a kind that has no page (no QR of ours carries a payment) is not found either.
    r = await live.client.get(f"/q/{qr.make_token(secret, 'payment', 1)}")
    assert r.status_code == 404 and "二维码无效或已失效" in r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    # Three misses from this address (the limit here): every look-up from it now waits, pages and API alike.
    assert (await live.client.get(f"/q/{genuine}")).status_code == 200
    assert (await live.client.get(f"/api/v1/progress/{genuine[:-4]}AAAA")).status_code == 404
    r = await live.client.get(f"/q/{genuine}")
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "查询过于频繁" in r.text and r.headers["content-type"].startswith("text/html")
    r = await live.client.get(f"/api/v1/progress/{genuine}")
    assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")


class TestConfiguredCheckFiles:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"wechat_link_verify_file": "Xa9dK2mQ4z.txt:5f2b8c1d0e7a4b6c9d3e1f0a2b4c6d8e",
                "alipay_link_verify_file": "alipay_verify_77f1.txt:a1b2c3d4e5"}

    async def test_each_is_served_at_the_root_and_under_q_and_nothing_else_is(self, live: Live) -> None:
        for path, content in (("/Xa9dK2mQ4z.txt", "5f2b8c1d0e7a4b6c9d3e1f0a2b4c6d8e"),
                              ("/q/Xa9dK2mQ4z.txt", "5f2b8c1d0e7a4b6c9d3e1f0a2b4c6d8e"),
                              ("/alipay_verify_77f1.txt", "a1b2c3d4e5"), ("/q/alipay_verify_77f1.txt", "a1b2c3d4e5")):
            r = await live.client.get(path)
            assert r.status_code == 200, path
            assert r.text == content and r.headers["content-type"].startswith("text/plain")
        for path in ("/Xa9dK2mQ4z.TXT", "/Xa9dK2mQ4z", "/other.txt", "/q/other.txt", "/robots.txt"):
            assert (await live.client.get(path)).status_code == 404, path
        # Not configured, not served: the same app made without the settings has no such route.
        from sanic import Sanic

        from backend.app import create_app

        bare = create_app(live.app.ctx.settings.with_overrides(wechat_link_verify_file="", alipay_link_verify_file=""),
                          name=f"bare_{uuid.uuid4().hex[:8]}")
        try:
            paths = {"/" + r.path for r in bare.router.routes}
            assert "/q/<token:qr_token>" in paths
            assert not {p for p in paths if p.endswith(".txt")}
        finally:
            Sanic._app_registry.pop(bare.name, None)


# ---- QR links and payment notifications follow the port `serve` binds ---------------------


class TestLinksFollowThePort:
    @pytest.fixture
    def settings_overrides(self, tmp_path: Path) -> dict[str, Any]:
        return {"files_dir": str(tmp_path / "files"), "port": 8101}

    async def test_qr_urls_and_payment_notify_urls_name_port_8101(self, live: Live, platforms: Platforms,
                                                                  world: World) -> None:
        wechat = await payer(live, platforms, "wechat")
        appointment = await booked(live, world, wechat.headers)
        assert appointment["qr_url"].startswith("http://127.0.0.1:8101/q/")
        order = (await start_payment(live, wechat, await awaiting_case(live, world, wechat))).json()["order"]
        trade = platforms.wechatpay.trades[order["out_trade_no"]]
        assert trade.notify_url == "http://127.0.0.1:8101/api/v1/payments/callbacks/wechat"
        alipay = await payer(live, platforms, "alipay")
        order = (await start_payment(live, alipay, await awaiting_case(live, world, alipay))).json()["order"]
        assert platforms.alipay_trades.trades[order["out_trade_no"]].notify_url == \
            "http://127.0.0.1:8101/api/v1/payments/callbacks/alipay"
        # The link a phone follows works once the server is at that address: the same path here.
        assert (await live.client.get(re.sub(r"^http://127\.0\.0\.1:8101", "", appointment["qr_url"]))).status_code \
            == 200


async def test_the_printed_qr_decodes_to_the_page(live: Live, platforms: Platforms, world: World) -> None:
    """The QR image a resident shows decodes to `{PUBLIC_BASE_URL}/q/{token}`, and that path is the page."""
    import zxingcpp
    from PIL import Image

    me = await resident(live, platforms, ZHANG)
    appointment = await booked(live, world, me)
    png = await live.client.get(f"/api/v1/mp/appointments/{appointment['id']}/qr.png", headers=me)
    assert png.status_code == 200
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))[0].text
    base = live.app.ctx.settings.public_base_url
    assert decoded.startswith(base + "/q/")
    async with httpx.AsyncClient(base_url=live.url) as client:
        r = await client.get(decoded.removeprefix(base))
    assert r.status_code == 200 and "居住证明开具" in r.text and "当天 08:30 至 09:15" in r.text
