"""The counter console (/counter) in Chromium: login and lockout, counters, scan and check-in, calling, the work
list, a case with its materials inline, the one-time correction notice, bad ratings; and the material endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.audit.models import AuditEntry
from backend.cases.models import Case, WarningLevel
from backend.catalog.models import Counter
from backend.identity import service as identity
from backend.identity.models import StaffRole
from tests.browser_support import DESK_VIEWPORT, assert_accessible, new_page, screenshot
from tests.cases_support import (
    LI,
    SIMPLE,
    ZHANG,
    World,
    act,
    application,
    build_world,
    pdf_bytes,
    png_bytes,
    resident,
    settled_staff,
    upload_id,
)
from tests.conftest import Live, Platforms
from tests.test_booking import TUESDAY, at_monday, book, hall, shanghai, slots, verified_resident  # noqa: F401 - fixtures


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


async def make_clerk(live: Live, username: str, hall_code: str, role: StaffRole = StaffRole.CLERK) -> str:
    """A clerk who has already replaced the one-time password; returns the password in force."""
    return await settled_staff(live.client, username, hall_code, role, display_name=f"{username}同志")


async def console(browser: Any, live: Live) -> Any:
    page = await new_page(browser, viewport=DESK_VIEWPORT)
    await page.goto(live.url + "/counter")
    return page


async def log_in(page: Any, username: str, password: str) -> None:
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-form button[type=submit]")


async def log_in_at_counter(page: Any, username: str, password: str, counter_number: int) -> None:
    await log_in(page, username, password)
    choice = page.locator("#counter-list button", has_text=f"{counter_number}号窗口")
    await choice.click()
    await page.locator("#desk-view").wait_for(state="visible")


# ---- login ----------------------------------------------------------------------------------


async def test_login_shows_the_servers_message_and_the_lockout_then_logs_in_and_out(
        live: Live, browser: Any, hall: dict) -> None:  # noqa: F811
    password = await make_clerk(live, "li.clerk", "HX-01")
    page = await console(browser, live)
    await assert_accessible(page, "counter login")
    await screenshot(page, "counter-login")

    await log_in(page, "li.clerk", "not-the-password")
    error = page.locator("#login-error")
    await page.wait_for_function("() => document.getElementById('login-error').textContent.length > 0")
    assert await error.text_content() == "用户名或密码错误"
    for _ in range(4):
        await page.fill("#login-password", "still-wrong")
        async with page.expect_response("**/api/v1/staff/auth/login"):
            await page.click("#login-form button[type=submit]")
    await page.wait_for_function("() => document.getElementById('login-error').textContent.includes('锁定')")
    assert await error.text_content() == "密码错误次数过多，账号已临时锁定，请稍后再试"
    # Locked: even the right password is refused, with the same message.
    await log_in(page, "li.clerk", password)
    await page.wait_for_timeout(300)
    assert "锁定" in (await error.text_content() or "")
    assert await page.locator("#counter-view").is_hidden()

    other = await make_clerk(live, "wang.clerk", "HX-01")
    await log_in(page, "wang.clerk", other)
    await page.locator("#counter-list button", has_text="3号窗口").wait_for()
    assert await page.locator("#login-view").is_hidden()
    stored = await page.evaluate("sessionStorage.getItem('palmhall.counter')")
    assert stored and "access_token" not in stored and await page.evaluate("document.cookie") == ""
    assert await page.evaluate("localStorage.getItem('palmhall.counter')") is None
    await assert_accessible(page, "counter choose counter")
    await screenshot(page, "counter-choose")

    await page.locator("#counter-list button", has_text="3号窗口").click()
    await page.locator("#desk-view").wait_for(state="visible")
    await page.reload()  # the session is this tab's: it survives a reload
    await page.locator("#desk-view").wait_for(state="visible")
    assert "3号窗口" in (await page.locator("#who").text_content() or "")
    await page.click("#logout")
    await page.locator("#login-view").wait_for(state="visible")
    assert await page.evaluate("sessionStorage.getItem('palmhall.counter')") is None
    assert await page.locator("#desk-view").is_hidden()
    assert page.errors == []


async def test_a_new_clerk_must_replace_the_one_time_password_before_choosing_a_counter(
        live: Live, browser: Any, hall: dict) -> None:  # noqa: F811
    _, one_time = await identity.create_staff(username="xin.clerk", display_name="新来的同志", hall_code="HX-01",
                                              role=StaffRole.CLERK)
    page = await console(browser, live)
    await log_in(page, "xin.clerk", one_time)
    await page.locator("#password-view").wait_for(state="visible")
    assert await page.locator("#password-title").text_content() == "首次登录请修改密码"
    assert await page.locator("#counter-view").is_hidden() and await page.locator("#desk-view").is_hidden()
    assert await page.locator("#counter-list button").count() == 0
    await assert_accessible(page, "counter change password")
    await screenshot(page, "counter-change-password")
    # A reload keeps the clerk on the form: the session remembers the change is due.
    await page.reload()
    await page.locator("#password-view").wait_for(state="visible")

    error = page.locator("#password-error")

    async def change(old: str, new: str, repeat: str | None = None, *, wait: bool = True) -> str:
        await page.fill("#old-password", old)
        await page.fill("#new-password", new)
        await page.fill("#repeat-password", new if repeat is None else repeat)
        if wait:
            async with page.expect_response("**/api/v1/staff/auth/password"):
                await page.click("#password-form button[type=submit]")
        else:
            await page.click("#password-form button[type=submit]")
        await page.wait_for_function("() => document.getElementById('password-error').textContent.length > 0")
        return await error.text_content() or ""

    assert await change(one_time, "窗口-xin-passw0rd", "窗口-xin-passw0rd-2", wait=False) == "两次输入的新密码不一致"
    # The server's words, and the session survives a mistyped current password.
    assert await change("not-the-one-time", "窗口-xin-passw0rd") == "用户名或密码错误"
    assert await change(one_time, "short1") == "新密码至少12位，且须包含字母和数字"
    assert await change(one_time, one_time) == "新密码不能与原密码相同"
    assert await change(one_time, "XIN.CLERK-2026-a") == "新密码不能包含用户名"
    assert await page.locator("#password-view").is_visible()

    await page.fill("#old-password", one_time)
    await page.fill("#new-password", "窗口-xin-passw0rd")
    await page.fill("#repeat-password", "窗口-xin-passw0rd")
    await page.click("#password-form button[type=submit]")
    await page.locator("#counter-list button", has_text="3号窗口").wait_for()
    assert await page.locator("#password-view").is_hidden()
    assert "新来的同志" in (await page.locator("#who").text_content() or "")
    stored = await page.evaluate("JSON.parse(sessionStorage.getItem('palmhall.counter'))")
    assert stored["mustChangePassword"] is False
    assert all(v not in str(stored) for v in (one_time, "窗口-xin-passw0rd"))  # no password is kept
    await page.reload()
    await page.locator("#counter-list button", has_text="3号窗口").wait_for()
    await page.locator("#counter-list button", has_text="3号窗口").click()
    await page.locator("#desk-view").wait_for(state="visible")
    assert await AuditEntry.filter(action="staff.password_changed").count() == 1

    # Next time: the new password goes straight to work, the one-time one is spent.
    await page.click("#logout")
    await page.locator("#login-view").wait_for(state="visible")
    await log_in(page, "xin.clerk", one_time)
    await page.wait_for_function("() => document.getElementById('login-error').textContent.length > 0")
    await log_in(page, "xin.clerk", "窗口-xin-passw0rd")
    await page.locator("#counter-list button", has_text="3号窗口").wait_for()
    assert await page.locator("#password-view").is_hidden()
    assert page.errors == []


# ---- scan, check in, call -------------------------------------------------------------------


async def booked_appointment(live: Live, hall: dict) -> dict:  # noqa: F811
    _, headers = await verified_resident(live)
    appointment = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()
    return appointment


async def clerk_at_counter_3_with_a_booking(live: Live, browser: Any, hall: dict, at_monday: Any  # noqa: F811
                                            ) -> tuple[dict, Any]:
    """A booked appointment for Tuesday, the clock inside its check-in window, and a clerk at counter 3."""
    appointment = await booked_appointment(live, hall)
    at_monday.set(shanghai(TUESDAY, 8, 45))
    password = await make_clerk(live, "li.clerk", "HX-01")
    page = await console(browser, live)
    await log_in_at_counter(page, "li.clerk", password, 3)
    return appointment, page


async def test_clerk_scans_an_appointment_token_checks_it_in_and_calls_it(
        live: Live, browser: Any, hall: dict, at_monday) -> None:  # noqa: F811
    appointment, page = await clerk_at_counter_3_with_a_booking(live, browser, hall, at_monday)

    # Idle, the scan field has the focus: the scanner types the bare token and Enter.
    assert await page.evaluate("document.activeElement.id") == "scan-input"
    token = appointment["qr_url"].rsplit("/", 1)[1]
    await page.keyboard.type(token)
    await page.keyboard.press("Enter")
    card = page.locator("#scan-card .scan-result[data-kind=appointment]")
    await card.wait_for()
    assert "居住证明开具" in (await card.text_content() or "")
    assert "已预约，未签到" in (await card.text_content() or "")
    await assert_accessible(page, "counter scan card")
    await screenshot(page, "counter-scan")

    await page.click("#check-in")
    await page.wait_for_function("() => document.getElementById('check-in-result').textContent.includes('A001')")
    assert (await page.locator("#check-in-result").text_content() or "").startswith("已签到，排队号 A001")
    assert await page.locator("#check-in").count() == 0
    await page.wait_for_function("() => document.getElementById('waiting').textContent.includes('A组 1人')")

    # A click elsewhere leaves the scanner's keystrokes still going to the scan field.
    await page.click("#queue-title")
    await page.wait_for_function("() => document.activeElement.id === 'scan-input'")

    await page.click("#call-next")
    await page.wait_for_function("() => document.getElementById('current-ticket').textContent === 'A001'")
    assert "请A001号到3号窗口" in (await page.locator("#current-meta").text_content() or "")
    await page.click("#recall")
    await page.wait_for_function("() => document.getElementById('current-meta').textContent.includes('2 次')")
    await page.click("#missed")
    await page.wait_for_function("() => document.getElementById('current-ticket').textContent === '—'")
    assert "A001 已过号" in (await page.locator("#current-meta").text_content() or "")
    await page.click("#call-next")  # nobody left: the server's message is shown
    await page.wait_for_function("() => document.getElementById('status').textContent.length > 0")
    assert page.errors == []


async def test_the_board_shows_the_called_ticket_and_counter_within_two_seconds(
        live: Live, browser: Any, hall: dict, at_monday) -> None:  # noqa: F811
    appointment, page = await clerk_at_counter_3_with_a_booking(live, browser, hall, at_monday)
    await page.keyboard.type(appointment["qr_url"])  # the whole QR URL, as most scanners send it
    await page.keyboard.press("Enter")
    await page.click("#check-in")
    await page.wait_for_function("() => document.getElementById('check-in-result').textContent.includes('A001')")

    board = await new_page(browser, viewport=DESK_VIEWPORT)
    await board.goto(f"{live.url}/board/{hall['hall'].id}")
    await board.wait_for_timeout(500)  # the board's stream is open
    await page.click("#call-next")
    await page.wait_for_function("() => document.getElementById('current-ticket').textContent === 'A001'")
    ticket = board.locator("#now-calling [data-field=ticket]").first
    counter = board.locator("#now-calling [data-field=counter]").first
    await ticket.filter(has_text="A001").wait_for(timeout=2000)
    assert "3" in (await counter.text_content(timeout=2000) or "")


# ---- cases ----------------------------------------------------------------------------------


async def submitted_case(live: Live, platforms: Platforms, world: World) -> tuple[dict, dict[str, str], dict]:
    """A resident's case with every required material uploaded: a photo of the ID card and two PDFs."""
    me = await resident(live, platforms, ZHANG)
    uploads = {"ID": await upload_id(live, me, png_bytes(7), "id.png"),
               "FORM": await upload_id(live, me, pdf_bytes("form")),
               "LEASE": await upload_id(live, me, pdf_bytes("lease"))}
    r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], materials=[{"code": c, "upload_id": u} for c, u in uploads.items()]))
    assert r.status_code == 201 and r.json()["status"] == "submitted", r.text
    return r.json(), me, uploads


@pytest.fixture
async def world(live: Live) -> World:
    w = await build_world(live)
    await Counter.create(hall_id=w.halls["HX"], number=2, name="综合受理2号窗口", groups=["A"])
    return w


async def test_clerk_sees_materials_inline_and_sends_a_correction_notice_the_resident_reads(
        live: Live, platforms: Platforms, browser: Any, world: World) -> None:
    case, me, _ = await submitted_case(live, platforms, world)
    case_no = case["case_no"]
    password = await make_clerk(live, "zhou.clerk", "HX")
    page = await console(browser, live)
    await log_in_at_counter(page, "zhou.clerk", password, 2)

    # The case's progress QR, scanned, opens it.
    await page.keyboard.type(case["progress_url"])
    await page.keyboard.press("Enter")
    await page.locator("#scan-card .scan-result[data-kind=case]").wait_for()
    await page.click("#scan-card button:has-text('打开办件')")
    await page.locator("#case-detail").wait_for(state="visible")
    assert case_no in (await page.locator("#case-body").text_content() or "")

    # Materials inline: the ID photo as an image, the PDFs in frames, all from blob: URLs fetched with the token.
    image = page.locator(".material img")
    await image.wait_for()
    await page.wait_for_function("() => document.querySelector('.material img').naturalWidth > 0")
    assert (await image.get_attribute("src") or "").startswith("blob:")
    assert await image.get_attribute("alt") == "居民身份证"
    frames = page.locator(".material iframe")
    await page.wait_for_function("() => document.querySelectorAll('.material iframe').length === 2")
    assert all(src.startswith("blob:") for src in await frames.evaluate_all("fs => fs.map(f => f.src)"))
    assert await AuditEntry.filter(action="case.material_viewed", target_id=case_no).count() == 3
    await assert_accessible(page, "counter case detail")
    await screenshot(page, "counter-case")

    # Only the actions the state allows are offered.
    offered = await page.locator("#case-actions button").evaluate_all("bs => bs.map(b => b.dataset.action)")
    assert offered == ["accept", "request_correction", "reject"]

    # The one-time notice from the item's checklist plus free text.
    await page.click("#case-actions button[data-action=request_correction]")
    await page.locator("#action-form input[name=notice-code]").first.wait_for()
    codes = await page.locator("#action-form input[name=notice-code]").evaluate_all("xs => xs.map(x => x.value)")
    assert codes == ["ID", "FORM", "LEASE", "PHOTO"]
    await page.check("#notice-LEASE")
    await page.fill("#notice-reason-LEASE", "复印件不清晰")
    await page.check("#notice-PHOTO")
    await page.fill("#notice-note", "请携带原件到2号窗口核对")
    await assert_accessible(page, "counter correction notice")
    await screenshot(page, "counter-correction")
    await page.click("#action-form button[type=submit]")
    await page.locator(".notice[data-round='1']").wait_for()
    shown = await page.locator(".notice").text_content() or ""
    assert "租赁合同：复印件不清晰" in shown and "补充说明：请携带原件到2号窗口核对" in shown

    mine = (await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me)).json()
    assert mine["status"] == "needs_correction"
    items = mine["corrections"][0]["items"]
    assert [(i["code"], i["reason"]) for i in items] == [("LEASE", "复印件不清晰"), ("PHOTO", "需补正")]
    assert mine["corrections"][0]["note"] == "请携带原件到2号窗口核对"
    offered = await page.locator("#case-actions button").evaluate_all("bs => bs.map(b => b.dataset.action)")
    assert offered == ["request_correction", "reject"]

    # Rejecting needs a reason: without one nothing is sent.
    await page.click("#case-actions button[data-action=reject]")
    await page.click("#action-form button[type=submit]")
    await page.wait_for_timeout(200)
    assert (await Case.get(case_no=case_no)).status == "needs_correction"
    assert page.errors == []


async def open_scanned(page: Any, progress_url: str, files: int) -> None:
    """Scan a case's QR and open it; wait until its `files` materials are shown, so nothing moves any more."""
    await page.keyboard.type(progress_url)
    await page.keyboard.press("Enter")
    await page.locator("#scan-card .scan-result[data-kind=case]").wait_for()
    await page.click("#scan-card button:has-text('打开办件')")
    await page.locator("#case-detail").wait_for(state="visible")
    await page.wait_for_function("n => document.querySelectorAll('.material iframe, .material img').length === n",
                                 arg=files)
    await page.wait_for_load_state("networkidle")


async def test_a_further_notice_is_asked_by_the_clerk_and_approved_by_a_hall_admin(
        live: Live, platforms: Platforms, browser: Any, world: World) -> None:
    case, me, _ = await submitted_case(live, platforms, world)
    case_no = case["case_no"]
    assert (await act(live, world.clerk, case_no, "accept")).status_code == 200
    assert (await act(live, world.clerk, case_no, "request_correction", items=[{"code": "LEASE"}])).status_code == 200
    lease = await upload_id(live, me, pdf_bytes("lease again"))
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/corrections", headers=me,
                               json={"materials": [{"code": "LEASE", "upload_id": lease}]})
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text

    # The clerk's notice form now asks a hall admin, with the reason, instead of telling the resident.
    password = await make_clerk(live, "zhou.clerk", "HX")
    page = await console(browser, live)
    await log_in_at_counter(page, "zhou.clerk", password, 2)
    files = 4  # the ID card's photo, the form, the lease and the lease handed in again
    await open_scanned(page, case["progress_url"], files)
    await page.click("#case-actions button[data-action=request_correction]")
    await page.locator("#notice-request-reason").wait_for()
    assert "须经大厅管理员批准" in (await page.locator("#action-form h4").text_content() or "")
    await page.check("#notice-FORM")
    await page.fill("#notice-reason-FORM", "签名与身份证姓名不一致")
    await page.fill("#notice-request-reason", "审查时发现申请表签名不一致")
    await assert_accessible(page, "counter further notice request")
    async with page.expect_response("**/api/v1/staff/cases/*/notice-requests") as asked:
        await page.click("#action-form button[type=submit]")
    assert (await asked.value).status == 201, await (await asked.value).text()
    pending = page.locator("#notice-requests .notice-request[data-state=pending]")
    await pending.wait_for()
    assert "审查时发现申请表签名不一致" in (await pending.text_content() or "")
    assert await pending.locator("button").count() == 0  # the clerk who asked does not decide
    assert (await Case.get(case_no=case_no)).status == "accepted"

    # A hall admin of the hall approves with a reason: the resident is told (the second round).
    admin_password = await make_clerk(live, "qian.admin", "HX", StaffRole.HALL_ADMIN)
    admin = await console(browser, live)
    await log_in_at_counter(admin, "qian.admin", admin_password, 2)
    await open_scanned(admin, case["progress_url"], files)
    box = admin.locator("#notice-requests .notice-request[data-state=pending]")
    await box.locator("textarea").fill("确需补正，同意再次告知")
    await assert_accessible(admin, "counter further notice decision")
    async with admin.expect_response("**/api/v1/staff/notice-requests/*/decision") as answered:
        await box.locator("button[data-decide=approve]").click()
    decision = await answered.value
    assert decision.status == 200, await decision.text()
    await admin.locator("#notice-requests .notice-request[data-state=approved]").wait_for()
    await admin.locator(".notice[data-round='2']").wait_for()
    assert "经大厅管理员批准再次告知" in (await admin.locator(".notice[data-round='2']").text_content() or "")
    mine = (await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me)).json()
    assert (mine["status"], [n["repeat"] for n in mine["corrections"]]) == ("needs_correction", [False, True])
    assert page.errors == [] and admin.errors == []


async def test_work_list_is_coloured_by_deadline_level_and_filtered(
        live: Live, platforms: Platforms, browser: Any, world: World) -> None:
    me = await resident(live, platforms, LI)
    numbers = []
    for _ in range(3):
        form = await upload_id(live, me)
        r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(
            world.halls["HX"], item=SIMPLE, materials=[{"code": "FORM", "upload_id": form}]))
        assert r.status_code == 201, r.text
        numbers.append(r.json()["case_no"])
        assert (await act(live, world.clerk, numbers[-1], "accept")).status_code == 200
    await Case.filter(case_no=numbers[1]).update(warning_level=WarningLevel.YELLOW)
    await Case.filter(case_no=numbers[2]).update(warning_level=WarningLevel.RED)
    password = await make_clerk(live, "zhou.clerk", "HX")
    page = await console(browser, live)
    await log_in_at_counter(page, "zhou.clerk", password, 2)
    await page.click(".tab[data-tab=cases]")
    await page.wait_for_function("() => document.querySelectorAll('#worklist tbody tr').length === 3")
    rows = await page.locator("#worklist tbody tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.caseNo, r.className, r.querySelector('.level-tag').textContent])")
    assert sorted(rows) == sorted([[numbers[0], "level-green", "正常"], [numbers[1], "level-yellow", "临近"],
                                   [numbers[2], "level-red", "超期"]])
    colours = await page.locator("#worklist tbody tr").evaluate_all(
        "rs => rs.map(r => getComputedStyle(r).backgroundColor)")
    assert len(set(colours)) == 3
    await assert_accessible(page, "counter work list")
    await screenshot(page, "counter-worklist")

    await page.select_option("#filter-level", "red")
    await page.click("#worklist-filters button[type=submit]")
    await page.wait_for_function("() => document.querySelectorAll('#worklist tbody tr').length === 1")
    assert await page.locator("#worklist tbody tr").get_attribute("data-case-no") == numbers[2]
    await page.select_option("#filter-level", "")
    await page.select_option("#filter-status", "submitted")
    await page.click("#worklist-filters button[type=submit]")
    await page.wait_for_function("() => document.getElementById('worklist-total').textContent === '共 0 件'")
    assert page.errors == []


async def test_hall_admin_sees_bad_ratings_and_closes_a_rectification(
        live: Live, platforms: Platforms, browser: Any, world: World) -> None:
    case, me, _ = await submitted_case(live, platforms, world)
    case_no = case["case_no"]
    for step in ("accept", "start_review", "approve"):
        assert (await act(live, world.clerk, case_no, step)).status_code == 200
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/evaluation", headers=me,
                               json={"level": "非常不满意", "comment": "窗口人员态度生硬"})
    assert r.status_code in (200, 201), r.text
    password = await make_clerk(live, "hx.boss", "HX", StaffRole.HALL_ADMIN)
    page = await console(browser, live)
    await log_in_at_counter(page, "hx.boss", password, 2)
    await page.click(".tab[data-tab=ratings]")  # the last 30 days by default
    summary = page.locator("#eval-summary")
    await summary.filter(has_text="差评 1 条").wait_for()
    card = page.locator(".rectification")
    await card.wait_for()
    assert "窗口人员态度生硬" in (await card.text_content() or "")
    assert "非常不满意" in (await card.text_content() or "")
    await assert_accessible(page, "counter ratings")
    await screenshot(page, "counter-ratings")
    await card.locator("textarea").fill("已对窗口人员进行批评教育并组织服务规范培训。")
    await card.locator("button[type=submit]").click()
    await page.wait_for_function("() => document.querySelectorAll('.rectification').length === 0")
    mine = (await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me)).json()
    assert mine["evaluation"]["rectification"]["state"] == "closed"
    assert mine["evaluation"]["rectification"]["response"].startswith("已对窗口人员")
    assert page.errors == []


async def test_a_clerk_sees_no_ratings_tab(live: Live, browser: Any, world: World) -> None:
    password = await make_clerk(live, "zhou.clerk", "HX")
    page = await console(browser, live)
    await log_in_at_counter(page, "zhou.clerk", password, 2)
    assert await page.locator("#tab-ratings").is_hidden()


# ---- the material endpoint ------------------------------------------------------------------


async def test_material_file_is_for_clerks_of_the_cases_hall_only_and_each_view_is_audited(
        live: Live, platforms: Platforms, world: World) -> None:
    case, _, _ = await submitted_case(live, platforms, world)
    case_no = case["case_no"]
    material = next(m for m in case["materials"] if m["code"] == "ID")
    path = f"/api/v1/staff/cases/{case_no}/materials/{material['id']}/content"

    mine = await live.client.get(path, headers=world.clerk)
    assert mine.status_code == 200
    assert mine.content == png_bytes(7) and mine.headers["content-type"] == "image/png"
    assert mine.headers["cache-control"] == "no-store"
    assert mine.headers["x-content-type-options"] == "nosniff"

    stranger = await live.client.get(path, headers=world.other_clerk)
    assert (stranger.status_code, stranger.json()["error"]["code"]) == (404, "case.not_found")
    anonymous = await live.client.get(path)
    assert anonymous.status_code == 401
    other_case_material = await live.client.get(f"/api/v1/staff/cases/{case_no}/materials/999999/content",
                                                headers=world.clerk)
    assert (other_case_material.status_code, other_case_material.json()["error"]["code"]) == (
        404, "case.material_file_not_found")

    viewed = await AuditEntry.filter(action="case.material_viewed").all()
    assert [(a.target_id, a.details["material_id"]) for a in viewed] == [(case_no, material["id"])]

    counters = await live.client.get(f"/api/v1/staff/halls/{world.halls['HX']}/counters", headers=world.clerk)
    assert counters.status_code == 200
    assert [(c["number"], c["name"]) for c in counters.json()["counters"]] == [(2, "综合受理2号窗口")]
    refused = await live.client.get(f"/api/v1/staff/halls/{world.halls['HX']}/counters", headers=world.other_clerk)
    assert refused.status_code == 403


async def test_staff_view_offers_only_what_the_state_machine_allows(
        live: Live, platforms: Platforms, world: World) -> None:
    case, _, _ = await submitted_case(live, platforms, world)
    case_no = case["case_no"]
    view = (await live.client.get(f"/api/v1/staff/cases/{case_no}", headers=world.clerk)).json()
    assert view["actions"] == ["accept", "request_correction", "reject"]
    for step in ("accept", "start_review", "approve"):
        assert (await act(live, world.clerk, case_no, step)).status_code == 200
    view = (await live.client.get(f"/api/v1/staff/cases/{case_no}", headers=world.clerk)).json()
    # The certificate was issued on approval: delivering or closing is what is left.
    assert (view["status"], view["actions"]) == ("certificate_issued", ["deliver", "close"])
    stranger = await live.client.get(f"/api/v1/staff/cases/{case_no}", headers=world.other_clerk)
    assert stranger.status_code == 403
