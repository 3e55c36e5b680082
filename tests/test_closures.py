"""Closures cascade: closing a day or part of it, special hours and new weekly hours cancel exactly the appointments
they leave out, in one transaction (seats freed, one `appointment.cancelled` each with "by": "hall", never a
no-show), once; opening again revives nothing but frees the seats for others. Walk-in tickets are refused outside
opening hours, at kiosks and counters, with a stable code and a Chinese reason."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, time
from typing import Any

import pytest

from backend import clock
from backend.booking import hall_setup
from backend.booking import service as booking
from backend.booking.models import Appointment, QueueTicket, Slot
from backend.catalog import calendar, hours
from backend.catalog import service as catalog
from backend.catalog.models import HallClosure
from backend.catalog.schemas import ItemIn
from backend.identity import service as identity
from backend.identity.models import StaffRole
from backend.jobs import outbox
from backend.jobs.models import OutboxEvent
from tests.cases_support import CHOSEN_PASSWORD, RESIDENCE, SIMPLE, item_row, staff_headers
from tests.conftest import Live
from tests.test_booking import verified_resident
from tests.test_staff_and_kiosks import KioskClient

STAFF = "/api/v1/staff"
MONDAY, TUESDAY, WEDNESDAY = date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)
POLICY = booking.Policy(no_show_grace_minutes=30, no_show_limit=3, no_show_bar_days=30)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=clock.SHANGHAI)


@pytest.fixture
def at_monday(frozen_clock: clock.FrozenClock) -> clock.FrozenClock:
    frozen_clock.set(datetime(2026, 3, 2, 0, 0, tzinfo=UTC))  # Monday 08:00 in Shanghai
    return frozen_clock


@pytest.fixture
async def hall(live: Live, at_monday: Any) -> dict[str, Any]:
    """A hall set up through the service functions the staff API uses: weekdays 09:00–12:00 and 13:30–17:00,
    30-minute slots of ONE seat each (so a freed seat is the only one), a counter, a hall admin and a clerk."""
    h = await catalog.create_hall(code="HX", name="转塘街道便民服务中心", region_code="330106011")
    await catalog.upsert_item(row=ItemIn.model_validate(item_row(RESIDENCE, "居住证明开具", halls=["HX"])))
    await catalog.upsert_item(row=ItemIn.model_validate(item_row(SIMPLE, "困难证明开具", halls=["HX"],
                                                                 queue_group="B")))
    day = [hours.span("09:00", "12:00"), hours.span("13:30", "17:00")]
    await hall_setup.set_week(hall_id=h.id, week={d: day for d in range(5)}, staff_id=None, redis=None)
    counter = await catalog.create_counter(hall_id=h.id, number=1, name="综合窗口", groups=["A", "B"], items=[],
                                           actor_kind="operator", actor_id="cli")
    await booking.set_rule(hall_id=h.id, item_code=None, staff_id=None, values={
        "slot_minutes": 30, "seats_per_slot": 1, "min_notice_minutes": 30, "max_active_per_person": 3})
    return {"id": h.id, "counter": counter["id"],
            "admin": await staff_headers(live, "hx.admin", "HX", StaffRole.HALL_ADMIN),
            "clerk": await staff_headers(live, "hx.clerk", "HX", StaffRole.CLERK)}


async def slot_at(live: Live, hall: dict[str, Any], day: date, hhmm: str, item: str = RESIDENCE) -> int:
    r = await live.client.get(f"/api/v1/halls/{hall['id']}/availability", params={"item": item, "date": str(day)})
    assert r.status_code == 200, r.text
    return int(next(s["slot_id"] for s in r.json()["slots"] if s["starts_at"][11:16] == hhmm))


async def offered(live: Live, hall: dict[str, Any], day: date, item: str = RESIDENCE) -> dict[str, Any]:
    r = await live.client.get(f"/api/v1/halls/{hall['id']}/availability", params={"item": item, "date": str(day)})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def booked(live: Live, hall: dict[str, Any], day: date, hhmm: str,
                 item: str = RESIDENCE) -> tuple[int, dict[str, str]]:
    """A new resident's appointment at that time; returns (appointment id, the resident's headers)."""
    _, headers = await verified_resident(live)
    r = await live.client.post("/api/v1/mp/appointments", json={"slot_id": await slot_at(live, hall, day, hhmm, item)},
                               headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    return int(r.json()["id"]), headers


async def cancellations() -> list[dict[str, Any]]:
    return [e.payload for e in await OutboxEvent.filter(topic="appointment.cancelled").order_by("seq")]


async def test_closing_a_day_cancels_its_appointments_once_and_reopening_frees_their_seats(
        live: Live, hall: dict[str, Any], at_monday: Any) -> None:
    c, admin = live.client, hall["admin"]
    a, a_headers = await booked(live, hall, TUESDAY, "09:00")
    b, _ = await booked(live, hall, TUESDAY, "14:00", SIMPLE)
    other_day, _ = await booked(live, hall, WEDNESDAY, "09:00")
    slot_a = (await Appointment.get(id=a)).slot_id  # type: ignore[attr-defined]

    r = await c.put(f"{STAFF}/halls/{hall['id']}/closures/{TUESDAY}", json={"reason": "系统升级停办"}, headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["whole_day"], sorted(r.json()["cancelled_appointments"])) == (True, sorted([a, b]))
    rows = {x.id: x for x in await Appointment.all()}
    assert [(rows[i].status, rows[i].cancelled_by, rows[i].cancel_reason) for i in (a, b)] == [
        ("cancelled", "hall", "系统升级停办")] * 2
    assert rows[other_day].status == "booked"
    assert (await Slot.get(id=slot_a)).booked == 0  # the seat is free at once, no cool-down
    events = await cancellations()
    assert len(events) == 2
    first = events[0] if events[0]["appointment_id"] == a else events[1]
    assert first == {"appointment_id": a, "resident_id": rows[a].resident_id, "hall_id": hall["id"],
                     "item_code": RESIDENCE, "starts_at": at(TUESDAY, 9).astimezone(UTC).isoformat(),
                     "ends_at": at(TUESDAY, 9, 30).astimezone(UTC).isoformat(), "by": "hall", "reason": "系统升级停办"}

    # Closing again, or with another reason, cancels nothing more.
    for reason in ("系统升级停办", "系统升级停办（全天）"):
        r = await c.put(f"{STAFF}/halls/{hall['id']}/closures/{TUESDAY}", json={"reason": reason}, headers=admin)
        assert r.status_code == 200 and r.json()["cancelled_appointments"] == []
    assert len(await cancellations()) == 2

    # The resident sees who cancelled and why; the day offers nothing and says why.
    mine = (await c.get("/api/v1/mp/appointments", headers=a_headers)).json()["appointments"]
    assert [(x["status"], x["cancelled_by"], x["cancel_reason"]) for x in mine] == [
        ("cancelled", "hall", "系统升级停办")]
    closed = await offered(live, hall, TUESDAY)
    assert (closed["open"], closed["slots"], closed["notice"]) == (False, [], "大厅闭厅：系统升级停办（全天）")

    # Opening the day again revives nothing; the freed seat (the slot's only one) goes to someone else.
    assert (await c.delete(f"{STAFF}/halls/{hall['id']}/closures/{TUESDAY}", headers=admin)).status_code == 204
    assert (await Appointment.get(id=a)).status == "cancelled"
    reopened = await offered(live, hall, TUESDAY)
    nine = next(s for s in reopened["slots"] if s["slot_id"] == slot_a)
    assert (nine["seats_left"], nine["bookable"]) == (1, True)
    d, _ = await booked(live, hall, TUESDAY, "09:00")
    assert (await Slot.get(id=slot_a)).booked == 1

    # Later, the no-show task strikes those who did not come, never those the hall cancelled.
    at_monday.set(at(WEDNESDAY, 12))
    assert await booking.mark_no_shows(policy=POLICY) == 2
    statuses = {x.id: x.status for x in await Appointment.all()}
    assert statuses == {a: "cancelled", b: "cancelled", other_day: "no_show", d: "no_show"}
    assert {e.payload["appointment_id"] for e in await OutboxEvent.filter(topic="appointment.no_show")} == {
        other_day, d}


async def test_closing_part_of_a_day_cancels_only_what_falls_in_it(live: Live, hall: dict[str, Any]) -> None:
    c = live.client
    morning, _ = await booked(live, hall, TUESDAY, "09:00")
    before, _ = await booked(live, hall, TUESDAY, "13:30")
    inside, _ = await booked(live, hall, TUESDAY, "14:00")
    late, _ = await booked(live, hall, TUESDAY, "16:30", SIMPLE)
    last_slot = await slot_at(live, hall, TUESDAY, "16:00")
    r = await c.put(f"{STAFF}/halls/{hall['id']}/closures/{TUESDAY}", headers=hall["admin"],
                    json={"reason": "下午停电检修", "periods": [{"start": "14:00", "end": "17:00"}]})
    assert r.status_code == 200, r.text
    assert (r.json()["whole_day"], r.json()["periods"]) == (False, [{"start": "14:00", "end": "17:00"}])
    assert sorted(r.json()["cancelled_appointments"]) == sorted([inside, late])
    statuses = {x.id: x.status for x in await Appointment.all()}
    assert statuses == {morning: "booked", before: "booked", inside: "cancelled", late: "cancelled"}
    assert {e["reason"] for e in await cancellations()} == {"下午停电检修"}
    day = await offered(live, hall, TUESDAY)
    assert [s["starts_at"][11:16] for s in day["slots"]][-2:] == ["11:30", "13:30"]
    assert day["periods"] == [{"opens": "09:00", "closes": "12:00"}, {"opens": "13:30", "closes": "14:00"}]
    assert day["notice"] == "大厅闭厅：下午停电检修"
    _, headers = await verified_resident(live)
    r = await c.post("/api/v1/mp/appointments", json={"slot_id": last_slot},
                     headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "booking.slot_closed")
    info = (await c.get(f"{STAFF}/halls/{hall['id']}/days/{TUESDAY}", headers=hall["admin"])).json()
    assert (info["open"], info["booked_appointments"], info["closure"]["periods"]) == (
        True, 2, [{"start": "14:00", "end": "17:00"}])


async def test_special_hours_that_shorten_a_day_cancel_what_they_leave_out(live: Live, hall: dict[str, Any]) -> None:
    c = live.client
    kept, _ = await booked(live, hall, WEDNESDAY, "10:30")
    cut, _ = await booked(live, hall, WEDNESDAY, "11:00")
    afternoon, _ = await booked(live, hall, WEDNESDAY, "15:00", SIMPLE)
    path = f"{STAFF}/halls/{hall['id']}/special-hours/{WEDNESDAY}"
    r = await c.put(path, json={"periods": [{"opens": "09:00", "closes": "11:00"}], "reason": "下午防汛演练"},
                    headers=hall["admin"])
    assert r.status_code == 200, r.text
    assert sorted(r.json()["cancelled_appointments"]) == sorted([cut, afternoon])
    assert {x.id: x.status for x in await Appointment.all()} == {kept: "booked", cut: "cancelled",
                                                                  afternoon: "cancelled"}
    assert [s["starts_at"][11:16] for s in (await offered(live, hall, WEDNESDAY))["slots"]] == [
        "09:00", "09:30", "10:00", "10:30"]
    # Back to the weekly hours: the afternoon is offered again, the cancelled stay cancelled.
    assert (await c.delete(path, headers=hall["admin"])).status_code == 204
    assert len((await offered(live, hall, WEDNESDAY))["slots"]) == 13
    assert (await Appointment.get(id=cut)).status == "cancelled"
    r = await c.delete(path, headers=hall["admin"])
    assert (r.status_code, r.json()["error"]["code"]) == (404, "calendar.special_hours_not_found")
    # Special hours of none close the day.
    r = await c.put(path, json={"periods": [], "reason": "全员培训"}, headers=hall["admin"])
    assert r.json()["closed"] is True and r.json()["cancelled_appointments"] == [kept]


async def test_new_weekly_hours_cancel_the_appointments_they_leave_out(live: Live, hall: dict[str, Any]) -> None:
    tuesday_pm, _ = await booked(live, hall, TUESDAY, "15:00")
    wednesday_pm, _ = await booked(live, hall, WEDNESDAY, "15:00")
    morning, _ = await booked(live, hall, TUESDAY, "09:00")
    am = [{"opens": "09:00", "closes": "12:00"}]
    week = {"days": [{"weekday": d, "periods": am if d == 1 else [*am, {"opens": "13:30", "closes": "17:00"}]}
                     for d in range(5)]}
    r = await live.client.put(f"{STAFF}/halls/{hall['id']}/hours", json=week, headers=hall["admin"])
    assert r.status_code == 200, r.text
    assert r.json()["cancelled_appointments"] == [tuesday_pm]  # Tuesdays now close at noon
    assert {x.id: x.status for x in await Appointment.all()} == {tuesday_pm: "cancelled", wednesday_pm: "booked",
                                                                  morning: "booked"}
    assert (await cancellations())[0]["reason"] == "服务大厅调整了办公时间"


async def test_a_closure_is_all_or_nothing(live: Live, hall: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = await booked(live, hall, TUESDAY, "09:00")
    b, _ = await booked(live, hall, TUESDAY, "09:30")
    emit = outbox.emit
    calls: list[str] = []

    async def failing(topic: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(topic)
        if topic == "appointment.cancelled" and calls.count(topic) == 2:
            raise RuntimeError("the database went away halfway")
        return await emit(topic, *args, **kwargs)

    monkeypatch.setattr(outbox, "emit", failing)
    r = await live.client.put(f"{STAFF}/halls/{hall['id']}/closures/{TUESDAY}", json={"reason": "停电"},
                              headers=hall["admin"])
    assert r.status_code == 500
    monkeypatch.setattr(outbox, "emit", emit)
    assert await HallClosure.all().count() == 0
    assert {x.id: x.status for x in await Appointment.all()} == {a: "booked", b: "booked"}
    assert sorted(s.booked for s in await Slot.filter(day=TUESDAY, booked__gt=0)) == [1, 1]
    assert await OutboxEvent.filter(topic__in=["appointment.cancelled", "calendar.closure_set"]).count() == 0


async def test_bookings_racing_a_closure_all_end_cancelled_or_refused(live: Live, hall: dict[str, Any]) -> None:
    """Residents book the day while the hall closes it: whatever the order, none keeps a booking that day, and each
    one cancelled was told (on PostgreSQL the closure waits for the bookings in flight, and later ones see it)."""
    slots = [await slot_at(live, hall, TUESDAY, f"{h:02d}:{m:02d}") for h in (9, 10, 11) for m in (0, 30)]
    people = [await verified_resident(live) for _ in slots]

    async def book(slot: int, headers: dict[str, str]) -> int:
        r = await live.client.post("/api/v1/mp/appointments", json={"slot_id": slot},
                                   headers={**headers, "Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code in (201, 422), r.text
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "booking.hall_closed"
        return r.status_code

    close = live.client.put(f"{STAFF}/halls/{hall['id']}/closures/{TUESDAY}", json={"reason": "紧急停办"},
                            headers=hall["admin"])
    *codes, closed = await asyncio.gather(*(book(s, h) for s, (_, h) in zip(slots, people, strict=True)), close)
    assert closed.status_code == 200, closed.text
    assert await Appointment.filter(day=TUESDAY, status="booked").count() == 0
    made = await Appointment.filter(day=TUESDAY).count()
    assert made == codes.count(201)
    assert len(await cancellations()) == made
    assert await Slot.filter(day=TUESDAY, booked__gt=0).count() == 0


async def test_a_day_the_calendar_closes_after_booking_is_never_a_no_show(live: Live, hall: dict[str, Any],
                                                                         at_monday: Any) -> None:
    """A holiday the State Council adds after residents booked (the year loaded again): nobody could come."""
    a, _ = await booked(live, hall, TUESDAY, "09:00")
    await calendar.load_year(data={"year": 2026, "source": "国办发明电〔2026〕1号（补充通知）", "holidays": [
        {"name": "元旦", "days": ["2026-01-01"]}, {"name": "临时假日", "days": ["2026-03-03"]}]},
        source_name="test")
    at_monday.set(at(TUESDAY, 12))
    assert await booking.mark_no_shows(policy=POLICY) == 0
    row = await Appointment.get(id=a)
    assert (row.status, row.cancelled_by, row.cancel_reason, row.no_show_at) == (
        "cancelled", "hall", "法定节假日或休息日", None)
    assert [e["by"] for e in await cancellations()] == ["hall"]


async def test_walk_ins_are_refused_outside_opening_hours_with_their_codes(live: Live, hall: dict[str, Any],
                                                                          at_monday: Any) -> None:
    device, secret = await identity.register_kiosk(hall_code="HX", name="一楼", keyring=live.app.ctx.keyring)
    kiosk = KioskClient(live, device.device_id, secret)
    counter = f"{STAFF}/halls/{hall['id']}/tickets"
    await live.client.put(f"{STAFF}/halls/{hall['id']}/closures/{WEDNESDAY}", json={"reason": "系统升级停办"},
                          headers=hall["admin"])

    async def both(when: datetime) -> list[tuple[int, str | None, str]]:
        at_monday.set(when)
        # The clerk's shift token is fresh at each of these times.
        login = await live.client.post(f"{STAFF}/auth/login",
                                       json={"username": "hx.clerk", "password": CHOSEN_PASSWORD})
        clerk = {"Authorization": f"Bearer {login.json()['access_token']}"}
        answers = [await kiosk.post("/api/v1/kiosk/tickets", {"group": "A"}),
                   await live.client.post(counter, json={"group": "A"}, headers=clerk)]
        return [(r.status_code, r.json().get("error", {}).get("code"), r.json().get("error", {}).get("message", ""))
                for r in answers]

    refused = {
        at(TUESDAY, 21, 34): ("queue.after_hours", "今天的办公时间（09:00–12:00、13:30–17:00）已结束"),
        at(TUESDAY, 8, 30): ("queue.before_hours", "大厅尚未开始办公，今天09:00起可以取号"),
        at(TUESDAY, 12, 30): ("queue.break_time", "现在是休息时间，13:30起可以取号"),
        at(WEDNESDAY, 10): ("queue.hall_closed", "大厅今天不办公（大厅闭厅：系统升级停办）"),
        at(date(2026, 3, 7), 10): ("queue.hall_closed", "法定节假日或休息日"),  # a plain Saturday
    }
    for when, (code, message) in refused.items():
        for status, got, text in await both(when):
            assert (status, got) == (422, code), (when, got, text)
            assert message in text, (when, text)
    assert await QueueTicket.all().count() == 0
    issued = await both(at(TUESDAY, 9, 30))
    assert [s for s, _, _ in issued] == [201, 201]
    assert [t.code for t in await QueueTicket.all().order_by("id")] == ["A001", "A002"]
    # Clerks and hall admins of the hall issue them at the counter, not its auditors.
    other = await staff_headers(live, "hx.auditor", "HX", StaffRole.AUDITOR)
    r = await live.client.post(counter, json={"group": "A"}, headers=other)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
