"""The working-day calendar: official days and 调休, loaded years, hall opening days and closures, the CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, time, timedelta
from pathlib import Path
from typing import Any

import chinese_calendar
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sanic import Sanic

from backend.audit.models import AuditEntry
from backend.catalog import calendar
from backend.catalog import service as catalog
from backend.catalog.calendar import OfficialCalendar, WorkingDays
from backend.catalog.models import CalendarDay, CalendarYear, Hall, HallClosure, OpeningHours
from backend.errors import DomainError
from backend.identity.models import StaffRole
from backend.jobs.models import OutboxEvent
from tests.cases_support import settled_staff
from tests.conftest import ON_POSTGRES, REDIS_URL, ROOT, _truncate_all, start_app, stop_app

EXAMPLE_2027 = ROOT / "data" / "calendar" / "2027.example.json"


def example_2027() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(EXAMPLE_2027.read_text(encoding="utf-8"))
    return data


def d(text: str) -> date:
    return date.fromisoformat(text)


# ---- the pure calendar: properties ----------------------------------------------------------

_arrangement = calendar.validate_year(example_2027())
LIBRARY_ONLY = OfficialCalendar()
WITH_2027 = OfficialCalendar(
    loaded_years=frozenset({2027}),
    loaded_days={**dict.fromkeys(_arrangement.holidays, False), **dict.fromkeys(_arrangement.workdays, True)},
)
CALENDARS = st.sampled_from([LIBRARY_ONLY, WITH_2027])
# From the last library years into the one nobody knows (or the loaded example).
STARTS = st.dates(min_value=date(2024, 1, 1), max_value=date(2028, 6, 30))
COUNTS = st.integers(min_value=0, max_value=80)


def counts_as_working(cal: OfficialCalendar, day: date) -> bool:
    known = cal.is_workday(day)
    return day.weekday() < 5 if known is None else known


@settings(max_examples=300, deadline=None)
@given(cal=CALENDARS, start=STARTS, n=COUNTS)
def test_the_result_is_a_working_day_never_before_start(cal: OfficialCalendar, start: date, n: int) -> None:
    found = cal.add(start, n)
    if n == 0:
        assert found == WorkingDays(start, False)
    else:
        assert found.day > start
        assert counts_as_working(cal, found.day)


@settings(max_examples=300, deadline=None)
@given(cal=CALENDARS, start=STARTS, n=COUNTS)
def test_between_undoes_add(cal: OfficialCalendar, start: date, n: int) -> None:
    found = cal.add(start, n)
    assert cal.between(start, found.day) == (n, found.provisional)


@settings(max_examples=300, deadline=None)
@given(cal=CALENDARS, start=STARTS, a=COUNTS, b=COUNTS)
def test_adding_a_span_equals_adding_its_pieces(cal: OfficialCalendar, start: date, a: int, b: int) -> None:
    first = cal.add(start, a)
    second = cal.add(first.day, b)
    whole = cal.add(start, a + b)
    assert whole.day == second.day
    assert whole.provisional == (first.provisional or second.provisional)


@settings(max_examples=300, deadline=None)
@given(cal=CALENDARS, s1=STARTS, s2=STARTS, n1=COUNTS, n2=COUNTS)
def test_adding_is_monotonic(cal: OfficialCalendar, s1: date, s2: date, n1: int, n2: int) -> None:
    (s1, s2), (n1, n2) = sorted((s1, s2)), sorted((n1, n2))
    assert cal.add(s1, n1).day <= cal.add(s1, n2).day
    assert cal.add(s1, n1).day <= cal.add(s2, n1).day


@settings(max_examples=300, deadline=None)
@given(start=STARTS, n=COUNTS)
def test_provisional_exactly_when_the_count_ran_into_an_unknown_year(start: date, n: int) -> None:
    # The days looked at are (start, result]: they reach an unknown year only if the result lies in one.
    found = LIBRARY_ONLY.add(start, n)
    assert found.provisional == (n > 0 and found.day.year >= 2027)
    loaded = WITH_2027.add(start, n)
    assert loaded.provisional == (n > 0 and loaded.day.year >= 2028)


@settings(max_examples=500, deadline=None)
@given(day=st.dates(min_value=date(2004, 1, 1), max_value=date(2026, 12, 31)))
def test_library_years_agree_with_chinese_calendar(day: date) -> None:
    assert LIBRARY_ONLY.is_workday(day) == chinese_calendar.is_workday(day)


@settings(max_examples=200, deadline=None)
@given(start=st.dates(min_value=date(2028, 1, 1), max_value=date(2030, 12, 31)), n=COUNTS)
def test_an_unknown_year_counts_monday_to_friday(start: date, n: int) -> None:
    found = LIBRARY_ONLY.add(start, n)
    weekdays = sum(1 for i in range(1, (found.day - start).days + 1) if (start + timedelta(days=i)).weekday() < 5)
    assert weekdays == n
    assert found.provisional == (n > 0)


def test_a_loaded_year_takes_precedence_over_the_library() -> None:
    # An operator loads a 2026 without the Spring Festival: the library's holidays no longer count.
    cal = OfficialCalendar(loaded_years=frozenset({2026}), loaded_days={d("2026-10-08"): False})
    assert cal.is_workday(d("2026-02-16")) is True  # a Monday the library has off
    assert cal.is_workday(d("2026-02-14")) is False  # a Saturday the library has worked
    assert cal.is_workday(d("2026-10-08")) is False
    assert LIBRARY_ONLY.is_workday(d("2026-02-16")) is False


def test_a_calendar_read_for_a_span_refuses_loaded_days_outside_it() -> None:
    cal = OfficialCalendar(loaded_years=frozenset({2027}), loaded_days={}, since=d("2027-03-01"))
    assert cal.is_workday(d("2027-03-01")) is True
    assert cal.is_workday(d("2026-02-16")) is False  # library years need no snapshot
    with pytest.raises(ValueError, match="outside the span"):
        cal.is_workday(d("2027-02-08"))


def test_counts_outside_the_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="days"):
        LIBRARY_ONLY.add(d("2026-01-01"), -1)
    with pytest.raises(ValueError, match="days"):
        LIBRARY_ONLY.add(d("2026-01-01"), calendar.MAX_WORKING_DAYS + 1)


# ---- 2026 from DOMAIN.md, through the service and the database ------------------------------


async def test_2026_spring_festival_and_make_up_days(orm: str) -> None:
    for off in (d("2026-02-15") + timedelta(days=i) for i in range(9)):
        assert await calendar.is_official_workday(off) is False, off
    for make_up in ("2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"):
        assert d(make_up).weekday() >= 5
        assert await calendar.is_official_workday(d(make_up)) is True, make_up
    assert d("2026-02-14").weekday() == d("2026-02-28").weekday() == 5  # both Saturdays
    assert await calendar.add_working_days(d("2026-02-13"), 1) == WorkingDays(d("2026-02-14"), False)
    assert await calendar.add_working_days(d("2026-02-14"), 1) == WorkingDays(d("2026-02-24"), False)
    assert await calendar.add_working_days(d("2026-02-13"), 0) == WorkingDays(d("2026-02-13"), False)
    # Mon 9 Feb to Fri 27 Feb: 9–13 Feb, the worked Saturday, 24–27 Feb.
    assert await calendar.working_days_between(d("2026-02-08"), d("2026-02-27")) == (10, False)
    assert await calendar.working_days_between(d("2026-02-27"), d("2026-02-08")) == (0, False)
    assert await calendar.year_known(2026) is True
    assert await calendar.year_known(2003) is False


async def test_a_deadline_into_2027_is_provisional_until_the_year_is_loaded(orm: str, frozen_clock) -> None:
    # Sunday 20 Dec 2026 plus 10 working days reaches Friday 1 Jan 2027, counted as a weekday for now.
    assert await calendar.add_working_days(d("2026-12-20"), 10) == WorkingDays(d("2027-01-01"), True)
    assert await calendar.working_days_between(d("2026-12-20"), d("2027-01-08")) == (15, True)
    assert await calendar.year_known(2027) is False
    with pytest.raises(DomainError) as refused:
        await calendar.is_official_workday(d("2027-01-05"))
    assert (refused.value.code, refused.value.status, refused.value.details) == (
        "calendar.year_unknown", 422, {"year": 2027})
    assert "尚未发布" in refused.value.message

    report = await calendar.load_year(data=example_2027(), source_name="data/calendar/2027.example.json")
    assert (report.year, report.holidays, report.workdays, report.replaced) == (2027, 29, 5, False)
    assert "示例" in report.notice
    assert [w.code for w in report.warnings] == ["example"]

    # At once, in this process: 1–3 Jan are holidays, so the 10th working day is Monday 4 Jan.
    assert await calendar.year_known(2027) is True
    assert await calendar.add_working_days(d("2026-12-20"), 10) == WorkingDays(d("2027-01-04"), False)
    assert await calendar.working_days_between(d("2026-12-20"), d("2027-01-08")) == (14, False)
    # The Spring Festival off, its Sunday make-up day worked.
    assert await calendar.add_working_days(d("2027-02-04"), 1) == WorkingDays(d("2027-02-14"), False)
    assert await calendar.is_official_workday(d("2027-02-08")) is False
    assert await calendar.is_official_workday(d("2027-02-20")) is True
    # Past the loaded year it is a guess again.
    assert (await calendar.add_working_days(d("2027-12-28"), 5)).provisional is True

    events = await OutboxEvent.filter(topic="calendar.year_loaded")
    assert [e.payload for e in events] == [{"year": 2027}]
    audits = await AuditEntry.filter(action="calendar.year_loaded")
    assert len(audits) == 1
    assert audits[0].target_id == "2027" and audits[0].details["holidays"] == 29
    year = await CalendarYear.get(year=2027)
    assert year.loaded_at == frozen_clock.now()
    assert await CalendarDay.filter(is_workday=True).count() == 5


async def test_the_pure_calendar_and_the_database_agree(orm: str) -> None:
    await calendar.load_year(data=example_2027(), source_name="example")
    starts = [date(2026, 11, 1) + timedelta(days=i * 7 + i % 5) for i in range(60)]
    for i, start in enumerate(starts):
        n = (i * 7) % 41
        assert await calendar.add_working_days(start, n) == WITH_2027.add(start, n), (start, n)
        end = start + timedelta(days=(i * 11) % 90)
        assert await calendar.working_days_between(start, end) == WITH_2027.between(start, end), (start, end)


async def test_loading_a_year_again_replaces_it(orm: str) -> None:
    await calendar.load_year(data=example_2027(), source_name="first")
    changed = example_2027()
    changed["source"] = "国务院办公厅关于2027年部分节假日安排的通知（测试更正版）"
    changed["holidays"] = [h for h in changed["holidays"] if h["name"] != "端午节"]
    report = await calendar.load_year(data=changed, source_name="second")
    assert (report.holidays, report.replaced, report.warnings) == (28, True, ())
    assert await calendar.is_official_workday(d("2027-06-09")) is True
    assert await CalendarDay.filter(day__gte=d("2027-01-01")).count() == 28 + 5
    assert (await CalendarYear.get(year=2027)).source == changed["source"]
    assert await OutboxEvent.filter(topic="calendar.year_loaded").count() == 2
    audit = await AuditEntry.filter(action="calendar.year_loaded").order_by("-seq").first()
    assert audit is not None and audit.details["replaced"] is True and "示例" in audit.details["previous_notice"]


async def test_an_invalid_year_file_reports_every_problem_and_loads_nothing(orm: str) -> None:
    data = {
        "year": 2027,
        "holidays": [
            {"name": "春节", "days": ["2027-02-05", "2027-02-30", "2028-01-01", "2027/02/08"]},
            {"name": "", "days": []},
            {"name": "国庆节", "days": ["2027-10-01", "2027-10-01"]},
        ],
        "workdays": [{"name": "春节调休", "days": ["2027-02-05", "2027-02-15"]}],
        "comment": "typo'd key",
    }
    with pytest.raises(DomainError) as refused:
        await calendar.load_year(data=data, source_name="bad.json")
    assert (refused.value.code, refused.value.status) == ("calendar.file_invalid", 422)
    problems = {(p["field"], p["code"]) for p in refused.value.details["problems"]}
    assert problems == {
        ("comment", "unknown_key"),
        ("source", "missing"),
        ("holidays[0].days[1]", "date_format"),  # 30 February
        ("holidays[0].days[2]", "outside_year"),
        ("holidays[0].days[3]", "date_format"),
        ("holidays[1].name", "missing"),
        ("holidays[1].days", "missing"),
        ("holidays[2].days[1]", "duplicate"),
        ("workdays[0].days[0]", "holiday_and_workday"),
        ("workdays[0].days[1]", "not_weekend"),  # a Monday
    }
    for p in refused.value.details["problems"]:
        assert p["message"] and p["message_en"]
    monday = next(p for p in refused.value.details["problems"] if p["code"] == "not_weekend")
    assert "星期一" in monday["message"] and "Monday" in monday["message_en"]
    assert await CalendarYear.all().count() == 0 and await CalendarDay.all().count() == 0
    assert await OutboxEvent.filter(topic="calendar.year_loaded").count() == 0

    for bad, field in ((None, "(file)"), ({"year": "2027", "source": "x", "holidays": [{"name": "元旦", "days": [
            "2027-01-01"]}]}, "year"), ({"year": 2207, "source": "x", "holidays": []}, "year")):
        with pytest.raises(DomainError) as refused:
            await calendar.load_year(data=bad, source_name="bad.json")  # type: ignore[arg-type]
        assert field in {p["field"] for p in refused.value.details["problems"]}


def test_a_file_missing_the_fixed_statutory_days_is_loaded_with_a_warning() -> None:
    data = {"year": 2027, "source": "国务院办公厅通知", "holidays": [{"name": "春节", "days": ["2027-02-08"]}]}
    warned = calendar.validate_year(data).warnings
    assert {w.code for w in warned} == {"fixed_holiday_missing"}
    assert len(warned) == 6 and "元旦" in warned[0].message


async def test_status_names_where_each_year_comes_from(orm: str, frozen_clock) -> None:
    rows = await calendar.status(range(2025, 2028))
    assert [(r["year"], r["source"]) for r in rows] == [(2025, "library"), (2026, "library"), (2027, "unknown")]
    assert rows[1]["workdays"] == 6 and rows[1]["holidays"] > 20
    await calendar.load_year(data=example_2027(), source_name="example")
    loaded = (await calendar.status(range(2027, 2028)))[0]
    assert loaded == {"year": 2027, "source": "loaded", "notice": example_2027()["source"],
                      "loaded_at": frozen_clock.now(), "holidays": 29, "workdays": 5, "library": False}
    # The default: last year to next year (frozen today is in 2026), and every loaded year.
    assert [r["year"] for r in await calendar.status()] == [2025, 2026, 2027]


# ---- halls: opening days --------------------------------------------------------------------


async def _hall(code: str = "HX-01", *, saturday: bool = False) -> Hall:
    hall = await catalog.create_hall(code=code, name=f"{code}便民服务中心", region_code="330106011")
    for weekday in range(5):  # afternoon first: the answer is sorted, not the rows
        await OpeningHours.create(hall=hall, weekday=weekday, opens=wall(13, 30), closes=wall(17))
        await OpeningHours.create(hall=hall, weekday=weekday, opens=wall(9), closes=wall(12))
    if saturday:
        await OpeningHours.create(hall=hall, weekday=5, opens=wall(9), closes=wall(11))
    return hall


def wall(hour: int, minute: int = 0) -> time:
    # Asia/Shanghai wall-clock; the ORM runs with use_tz and wants aware times, it stores the label only.
    return time(hour, minute, tzinfo=UTC)


WEEKDAY_HOURS = [(time(9), time(12)), (time(13, 30), time(17))]


async def test_opening_hours_follow_the_official_calendar(orm: str, frozen_clock) -> None:
    hall = await _hall()
    assert await calendar.opening_hours(hall_id=hall.id, day=d("2026-03-03")) == WEEKDAY_HOURS
    assert await calendar.opening_hours(hall_id=hall.id, day=d("2026-03-07")) == []  # a plain Saturday
    assert await calendar.opening_hours(hall_id=hall.id, day=d("2026-02-16")) == []  # Spring Festival Monday
    # The worked Saturday has no hours of its own: it is served with Monday's.
    assert await calendar.opening_hours(hall_id=hall.id, day=d("2026-02-14")) == WEEKDAY_HOURS
    assert await calendar.hall_is_open(hall_id=hall.id, day=d("2026-02-14")) is True
    assert await calendar.hall_is_open(hall_id=hall.id, day=d("2026-02-16")) is False
    # A hall with Saturday hours uses them on a worked Saturday, and is still closed on a plain one.
    weekend = await _hall("HX-02", saturday=True)
    assert await calendar.opening_hours(hall_id=weekend.id, day=d("2026-02-28")) == [(time(9), time(11))]
    assert await calendar.hall_is_open(hall_id=weekend.id, day=d("2026-03-07")) is False
    # Booking into a year nobody loaded is refused, not guessed.
    with pytest.raises(DomainError) as refused:
        await calendar.hall_is_open(hall_id=hall.id, day=d("2027-01-05"))
    assert refused.value.code == "calendar.year_unknown"
    await calendar.load_year(data=example_2027(), source_name="example")
    assert await calendar.hall_is_open(hall_id=hall.id, day=d("2027-01-05")) is True
    assert await calendar.opening_hours(hall_id=hall.id, day=d("2027-02-14")) == WEEKDAY_HOURS  # a worked Sunday
    # An inactive hall serves nobody; an unknown one is named.
    await Hall.filter(id=weekend.id).update(active=False)
    assert await calendar.hall_is_open(hall_id=weekend.id, day=d("2026-03-03")) is False
    with pytest.raises(DomainError) as missing:
        await calendar.hall_is_open(hall_id=99999, day=d("2026-03-03"))
    assert missing.value.code == "catalog.hall_not_found"


async def test_a_closure_closes_the_hall_but_not_the_statutory_clock(orm: str, frozen_clock) -> None:
    hall = await _hall()
    before = await calendar.add_working_days(d("2026-03-02"), 3)
    closure = await calendar.set_closure(hall_id=hall.id, day=d("2026-03-04"), reason=" 系统升级  停办 ",
                                         actor_staff_id=7)
    assert closure.as_dict() == {"hall_id": hall.id, "day": "2026-03-04", "reason": "系统升级 停办", "created_by": 7,
                                 "whole_day": True, "periods": None}
    assert await calendar.hall_is_open(hall_id=hall.id, day=d("2026-03-04")) is False
    assert await calendar.opening_hours(hall_id=hall.id, day=d("2026-03-04")) == []
    assert await calendar.hall_is_open(hall_id=hall.id, day=d("2026-03-05")) is True
    assert await calendar.add_working_days(d("2026-03-02"), 3) == before == WorkingDays(d("2026-03-05"), False)
    assert await calendar.is_official_workday(d("2026-03-04")) is True
    # Another hall is not affected.
    other = await _hall("HX-02")
    assert await calendar.hall_is_open(hall_id=other.id, day=d("2026-03-04")) is True


# ---- closures through the counter surface ---------------------------------------------------


@pytest.fixture
async def staff_api(settings: Any, frozen_clock) -> AsyncIterator[httpx.AsyncClient]:
    """palmhall with the closures blueprint, as app.py will register it, serving on loopback."""
    from backend.app import create_app
    from backend.counter import calendar_views

    Sanic.test_mode = True
    app = create_app(settings, name=f"palmhall_cal_{uuid.uuid4().hex[:8]}")
    if "counter_calendar" not in app.blueprints:
        # A copy: one module-level blueprint is shared by every app the test process builds.
        app.blueprint(calendar_views.bp.copy("counter_calendar", with_registration=False))
    server, url = await start_app(app)
    if ON_POSTGRES:
        await _truncate_all()
    if REDIS_URL:
        await app.ctx.redis.flushdb()
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


async def _token(client: httpx.AsyncClient, username: str, hall_code: str, role: StaffRole) -> dict[str, str]:
    password = await settled_staff(client, username, hall_code, role)
    r = await client.post("/api/v1/staff/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_a_hall_admin_sets_lists_and_removes_closures(staff_api: httpx.AsyncClient) -> None:
    hall = await _hall("HX")
    admin = await _token(staff_api, "wang.admin", "HX", StaffRole.HALL_ADMIN)
    path = f"/api/v1/staff/halls/{hall.id}/closures"
    r = await staff_api.put(f"{path}/2026-03-10", json={"reason": "消防演练"}, headers=admin)
    assert r.status_code == 200, r.text
    staff_id = r.json()["created_by"]
    assert r.json() == {"hall_id": hall.id, "day": "2026-03-10", "reason": "消防演练", "created_by": staff_id,
                        "whole_day": True, "periods": None, "cancelled_appointments": []}
    # Saying it again changes nothing and records nothing; a new reason is recorded.
    assert (await staff_api.put(f"{path}/2026-03-10", json={"reason": "消防演练"}, headers=admin)).status_code == 200
    r = await staff_api.put(f"{path}/2026-03-10", json={"reason": "消防演练（全天）"}, headers=admin)
    assert r.json()["reason"] == "消防演练（全天）"
    await staff_api.put(f"{path}/2026-04-20", json={"reason": "系统升级"}, headers=admin)
    assert await calendar.hall_is_open(hall_id=hall.id, day=d("2026-03-10")) is False

    r = await staff_api.get(path, params={"from": "2026-03-01", "to": "2026-03-31"}, headers=admin)
    assert r.status_code == 200
    assert r.json() == {"hall_id": hall.id, "from": "2026-03-01", "to": "2026-03-31", "closures": [
        {"hall_id": hall.id, "day": "2026-03-10", "reason": "消防演练（全天）", "created_by": staff_id,
         "whole_day": True, "periods": None}]}
    r = await staff_api.get(path, headers=admin)  # today (2 March 2026) onwards
    assert [c["day"] for c in r.json()["closures"]] == ["2026-03-10", "2026-04-20"]

    assert (await staff_api.delete(f"{path}/2026-03-10", headers=admin)).status_code == 204
    assert await calendar.hall_is_open(hall_id=hall.id, day=d("2026-03-10")) is True
    r = await staff_api.delete(f"{path}/2026-03-10", headers=admin)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "calendar.closure_not_found")

    audits = await AuditEntry.filter(action__startswith="hall.closure").order_by("seq")
    assert [(a.action, a.actor_kind, a.actor_id, a.target_id) for a in audits] == [
        ("hall.closure_set", "staff", str(staff_id), str(hall.id)),
        ("hall.closure_set", "staff", str(staff_id), str(hall.id)),
        ("hall.closure_set", "staff", str(staff_id), str(hall.id)),
        ("hall.closure_removed", "staff", str(staff_id), str(hall.id)),
    ]
    assert audits[1].details == {"day": "2026-03-10", "reason": "消防演练（全天）", "previous_reason": "消防演练"}
    topics = [e.topic for e in await OutboxEvent.filter(topic__startswith="calendar.closure").order_by("seq")]
    assert topics == ["calendar.closure_set"] * 3 + ["calendar.closure_removed"]


async def test_closures_are_refused_to_clerks_other_halls_and_strangers(staff_api: httpx.AsyncClient) -> None:
    x, y = await _hall("HX"), await _hall("HY")
    clerk = await _token(staff_api, "li.clerk", "HX", StaffRole.CLERK)
    admin_x = await _token(staff_api, "wang.admin", "HX", StaffRole.HALL_ADMIN)
    for headers, hall in ((clerk, x), (admin_x, y)):
        path = f"/api/v1/staff/halls/{hall.id}/closures"
        for r in (await staff_api.put(f"{path}/2026-03-10", json={"reason": "x"}, headers=headers),
                  await staff_api.delete(f"{path}/2026-03-10", headers=headers),
                  await staff_api.get(path, headers=headers)):
            assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    r = await staff_api.put(f"/api/v1/staff/halls/{x.id}/closures/2026-03-10", json={"reason": "x"})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.token_missing")
    assert await HallClosure.all().count() == 0
    assert await AuditEntry.filter(action__startswith="hall.closure").count() == 0
    # The admin role in the hall is enough.
    admin_y = await _token(staff_api, "zhao.admin", "HY", StaffRole.ADMIN)
    r = await staff_api.put(f"/api/v1/staff/halls/{y.id}/closures/2026-03-10", json={"reason": "停电"},
                            headers=admin_y)
    assert r.status_code == 200


async def test_closure_input_is_checked(staff_api: httpx.AsyncClient) -> None:
    hall = await _hall("HX")
    admin = await _token(staff_api, "wang.admin", "HX", StaffRole.HALL_ADMIN)
    path = f"/api/v1/staff/halls/{hall.id}/closures"
    r = await staff_api.put(f"{path}/2026-03-01", json={"reason": "补录"}, headers=admin)  # yesterday
    assert (r.status_code, r.json()["error"]["code"]) == (422, "calendar.closure_in_past")
    r = await staff_api.put(f"{path}/2026-03-10", json={"reason": "", "extra": 1}, headers=admin)
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["error"]["details"]["fields"]} == {"reason", "extra"}
    r = await staff_api.get(path, params={"from": "2026-05-01", "to": "2026-04-01"}, headers=admin)
    assert (r.status_code, r.json()["error"]["details"]["fields"][0]["code"]) == (422, "range.reversed")
    r = await staff_api.get(path, params={"from": "2026-01-01", "to": "2027-06-01"}, headers=admin)
    assert (r.status_code, r.json()["error"]["details"]["fields"][0]["code"]) == (422, "range.too_long")
    r = await staff_api.get(path, params={"from": "03/01/2026"}, headers=admin)
    assert (r.status_code, r.json()["error"]["details"]["fields"][0]["field"]) == (422, "from")
    assert await HallClosure.all().count() == 0


# ---- the operator's commands ----------------------------------------------------------------


def cli(*args: str, database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"DATABASE_URL": database_url, "PALMHALL_ENV": "test", "PATH": "/usr/bin:/bin",
           "SECRETS_FILE": str(tmp_path / "secrets.json"), "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    code = "from backend.catalog.calendar_commands import calendar; calendar(prog_name='palmhall calendar')"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


async def test_calendar_load_and_status_from_the_command_line(orm: str, tmp_path: Path) -> None:
    r = cli("status", "--from", "2025", "--to", "2027", database_url=orm, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("2025  library") and lines[1].startswith("2026  library  chinese-calendar 1.11.0")
    assert "6 make-up workdays" in lines[1]
    assert lines[2].startswith("2027  UNKNOWN")

    r = cli("load", str(EXAMPLE_2027), "--dry-run", database_url=orm, tmp_path=tmp_path)
    assert r.returncode == 0 and "dry run" in r.stdout
    assert await CalendarYear.all().count() == 0

    r = cli("load", str(EXAMPLE_2027), database_url=orm, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "2027 loaded from 2027.example.json: 29 holidays, 5 make-up workdays"
    assert "示例" in r.stdout and "warning: 这是示例文件" in r.stderr
    assert await calendar.year_known(2027)
    assert await calendar.add_working_days(d("2026-12-31"), 1) == WorkingDays(d("2027-01-04"), False)

    r = cli("status", "--from", "2027", "--to", "2027", database_url=orm, tmp_path=tmp_path)
    assert r.stdout.startswith("2027  loaded   示例") and "29 holidays, 5 make-up workdays" in r.stdout

    r = cli("load", str(EXAMPLE_2027), database_url=orm, tmp_path=tmp_path)
    assert "(replaces the earlier load)" in r.stdout


async def test_calendar_load_refuses_a_bad_file_listing_every_problem(orm: str, tmp_path: Path) -> None:
    bad = copy.deepcopy(example_2027())
    bad["workdays"][0]["days"].append("2027-02-15")  # a Monday
    bad["holidays"][0]["days"].append("2026-12-31")
    del bad["source"]
    path = tmp_path / "2027.json"
    path.write_text(json.dumps(bad, ensure_ascii=False), encoding="utf-8")
    r = cli("load", str(path), database_url=orm, tmp_path=tmp_path)
    assert r.returncode == 1
    assert "3 problem(s)" in r.stderr
    for text in ("source:", "holidays[0].days[3]", "2026-12-31 不在 2027 年内", "workdays[0].days[2]",
                 "星期一", "must be a Saturday or Sunday"):
        assert text in r.stderr, text
    assert await CalendarYear.all().count() == 0

    path.write_text("{not json", encoding="utf-8")
    r = cli("load", str(path), database_url=orm, tmp_path=tmp_path)
    assert r.returncode == 1 and "not valid UTF-8 JSON" in r.stderr


def test_the_example_file_is_marked_as_an_example() -> None:
    data = example_2027()
    assert "示例" in data["source"] and "非官方" in data["source"]
    assert [w.code for w in calendar.validate_year(data).warnings] == ["example"]


async def test_the_closure_routes_are_documented(staff_api: httpx.AsyncClient) -> None:
    doc = (await staff_api.get("/docs/openapi.json")).json()
    one = doc["paths"]["/api/v1/staff/halls/{hall_id}/closures/{day}"]
    assert {"put", "delete"} <= set(one)
    assert "reason" in json.dumps(one["put"]["requestBody"])
    params = {p["name"] for p in doc["paths"]["/api/v1/staff/halls/{hall_id}/closures"]["get"]["parameters"]}
    assert {"from", "to"} <= params
