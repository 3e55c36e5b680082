"""Booking through the HTTP API: availability, the rush, idempotency, limits, cancel, no-shows, check-in, queue."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest

from backend import clock
from backend.audit.models import AuditEntry
from backend.booking import service as booking
from backend.booking.models import Appointment, AppointmentStatus, BookingBar, BookingRule, QueueTicket, Slot
from backend.catalog.models import Counter, Hall, OpeningHours, ServiceItem, ServiceItemVersion
from backend.crypto import blind_index
from backend.identity.models import Resident, StaffRole
from backend.identity.personal import id_check_char
from backend.identity.tokens import issue
from backend.jobs.models import OutboxEvent
from tests.conftest import Live, Platforms

# Monday 2 March 2026, 08:00 in Shanghai.
MONDAY_8AM = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
TUESDAY = date(2026, 3, 3)


def shanghai(d: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(d, time(hh, mm), tzinfo=clock.SHANGHAI)


@pytest.fixture
def at_monday(frozen_clock):
    frozen_clock.set(MONDAY_8AM)
    return frozen_clock


@pytest.fixture
async def hall(live: Live, at_monday) -> dict:
    hall = await Hall.create(code="HX-01", name="转塘街道便民服务中心", region_code="330106011")
    for weekday in range(5):
        await OpeningHours.create(hall=hall, weekday=weekday, opens=time(9), closes=time(12))
        await OpeningHours.create(hall=hall, weekday=weekday, opens=time(13, 30), closes=time(17))
    item = await ServiceItem.create(code="ITEM-RESIDENCE", name="居住证明开具", department="派出所",
                                    subject_type="person", queue_group="A")
    await ServiceItemVersion.create(item=item, version=1, effective_from=date(2026, 1, 1), name=item.name,
                                    department=item.department, subject_type="person", statutory_days=5,
                                    promised_days=3, content_hash="x")
    await item.halls.add(hall)
    other = await ServiceItem.create(code="ITEM-PENSION", name="城乡居民养老保险参保登记", department="社保所",
                                     subject_type="person", queue_group="B")
    await other.halls.add(hall)
    await BookingRule.create(hall=hall, item=None, slot_minutes=30, seats_per_slot=10, horizon_days=14,
                             min_notice_minutes=60, cancel_cutoff_minutes=120, max_active_per_person=2,
                             release_cooldown_minutes=30, checkin_early_minutes=30, checkin_late_minutes=15,
                             walkin_daily_quota=3)
    counter = await Counter.create(hall=hall, number=3, name="综合受理3号窗口", groups=["A", "B"])
    return {"hall": hall, "item": item, "other": other, "counter": counter}


_serial = iter(range(10_000, 99_999))


async def verified_resident(live: Live) -> tuple[int, dict[str, str]]:
    """A resident with verified real-name data (an ID number of their own)."""
    first17 = f"33010619900101{next(_serial) % 1000:03d}"
    id_number = first17 + id_check_char(first17)
    person = blind_index(live.app.ctx.settings.hash_key, "id_number", id_number)
    resident = await Resident.create(id_number_hash=person, verified_at=clock.now())
    token = issue(secret=live.app.ctx.settings.secret_key, kind="resident", subject=resident.id,
                  ttl_seconds=30 * 86400)[0]
    return resident.id, {"Authorization": f"Bearer {token}"}


async def slots(live: Live, hall: dict, day: date = TUESDAY, item: str = "ITEM-RESIDENCE") -> list[dict]:
    r = await live.client.get(f"/api/v1/halls/{hall['hall'].id}/availability", params={"item": item,
                                                                                      "date": day.isoformat()})
    assert r.status_code == 200, r.text
    return r.json()["slots"]


async def book(live: Live, headers: dict, slot_id: int, key: str | None = None):
    return await live.client.post("/api/v1/mp/appointments", json={"slot_id": slot_id},
                                  headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex})


# ---- availability ---------------------------------------------------------------------------


async def test_availability_follows_hours_rules_and_calendar(live: Live, hall: dict) -> None:
    got = await slots(live, hall)
    assert len(got) == 6 + 7  # 09:00–12:00 and 13:30–17:00 in 30-minute slots
    assert got[0]["starts_at"] == "2026-03-03T09:00:00+08:00"
    assert {s["seats_left"] for s in got} == {10}
    saturday = await live.client.get(f"/api/v1/halls/{hall['hall'].id}/availability",
                                     params={"item": "ITEM-RESIDENCE", "date": "2026-03-07"})
    assert saturday.json()["open"] is False and saturday.json()["slots"] == []
    far = await live.client.get(f"/api/v1/halls/{hall['hall'].id}/availability",
                                params={"item": "ITEM-RESIDENCE", "date": "2026-04-30"})
    assert (far.status_code, far.json()["error"]["code"]) == (422, "booking.beyond_horizon")
    bad = await live.client.get(f"/api/v1/halls/{hall['hall'].id}/availability", params={"date": "03/03/2026"})
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["details"]["fields"]} == {"item", "date"}


async def test_a_year_nobody_loaded_is_refused_not_guessed(live: Live, hall: dict, frozen_clock) -> None:
    frozen_clock.set(datetime(2026, 12, 28, 0, 0, tzinfo=UTC))
    r = await live.client.get(f"/api/v1/halls/{hall['hall'].id}/availability",
                              params={"item": "ITEM-RESIDENCE", "date": "2027-01-05"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "calendar.year_unknown")


# ---- the rush -------------------------------------------------------------------------------


async def test_200_residents_rushing_10_seats_get_exactly_10(live: Live, hall: dict) -> None:
    residents = [await verified_resident(live) for _ in range(200)]
    slot_id = (await slots(live, hall))[0]["slot_id"]
    answers = await asyncio.gather(*(book(live, headers, slot_id) for _, headers in residents))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 10
    full = [a for a in answers if a.status_code == 409]
    assert len(full) == 190
    assert {a.json()["error"]["code"] for a in full} == {"booking.slot_full"}
    assert await Appointment.filter(slot_id=slot_id).count() == 10
    assert (await Slot.get(id=slot_id)).booked == 10
    assert await OutboxEvent.filter(topic="appointment.booked").count() == 10


async def test_the_gate_is_rebuilt_from_the_database_when_redis_loses_it(live: Live, hall: dict) -> None:
    slot_id = (await slots(live, hall))[0]["slot_id"]
    people = [await verified_resident(live) for _ in range(14)]
    for _, headers in people[:4]:
        assert (await book(live, headers, slot_id)).status_code == 201
    await live.app.ctx.redis.delete(f"{booking.GATE}{slot_id}")
    answers = [await book(live, headers, slot_id) for _, headers in people[4:]]
    assert [a.status_code for a in answers] == [201] * 6 + [409] * 4
    assert await Appointment.filter(slot_id=slot_id).count() == 10


# ---- idempotency ----------------------------------------------------------------------------


async def test_same_key_same_body_is_the_same_appointment_other_body_is_refused(live: Live, hall: dict) -> None:
    _, headers = await verified_resident(live)
    got = await slots(live, hall)
    first = await book(live, headers, got[0]["slot_id"], key="retry-key-0001")
    assert first.status_code == 201
    again = await book(live, headers, got[0]["slot_id"], key="retry-key-0001")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = await book(live, headers, got[1]["slot_id"], key="retry-key-0001")
    assert (other.status_code, other.json()["error"]["code"]) == (422, "booking.idempotency_conflict")
    missing = await live.client.post("/api/v1/mp/appointments", json={"slot_id": got[1]["slot_id"]}, headers=headers)
    assert (missing.status_code, missing.json()["error"]["code"]) == (400, "booking.idempotency_key_missing")
    assert await Appointment.all().count() == 1
    assert (await Slot.get(id=got[0]["slot_id"])).booked == 1


async def test_unverified_resident_cannot_book(live: Live, hall: dict) -> None:
    resident = await Resident.create()
    token = issue(secret=live.app.ctx.settings.secret_key, kind="resident", subject=resident.id, ttl_seconds=600)[0]
    r = await book(live, {"Authorization": f"Bearer {token}"}, (await slots(live, hall))[0]["slot_id"])
    assert (r.status_code, r.json()["error"]["code"]) == (403, "identity.not_verified")


# ---- limits follow the person ---------------------------------------------------------------


async def test_limits_follow_the_id_number_across_wechat_and_alipay(live: Live, hall: dict,
                                                                    platforms: Platforms) -> None:
    from tests.test_identity import ZHANG, alipay_login, auth, join_with_code, wechat_login

    wx = await wechat_login(live, platforms)
    assert (await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(wx))).status_code == 200
    ali = await alipay_login(live, platforms)
    merged = await join_with_code(live, platforms, ali, ZHANG)
    ali_headers = auth(merged["tokens"])
    got = await slots(live, hall)
    assert (await book(live, auth(wx), got[0]["slot_id"])).status_code == 201
    same_item_same_day = await book(live, ali_headers, got[3]["slot_id"])
    assert (same_item_same_day.status_code, same_item_same_day.json()["error"]["code"]) == (
        409, "booking.duplicate_item_day")
    pension = await slots(live, hall, item="ITEM-PENSION")
    assert (await book(live, ali_headers, pension[0]["slot_id"])).status_code == 201
    wednesday = await slots(live, hall, day=TUESDAY + timedelta(days=1))
    third = await book(live, auth(wx), wednesday[0]["slot_id"])
    assert (third.status_code, third.json()["error"]["code"]) == (409, "booking.limit_reached")


# ---- cancel, cool-down, no-shows ------------------------------------------------------------


async def test_cancel_frees_the_seat_only_after_the_cooldown(live: Live, hall: dict, at_monday) -> None:
    _, headers = await verified_resident(live)
    slot = (await slots(live, hall))[0]
    appointment = (await book(live, headers, slot["slot_id"])).json()
    assert (await slots(live, hall))[0]["seats_left"] == 9
    r = await live.client.delete(f"/api/v1/mp/appointments/{appointment['id']}", headers=headers)
    assert r.status_code == 204
    assert (await slots(live, hall))[0]["seats_left"] == 9  # still held: no seat trading
    at_monday.advance(29 * 60)
    assert await booking.release_cooled_down_seats(redis=live.app.ctx.redis) == 0
    at_monday.advance(61)
    assert await booking.release_cooled_down_seats(redis=live.app.ctx.redis) == 1
    assert await booking.release_cooled_down_seats(redis=live.app.ctx.redis) == 0
    assert (await slots(live, hall))[0]["seats_left"] == 10
    again = await live.client.delete(f"/api/v1/mp/appointments/{appointment['id']}", headers=headers)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "booking.not_cancellable")
    assert await OutboxEvent.filter(topic="appointment.cancelled").count() == 1


async def test_cancel_after_the_cutoff_is_refused(live: Live, hall: dict, at_monday) -> None:
    _, headers = await verified_resident(live)
    appointment = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()
    at_monday.set(shanghai(TUESDAY, 7, 30))  # 90 minutes before 09:00, cut-off is 120
    r = await live.client.delete(f"/api/v1/mp/appointments/{appointment['id']}", headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "booking.cancel_too_late")


async def test_another_residents_appointment_is_not_found(live: Live, hall: dict) -> None:
    _, a = await verified_resident(live)
    _, b = await verified_resident(live)
    appointment = (await book(live, a, (await slots(live, hall))[0]["slot_id"])).json()
    for method, path in (("DELETE", f"/api/v1/mp/appointments/{appointment['id']}"),
                         ("GET", f"/api/v1/mp/appointments/{appointment['id']}/qr.png")):
        r = await live.client.request(method, path, headers=b)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "booking.not_found")


async def test_three_no_shows_bar_the_id_number_with_reason_and_end(live: Live, hall: dict, at_monday) -> None:
    rid, headers = await verified_resident(live)
    for offset in (1, 2, 3):
        day = TUESDAY + timedelta(days=offset - 1)
        got = await slots(live, hall, day=day)
        at_monday.set(MONDAY_8AM)
        appointment = Appointment(resident_id=rid)
        r = await book(live, headers, got[0]["slot_id"])
        assert r.status_code == 201, r.text
        at_monday.set(shanghai(day, 10, 1))  # slot 09:00–09:30 plus 30 minutes of grace has passed
        policy = booking.Policy(no_show_grace_minutes=30, no_show_limit=3, no_show_bar_days=30)
        assert await booking.mark_no_shows(policy=policy) == 1
        del appointment
    bar = await BookingBar.get()
    assert bar.reason == "90天内预约未到3次"
    r = await book(live, headers, (await slots(live, hall, day=date(2026, 3, 9)))[0]["slot_id"])
    assert (r.status_code, r.json()["error"]["code"]) == (403, "booking.barred")
    assert r.json()["error"]["details"]["reason"] == "90天内预约未到3次"
    listed = (await live.client.get("/api/v1/mp/appointments", headers=headers)).json()
    assert listed["barred"] is True and listed["bar"]["until"].startswith("2026-04-04")
    assert await OutboxEvent.filter(topic="appointment.no_show").count() == 3


async def test_reminder_is_emitted_once_the_day_before(live: Live, hall: dict, at_monday) -> None:
    _, headers = await verified_resident(live)
    await book(live, headers, (await slots(live, hall))[0]["slot_id"])
    assert await booking.emit_reminders() == 1
    assert await booking.emit_reminders() == 0
    event = await OutboxEvent.get(topic="appointment.reminder_due")
    assert event.payload["starts_at"].startswith("2026-03-03T01:00:00")


# ---- QR, check-in and the queue --------------------------------------------------------------


async def test_qr_code_decodes_to_a_url_ending_in_a_signed_token(live: Live, hall: dict) -> None:
    import zxingcpp
    from PIL import Image

    from backend import qr

    _, headers = await verified_resident(live)
    appointment = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()
    png = await live.client.get(f"/api/v1/mp/appointments/{appointment['id']}/qr.png", headers=headers)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))[0].text
    assert decoded.startswith(live.app.ctx.settings.public_base_url + "/q/")
    token = decoded.rsplit("/", 1)[1]
    import base64
    import struct

    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert struct.pack(">Q", appointment["id"]) not in raw  # the id is sealed, not merely encoded
    assert qr.read_token(live.app.ctx.settings.secret_key, token) == ("appointment", appointment["id"])
    svg = await live.client.get(f"/api/v1/mp/appointments/{appointment['id']}/qr.svg", headers=headers)
    assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content


async def _kiosk(live: Live, hall: dict):
    from backend.identity import service as identity
    from tests.test_staff_and_kiosks import KioskClient

    device, secret = await identity.register_kiosk(hall_code=hall["hall"].code, name="一楼",
                                                   keyring=live.app.ctx.keyring)
    return KioskClient(live, device.device_id, secret)


async def test_kiosk_check_in_inside_the_window_gives_a_ticket(live: Live, hall: dict, at_monday) -> None:
    _, headers = await verified_resident(live)
    appointment = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()
    kiosk = await _kiosk(live, hall)
    at_monday.set(shanghai(TUESDAY, 8, 20))  # 40 minutes early: the window opens at 08:30
    early = await kiosk.post("/api/v1/kiosk/check-in", {"code": appointment["qr_url"]})
    assert (early.status_code, early.json()["error"]["code"]) == (422, "booking.checkin_window")
    at_monday.set(shanghai(TUESDAY, 8, 45))
    ok = await kiosk.post("/api/v1/kiosk/check-in", {"code": appointment["qr_url"]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["ticket"]["code"] == "A001"
    assert (await Appointment.get(id=appointment["id"])).status == "checked_in"
    forged = await kiosk.post("/api/v1/kiosk/check-in", {"code": appointment["qr_url"][:-3] + "abc"})
    assert (forged.status_code, forged.json()["error"]["code"]) == (404, "qr.invalid")


async def test_check_in_after_the_window_is_refused(live: Live, hall: dict, at_monday) -> None:
    _, headers = await verified_resident(live)
    appointment = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()
    kiosk = await _kiosk(live, hall)
    at_monday.set(shanghai(TUESDAY, 9, 16))
    late = await kiosk.post("/api/v1/kiosk/check-in", {"code": appointment["qr_url"]})
    assert (late.status_code, late.json()["error"]["code"]) == (422, "booking.checkin_window")


async def _clerk(live: Live, hall_code: str, username: str = "clerk") -> dict[str, str]:
    from tests.cases_support import staff_headers

    return await staff_headers(live, username, hall_code, StaffRole.CLERK)


async def test_queue_calls_appointments_before_walk_ins_and_three_calls_make_missed(live: Live, hall: dict,
                                                                                   at_monday) -> None:
    _, headers = await verified_resident(live)
    appointment = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()
    kiosk = await _kiosk(live, hall)
    at_monday.set(shanghai(TUESDAY, 9, 1))  # walk-ins are taken once the hall opens; the check-in window is open
    walk1 = (await kiosk.post("/api/v1/kiosk/tickets", {"group": "A"})).json()
    walk2 = (await kiosk.post("/api/v1/kiosk/tickets", {"group": "B"})).json()
    clerk = await _clerk(live, "HX-01")
    scanned = await live.client.post("/api/v1/staff/scan", json={"code": appointment["qr_url"]}, headers=clerk)
    assert scanned.status_code == 200 and scanned.json()["kind"] == "appointment"
    assert scanned.json()["actions"] == ["check_in"]
    checked = await live.client.post(f"/api/v1/staff/appointments/{appointment['id']}/check-in", headers=clerk)
    assert checked.status_code == 200
    assert (walk1["code"], walk2["code"], checked.json()["ticket"]["code"]) == ("A001", "B001", "A002")
    counter = hall["counter"].id
    calls = [(await live.client.post(f"/api/v1/staff/counters/{counter}/call-next", headers=clerk)).json()
             for _ in range(3)]
    assert [c["ticket"]["code"] for c in calls] == ["A002", "A001", "B001"]  # the appointment first
    for expected in (2, 3):
        r = (await live.client.post(f"/api/v1/staff/counters/{counter}/recall", headers=clerk)).json()
        assert (r["ticket"]["status"], r["calls"]) == ("called", expected)
    r = (await live.client.post(f"/api/v1/staff/counters/{counter}/recall", headers=clerk)).json()
    assert r["ticket"]["status"] == "missed"
    empty = await live.client.post(f"/api/v1/staff/counters/{counter}/call-next", headers=clerk)
    assert (empty.status_code, empty.json()["error"]["code"]) == (404, "queue.empty")
    assert await OutboxEvent.filter(topic="ticket.called").count() == 3
    statuses = {t.code: t.status for t in await QueueTicket.all()}
    assert statuses == {"A002": "done", "A001": "done", "B001": "missed"}


async def test_walk_in_quota(live: Live, hall: dict, at_monday) -> None:
    at_monday.set(shanghai(date(2026, 3, 2), 9, 30))
    kiosk = await _kiosk(live, hall)
    codes = [(await kiosk.post("/api/v1/kiosk/tickets", {"group": "A"})).status_code for _ in range(4)]
    assert codes == [201, 201, 201, 409]
    r = await kiosk.post("/api/v1/kiosk/tickets", {"group": "Z"})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "queue.no_such_group")


async def test_a_clerk_of_another_hall_cannot_call_or_check_in(live: Live, hall: dict, at_monday) -> None:
    await Hall.create(code="HY", name="另一中心", region_code="330106012")
    stranger = await _clerk(live, "HY", "stranger")
    r = await live.client.post(f"/api/v1/staff/counters/{hall['counter'].id}/call-next", headers=stranger)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")


async def test_board_stream_shows_a_call_within_two_seconds(live: Live, hall: dict, at_monday) -> None:
    at_monday.set(shanghai(date(2026, 3, 2), 9, 30))
    kiosk = await _kiosk(live, hall)
    await kiosk.post("/api/v1/kiosk/tickets", {"group": "A"})
    clerk = await _clerk(live, "HX-01")
    events: list[dict] = []

    async def watch() -> None:
        async with live.client.stream("GET", f"/api/v1/halls/{hall['hall'].id}/queue/stream") as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    if any(e.get("calling") for e in events):
                        return

    watcher = asyncio.create_task(watch())
    while not events:
        await asyncio.sleep(0.05)
    assert events[0]["waiting"] == {"A": 1}
    await live.client.post(f"/api/v1/staff/counters/{hall['counter'].id}/call-next", headers=clerk)
    await asyncio.wait_for(watcher, timeout=2)
    last = events[-1]
    assert last["calling"] == [{"code": "A001", "counter": 3, "calls": 1}]
    assert last["announce"] == {"code": "A001", "counter": 3}


async def test_every_booking_change_is_audited(live: Live, hall: dict) -> None:
    _, headers = await verified_resident(live)
    appointment = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()
    await live.client.delete(f"/api/v1/mp/appointments/{appointment['id']}", headers=headers)
    actions = [a.action for a in await AuditEntry.filter(target_kind="appointment").order_by("seq")]
    assert actions == ["appointment.booked", "appointment.cancelled"]


async def test_a_full_slot_is_answered_without_the_database(live: Live, hall: dict) -> None:
    from backend import db

    people = [await verified_resident(live) for _ in range(11)]
    slot_id = (await slots(live, hall))[0]["slot_id"]
    for _, headers in people[:10]:
        assert (await book(live, headers, slot_id)).status_code == 201
    _, late_comer = people[10]
    # An earlier attempt of theirs (here: the first one) put who they are in the Redis cache.
    other_slot = (await slots(live, hall))[1]["slot_id"]
    assert (await book(live, late_comer, other_slot)).status_code == 201
    await db.close()
    try:
        # The database is now unreachable: only Redis can answer.
        await db.init("postgres://nobody@127.0.0.1:1/none")
        r = await book(live, late_comer, slot_id)
    finally:
        await db.close()
        await db.init(live.app.ctx.settings.database_url)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "booking.slot_full")


async def test_hall_admin_sets_the_booking_rule_a_clerk_cannot(live: Live, hall: dict) -> None:
    from tests.cases_support import staff_headers

    admin = await staff_headers(live, "admin", "HX-01", StaffRole.HALL_ADMIN)
    clerk = await _clerk(live, "HX-01")
    rule = {"item": "ITEM-PENSION", "slot_minutes": 60, "seats_per_slot": 2}
    r = await live.client.put(f"/api/v1/staff/halls/{hall['hall'].id}/booking-rule", json=rule, headers=clerk)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    r = await live.client.put(f"/api/v1/staff/halls/{hall['hall'].id}/booking-rule", json=rule, headers=admin)
    assert r.status_code == 200 and r.json()["seats_per_slot"] == 2
    pension = await slots(live, hall, item="ITEM-PENSION")
    assert len(pension) == 3 + 3 and {s["capacity"] for s in pension} == {2}  # hour slots, 2 seats
    assert (await slots(live, hall))[0]["capacity"] == 10  # the other item keeps the hall default
    bad = await live.client.put(f"/api/v1/staff/halls/{hall['hall'].id}/booking-rule",
                                json={"seats_per_slot": 0, "slot_minutes": 1}, headers=admin)
    assert bad.status_code == 422
    assert {f["field"] for f in bad.json()["error"]["details"]["fields"]} == {"seats_per_slot", "slot_minutes"}
    assert await AuditEntry.filter(action="booking.rule_set").count() == 1


async def test_public_progress_of_an_appointment_shows_no_personal_data(live: Live, hall: dict) -> None:
    _, headers = await verified_resident(live)
    appointment = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()
    token = appointment["qr_url"].rsplit("/", 1)[1]
    r = await live.client.get(f"/api/v1/progress/{token}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "booked" and body["item"]["code"] == "ITEM-RESIDENCE"
    assert body["starts_at"] == "2026-03-03T09:00:00+08:00" and body["ticket"] is None
    # Nothing personal: the hall's own address and the check-in window the hall's rule gives.
    assert set(body) == {"kind", "status", "status_label", "item", "hall", "starts_at", "ends_at", "checkin", "ticket"}
    assert body["status_label"] == "已预约，待签到" and set(body["hall"]) == {"id", "name", "address"}
    assert body["checkin"] == {"opens_at": "2026-03-03T08:30:00+08:00", "closes_at": "2026-03-03T09:15:00+08:00"}
    r = await live.client.get(f"/api/v1/progress/{token[:-4]}AAAA")
    assert (r.status_code, r.json()["error"]["code"]) == (404, "qr.invalid")


def test_every_appointment_status_has_a_label_a_resident_reads() -> None:
    assert set(booking.STATUS_LABELS) == set(AppointmentStatus)
