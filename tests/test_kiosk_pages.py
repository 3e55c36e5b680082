"""The kiosk page in Chromium: enrollment from a one-time link, check-in by scanner, walk-in tickets, case
progress, paying by QR, item guides, the idle reset that leaves nothing personal behind, heartbeat, disabling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import expect

from backend.booking.models import Appointment, QueueTicket
from backend.identity import service as identity
from backend.identity.models import Kiosk
from payments.models import PaymentOrder
from tests import test_booking
from tests.browser_support import KIOSK_VIEWPORT, assert_accessible, new_page, screenshot
from tests.cases_support import ZHANG, World, build_world, resident
from tests.conftest import Live, Platforms
from tests.payments_support import awaiting_case, payer, wire
from tests.test_booking import TUESDAY, book, shanghai, slots

# The booking tests' hall (items in groups A and B, counter 3) on Monday 2 March 2026, as fixtures here too.
hall = test_booking.hall
at_monday = test_booking.at_monday


@pytest.fixture
def settings_overrides(tmp_path: Any) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live, platforms: Platforms) -> World:
    wire(platforms, live)
    return await build_world(live)

# A scanner types the code and presses Enter; window.print is recorded instead of opening a dialog.
PRINT_SPY = "window.__prints = 0; window.print = () => { window.__prints += 1; };"

# Everything a page could keep: its visible text, every input's value, both web storages.
LEFTOVERS = """() => [document.body.innerText, ...Array.from(document.querySelectorAll('input'), i => i.value),
  JSON.stringify(Object.assign({}, localStorage)), JSON.stringify(Object.assign({}, sessionStorage)),
  document.getElementById('receipt').textContent].join('\\n')"""

CREDENTIAL = """async () => {
 if (!(await indexedDB.databases()).some(d => d.name === 'palmhall-kiosk')) return null;
 return await new Promise((resolve, reject) => {
  const open = indexedDB.open('palmhall-kiosk', 1);
  open.onerror = () => reject(open.error);
  open.onsuccess = () => {
    if (!open.result.objectStoreNames.contains('device')) { open.result.close(); resolve(null); return; }
    const req = open.result.transaction('device').objectStore('device').get('credential');
    req.onsuccess = () => { const c = req.result; open.result.close();
      resolve(c ? {deviceId: c.deviceId, type: c.key.type, extractable: c.key.extractable,
                   algorithm: c.key.algorithm.name, hash: c.key.algorithm.hash.name, usages: c.key.usages,
                   fields: Object.keys(c).sort()} : null); };
  };
 });
}"""


async def credential(page: Any) -> Any:
    return await asyncio.wait_for(page.evaluate(CREDENTIAL), 10)


async def enrollment_link(live: Live, hall_code: str, name: str = "一楼自助机") -> tuple[str, str]:
    device, _ = await identity.register_kiosk(hall_code=hall_code, name=name, keyring=live.app.ctx.keyring)
    code, _ = await identity.issue_enrollment(device_id=device.device_id, actor="test")
    return device.device_id, identity.enrollment_link(live.url, code)


async def enrolled_page(browser: Any, live: Live, hall_code: str, *, fake_clock: bool = False) -> tuple[Any, str]:
    """A kiosk browser enrolled through a one-time link and showing its home screen."""
    device_id, link = await enrollment_link(live, hall_code)
    page = await new_page(browser, viewport=KIOSK_VIEWPORT)
    await page.add_init_script(PRINT_SPY)
    if fake_clock:
        await page.clock.install()
    await page.goto(link)
    await page.get_by_text("登记成功").wait_for()
    await page.click("#enroll-continue")
    await page.locator("#screen-home").wait_for()
    return page, device_id


async def scan(page: Any, code: str) -> None:
    """What a hardware scanner does: type into whatever has focus, then Enter."""
    await page.keyboard.type(code)
    await page.keyboard.press("Enter")


async def test_enrollment_by_one_time_link_heartbeat_and_second_use_refused(live: Live, browser: Any) -> None:
    from backend.catalog import service as catalog

    await catalog.create_hall(code="HX", name="转塘街道便民服务中心", region_code="330106011")
    fresh = await new_page(browser, viewport=KIOSK_VIEWPORT)
    await fresh.goto(live.url + "/kiosk")
    await fresh.get_by_role("heading", name="本终端未登记").wait_for()
    assert "palmhall kiosk register" in await fresh.inner_text("#screen-unenrolled")
    await screenshot(fresh, "kiosk-unenrolled")
    await assert_accessible(fresh, "kiosk unenrolled")

    device_id, link = await enrollment_link(live, "HX")
    page = await new_page(browser, viewport=KIOSK_VIEWPORT)
    await page.goto(link)
    await page.get_by_text("登记成功").wait_for()
    code = link.split("#", 1)[1]
    assert "#" not in page.url and code not in page.url  # the code left the address bar at once
    assert device_id in await page.inner_text("#enroll-result")
    await screenshot(page, "kiosk-enroll")
    await assert_accessible(page, "kiosk enroll")
    stored = await credential(page)
    assert stored == {"deviceId": device_id, "type": "secret", "extractable": False, "algorithm": "HMAC",
                          "hash": "SHA-256", "usages": ["sign"], "fields": ["deviceId", "hall", "key"]}
    assert code not in await page.evaluate(LEFTOVERS.replace("document.getElementById('receipt').textContent", "''"))

    await page.click("#enroll-continue")
    await page.locator("#screen-home").wait_for()
    assert await page.inner_text("#hall-name") == "转塘街道便民服务中心"
    row = await Kiosk.get(device_id=device_id)
    assert row.software_version == "kiosk-web/1.0.0" and row.last_seen_at is not None  # heartbeat on load
    assert row.enroll_used_at is not None
    assert page.errors == []

    again = await new_page(browser, viewport=KIOSK_VIEWPORT)
    await again.goto(link)
    await again.get_by_text("登记未完成").wait_for()
    assert "该登记链接已使用过" in await again.inner_text("#enroll-result")
    await screenshot(again, "kiosk-enroll-refused")
    await assert_accessible(again, "kiosk enroll refused")
    assert await credential(again) is None
    await again.goto(live.url + "/kiosk")
    await again.get_by_role("heading", name="本终端未登记").wait_for()


# ---- the queue: check-in by scanner, walk-in tickets, and the idle reset -----------------------------------


async def test_check_in_by_scanning_a_real_appointment_then_idle_reset_leaves_nothing(
        live: Live, browser: Any, platforms: Platforms, hall: dict, at_monday: Any) -> None:
    headers = await resident(live, platforms, ZHANG)
    booked = await book(live, headers, (await slots(live, hall))[0]["slot_id"])  # Tuesday 09:00
    assert booked.status_code == 201, booked.text
    appointment = booked.json()
    token = appointment["qr_url"].rstrip("/").rsplit("/", 1)[-1]
    at_monday.set(shanghai(TUESDAY, 8, 45))  # inside the check-in window; the kiosk's own clock is not
    page, device_id = await enrolled_page(browser, live, "HX-01", fake_clock=True)
    assert await page.evaluate("document.activeElement.id") == "scan"
    await screenshot(page, "kiosk-home")
    await assert_accessible(page, "kiosk home")
    sizes = await page.evaluate("Array.from(document.querySelectorAll('#screen-home .btn'), "
                                "b => Math.min(b.offsetWidth, b.offsetHeight))")
    assert len(sizes) == 5 and min(sizes) >= 48

    await page.click("[data-go=checkin]")
    await page.get_by_role("heading", name="预约签到").wait_for()
    assert await page.evaluate("document.activeElement.id") == "scan"  # the scan field took focus back
    await screenshot(page, "kiosk-checkin")
    await assert_accessible(page, "kiosk check-in")
    await scan(page, token)
    await page.locator("#ticket-code").wait_for()
    assert await page.inner_text("#ticket-code") == "A001"
    shown = await page.inner_text("#ticket")
    assert "前面还有 0 人等候" in shown and "3号窗口" in shown and "业务类别 A" in shown
    assert await page.inner_text("#ticket-title") == "签到成功"
    assert (await Appointment.get(id=appointment["id"])).status == "checked_in"
    ticket = await QueueTicket.get(appointment_id=appointment["id"])
    assert (ticket.code, ticket.issued_by) == ("A001", f"kiosk:{device_id}")
    assert await page.evaluate("window.__prints") == 1
    await screenshot(page, "kiosk-ticket")
    await assert_accessible(page, "kiosk ticket")

    # The 80 mm receipt: in print only the ticket is laid out.
    await page.emulate_media(media="print")
    assert await page.locator("#receipt").is_visible()
    assert not await page.locator("#screen-ticket").is_visible() and not await page.locator(".topbar").is_visible()
    receipt = await page.inner_text("#receipt")
    assert "A001" in receipt and "转塘街道便民服务中心" in receipt
    width = await page.evaluate("document.getElementById('receipt').getBoundingClientRect().width")
    assert 250 < width < 300  # 74 mm at 96 dpi
    await screenshot(page, "kiosk-receipt")
    await page.emulate_media(media="screen")

    # From home, the full QR URL is recognised as an appointment already checked in.
    await page.click("#home-button")
    await page.locator("#screen-home").wait_for()
    await scan(page, appointment["qr_url"])
    await page.get_by_role("heading", name="您已签到，排队号如下").wait_for()
    assert await page.inner_text("#ticket-code") == "A001"

    # 60 s without input: home, and nothing of the visit left in the page or its storage.
    await page.keyboard.type(token[:12])  # half a scan left in the field
    await page.clock.fast_forward("00:59")
    assert await page.locator("#screen-ticket").is_visible()
    await page.clock.fast_forward("00:02")
    await page.locator("#screen-home").wait_for()
    left = await page.evaluate(LEFTOVERS)
    for trace in ("A001", token, token[:12], "签到成功", "您已签到", "前面还有", "3号窗口"):
        assert trace not in left, trace
    assert await page.evaluate("document.activeElement.id") == "scan"
    assert page.errors == []


async def test_walk_in_ticket_by_item_group(live: Live, browser: Any, hall: dict, at_monday: Any) -> None:
    at_monday.set(shanghai(TUESDAY, 9, 10))
    page, device_id = await enrolled_page(browser, live, "HX-01")
    await page.click("[data-go=walkin]")
    group_a = page.locator("[data-group=A]")
    await group_a.wait_for()
    assert "居住证明开具" in await group_a.inner_text() and "办理窗口：3号" in await group_a.inner_text()
    assert "城乡居民养老保险参保登记" in await page.locator("[data-group=B]").inner_text()
    await screenshot(page, "kiosk-walkin")
    await assert_accessible(page, "kiosk walk-in")
    await page.locator("[data-group=B]").click()
    await page.locator("#ticket-code").wait_for()
    assert await page.inner_text("#ticket-code") == "B001"
    assert await page.inner_text("#ticket-title") == "取号成功"
    ticket = await QueueTicket.get(code="B001")
    assert (ticket.group, ticket.issued_by) == ("B", f"kiosk:{device_id}")
    assert ticket.appointment_id is None  # type: ignore[attr-defined]
    assert await page.evaluate("window.__prints") == 1
    await page.click("#home-button")
    await page.click("[data-go=walkin]")
    await page.locator("[data-group=B]").click()
    await page.get_by_text("前面还有 1 人等候").wait_for()
    assert await page.inner_text("#ticket-code") == "B002"
    assert page.errors == []


# ---- cases: masked progress and paying by QR ---------------------------------------------------------------


async def test_case_progress_is_masked_and_a_fee_is_paid_by_qr(live: Live, browser: Any, platforms: Platforms,
                                                                 world: World) -> None:
    me = await payer(live, platforms, "wechat")
    case_no = await awaiting_case(live, world, me)
    mine = await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me.headers)
    progress_url = mine.json()["progress_url"]
    page, _ = await enrolled_page(browser, live, "HX", fake_clock=True)

    await page.click("[data-go=progress]")
    await page.get_by_role("heading", name="办件进度查询").wait_for()
    await scan(page, progress_url)
    await page.locator("#progress-result dl").wait_for()
    shown = await page.inner_text("#progress-result")
    assert "摊位经营许可" in shown and case_no in shown and "张*丰" in shown
    assert "张三丰" not in await page.evaluate("document.body.innerText")
    assert ZHANG["id_number"] not in await page.content() and ZHANG["phone"] not in await page.content()
    await screenshot(page, "kiosk-progress")
    await assert_accessible(page, "kiosk progress")

    await page.click("#home-button")
    await page.click("[data-go=pay]")
    await page.get_by_role("heading", name="缴费").wait_for()
    assert await page.get_attribute("[data-channel=wechat]", "aria-pressed") == "true"
    await scan(page, case_no)  # typed case number this time
    qr = page.locator("img.kiosk-qr")
    await qr.wait_for()
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 100")
    assert (await qr.get_attribute("src") or "").startswith("blob:")
    assert "应缴金额 12.50 元" in await page.inner_text("#pay-result")
    assert "微信" in await page.inner_text("#pay-state")
    await screenshot(page, "kiosk-pay")
    await assert_accessible(page, "kiosk pay")

    order = await PaymentOrder.get(case_no=case_no)
    assert (order.scene, order.channel) == ("kiosk_qr", "wechat")
    # Paying on a phone takes a while: the QR outlives the kiosk's 60 s idle reset (3 minutes).
    await page.clock.fast_forward("01:30")
    assert await page.locator("img.kiosk-qr").is_visible()
    await platforms.wechatpay.pay(order.out_trade_no)  # the citizen pays on their phone
    for _ in range(20):  # the page polls every 2 s of its (fake) time
        if await page.locator("#pay-done").is_visible():
            break
        await page.clock.run_for(2000)
        await page.wait_for_timeout(100)
    await page.locator("#pay-done").wait_for(timeout=5000)
    assert "缴费成功" in await page.inner_text("#pay-done") and "12.50 元" in await page.inner_text("#pay-done")
    assert (await PaymentOrder.get(id=order.id)).state == "paid"
    await screenshot(page, "kiosk-paid")
    await assert_accessible(page, "kiosk paid")
    assert page.errors == []


# ---- guides ------------------------------------------------------------------------------------------------


async def test_browse_and_search_item_guides(live: Live, browser: Any, world: World) -> None:
    page, _ = await enrolled_page(browser, live, "HX")
    await page.click("[data-go=guides]")
    items = page.locator("#guide-list .kiosk-item")
    await items.first.wait_for()
    assert await items.count() == 3
    await screenshot(page, "kiosk-guides")
    await assert_accessible(page, "kiosk guides")
    await page.fill("#guide-q", "居住")
    await page.press("#guide-q", "Enter")
    await expect(items).to_have_count(1)
    assert "居住证明开具" in await items.first.inner_text()
    await items.first.click()
    detail = page.locator("#guide-detail article")
    await detail.wait_for()
    text = await detail.inner_text()
    assert "居住证明开具" in text and "居民身份证" in text and "申请材料" in text and "不收费" in text
    await screenshot(page, "kiosk-guide")
    await assert_accessible(page, "kiosk guide")
    await page.get_by_role("button", name="返回列表").click()
    await expect(items).to_have_count(1)
    assert page.errors == []


# ---- a disabled kiosk --------------------------------------------------------------------------------------


async def test_a_disabled_kiosk_says_so_and_comes_back_when_enabled(live: Live, browser: Any, world: World) -> None:
    page, device_id = await enrolled_page(browser, live, "HX", fake_clock=True)
    await identity.set_kiosk_enabled(device_id=device_id, enabled=False, actor="test")
    await page.clock.fast_forward("01:00")  # the next heartbeat is refused
    await page.get_by_role("heading", name="本终端已停用").wait_for()
    assert await page.locator("#scan-bar").is_hidden()
    await page.reload()
    await page.get_by_role("heading", name="本终端已停用").wait_for()
    await screenshot(page, "kiosk-disabled")
    await assert_accessible(page, "kiosk disabled")
    await identity.set_kiosk_enabled(device_id=device_id, enabled=True, actor="test")
    await page.clock.fast_forward("01:00")
    await page.locator("#screen-home").wait_for()
