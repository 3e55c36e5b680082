"""The hall dashboard: exact figures for a planted hall, who may see them, the period's rules, SVG charts, the page."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from backend import clock
from backend.booking.models import Appointment, QueueTicket, Slot
from backend.cases.models import Case, CaseMaterial, Evaluation
from backend.catalog.models import Hall, ServiceItem, ServiceItemVersion
from backend.counter import charts
from tests.browser_support import DESK_VIEWPORT, assert_accessible, new_page, screenshot
from tests.cases_support import RESIDENCE, World, build_world, settled_staff
from tests.conftest import Live

SVG = "{http://www.w3.org/2000/svg}"
TODAY = date(2026, 3, 2)  # a Monday; the clock stands at 09:00 in Shanghai
PERIOD = {"from": "2026-02-23", "to": "2026-03-02"}
HALL_NAME = '转塘<便民>&"服务"中心'  # text that must come out of the SVG as text, not markup


def at(day: date, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=clock.SHANGHAI)


@pytest.fixture
async def world(live: Live, frozen_clock) -> World:
    frozen_clock.set(at(TODAY, 9).astimezone(UTC))
    w = await build_world(live)
    await Hall.filter(id=w.halls["HX"]).update(name=HALL_NAME)
    await plant(w)
    return w


# ---- the planted hall -----------------------------------------------------------------------

_n = iter(range(1, 100_000))


async def _appointments(hall_id: int, item: ServiceItem, day: date, *statuses: str) -> None:
    slot = await Slot.create(hall_id=hall_id, item=item, day=day, starts_at=at(day, 9), ends_at=at(day, 9, 30),
                             capacity=10, booked=len(statuses))
    for status in statuses:
        n = next(_n)
        await Appointment.create(resident_id=n, person_hash=f"p{n}", hall_id=hall_id, item=item, slot=slot, day=day,
                                 status=status, idempotency_key=f"k{n}", request_hash="h")


async def _ticket(hall_id: int, day: date, issued: datetime, wait_minutes: float | None, *,
                  appointment: bool = False) -> None:
    n = next(_n)
    called = issued + timedelta(minutes=wait_minutes) if wait_minutes is not None else None
    t = await QueueTicket.create(hall_id=hall_id, day=day, group="A", number=n, code=f"A{n:03d}", priority=1,
                                 status="done" if called else "waiting", issued_by="kiosk:test", called_at=called)
    # created_at is set by the database on insert: put the ticket back at the time it was taken.
    await QueueTicket.filter(id=t.id).update(created_at=issued)
    if appointment:
        await QueueTicket.filter(id=t.id).update(appointment_id=(await Appointment.first()).id)  # type: ignore[union-attr]


async def _case(hall_id: int, item: ServiceItem, version: ServiceItemVersion, status: str, submitted: datetime | None,
                *, yellow_on: date | None = None, promised_due: date | None = None) -> Case:
    n = next(_n)
    return await Case.create(
        case_no=f"T{n:08d}", applicant_hash=f"a{n}", applicant_name_enc="x", applicant_id_number_enc="x",
        hall_id=hall_id, item=item, item_version=version, channel="counter", status=status, form_enc="x",
        created_by="staff:1", submitted_at=submitted, statutory_days=10, promised_days=5,
        accepted_on=TODAY - timedelta(days=10) if promised_due else None, yellow_on=yellow_on,
        promised_due=promised_due)


async def plant(w: World) -> None:
    hx, hy = w.halls["HX"], w.halls["HY"]
    item = await ServiceItem.get(code=RESIDENCE)
    version = await ServiceItemVersion.filter(item=item).first()
    assert version is not None
    # Appointments: 8 in the period (3 today), 4 attended, 2 no-shows; cancelled, earlier and other halls' not.
    await _appointments(hx, item, date(2026, 2, 24), "checked_in", "checked_in", "no_show", "cancelled")
    await _appointments(hx, item, date(2026, 2, 27), "completed", "no_show")
    await _appointments(hx, item, TODAY, "checked_in", "booked", "booked")
    await _appointments(hx, item, date(2026, 2, 20), "checked_in", "checked_in", "checked_in")
    await _appointments(hy, item, date(2026, 2, 24), "checked_in", "no_show")
    # Tickets: waits of 1..10 minutes on 24 February, 4 and 6 minutes today, two still waiting today.
    for minutes in range(1, 11):
        await _ticket(hx, date(2026, 2, 24), at(date(2026, 2, 24), 9, minutes), minutes)
    await _ticket(hx, TODAY, at(TODAY, 8, 30), 4, appointment=True)
    await _ticket(hx, TODAY, at(TODAY, 8, 31, 30), 6)
    await _ticket(hx, TODAY, at(TODAY, 8, 40), None)
    await _ticket(hx, TODAY, at(TODAY, 8, 41), None)
    await _ticket(hx, date(2026, 2, 20), at(date(2026, 2, 20), 9), 100)  # before the period
    await _ticket(hy, TODAY, at(TODAY, 8, 0), 50)  # another hall
    # Cases: one submitted today; in the period one waiting for a correction, three accepted (clock green,
    # yellow, red), one in review (red), two closed. Before the period: one accepted and red. A draft never counts.
    feb25 = at(date(2026, 2, 25), 10)
    await _case(hx, item, version, "submitted", at(TODAY, 8, 15))
    await _case(hx, item, version, "needs_correction", feb25)
    green = await _case(hx, item, version, "accepted", feb25, yellow_on=TODAY + timedelta(days=2),
                        promised_due=TODAY + timedelta(days=4))
    await _case(hx, item, version, "accepted", feb25, yellow_on=TODAY, promised_due=TODAY + timedelta(days=1))
    await _case(hx, item, version, "accepted", feb25, yellow_on=TODAY - timedelta(days=3),
                promised_due=TODAY - timedelta(days=1))
    await _case(hx, item, version, "in_review", feb25, yellow_on=TODAY - timedelta(days=5),
                promised_due=TODAY - timedelta(days=2))
    closed = [await _case(hx, item, version, "closed", feb25) for _ in range(2)]
    await _case(hx, item, version, "accepted", at(date(2026, 2, 10), 10), yellow_on=date(2026, 2, 20),
                promised_due=date(2026, 2, 24))
    await _case(hx, item, version, "draft", None)
    await _case(hy, item, version, "accepted", feb25, yellow_on=TODAY, promised_due=TODAY)
    # Ratings in the period: 5, 5, 4, 2, 1 (three satisfied of five); one before the period and one elsewhere.
    older = [await _case(hx, item, version, "closed", at(date(2026, 1, 5), 10)) for _ in range(4)]
    for case, level, day in zip([*closed, *older], (5, 5, 4, 2, 1, 1), [date(2026, 2, 26)] * 5 + [date(2026, 2, 1)],
                                strict=True):
        await Evaluation.create(case=case, resident_id=1, hall_id=hx, item_id=item.id, level=level,
                                created_at=at(day, 15))
    hy_case = await _case(hy, item, version, "closed", feb25)
    await Evaluation.create(case=hy_case, resident_id=1, hall_id=hy, item_id=item.id, level=1, created_at=at(TODAY, 8))
    # Required materials of the period's cases: 2 reused, 1 by e-certificate, 3 uploaded, 1 on paper (3 of 7 avoided).
    # An optional reused one and a superseded upload do not count.
    for source, required, superseded in (("reuse", True, False), ("reuse", True, False), ("certificate", True, False),
                                         ("upload", True, False), ("upload", True, False), ("upload", True, False),
                                         ("paper", True, False), ("reuse", False, False), ("upload", True, True)):
        await CaseMaterial.create(case=green, code=f"M{next(_n)}", name="材料", required=required, source=source,
                                  superseded=superseded)


async def get_dashboard(live: Live, headers: dict[str, str], hall_id: int, **params: str):
    return await live.client.get(f"/api/v1/staff/halls/{hall_id}/dashboard", params=params, headers=headers)


# ---- the API --------------------------------------------------------------------------------


async def test_figures_are_exact_for_the_planted_hall(live: Live, world: World) -> None:
    r = await get_dashboard(live, world.admin, world.halls["HX"], **PERIOD)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["hall"] == {"id": world.halls["HX"], "name": HALL_NAME}
    p = d["period"]
    assert (p["from"], p["to"], p["days"]) == ("2026-02-23", "2026-03-02", 8)
    assert (p["appointments"], p["checked_in"], p["no_shows"], p["cancelled"]) == (8, 4, 2, 1)
    assert p["checkin_rate"] == 0.5
    # Waits in minutes 1..10, 4, 6: the mean is 65/12 minutes, the 90th percentile (nearest rank, 11th of 12) 9.
    assert (p["tickets"], p["called"], p["walk_ins"]) == (14, 12, 13)
    assert p["wait_average_seconds"] == 325.0
    assert p["wait_p90_seconds"] == 540.0
    assert p["submitted"] == 8
    assert p["by_state"] == {"submitted": 1, "needs_correction": 1, "accepted": 3, "in_review": 1, "closed": 2}
    assert (p["running"], p["by_level"]) == (4, {"none": 1, "yellow": 1, "red": 2})
    assert (p["evaluations"], p["satisfied"], p["satisfaction_rate"]) == (5, 3, 0.6)
    assert p["levels"] == {"5": 2, "4": 1, "3": 0, "2": 1, "1": 1}
    assert (p["materials_required"], p["materials_avoided"], p["materials_avoided_rate"]) == (7, 3, 0.4286)
    assert d["now"] == {"running": 5, "by_level": {"none": 1, "yellow": 1, "red": 3}}

    t = d["today"]
    assert t["date"] == "2026-03-02"
    assert (t["appointments"], t["checked_in"], t["no_shows"]) == (3, 1, 0)
    assert (t["tickets"], t["called"], t["wait_average_seconds"], t["wait_p90_seconds"]) == (4, 2, 300.0, 360.0)
    assert (t["submitted"], t["by_state"]) == (1, {"submitted": 1})
    assert t["evaluations"] == 0 and t["satisfaction_rate"] is None
    assert d["labels"]["states"]["needs_correction"] == "待补正"


async def test_todays_figures_include_what_happened_before_eight_in_the_morning(live: Live, world: World) -> None:
    """07:30 in Shanghai is 23:30 UTC the day before: still today."""
    item = await ServiceItem.get(code=RESIDENCE)
    version = await ServiceItemVersion.filter(item=item).first()
    assert version is not None
    await _case(world.halls["HX"], item, version, "submitted", at(TODAY, 7, 30))
    t = (await get_dashboard(live, world.admin, world.halls["HX"], **PERIOD)).json()["today"]
    assert (t["submitted"], t["by_state"]) == (2, {"submitted": 2})


async def test_materials_rate_agrees_with_the_counters_material_statistics(live: Live, world: World) -> None:
    d = (await get_dashboard(live, world.admin, world.halls["HX"], **PERIOD)).json()
    stats = await live.client.get("/api/v1/staff/stats/materials",
                                  params={"hall_id": world.halls["HX"], **PERIOD}, headers=world.admin)
    items = stats.json()["items"]
    saved = sum(i["reused"] + i["certificate"] for i in items)
    total = sum(i["total"] for i in items)
    assert (saved, total) == (d["period"]["materials_avoided"], d["period"]["materials_required"])


async def test_default_period_is_the_last_30_days(live: Live, world: World) -> None:
    d = (await get_dashboard(live, world.admin, world.halls["HX"])).json()
    assert (d["period"]["from"], d["period"]["to"], d["period"]["days"]) == ("2026-02-01", "2026-03-02", 30)
    assert d["period"]["evaluations"] == 6  # the rating of 1 February is inside now


async def test_only_the_halls_own_admin_sees_it(live: Live, world: World) -> None:
    clerk = await get_dashboard(live, world.clerk, world.halls["HX"], **PERIOD)
    assert (clerk.status_code, clerk.json()["error"]["code"]) == (403, "dashboard.forbidden")
    assert clerk.json()["error"]["message"] == "只有本大厅的管理员可以查看运行看板"
    other = await get_dashboard(live, world.admin, world.halls["HY"], **PERIOD)
    assert (other.status_code, other.json()["error"]["code"]) == (403, "dashboard.forbidden")
    nowhere = await get_dashboard(live, world.admin, 99_999, **PERIOD)
    assert nowhere.status_code == 403
    anonymous = await live.client.get(f"/api/v1/staff/halls/{world.halls['HX']}/dashboard")
    assert anonymous.status_code == 401


@pytest.mark.parametrize(("params", "fields"), [
    ({"from": "2026-02-30", "to": "2026-03-02"}, {"from"}),
    ({"from": "02/01/2026", "to": "yesterday"}, {"from", "to"}),
    ({"from": "2026-03-02", "to": "2026-03-01"}, {"to"}),
    ({"from": "2025-03-01", "to": "2026-03-01"}, {"to"}),  # 366 days in a year without 29 February
])
async def test_bad_periods_are_field_errors(live: Live, world: World, params: dict, fields: set) -> None:
    r = await get_dashboard(live, world.admin, world.halls["HX"], **params)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation.failed")
    assert {f["field"] for f in r.json()["error"]["details"]["fields"]} == fields


async def test_a_whole_leap_year_is_allowed_and_charted_by_month(live: Live, world: World) -> None:
    r = await get_dashboard(live, world.admin, world.halls["HX"], **{"from": "2024-01-01", "to": "2024-12-31"})
    assert r.status_code == 200, r.text
    root = ET.fromstring(r.json()["charts"]["daily"])
    assert root.findtext(f"{SVG}title") == f"{HALL_NAME} 每月预约、签到与爽约"


async def test_charts_are_well_formed_accessible_svg_with_text_escaped(live: Live, world: World) -> None:
    d = (await get_dashboard(live, world.admin, world.halls["HX"], **PERIOD)).json()
    assert set(d["charts"]) == {"daily", "states", "levels", "ratings", "notice_items", "notice_clerks"}
    for name, svg in d["charts"].items():
        root = ET.fromstring(svg)  # raises on anything not well-formed
        assert root.tag == f"{SVG}svg", name
        assert root.get("role") == "img" and root.get("aria-label") == root.findtext(f"{SVG}title"), name
        assert root.findtext(f"{SVG}desc"), name
    daily = ET.fromstring(d["charts"]["daily"])
    assert daily.findtext(f"{SVG}title") == f"{HALL_NAME} 每日预约、签到与爽约"
    assert "<便民>" not in d["charts"]["daily"] and "&lt;便民&gt;" in d["charts"]["daily"]
    labels = [t.text for t in daily.iter(f"{SVG}text")]
    assert {"预约", "签到", "爽约", "2/23", "3/2"} <= set(labels)
    # 24 February: 3 appointments, 2 check-ins, 1 no-show, each a bar with its own tooltip.
    tips = {t.text for t in daily.iter(f"{SVG}title")}
    assert {"2/24 预约：3", "2/24 签到：2", "2/24 爽约：1"} <= tips
    levels = ET.fromstring(d["charts"]["levels"])
    assert [t.text for t in levels.iter(f"{SVG}text")] == ["正常", "1", "黄色预警", "1", "红色超期", "3"]
    assert [r.get("class") for r in levels.iter(f"{SVG}rect")] == ["lv-none", "lv-yellow", "lv-red"]
    states = [t.text for t in ET.fromstring(d["charts"]["states"]).iter(f"{SVG}text")]
    assert states == ["已提交，待受理", "1", "待补正", "1", "已受理", "3", "审查中", "1", "已办结", "2"]
    for name in ("notice_items", "notice_clerks"):  # no correction notice was sent again in the planted hall
        assert [t.text for t in ET.fromstring(d["charts"][name]).iter(f"{SVG}text")] == ["本期间没有再次告知"]


def test_chart_text_and_attributes_are_escaped() -> None:
    evil = '<script>alert(1)</script>&"\''
    svg = charts.hbar_chart(key='k" onload="x', title=evil, rows=[(evil, 2, 'c" onclick="y')])
    root = ET.fromstring(svg)
    assert not list(root.iter(f"{SVG}script"))
    assert root.findtext(f"{SVG}title") == evil and root.get("aria-label") == evil
    assert root.get("onload") is None and [r.get("class") for r in root.iter(f"{SVG}rect")] == ['c" onclick="y']
    assert [t.text for t in root.iter(f"{SVG}text")] == [evil, "2"]
    empty = ET.fromstring(charts.bar_chart(key="e", title="空", categories=[], series=[("预约", [])]))
    assert "本期间没有数据" in [t.text for t in empty.iter(f"{SVG}text")]


# ---- the page -------------------------------------------------------------------------------


async def _login(page: Any, username: str, password: str) -> None:
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-form button[type=submit]")


async def dashboard_as(live: Live, browser: Any, username: str, role: Any, display_name: str) -> Any:
    """A settled staff account of hall HX logged in on /dashboard."""
    password = await settled_staff(live.client, username, "HX", role, display_name=display_name)
    page = await new_page(browser, viewport=DESK_VIEWPORT)
    await page.goto(live.url + "/dashboard")
    await _login(page, username, password)
    return page


async def test_admin_logs_in_and_sees_the_figures_and_charts(live: Live, world: World, browser) -> None:
    from backend.identity.models import StaffRole

    page = await dashboard_as(live, browser, "page.admin", StaffRole.HALL_ADMIN, "页面管理员")
    figures = page.locator("#period-figures")
    await figures.locator("[data-figure=appointments]").wait_for()
    await page.fill("#from", PERIOD["from"])
    await page.fill("#to", PERIOD["to"])
    await page.click("#period-form button[type=submit]")
    await page.wait_for_function("() => document.querySelector('#period-title').textContent.includes('2026-02-23')")

    async def figure(scope: str, name: str) -> str:
        return (await page.locator(f"#{scope}-figures [data-figure={name}] .figure-value").inner_text()).strip()

    assert await page.locator("#hall-name").inner_text() == HALL_NAME
    assert [await figure("period", n) for n in ("appointments", "checked_in", "no_shows")] == ["8", "4", "2"]
    assert await figure("period", "wait_average") == "5.4 分钟"
    assert await figure("period", "wait_p90") == "9 分钟"
    assert await figure("period", "satisfaction") == "60%"
    assert await figure("period", "materials_avoided") == "42.9%"
    assert [await figure("today", n) for n in ("appointments", "checked_in", "no_shows")] == ["3", "1", "0"]
    assert await figure("today", "wait_p90") == "6 分钟"
    # The charts are the server's SVG, imported as SVG elements (not text, not an <img>).
    for name in ("daily", "states", "levels", "ratings"):
        chart = page.locator(f"#chart-{name} svg")
        assert await chart.count() == 1
        assert await chart.evaluate("n => n.namespaceURI") == "http://www.w3.org/2000/svg"
    title = await page.locator("#chart-daily svg title").first.text_content()
    assert title == f"{HALL_NAME} 每日预约、签到与爽约"
    assert await page.locator("#chart-daily script").count() == 0
    assert await page.locator("#chart-levels svg text").all_text_contents() == ["正常", "1", "黄色预警", "1",
                                                                              "红色超期", "3"]
    # The token is kept for this tab only.
    assert await page.evaluate("Object.keys(localStorage).filter(k => k.includes('token')).length") == 0
    assert await page.evaluate("!!JSON.parse(sessionStorage.getItem('palmhall.dashboard')).token")
    await screenshot(page, "dashboard-admin")
    await assert_accessible(page, "/dashboard")
    await page.click("#large-type-toggle")
    await screenshot(page, "dashboard-large-type")
    await assert_accessible(page, "/dashboard large type")
    assert page.errors == []


async def test_a_clerk_is_told_the_dashboard_is_for_hall_admins(live: Live, world: World, browser) -> None:
    from backend.identity.models import StaffRole

    page = await dashboard_as(live, browser, "page.clerk", StaffRole.CLERK, "页面窗口")
    message = page.locator("#denied")
    await message.wait_for()
    assert "只有本大厅的管理员可以查看运行看板" in await message.inner_text()
    assert await page.locator("#period-figures [data-figure]").count() == 0
    await screenshot(page, "dashboard-clerk-denied")
    await assert_accessible(page, "/dashboard clerk")


async def test_wrong_password_shows_the_servers_message(live: Live, world: World, browser) -> None:
    page = await new_page(browser, viewport=DESK_VIEWPORT)
    await page.goto(live.url + "/dashboard")
    await screenshot(page, "dashboard-login")
    await assert_accessible(page, "/dashboard login")
    await _login(page, "nobody", "wrong-password-1")
    await page.wait_for_function("() => document.querySelector('#login-error').textContent.length > 0")
    assert "密码" in await page.locator("#login-error").inner_text()


async def test_the_route_is_in_the_api_document(live: Live) -> None:
    spec = (await live.client.get("/docs/openapi.json")).json()
    route = spec["paths"]["/api/v1/staff/halls/{hall_id}/dashboard"]["get"]
    assert {p["name"] for p in route["parameters"]} >= {"from", "to"}


async def test_a_new_admin_replaces_the_one_time_password_then_sees_the_dashboard(
        live: Live, world: World, browser) -> None:
    from backend.identity import service as identity
    from backend.identity.models import StaffRole

    _, one_time = await identity.create_staff(username="new.admin", display_name="新管理员", hall_code="HX",
                                              role=StaffRole.HALL_ADMIN)
    page = await new_page(browser, viewport=DESK_VIEWPORT)
    await page.goto(live.url + "/dashboard")
    await _login(page, "new.admin", one_time)
    await page.locator("#password-view").wait_for(state="visible")
    assert await page.locator("#password-title").inner_text() == "首次登录请修改密码"
    assert await page.locator("#board-view").is_hidden() and await page.locator("#denied").is_hidden()
    await assert_accessible(page, "/dashboard change password")
    await screenshot(page, "dashboard-change-password")
    # Reloaded with the token of this tab: /me says the change is still due.
    await page.reload()
    await page.locator("#password-view").wait_for(state="visible")

    await page.fill("#old-password", one_time)
    await page.fill("#new-password", "short1")
    await page.fill("#repeat-password", "short1")
    await page.click("#password-form button[type=submit]")
    await page.wait_for_function("() => document.querySelector('#password-error').textContent.length > 0")
    assert await page.locator("#password-error").inner_text() == "新密码至少12位，且须包含字母和数字"

    await page.fill("#old-password", one_time)
    await page.fill("#new-password", "看板-new-passw0rd")
    await page.fill("#repeat-password", "看板-new-passw0rd")
    await page.click("#password-form button[type=submit]")
    await page.locator("#period-figures [data-figure=appointments]").wait_for()
    assert await page.locator("#password-view").is_hidden()
    assert await page.locator("#hall-name").inner_text() == HALL_NAME
    r = await live.client.post("/api/v1/staff/auth/login", json={"username": "new.admin", "password": one_time})
    assert r.status_code == 401
    assert page.errors == []
