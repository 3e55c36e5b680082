"""One appointment read whole, and moved in one step: through the HTTP API, limits kept, the gate and the seat
counts in step, and a rush of residents moving into the last seat of a slot."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx

from backend import qr
from backend.audit.models import AuditEntry
from backend.booking import service as booking
from backend.booking.models import Appointment, BookingBar, BookingRule, Slot
from backend.catalog.models import Hall, ServiceItemVersion
from backend.jobs.models import OutboxEvent
from tests import test_booking
from tests.conftest import Live
from tests.test_account_linking import drain_notifications
from tests.test_booking import TUESDAY, book, shanghai, slots, verified_resident

# The booking tests' Monday morning and hall (two items, the hall's rule: ten seats a slot, two active a person).
at_monday, hall = test_booking.at_monday, test_booking.hall

WEDNESDAY = TUESDAY + timedelta(days=1)


async def move(live: Live, headers: dict[str, str], appointment_id: int, slot_id: int,
               key: str | None = None) -> httpx.Response:
    return await live.client.post(f"/api/v1/mp/appointments/{appointment_id}/reschedule", json={"slot_id": slot_id},
                                  headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex})


async def gate_and_seats(live: Live, *slot_ids: int) -> list[tuple[int, int]]:
    """(seats the Redis gate lets through, seats the database has free) of each slot: equal when in step."""
    out = []
    for slot_id in slot_ids:
        await booking.rebuild_gate(live.app.ctx.redis, slot_id)  # a key never made is made from the database
        gate = int(await live.app.ctx.redis.get(f"{booking.GATE}{slot_id}"))
        slot = await Slot.get(id=slot_id)
        out.append((gate, slot.capacity - slot.booked))
    return out


def qr_names(live: Live, url: str) -> tuple[str, int]:
    assert url.startswith(live.app.ctx.settings.public_base_url + "/q/")
    return qr.read_token(live.app.ctx.settings.secret_key, url.rsplit("/", 1)[1])


async def detail(live: Live, headers: dict[str, str], appointment_id: int) -> httpx.Response:
    return await live.client.get(f"/api/v1/mp/appointments/{appointment_id}", headers=headers)


# ---- one appointment, whole ---------------------------------------------------------------------


async def test_one_appointment_shows_what_the_resident_needs_to_come(live: Live, hall: dict) -> None:
    await Hall.filter(id=hall["hall"].id).update(address="杭州市西湖区转塘街道象山路1号")
    await ServiceItemVersion.filter(item_id=hall["item"].id).update(materials=[
        {"code": "ID", "name": "居民身份证", "form": "original", "copies": 1, "required": True,
         "certificate_type": "居民身份证", "note": ""},
        {"code": "LEASE", "name": "租赁合同", "form": "copy", "copies": 2, "required": False,
         "certificate_type": None, "note": "复印件需签字"}])
    _, headers = await verified_resident(live)
    booked = (await book(live, headers, (await slots(live, hall))[0]["slot_id"])).json()

    r = await detail(live, headers, booked["id"])
    assert r.status_code == 200, r.text
    shown = r.json()
    listed = (await live.client.get("/api/v1/mp/appointments", headers=headers)).json()["appointments"][0]
    assert {k: shown[k] for k in listed if k != "hall"} == {k: v for k, v in listed.items() if k != "hall"}
    assert shown["hall"] == {**listed["hall"], "address": "杭州市西湖区转塘街道象山路1号"}
    assert qr_names(live, shown["qr_url"]) == ("appointment", booked["id"])
    assert shown["starts_at"] == "2026-03-03T09:00:00+08:00"
    assert shown["checkin_window"] == {"from": "2026-03-03T08:30:00+08:00", "to": "2026-03-03T09:15:00+08:00"}
    assert shown["change_until"] == "2026-03-03T07:00:00+08:00"  # the 120-minute cut-off
    assert shown["bring"] == [
        {"code": "ID", "name": "居民身份证", "form": "original", "form_label": "原件", "copies": 1, "required": True,
         "certificate_type": "居民身份证", "note": ""},
        {"code": "LEASE", "name": "租赁合同", "form": "copy", "form_label": "复印件", "copies": 2, "required": False,
         "certificate_type": None, "note": "复印件需签字"}]

    _, stranger = await verified_resident(live)
    r = await detail(live, stranger, booked["id"])
    assert (r.status_code, r.json()["error"]["code"]) == (404, "booking.not_found")


# ---- moving in one step -------------------------------------------------------------------------


async def test_reschedule_takes_the_new_seat_and_gives_up_the_old_in_one_step(live: Live, hall: dict,
                                                                              at_monday) -> None:
    rid, headers = await verified_resident(live)
    tuesday = await slots(live, hall)
    nine, ten = tuesday[0]["slot_id"], tuesday[2]["slot_id"]
    old = (await book(live, headers, nine)).json()

    r = await move(live, headers, old["id"], ten, key="move-key-0001")
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["id"] != old["id"] and new["status"] == "booked" and new["rescheduled_from"] == old["id"]
    assert new["starts_at"] == "2026-03-03T10:00:00+08:00" and qr_names(live, new["qr_url"]) == ("appointment",
                                                                                                   new["id"])
    was = (await detail(live, headers, old["id"])).json()
    assert (was["status"], was["rescheduled_to"]) == ("cancelled", new["id"])
    listed = (await live.client.get("/api/v1/mp/appointments", headers=headers)).json()
    assert [(a["id"], a["status"]) for a in listed["appointments"]] == [(new["id"], "booked"),
                                                                        (old["id"], "cancelled")]

    # The new seat is taken; the old one is held through the cool-down, as a cancellation's is (no handing
    # seats over), then offered again; the gate and the database agree throughout.
    seats = {s["slot_id"]: s["seats_left"] for s in await slots(live, hall)}
    assert (seats[nine], seats[ten]) == (9, 9)
    assert await gate_and_seats(live, nine, ten) == [(9, 9), (9, 9)]
    at_monday.advance(31 * 60)
    assert await booking.release_cooled_down_seats(redis=live.app.ctx.redis) == 1
    seats = {s["slot_id"]: s["seats_left"] for s in await slots(live, hall)}
    assert (seats[nine], seats[ten]) == (10, 9)
    assert await gate_and_seats(live, nine, ten) == [(10, 10), (9, 9)]

    # A retry answers the same move (from Redis, and from the database when Redis lost its record); the same
    # key for another move is refused; the old one moves no more.
    for _ in range(2):
        again = await move(live, headers, old["id"], ten, key="move-key-0001")
        assert (again.status_code, again.json()["id"]) == (200, new["id"])
        other = await move(live, headers, old["id"], tuesday[3]["slot_id"], key="move-key-0001")
        assert (other.status_code, other.json()["error"]["code"]) == (422, "booking.idempotency_conflict")
        await live.app.ctx.redis.delete(f"{booking.IDEMPOTENT}{rid}:move-key-0001")
    r = await move(live, headers, old["id"], tuesday[3]["slot_id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "booking.not_reschedulable")
    assert await Appointment.all().count() == 2

    # Whoever follows appointments hears both halves, each naming the other.
    cancelled = await OutboxEvent.get(topic="appointment.cancelled")
    assert cancelled.payload["appointment_id"] == old["id"]
    assert (cancelled.payload["by"], cancelled.payload["rescheduled_to"]) == ("resident", new["id"])
    booked = {e.payload["appointment_id"]: e.payload for e in await OutboxEvent.filter(topic="appointment.booked")}
    assert set(booked) == {old["id"], new["id"]} and "rescheduled_from" not in booked[old["id"]]
    assert booked[new["id"]]["rescheduled_from"] == old["id"]
    assert booked[new["id"]]["starts_at"].startswith("2026-03-03T02:00:00")
    actions = [(a.action, a.target_id) for a in await AuditEntry.filter(target_kind="appointment").order_by("seq")]
    assert actions == [("appointment.booked", str(old["id"])), ("appointment.rescheduled", str(old["id"])),
                       ("appointment.booked", str(new["id"]))]
    # The resident hears of the move once: "预约已改期" for the new one; the old one's cancellation tells no one.
    await drain_notifications()
    inbox = (await live.client.get("/api/v1/mp/inbox", headers=headers)).json()["items"]
    assert [m["title"] for m in inbox] == ["预约已改期", "预约成功"]
    assert "原预约已取消" in inbox[0]["body"]


async def test_a_refused_move_leaves_the_appointment_and_every_seat_as_they_were(
        live: Live, hall: dict, at_monday) -> None:
    rid, headers = await verified_resident(live)
    tuesday, wednesday = await slots(live, hall), await slots(live, hall, day=WEDNESDAY)
    pension = await slots(live, hall, item="ITEM-PENSION")
    mine = (await book(live, headers, tuesday[0]["slot_id"])).json()
    theirs = (await book(live, (await verified_resident(live))[1], tuesday[4]["slot_id"])).json()
    # Tuesday 12:00 is full.
    full = tuesday[5]["slot_id"]
    for _ in range(10):
        assert (await book(live, (await verified_resident(live))[1], full)).status_code == 201
    # Wednesday: the same item once more (a second active appointment; the rule allows two).
    wed = (await book(live, headers, wednesday[0]["slot_id"])).json()
    watched = [tuesday[0]["slot_id"], tuesday[1]["slot_id"], full, wednesday[0]["slot_id"], pension[0]["slot_id"]]
    before = await gate_and_seats(live, *watched)

    refusals = [
        (mine["id"], full, 409, "booking.slot_full"),
        (mine["id"], tuesday[0]["slot_id"], 422, "booking.same_slot"),
        (mine["id"], pension[0]["slot_id"], 422, "booking.other_item"),
        (wed["id"], tuesday[1]["slot_id"], 409, "booking.duplicate_item_day"),  # Tuesday already has this item
        (theirs["id"], tuesday[1]["slot_id"], 404, "booking.not_found"),
        (mine["id"], 999_999, 404, "booking.slot_not_found"),
    ]
    for appointment_id, slot_id, status, code in refusals:
        r = await move(live, headers, appointment_id, slot_id)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (code, r.text)

    # The new slot's own rule counts the person's other active appointments (one here, with the one moved given
    # up): an item whose rule allows one at a time refuses the move.
    await BookingRule.create(hall=hall["hall"], item=hall["item"], slot_minutes=30, seats_per_slot=10,
                             horizon_days=14, min_notice_minutes=60, cancel_cutoff_minutes=120,
                             max_active_per_person=1, release_cooldown_minutes=30, checkin_early_minutes=30,
                             checkin_late_minutes=15, walkin_daily_quota=3)
    r = await move(live, headers, wed["id"], wednesday[1]["slot_id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "booking.limit_reached")
    assert r.json()["error"]["details"] == {"max_active": 1}
    await BookingRule.filter(item=hall["item"]).delete()

    # Barred after no-shows: no move either.
    bar = await BookingBar.create(person_hash=(await Appointment.get(id=mine["id"])).person_hash,
                                  reason="90天内预约未到3次", starts_at=shanghai(TUESDAY, 0) - timedelta(days=1),
                                  ends_at=shanghai(TUESDAY, 0) + timedelta(days=30))
    r = await move(live, headers, mine["id"], tuesday[1]["slot_id"])
    assert (r.status_code, r.json()["error"]["code"]) == (403, "booking.barred")
    await bar.delete()

    # Too close to the new slot (Tuesday 09:30 seen at 09:00, an hour's notice needed), then past the old one's
    # cut-off for changes.
    at_monday.set(shanghai(TUESDAY, 9, 0))
    r = await move(live, headers, wed["id"], tuesday[1]["slot_id"])
    assert (r.status_code, r.json()["error"]["code"]) == (422, "booking.too_late")
    at_monday.set(shanghai(TUESDAY, 7, 30))  # 90 minutes before 09:00, the cut-off is 120
    r = await move(live, headers, mine["id"], tuesday[4]["slot_id"])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "booking.change_too_late")
    assert r.json()["error"]["details"]["cutoff"] == "2026-03-03T07:00:00+08:00"

    # Nothing moved: the appointments stand, every seat is where it was, the gate agrees.
    assert {a.id: a.status for a in await Appointment.filter(resident_id=rid)} == {
        mine["id"]: "booked", wed["id"]: "booked"}
    assert await gate_and_seats(live, *watched) == before
    assert await OutboxEvent.filter(topic="appointment.cancelled").count() == 0


async def test_two_taps_with_two_keys_move_the_appointment_once(live: Live, hall: dict) -> None:
    _, headers = await verified_resident(live)
    tuesday = await slots(live, hall)
    old = (await book(live, headers, tuesday[0]["slot_id"])).json()
    answers = await asyncio.gather(*(move(live, headers, old["id"], tuesday[n]["slot_id"]) for n in (2, 3)))
    assert sorted(a.status_code for a in answers) == [201, 409]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"booking.not_reschedulable"}
    assert await Appointment.filter(status="booked").count() == 1
    ids = [tuesday[n]["slot_id"] for n in (0, 2, 3)]
    assert sorted(s.booked for s in await Slot.filter(id__in=ids)) == [0, 1, 1]  # old held (cool-down), one new
    assert [gate == left for gate, left in await gate_and_seats(live, *ids)] == [True, True, True]


# ---- the rush -----------------------------------------------------------------------------------


async def test_many_residents_moving_into_the_last_seat_get_it_once(live: Live, hall: dict) -> None:
    """Run on PostgreSQL as well (DATABASE_URL): the person lock, the conditional seat update and the gate."""
    tuesday = await slots(live, hall)
    last = tuesday[6]["slot_id"]  # 13:30
    for _ in range(9):
        assert (await book(live, (await verified_resident(live))[1], last)).status_code == 201
    movers: list[tuple[dict[str, str], dict[str, Any]]] = []
    for n in range(40):
        _, headers = await verified_resident(live)
        r = await book(live, headers, tuesday[n % 4]["slot_id"])
        assert r.status_code == 201, r.text
        movers.append((headers, r.json()))
    sources = [tuesday[n]["slot_id"] for n in range(4)]
    before = {s.id: s.booked for s in await Slot.filter(id__in=sources)}

    answers = await asyncio.gather(*(move(live, headers, a["id"], last) for headers, a in movers))
    assert sorted(a.status_code for a in answers) == [201] + [409] * 39
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"booking.slot_full"}
    winner = next(a.json() for a in answers if a.status_code == 201)
    assert (await Slot.get(id=last)).booked == 10
    assert await Appointment.filter(slot_id=last, status="booked").count() == 10
    # Only the winner's old appointment ended; every other mover keeps theirs, and every seat count holds.
    assert await Appointment.filter(status="cancelled").values_list("id", flat=True) == [winner["rescheduled_from"]]
    assert await Appointment.filter(slot_id__in=sources, status="booked").count() == 39
    assert {s.id: s.booked for s in await Slot.filter(id__in=sources)} == before  # the old seat cools down first
    assert [gate == left for gate, left in await gate_and_seats(live, last, *sources)] == [True] * 5
    assert await OutboxEvent.filter(topic="appointment.cancelled").count() == 1
