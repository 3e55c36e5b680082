"""Operators set up a hall without touching the database: through the staff API (an admin creates the hall and its
hall admin, who sets up counters, hours with a lunch break, special hours, items and booking rules) and through
`palmhall hall ...`; then availability offers exactly the slots that set-up implies. Rules change field by field,
bad input is refused in Chinese, everything is audited, and the demo is built by the same functions."""

from __future__ import annotations

import ast
import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from backend import clock, db
from backend.audit.models import AuditEntry
from backend.booking import service as booking
from backend.catalog import service as catalog
from backend.catalog.models import Counter, HallSpecialHours, OpeningHours
from backend.catalog.schemas import ItemIn
from backend.identity.models import StaffRole
from tests.cases_support import CHOSEN_PASSWORD, RESIDENCE, SIMPLE, item_row, staff_headers
from tests.conftest import ON_POSTGRES, ROOT, Live, _truncate_all
from tests.test_booking import book, verified_resident

STAFF = "/api/v1/staff"
MONDAY_8AM = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
TUESDAY, WEDNESDAY, SATURDAY = date(2026, 3, 3), date(2026, 3, 4), date(2026, 3, 7)
WORKDAY = [{"opens": "09:00", "closes": "12:00"}, {"opens": "13:30", "closes": "17:00"}]  # with a lunch break


@pytest.fixture
def at_monday(frozen_clock: clock.FrozenClock) -> clock.FrozenClock:
    frozen_clock.set(MONDAY_8AM)
    return frozen_clock


async def _items() -> None:
    """The catalog's items, imported as `palmhall catalog import` does, in no hall yet."""
    await catalog.upsert_item(row=ItemIn.model_validate(item_row(RESIDENCE, "居住证明开具", halls=[])))
    await catalog.upsert_item(row=ItemIn.model_validate(item_row(SIMPLE, "困难证明开具", halls=[], queue_group="B")))


async def _root(live: Live) -> dict[str, str]:
    """The deployment's admin: its first hall and account come from `palmhall hall create` / `staff create`."""
    await catalog.create_hall(code="HQ", name="区政务服务中心", region_code="330106")
    return await staff_headers(live, "root", "HQ", StaffRole.ADMIN)


async def _first_login(live: Live, username: str, one_time: str) -> dict[str, str]:
    """What the new account's holder does: log in with the one-time password, choose their own, log in again."""
    c = live.client
    r = await c.post(f"{STAFF}/auth/login", json={"username": username, "password": one_time})
    assert r.status_code == 200 and r.json()["must_change_password"] is True, r.text
    r = await c.post(f"{STAFF}/auth/password", json={"old_password": one_time, "new_password": CHOSEN_PASSWORD},
                     headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert r.status_code == 204, r.text
    r = await c.post(f"{STAFF}/auth/login", json={"username": username, "password": CHOSEN_PASSWORD})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def availability(live: Live, hall_id: int, item: str, day: date) -> dict[str, Any]:
    r = await live.client.get(f"/api/v1/halls/{hall_id}/availability", params={"item": item, "date": day.isoformat()})
    assert r.status_code == 200, r.text
    return dict(r.json())


def starts(answer: dict[str, Any]) -> list[str]:
    return [s["starts_at"][11:16] for s in answer["slots"]]


async def test_a_hall_set_up_through_the_staff_api_offers_exactly_its_slots(live: Live, at_monday: Any) -> None:
    c = live.client
    await _items()
    root = await _root(live)

    # The admin creates the hall and its hall admin.
    r = await c.post(f"{STAFF}/halls", json={"code": "HZ-03", "name": "双浦镇便民服务中心", "region_code": "330106012",
                                             "address": "双浦镇政府一楼"}, headers=root)
    assert r.status_code == 201, r.text
    hall = r.json()["id"]
    assert r.json() == {"id": hall, "code": "HZ-03", "name": "双浦镇便民服务中心", "region_code": "330106012",
                        "address": "双浦镇政府一楼", "active": True}
    r = await c.post(f"{STAFF}/halls/{hall}/staff", json={"username": "hz.admin", "display_name": "周主任",
                                                          "role": "hall_admin"}, headers=root)
    assert r.status_code == 201, r.text
    admin = await _first_login(live, "hz.admin", r.json()["one_time_password"])

    # The hall admin does the rest: the items offered, counters, hours, a special day, booking rules.
    r = await c.put(f"{STAFF}/halls/{hall}/items", json={"items": [RESIDENCE, SIMPLE]}, headers=admin)
    assert r.status_code == 200, r.text
    assert sorted(r.json()["added"]) == sorted([RESIDENCE, SIMPLE])
    counters = {}
    for number, body in ((1, {"name": "综合受理1号窗口", "items": [RESIDENCE]}),
                         (2, {"name": "社保窗口", "groups": ["b"]}),
                         (3, {"name": "临时窗口", "groups": ["A", "B"]})):
        r = await c.post(f"{STAFF}/halls/{hall}/counters", json={"number": number, **body}, headers=admin)
        assert r.status_code == 201, r.text
        counters[number] = r.json()
    assert [counters[n]["groups"] for n in (1, 2, 3)] == [["A"], ["B"], ["A", "B"]]
    assert counters[1]["items"] == [RESIDENCE]
    r = await c.patch(f"{STAFF}/halls/{hall}/counters/{counters[2]['id']}",
                      json={"name": "社保医保2号窗口", "groups": ["A", "B"]}, headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["groups"], sorted(r.json()["items"])) == (
        "社保医保2号窗口", ["A", "B"], sorted([RESIDENCE, SIMPLE]))
    r = await c.patch(f"{STAFF}/halls/{hall}/counters/{counters[3]['id']}", json={"active": False}, headers=admin)
    assert r.status_code == 200 and r.json()["active"] is False
    r = await c.put(f"{STAFF}/halls/{hall}/hours",
                    json={"days": [{"weekday": d, "periods": WORKDAY} for d in range(5)]}, headers=admin)
    assert r.status_code == 200, r.text
    assert [len(d["periods"]) for d in r.json()["hours"]] == [2, 2, 2, 2, 2, 0, 0]
    r = await c.put(f"{STAFF}/halls/{hall}/special-hours/{WEDNESDAY}", headers=admin,
                    json={"periods": [{"opens": "09:00", "closes": "11:00"}], "reason": "下午全员参加防汛演练"})
    assert r.status_code == 200, r.text
    assert r.json()["cancelled_appointments"] == []
    r = await c.patch(f"{STAFF}/halls/{hall}/booking-rule", json={"slot_minutes": 60, "seats_per_slot": 3},
                      headers=admin)
    assert r.status_code == 200, r.text
    r = await c.patch(f"{STAFF}/halls/{hall}/booking-rule", json={"item": SIMPLE, "seats_per_slot": 1},
                      headers=admin)
    assert (r.json()["slot_minutes"], r.json()["seats_per_slot"]) == (60, 1)  # the rest from the hall's default

    # What residents are offered follows from all of it, exactly.
    tuesday = await availability(live, hall, RESIDENCE, TUESDAY)
    assert starts(tuesday) == ["09:00", "10:00", "11:00", "13:30", "14:30", "15:30"]  # no 12:00, no lunch slot
    assert {s["capacity"] for s in tuesday["slots"]} == {3}
    assert tuesday["periods"] == WORKDAY and tuesday["notice"] is None
    simple = await availability(live, hall, SIMPLE, TUESDAY)
    assert starts(simple) == starts(tuesday) and {s["capacity"] for s in simple["slots"]} == {1}
    wednesday = await availability(live, hall, RESIDENCE, WEDNESDAY)
    assert starts(wednesday) == ["09:00", "10:00"]
    assert wednesday["notice"] == "大厅调整办公时间：下午全员参加防汛演练"
    saturday = await availability(live, hall, RESIDENCE, SATURDAY)
    assert (saturday["open"], saturday["slots"]) == (False, [])

    # A resident books the one seat of a slot; the next is refused.
    _, first = await verified_resident(live)
    _, second = await verified_resident(live)
    slot = simple["slots"][3]["slot_id"]
    assert (await book(live, first, slot)).status_code == 201
    r = await book(live, second, slot)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "booking.slot_full")

    # The public list and the console's read-back show the same hall.
    listed = next(h for h in (await c.get("/api/v1/halls")).json()["halls"] if h["code"] == "HZ-03")
    assert [x["number"] for x in listed["counters"]] == [1, 2]  # the closed counter is not shown
    setup = (await c.get(f"{STAFF}/halls/{hall}/setup", headers=admin)).json()
    assert setup["hall"]["code"] == "HZ-03"
    assert [(x["number"], x["active"]) for x in setup["counters"]] == [(1, True), (2, True), (3, False)]
    assert setup["hours"][0]["periods"] == WORKDAY and setup["hours"][6]["periods"] == []
    assert [(s["day"], s["reason"]) for s in setup["special_hours"]] == [
        (WEDNESDAY.isoformat(), "下午全员参加防汛演练")]
    assert sorted(i["code"] for i in setup["items"]) == sorted([RESIDENCE, SIMPLE])
    assert (setup["booking_rule"]["slot_minutes"], setup["booking_rule"]["own"]) == (60, True)
    assert {r["item"]: (r["own"], r["seats_per_slot"]) for r in setup["item_rules"]} == {
        RESIDENCE: (False, 3), SIMPLE: (True, 1)}
    staff = (await c.get(f"{STAFF}/halls/{hall}/staff", headers=admin)).json()["staff"]
    assert [(s["username"], s["roles"]) for s in staff] == [("hz.admin", ["hall_admin"])]

    # Every change is in the audit log, by the person who made it.
    actions = [a.action for a in await AuditEntry.filter(actor_kind="staff").order_by("seq")]
    for action in ("hall.created", "staff.created", "hall.items_set", "hall.counter_added", "hall.counter_changed",
                   "hall.counter_closed", "hall.hours_set", "hall.special_hours_set", "booking.rule_set"):
        assert action in actions, action


async def test_a_rule_change_keeps_the_fields_it_does_not_name(live: Live, at_monday: Any) -> None:
    c = live.client
    await _items()
    hall = await catalog.create_hall(code="HZ-04", name="灵山便民服务中心", region_code="330106012")
    await catalog.set_hall_items(hall_id=hall.id, codes=[RESIDENCE, SIMPLE], actor_kind="operator", actor_id="cli")
    admin = await staff_headers(live, "hz4.admin", "HZ-04", StaffRole.HALL_ADMIN)
    path = f"{STAFF}/halls/{hall.id}/booking-rule"
    r = await c.put(path, json={"slot_minutes": 60, "seats_per_slot": 3, "max_active_per_person": 2}, headers=admin)
    assert r.status_code == 200, r.text
    # An item's own rule, sent with PUT the way clients did: only the seats change, the rest is the hall's.
    r = await c.put(path, json={"item": SIMPLE, "seats_per_slot": 1}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {"hall_id": hall.id, "item": SIMPLE, "slot_minutes": 60, "seats_per_slot": 1,
                        "horizon_days": 14, "min_notice_minutes": 60, "cancel_cutoff_minutes": 120,
                        "max_active_per_person": 2, "release_cooldown_minutes": 30, "checkin_early_minutes": 30,
                        "checkin_late_minutes": 15, "walkin_daily_quota": 100}
    r = await c.patch(path, json={"horizon_days": 30}, headers=admin)
    assert (r.json()["slot_minutes"], r.json()["seats_per_slot"], r.json()["max_active_per_person"],
            r.json()["horizon_days"]) == (60, 3, 2, 30)
    r = await c.patch(path, json={"item": SIMPLE, "max_active_per_person": 1}, headers=admin)
    assert (r.json()["seats_per_slot"], r.json()["max_active_per_person"], r.json()["horizon_days"]) == (1, 1, 14)
    rules = (await c.get(f"{STAFF}/halls/{hall.id}/booking-rules", headers=admin)).json()
    assert rules["default"]["own"] is True and rules["default"]["horizon_days"] == 30
    by_item = {r["item"]: r for r in rules["items"]}
    assert (by_item[RESIDENCE]["own"], by_item[RESIDENCE]["horizon_days"]) == (False, 30)
    assert (by_item[SIMPLE]["own"], by_item[SIMPLE]["seats_per_slot"]) == (True, 1)
    # Saying the same again records nothing; dropping the item's own rule puts it back on the hall's default.
    before = await AuditEntry.filter(action="booking.rule_set").count()
    assert (await c.patch(path, json={"horizon_days": 30}, headers=admin)).status_code == 200
    assert await AuditEntry.filter(action="booking.rule_set").count() == before == 4
    r = await c.delete(f"{STAFF}/halls/{hall.id}/items/{SIMPLE}/booking-rule", headers=admin)
    assert r.status_code == 200, r.text
    assert {i["item"]: (i["own"], i["seats_per_slot"]) for i in r.json()["items"]} == {
        RESIDENCE: (False, 3), SIMPLE: (False, 3)}
    r = await c.delete(f"{STAFF}/halls/{hall.id}/items/{SIMPLE}/booking-rule", headers=admin)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "booking.rule_not_found")
    entry = await AuditEntry.filter(action="booking.rule_set").order_by("-seq").first()
    assert entry is not None and entry.details["given"] == {"max_active_per_person": 1}


def _field(r: httpx.Response) -> list[tuple[str, str]]:
    assert r.status_code == 422, r.text
    return [(f["field"], f["code"]) for f in r.json()["error"]["details"]["fields"]]


async def test_the_set_up_is_checked_with_clear_chinese_errors(live: Live, at_monday: Any) -> None:
    c = live.client
    await _items()
    hall = await catalog.create_hall(code="HZ-05", name="转塘便民服务中心", region_code="330106011")
    await catalog.set_hall_items(hall_id=hall.id, codes=[RESIDENCE], actor_kind="operator", actor_id="cli")
    admin = await staff_headers(live, "hz5.admin", "HZ-05", StaffRole.HALL_ADMIN)
    hours = f"{STAFF}/halls/{hall.id}/hours"

    def day(*periods: tuple[str, str], weekday: int = 0) -> dict[str, Any]:
        return {"weekday": weekday, "periods": [{"opens": a, "closes": b} for a, b in periods]}

    r = await c.put(hours, json={"days": [day(("09:00", "12:00"), ("11:00", "14:00"))]}, headers=admin)
    assert _field(r) == [("days.0.periods", "hours.overlap")]
    assert r.json()["error"]["details"]["fields"][0]["message"] == "时段 09:00–12:00 与 11:00–14:00 重叠"
    r = await c.put(hours, json={"days": [day(("13:00", "12:00"))]}, headers=admin)
    assert _field(r) == [("days.0.periods.0", "hours.closes_before_opens")]
    assert "结束时间 12:00 应晚于开始时间 13:00" in r.text
    r = await c.put(hours, json={"days": [day(("09:00", "24:30")), day(("9点", "12:00"), weekday=1)]}, headers=admin)
    assert _field(r) == [("days.0.periods.0", "hours.outside_day"), ("days.1.periods.0", "hours.format")]
    assert "不在一天之内" in r.text
    r = await c.put(hours, json={"days": [day(("09:00", "12:00")), day(("13:00", "17:00"))]}, headers=admin)
    assert _field(r) == [("days", "hours.duplicate_weekday")] and "星期一重复出现" in r.text
    r = await c.put(f"{STAFF}/halls/{hall.id}/special-hours/2026-03-04", headers=admin,
                    json={"periods": [{"opens": "14:00", "closes": "09:00"}], "reason": "x"})
    assert _field(r) == [("periods.0", "hours.closes_before_opens")]
    r = await c.put(f"{STAFF}/halls/{hall.id}/closures/2026-03-04", headers=admin,
                    json={"reason": "停电", "periods": [{"start": "14:00", "end": "17:00"},
                                                       {"start": "16:00", "end": "18:00"}]})
    assert _field(r) == [("periods", "hours.overlap")]

    r = await c.put(f"{STAFF}/halls/{hall.id}/items", json={"items": [RESIDENCE, "NO-SUCH-ITEM"]}, headers=admin)
    assert _field(r) == [("items", "catalog.unknown_item")] and "事项不存在：NO-SUCH-ITEM" in r.text
    counters = f"{STAFF}/halls/{hall.id}/counters"
    r = await c.post(counters, json={"number": 1, "name": "1号窗口", "items": [SIMPLE]}, headers=admin)
    assert _field(r) == [("items", "catalog.item_not_offered")] and "本厅未开办" in r.text
    r = await c.post(counters, json={"number": 1, "name": "1号窗口", "groups": ["AB"]}, headers=admin)
    assert _field(r) == [("groups", "counter.group")]
    r = await c.post(counters, json={"number": 1, "name": "1号窗口"}, headers=admin)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "catalog.counter_serves_nothing")
    assert (await c.post(counters, json={"number": 1, "name": "1号窗口", "groups": ["A"]},
                         headers=admin)).status_code == 201
    r = await c.post(counters, json={"number": 1, "name": "另一个1号窗口", "groups": ["A"]}, headers=admin)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "catalog.counter_number_taken")
    assert r.json()["error"]["message"] == "本厅已有1号窗口（1号窗口）"
    two = (await c.post(counters, json={"number": 2, "name": "2号窗口", "groups": ["A"]}, headers=admin)).json()
    r = await c.patch(f"{counters}/{two['id']}", json={"number": 1}, headers=admin)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "catalog.counter_number_taken")

    # Nothing refused was written.
    assert await OpeningHours.filter(hall_id=hall.id).count() == 0
    assert await HallSpecialHours.all().count() == 0
    assert [x.number for x in await Counter.filter(hall_id=hall.id).order_by("number")] == [1, 2]


async def test_who_may_set_a_hall_up(live: Live, at_monday: Any) -> None:
    c = live.client
    root = await _root(live)
    hall = await catalog.create_hall(code="HZ-07", name="周浦便民服务中心", region_code="330106012")
    admin = await staff_headers(live, "hz7.admin", "HZ-07", StaffRole.HALL_ADMIN)
    clerk = await staff_headers(live, "hz7.clerk", "HZ-07", StaffRole.CLERK)
    new_hall = {"code": "HZ-08", "name": "新大厅", "region_code": "330106012"}
    for who in (admin, clerk):
        r = await c.post(f"{STAFF}/halls", json=new_hall, headers=who)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    week = {"days": [{"weekday": 0, "periods": WORKDAY}]}
    r = await c.put(f"{STAFF}/halls/{hall.id}/hours", json=week, headers=clerk)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    # A hall admin adds clerks, not hall admins; and only an admin changes the region code.
    r = await c.post(f"{STAFF}/halls/{hall.id}/staff", json={"username": "hz7.b", "display_name": "乙",
                                                              "role": "hall_admin"}, headers=admin)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    r = await c.post(f"{STAFF}/halls/{hall.id}/staff", json={"username": "hz7.c", "display_name": "丙",
                                                              "role": "clerk"}, headers=admin)
    assert r.status_code == 201 and r.json()["staff"]["roles"] == ["clerk"]
    r = await c.patch(f"{STAFF}/halls/{hall.id}", json={"region_code": "330106011"}, headers=admin)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    r = await c.patch(f"{STAFF}/halls/{hall.id}", json={"name": "周浦镇便民服务中心"}, headers=admin)
    assert r.status_code == 200 and r.json()["name"] == "周浦镇便民服务中心"
    # The admin is deployment-wide: it reaches a hall it holds no role in.
    assert (await c.put(f"{STAFF}/halls/{hall.id}/hours", json=week, headers=root)).status_code == 200
    r = await c.patch(f"{STAFF}/halls/{hall.id}", json={"region_code": "330106011"}, headers=root)
    assert r.status_code == 200 and r.json()["region_code"] == "330106011"
    assert (await c.post(f"{STAFF}/halls", json=new_hall, headers=root)).status_code == 201
    r = await c.post(f"{STAFF}/halls", json=new_hall, headers=root)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "catalog.hall_exists")
    assert {h["code"] for h in (await c.get(f"{STAFF}/halls", headers=admin)).json()["halls"]} == {"HZ-07"}
    assert {h["code"] for h in (await c.get(f"{STAFF}/halls", headers=root)).json()["halls"]} == {
        "HQ", "HZ-07", "HZ-08"}
    changed = await AuditEntry.filter(action="hall.changed").order_by("seq")
    assert [a.details for a in changed] == [
        {"before": {"name": "周浦便民服务中心"}, "after": {"name": "周浦镇便民服务中心"}},
        {"before": {"region_code": "330106012"}, "after": {"region_code": "330106011"}}]


# ---- the command line ---------------------------------------------------------------------------


def _cli(database_url: str, tmp_path: Path, *args: str) -> Any:
    from backend.cli import main

    env = {"DATABASE_URL": database_url, "PALMHALL_ENV": "test", "SECRETS_FILE": str(tmp_path / "secrets.json"),
           "LOG_LEVEL": "WARNING", "REDIS_URL": ""}
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def test_the_command_line_sets_a_hall_up_the_same_way(database_url: str, tmp_path: Path,
                                                     frozen_clock: clock.FrozenClock) -> None:
    """In process, so the frozen clock holds; each command opens and closes the database as `palmhall` does."""
    frozen_clock.set(MONDAY_8AM)

    async def prepare() -> None:
        await db.init(database_url)
        try:
            if ON_POSTGRES:
                await _truncate_all()
            await _items()
        finally:
            await db.close()

    asyncio.run(prepare())
    steps = [
        ("hall", "create", "--code", "HZ-09", "--name", "袁浦便民服务中心", "--region", "330106012"),
        ("hall", "items", "HZ-09", "--set", f"{RESIDENCE},{SIMPLE}"),
        ("hall", "counter", "add", "HZ-09", "--number", "1", "--name", "综合窗口", "--items", RESIDENCE),
        ("hall", "counter", "add", "HZ-09", "--number", "2", "--name", "社保窗口", "--groups", "B"),
        ("hall", "counter", "edit", "HZ-09", "2", "--name", "社保医保窗口", "--groups", "A,B"),
        ("hall", "counter", "add", "HZ-09", "--number", "3", "--name", "临时窗口", "--groups", "A"),
        ("hall", "counter", "edit", "HZ-09", "3", "--close"),
        ("hall", "hours", "HZ-09", "--day", "mon-fri=09:00-12:00,13:30-17:00"),
        ("hall", "special", "HZ-09", "2026-03-04", "--hours", "09:00-11:00", "--reason", "下午全员参加防汛演练"),
        ("hall", "close", "HZ-09", "2026-03-05", "--reason", "停电检修", "--period", "14:00-17:00"),
        ("hall", "rule", "HZ-09", "--set", "slot_minutes=60", "--set", "seats_per_slot=3"),
        ("hall", "rule", "HZ-09", "--item", SIMPLE, "--set", "seats_per_slot=1"),
    ]
    for step in steps:
        result = _cli(database_url, tmp_path, *step)
        assert result.exit_code == 0, (step, result.output)
    shown = _cli(database_url, tmp_path, "hall", "show", "HZ-09")
    setup = json.loads(shown.output)
    assert [(c["number"], c["groups"], c["active"]) for c in setup["counters"]] == [
        (1, ["A"], True), (2, ["A", "B"], True), (3, ["A"], False)]
    assert setup["hours"][4]["periods"] == WORKDAY and setup["hours"][5]["periods"] == []
    assert [c["periods"] for c in setup["closures"]] == [[{"start": "14:00", "end": "17:00"}]]

    # Refusals say why, and change nothing.
    bad = _cli(database_url, tmp_path, "hall", "hours", "HZ-09", "--day", "mon=09:00-12:00,11:00-13:00")
    assert bad.exit_code == 2 and "hours.overlap" in bad.output and "重叠" in bad.output
    bad = _cli(database_url, tmp_path, "hall", "counter", "add", "HZ-09", "--number", "1", "--name", "x",
               "--groups", "A")
    assert bad.exit_code == 1 and "catalog.counter_number_taken: 本厅已有1号窗口（综合窗口）" in bad.output
    bad = _cli(database_url, tmp_path, "hall", "items", "HZ-09", "--set", "NOPE")
    assert bad.exit_code == 1 and "事项不存在：NOPE" in bad.output

    async def check() -> None:
        await db.init(database_url)
        try:
            hall = await catalog.get_hall(code="HZ-09")
            tuesday = await booking.availability(hall_id=hall.id, item_code=RESIDENCE, day=TUESDAY)
            assert starts(tuesday) == ["09:00", "10:00", "11:00", "13:30", "14:30", "15:30"]
            simple = await booking.availability(hall_id=hall.id, item_code=SIMPLE, day=TUESDAY)
            assert {s["capacity"] for s in simple["slots"]} == {1}
            assert starts(await booking.availability(hall_id=hall.id, item_code=RESIDENCE, day=WEDNESDAY)) == [
                "09:00", "10:00"]
            thursday = await booking.availability(hall_id=hall.id, item_code=RESIDENCE, day=date(2026, 3, 5))
            assert starts(thursday) == ["09:00", "10:00", "11:00"]  # 13:30–14:00 holds no 60-minute slot
            operators = {a.actor_id for a in await AuditEntry.filter(action__startswith="hall.")}
            assert operators == {"cli"}
        finally:
            await db.close()

    asyncio.run(check())


# ---- the demo -----------------------------------------------------------------------------------


def test_the_demo_builds_its_hall_through_the_service_functions() -> None:
    """The demo imports no model (enums are fine), so it writes nothing but through the functions operators use."""
    import importlib

    from tortoise.models import Model

    tree = ast.parse((ROOT / "backend" / "demo.py").read_text(encoding="utf-8"))
    models = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
              for a in n.names if isinstance(getattr(importlib.import_module(n.module), a.name, None), type)
              and issubclass(getattr(importlib.import_module(n.module), a.name), Model)]
    assert models == ["backend.meta.Meta"]  # its own marker row, the demo's own table


async def test_the_demo_hall_is_set_up_like_any_other(live: Live, at_monday: Any) -> None:
    from backend import demo
    from backend.booking import hall_setup

    assert await demo.load(live.app.ctx.settings) is True
    hall = await catalog.get_hall(code=demo.DEMO_HALL)
    setup = await hall_setup.setup(hall_id=hall.id)
    assert [(c["number"], c["groups"]) for c in setup["counters"]] == [(1, ["A", "B"]), (2, ["B", "C"]),
                                                                       (3, ["A", "B", "C"])]
    assert [len(d["periods"]) for d in setup["hours"]] == [2, 2, 2, 2, 2, 0, 0]
    assert (setup["booking_rule"]["seats_per_slot"], setup["booking_rule"]["walkin_daily_quota"]) == (6, 200)
    demo_actions = {a.action for a in await AuditEntry.filter(actor_id="demo")}
    assert {"hall.created", "hall.hours_set", "hall.counter_added", "booking.rule_set", "ticket.issued"} <= demo_actions
