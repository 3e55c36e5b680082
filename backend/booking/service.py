"""Booking: availability, rush-proof appointments, rescheduling, cancellation with cool-down, no-shows, check-in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from redis.asyncio import Redis
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F

import backend.catalog.calendar as calendar
from backend import clock, db
from backend.audit import service as audit
from backend.booking.models import Appointment, AppointmentStatus, BookingBar, BookingRule, Slot
from backend.catalog import hours
from backend.catalog import service as catalog
from backend.catalog.hours import Span
from backend.catalog.models import Hall, ServiceItem
from backend.clock import SHANGHAI
from backend.errors import DomainError, register_codes
from backend.identity.personal import StoredIdentifier
from backend.jobs import outbox

register_codes({
    "booking.slot_full": (409, "该时段已约满，请选择其他时段"),
    "booking.slot_not_found": (404, "未找到该预约时段"),
    "booking.slot_unavailable": (422, "该时段不可预约"),
    "booking.too_late": (422, "距该时段开始时间过近，已不能预约"),
    "booking.beyond_horizon": (422, "该日期超出可预约范围"),
    "booking.hall_closed": (422, "服务大厅当天不办公"),
    "booking.slot_closed": (422, "服务大厅该时段不办公，请选择其他时段"),
    "booking.limit_reached": (409, "您的有效预约数已达上限"),
    "booking.duplicate_item_day": (409, "同一事项每天只能预约一次"),
    "booking.barred": (403, "因多次预约未到，您暂时不能预约"),
    "booking.idempotency_conflict": (422, "同一请求编号已用于另一项预约"),
    "booking.idempotency_key_missing": (400, "请求缺少 Idempotency-Key"),
    "booking.not_found": (404, "未找到该预约"),
    "booking.not_cancellable": (409, "该预约当前状态不能取消"),
    "booking.cancel_too_late": (409, "已过取消截止时间，不能取消"),
    "booking.not_bookable_item": (422, "该事项不支持在此大厅预约"),
    "booking.rule_not_found": (404, "该事项没有单独的预约规则，已按大厅默认规则预约"),
    "booking.not_reschedulable": (409, "该预约当前状态不能改约"),
    "booking.change_too_late": (409, "已过改约截止时间，不能改约"),
    "booking.same_slot": (422, "新时段与原预约时段相同"),
    "booking.other_item": (422, "改约只能改到同一事项的其他时段；办理其他事项请另行预约"),
})

GATE = "palmhall:booking:slot_left:"
IDEMPOTENT = "palmhall:booking:idem:"
IDEMPOTENT_TTL = 24 * 3600


@dataclass(frozen=True)
class Policy:
    """Process-wide booking settings (the per-hall rules are rows)."""

    no_show_grace_minutes: int = 30
    no_show_limit: int = 3
    no_show_window_days: int = 90
    no_show_bar_days: int = 30


DEFAULT_RULE = BookingRule()


async def rule_for(*, hall_id: int, item_id: int) -> BookingRule:
    """The item's own rule in this hall, else the hall's default, else the built-in default."""
    own = await BookingRule.filter(hall_id=hall_id, item_id=item_id).first()
    if own is not None:
        return own
    default = await BookingRule.filter(hall_id=hall_id, item_id=None).first()
    return default or DEFAULT_RULE


def local_day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


# ---- availability ---------------------------------------------------------------------------


async def _bookable_item(*, hall_id: int, item_code: str) -> tuple[Hall, ServiceItem]:
    hall = await Hall.get_or_none(id=hall_id, active=True)
    if hall is None:
        raise DomainError("catalog.hall_not_found")
    item = await ServiceItem.get_or_none(code=item_code, active=True)
    if item is None:
        raise DomainError("catalog.item_not_found", message="未找到该事项", status=404)
    if not await item.halls.filter(id=hall_id).exists():
        raise DomainError("booking.not_bookable_item")
    return hall, item


def _local_span(slot: Slot) -> tuple[time, time]:
    return slot.starts_at.astimezone(SHANGHAI).time(), slot.ends_at.astimezone(SHANGHAI).time()


def within(slot: Slot, periods: Sequence[tuple[time, time]]) -> bool:
    """Whether the slot lies wholly inside one of the day's opening periods (wall-clock)."""
    return hours.covers([Span(a, b) for a, b in periods], *_local_span(slot))


async def ensure_slots(*, hall_id: int, item_id: int, day: date, rule: BookingRule,
                       periods: Sequence[tuple[time, time]] | None = None) -> list[Slot]:
    """The item's slots of the day inside the hall's opening periods, made on first look from those periods and
    the rule; the unique key absorbs races.

    Slots keep their seats when hours or rules change later: a period (or the part of one) that no slot covers
    yet gets new slots, and slots left outside the periods by a closure or shorter hours are not offered (the
    change cancelled their appointments).
    """
    if periods is None:
        periods = await calendar.opening_hours(hall_id=hall_id, day=day)
    existing = list(await Slot.filter(hall_id=hall_id, item_id=item_id, day=day).order_by("starts_at"))
    step = timedelta(minutes=rule.slot_minutes)
    made = False
    for opens, closes in periods:
        start = datetime.combine(day, opens, tzinfo=SHANGHAI)
        end_of_session = datetime.combine(day, closes, tzinfo=SHANGHAI)
        while start + step <= end_of_session:
            if not any(s.starts_at < start + step and start < s.ends_at for s in existing):
                try:
                    await Slot.create(hall_id=hall_id, item_id=item_id, day=day, starts_at=start,
                                      ends_at=start + step, capacity=rule.seats_per_slot)
                    made = True
                except IntegrityError:
                    made = True
            start += step
    if made:
        existing = list(await Slot.filter(hall_id=hall_id, item_id=item_id, day=day).order_by("starts_at"))
    return [s for s in existing if within(s, periods)]


async def availability(*, hall_id: int, item_code: str, day: date) -> dict[str, Any]:
    hall, item = await _bookable_item(hall_id=hall_id, item_code=item_code)
    rule = await rule_for(hall_id=hall.id, item_id=item.id)
    now = clock.now()
    _check_horizon(day, rule, now)
    schedule = await calendar.day_schedule(hall_id=hall.id, day=day)
    answer: dict[str, Any] = {
        "hall_id": hall.id, "item": item.code, "date": day.isoformat(), "open": bool(schedule.periods),
        "periods": [{"opens": hours.hhmm(p.start), "closes": hours.hhmm(p.end)} for p in schedule.periods],
        # Why the day is shorter than usual, or closed (a closure, special hours, a holiday); None on a plain day.
        "notice": schedule.why_closed() if (schedule.closure or schedule.special or not schedule.periods) else None,
        "slots": [],
    }
    if not schedule.periods:
        return answer
    periods = [(p.start, p.end) for p in schedule.periods]
    slots = await ensure_slots(hall_id=hall.id, item_id=item.id, day=day, rule=rule, periods=periods)
    earliest = now + timedelta(minutes=rule.min_notice_minutes)
    answer["slots"] = [{
        "slot_id": s.id,
        "starts_at": s.starts_at.astimezone(SHANGHAI).isoformat(),
        "ends_at": s.ends_at.astimezone(SHANGHAI).isoformat(),
        "capacity": s.capacity,
        "seats_left": max(0, s.capacity - s.booked),
        "bookable": s.starts_at >= earliest and s.booked < s.capacity,
    } for s in slots]
    return answer


def _check_horizon(day: date, rule: BookingRule, now: datetime) -> None:
    today = local_day(now)
    if day < today or day > today + timedelta(days=rule.horizon_days):
        last = today + timedelta(days=rule.horizon_days)
        raise DomainError("booking.beyond_horizon", details={"from": today.isoformat(), "to": last.isoformat()})


# ---- the Redis gate -------------------------------------------------------------------------

# Take one seat if any is left; the key is rebuilt from the database when missing.
_TAKE = """
local left = redis.call('GET', KEYS[1])
if not left then return -2 end
if tonumber(left) <= 0 then return -1 end
return redis.call('DECR', KEYS[1])
"""


async def _gate_take(redis: Redis, slot_id: int) -> bool:
    key = f"{GATE}{slot_id}"
    for _ in range(3):
        result = int(await redis.eval(_TAKE, 1, key))
        if result != -2:
            return result >= 0
        # Missing: rebuilt from the database (a change of hours drops the gates of its day, maybe just now).
        await rebuild_gate(redis, slot_id)
    return True  # still missing: the database's seat count decides


async def rebuild_gate(redis: Redis, slot_id: int) -> None:
    slot = await Slot.get_or_none(id=slot_id)
    if slot is None:
        raise DomainError("booking.slot_not_found")
    # NX: when two requests rebuild at once, the first value stands.
    await redis.set(f"{GATE}{slot_id}", max(0, slot.capacity - slot.booked), nx=True, ex=7 * 24 * 3600)


async def _gate_give_back(redis: Redis, slot_id: int) -> None:
    key = f"{GATE}{slot_id}"
    if await redis.exists(key):
        await redis.incr(key)


# ---- booking --------------------------------------------------------------------------------


def request_fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def active_bar(*, person_hash: str) -> BookingBar | None:
    return await BookingBar.filter(person_hash=person_hash, ends_at__gt=clock.now()).order_by("-ends_at").first()


async def book(
    *, resident_id: int, person_hash: str, slot_id: int, idempotency_key: str, fingerprint: str, redis: Redis,
) -> tuple[Appointment, bool]:
    """Book a seat; returns (appointment, created). The same key and body give the same appointment."""
    idem_key = f"{IDEMPOTENT}{resident_id}:{idempotency_key}"
    known = await redis.get(idem_key)
    if known is not None:
        return await _replay(resident_id, idempotency_key, fingerprint), False
    appointment, created = await _through_gate(redis, slot_id, lambda: _book_in_db(
        resident_id=resident_id, person_hash=person_hash, slot_id=slot_id, idempotency_key=idempotency_key,
        fingerprint=fingerprint))
    await redis.set(idem_key, appointment.id, ex=IDEMPOTENT_TTL)
    return appointment, created


async def _through_gate(redis: Redis, slot_id: int,
                        attempt: Callable[[], Awaitable[tuple[Appointment, bool]]]) -> tuple[Appointment, bool]:
    """Take a seat at the Redis gate, then `attempt` the database's seat; the gate follows the outcome."""
    # A rush on a full slot ends here, without touching the database (a retry of a request that
    # succeeded was answered before from its Redis record).
    if not await _gate_take(redis, slot_id):
        raise DomainError("booking.slot_full")
    try:
        appointment, created = await attempt()
    except DomainError as exc:
        if exc.code == "booking.slot_full":
            # The database says full: the gate was stale (e.g. rebuilt late). Close it.
            await redis.set(f"{GATE}{slot_id}", 0, ex=7 * 24 * 3600)
        else:
            await _gate_give_back(redis, slot_id)
        raise
    except Exception:
        await _gate_give_back(redis, slot_id)
        raise
    if not created:
        await _gate_give_back(redis, slot_id)
    return appointment, created


async def _replay(resident_id: int, idempotency_key: str, fingerprint: str) -> Appointment:
    appointment = await Appointment.get_or_none(resident_id=resident_id, idempotency_key=idempotency_key)
    if appointment is None:
        raise DomainError("booking.not_found")
    if appointment.request_hash != fingerprint:
        raise DomainError("booking.idempotency_conflict")
    return appointment


async def _lock_person(tx: BaseDBAsyncClient, person_hash: str) -> None:
    if tx.capabilities.dialect == "postgres":
        # One person's bookings take turns, so limits hold under concurrency (SQLite has one writer).
        await tx.execute_query("SELECT pg_advisory_xact_lock(hashtext($1))", [f"booking:{person_hash}"])


async def _bookable_slot(slot: Slot, *, person_hash: str, now: datetime) -> BookingRule:
    """What a slot must be for this person to take a seat in it (book or reschedule); its rule."""
    rule = await rule_for(hall_id=slot.hall_id, item_id=slot.item_id)  # type: ignore[attr-defined]
    _check_horizon(slot.day, rule, now)
    if slot.starts_at < now + timedelta(minutes=rule.min_notice_minutes):
        raise DomainError("booking.too_late")
    bar = await active_bar(person_hash=person_hash)
    if bar is not None:
        raise DomainError("booking.barred", details={"reason": bar.reason, "until": bar.ends_at.isoformat()})
    return rule


async def _same_request(tx: BaseDBAsyncClient, resident_id: int, idempotency_key: str,
                        fingerprint: str) -> Appointment | None:
    """The appointment this Idempotency-Key already made (the same request again), else None."""
    existing = await Appointment.filter(resident_id=resident_id, idempotency_key=idempotency_key).using_db(tx).first()
    if existing is not None and existing.request_hash != fingerprint:
        raise DomainError("booking.idempotency_conflict")
    return existing


async def _take_seat(tx: BaseDBAsyncClient, slot: Slot, rule: BookingRule, *, person_hash: str,
                     now: datetime) -> None:
    """The hall open at the slot's time, the person's limits, then the seat (under the person's lock, in the
    caller's transaction): a booking and a reschedule alike."""
    # After a change of hours commits (and cancels what it leaves out), never before: see lock_hall_days.
    await lock_hall_days(tx, slot.hall_id, shared=True)  # type: ignore[attr-defined]
    periods = await calendar.opening_hours(hall_id=slot.hall_id, day=slot.day, using_db=tx)  # type: ignore[attr-defined]
    if not periods:
        raise DomainError("booking.hall_closed")
    if not within(slot, periods):
        raise DomainError("booking.slot_closed")
    active = Appointment.filter(person_hash=person_hash, status=AppointmentStatus.BOOKED).using_db(tx)
    if await active.filter(day=slot.day, item_id=slot.item_id).exists():  # type: ignore[attr-defined]
        raise DomainError("booking.duplicate_item_day")
    if await active.filter(slot__ends_at__gt=now).count() >= rule.max_active_per_person:
        raise DomainError("booking.limit_reached", details={"max_active": rule.max_active_per_person})
    # The seat itself: a conditional update that can never take the count past capacity.
    took = await Slot.filter(id=slot.id, booked__lt=F("capacity")).using_db(tx).update(booked=F("booked") + 1)
    if not took:
        raise DomainError("booking.slot_full")


async def _book_in_db(*, resident_id: int, person_hash: str, slot_id: int, idempotency_key: str,
                      fingerprint: str) -> tuple[Appointment, bool]:
    slot = await Slot.get_or_none(id=slot_id)
    if slot is None:
        raise DomainError("booking.slot_not_found")
    now = clock.now()
    rule = await _bookable_slot(slot, person_hash=person_hash, now=now)
    async with db.transaction() as tx:
        await _lock_person(tx, person_hash)
        existing = await _same_request(tx, resident_id, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
        await _take_seat(tx, slot, rule, person_hash=person_hash, now=now)
        try:
            appointment = await Appointment.create(
                resident_id=resident_id, person_hash=person_hash, hall_id=slot.hall_id,  # type: ignore[attr-defined]
                item_id=slot.item_id, slot_id=slot.id, day=slot.day,  # type: ignore[attr-defined]
                idempotency_key=idempotency_key, request_hash=fingerprint, using_db=tx,
            )
        except IntegrityError:
            raise DomainError("booking.idempotency_conflict", message="重复的预约请求，请稍后查看预约列表") from None
        item = await ServiceItem.get(id=slot.item_id).using_db(tx)  # type: ignore[attr-defined]
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id, action="appointment.booked",
                           target_kind="appointment", target_id=appointment.id,
                           details={"slot_id": slot.id, "item": item.code})
        await outbox.emit("appointment.booked", _event(appointment, slot, item.code), using_db=tx,
                          ordering_key=f"appointment:{appointment.id}")
    return appointment, True


def _event(appointment: Appointment, slot: Slot, item_code: str) -> dict[str, Any]:
    return {"appointment_id": appointment.id, "resident_id": appointment.resident_id,
            "hall_id": appointment.hall_id, "item_code": item_code,  # type: ignore[attr-defined]
            "starts_at": slot.starts_at.isoformat(), "ends_at": slot.ends_at.isoformat()}


async def lock_hall_days(tx: BaseDBAsyncClient, hall_id: int, *, shared: bool) -> None:
    """Bookings in a hall hold this lock shared, changes to the hall's hours and closures exclusively: a closure
    waits for the bookings in flight to commit (and then cancels them), and a booking that comes after it sees it.
    PostgreSQL; SQLite has one writer at a time anyway."""
    if tx.capabilities.dialect == "postgres":
        lock = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        await tx.execute_query(f"SELECT {lock}(hashtext($1))", [f"hall-days:{hall_id}"])


async def own_appointment(*, resident_id: int, appointment_id: int) -> Appointment:
    """Another resident's appointment is 'not found', never 'forbidden'."""
    appointment = await Appointment.get_or_none(id=appointment_id, resident_id=resident_id)
    if appointment is None:
        raise DomainError("booking.not_found")
    return appointment


def _card(appointment: Appointment, *, rescheduled_to: int | None) -> dict[str, Any]:
    """What every answer about an appointment shows; its slot, item and hall already loaded."""
    slot: Slot = appointment.slot
    return {
        "id": appointment.id, "status": appointment.status.value,
        "hall": {"id": appointment.hall.id, "name": appointment.hall.name},  # type: ignore[attr-defined]
        "item": {"code": appointment.item.code, "name": appointment.item.name},  # type: ignore[attr-defined]
        "starts_at": slot.starts_at.astimezone(SHANGHAI).isoformat(),
        "ends_at": slot.ends_at.astimezone(SHANGHAI).isoformat(),
        "created_at": appointment.created_at.isoformat(),
        "cancelled_at": appointment.cancelled_at.isoformat() if appointment.cancelled_at else None,
        # "resident" or "hall" (a closure or new hours), and the hall's reason.
        "cancelled_by": appointment.cancelled_by, "cancel_reason": appointment.cancel_reason,
        "checked_in_at": appointment.checked_in_at.isoformat() if appointment.checked_in_at else None,
        # A reschedule: the appointment this one replaced, and the one that replaced this (cancelled) one.
        "rescheduled_from": appointment.rescheduled_from_id,  # type: ignore[attr-defined]
        "rescheduled_to": rescheduled_to,
    }


async def describe(appointment: Appointment) -> dict[str, Any]:
    await appointment.fetch_related("slot", "item", "hall")
    moved: Any = await Appointment.filter(rescheduled_from_id=appointment.id).first().values_list("id", flat=True)
    return _card(appointment, rescheduled_to=int(moved) if moved is not None else None)


async def list_own(*, resident_id: int, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """One page of the resident's appointments, newest first, and how many there are: a fixed number of
    queries whatever the page holds."""
    query = Appointment.filter(resident_id=resident_id)
    total = await query.count()
    rows = await query.order_by("-created_at", "-id").offset(offset).limit(limit).select_related(
        "slot", "item", "hall")
    moved = dict(await Appointment.filter(rescheduled_from_id__in=[a.id for a in rows]).values_list(
        "rescheduled_from_id", "id")) if rows else {}
    return {"appointments": [_card(a, rescheduled_to=moved.get(a.id)) for a in rows], "total": total,
            "limit": limit, "offset": offset}


def _change_cutoff(slot: Slot, rule: BookingRule) -> datetime:
    """Until when an appointment may be cancelled or moved."""
    return slot.starts_at - timedelta(minutes=rule.cancel_cutoff_minutes)


async def own_detail(*, resident_id: int, appointment_id: int) -> dict[str, Any]:
    """One of the resident's appointments, with what they need to come: the check-in window, the hall's
    address, what to bring (the item's checklist), until when it may be changed."""
    appointment = await own_appointment(resident_id=resident_id, appointment_id=appointment_id)
    card = await describe(appointment)
    slot: Slot = appointment.slot
    hall: Hall = appointment.hall  # type: ignore[assignment]
    rule = await rule_for(hall_id=hall.id, item_id=slot.item_id)  # type: ignore[attr-defined]
    guide = await catalog.get_guide(code=appointment.item.code)  # type: ignore[attr-defined]
    card["hall"] = {"id": hall.id, "name": hall.name, "address": hall.address}
    card["checkin_window"] = {
        "from": (slot.starts_at - timedelta(minutes=rule.checkin_early_minutes)).astimezone(SHANGHAI).isoformat(),
        "to": (slot.starts_at + timedelta(minutes=rule.checkin_late_minutes)).astimezone(SHANGHAI).isoformat()}
    card["change_until"] = _change_cutoff(slot, rule).astimezone(SHANGHAI).isoformat()
    card["bring"] = [{key: m.get(key) for key in ("code", "name", "form", "form_label", "copies", "required",
                                                  "certificate_type", "note")} for m in guide["materials"]]
    return card


# ---- rescheduling ---------------------------------------------------------------------------


async def reschedule(
    *, resident_id: int, person_hash: str, appointment_id: int, slot_id: int, idempotency_key: str,
    fingerprint: str, redis: Redis,
) -> tuple[Appointment, bool]:
    """Move a booked appointment to another slot of the same item in one step; returns (new appointment,
    created), and the same key and body give the same new appointment.

    The new seat is taken and the old appointment given up in one transaction, under every limit a booking
    has (the new slot's notice, horizon, opening and the person's bar, one a day per item, active count) and
    the old one's cut-off for changes; the Redis gate guards the new seat as it guards a booking. The old
    seat goes back to others after the cool-down, like a cancelled one's, so a move cannot hand a seat over.
    """
    idem_key = f"{IDEMPOTENT}{resident_id}:{idempotency_key}"
    if await redis.get(idem_key) is not None:
        return await _replay(resident_id, idempotency_key, fingerprint), False
    old = await own_appointment(resident_id=resident_id, appointment_id=appointment_id)
    if old.status != AppointmentStatus.BOOKED:
        # A retry of the move that ended it is answered from the database when Redis lost its record.
        if old.status == AppointmentStatus.CANCELLED:
            again = await Appointment.filter(resident_id=resident_id, idempotency_key=idempotency_key,
                                             rescheduled_from_id=old.id).first()
            if again is not None:
                return await _replay(resident_id, idempotency_key, fingerprint), False
        raise DomainError("booking.not_reschedulable", details={"status": old.status.value})
    appointment, created = await _through_gate(redis, slot_id, lambda: _reschedule_in_db(
        resident_id=resident_id, person_hash=person_hash, old=old, slot_id=slot_id,
        idempotency_key=idempotency_key, fingerprint=fingerprint))
    await redis.set(idem_key, appointment.id, ex=IDEMPOTENT_TTL)
    return appointment, created


async def _reschedule_in_db(*, resident_id: int, person_hash: str, old: Appointment, slot_id: int,
                            idempotency_key: str, fingerprint: str) -> tuple[Appointment, bool]:
    slot = await Slot.get_or_none(id=slot_id)
    if slot is None:
        raise DomainError("booking.slot_not_found")
    if slot.id == old.slot_id:  # type: ignore[attr-defined]
        raise DomainError("booking.same_slot")
    if slot.item_id != old.item_id:  # type: ignore[attr-defined]
        raise DomainError("booking.other_item")
    old_slot = await Slot.get(id=old.slot_id)  # type: ignore[attr-defined]
    now = clock.now()
    cutoff = _change_cutoff(old_slot, await rule_for(hall_id=old_slot.hall_id,  # type: ignore[attr-defined]
                                                     item_id=old_slot.item_id))  # type: ignore[attr-defined]
    if now > cutoff:
        raise DomainError("booking.change_too_late", details={"cutoff": cutoff.astimezone(SHANGHAI).isoformat()})
    rule = await _bookable_slot(slot, person_hash=person_hash, now=now)
    async with db.transaction() as tx:
        await _lock_person(tx, person_hash)
        existing = await _same_request(tx, resident_id, idempotency_key, fingerprint)
        if existing is not None:
            return existing, False
        # Given up first, inside the transaction: the limits below count the person's other appointments.
        given_up = await Appointment.filter(id=old.id, status=AppointmentStatus.BOOKED).using_db(tx).update(
            status=AppointmentStatus.CANCELLED, cancelled_at=now)
        if not given_up:
            raise DomainError("booking.not_reschedulable")
        await _take_seat(tx, slot, rule, person_hash=person_hash, now=now)
        try:
            appointment = await Appointment.create(
                resident_id=resident_id, person_hash=person_hash, hall_id=slot.hall_id,  # type: ignore[attr-defined]
                item_id=slot.item_id, slot_id=slot.id, day=slot.day,  # type: ignore[attr-defined]
                idempotency_key=idempotency_key, request_hash=fingerprint, rescheduled_from_id=old.id, using_db=tx,
            )
        except IntegrityError:
            raise DomainError("booking.idempotency_conflict", message="重复的改约请求，请稍后查看预约列表") from None
        item = await ServiceItem.get(id=slot.item_id).using_db(tx)  # type: ignore[attr-defined]
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id,
                           action="appointment.rescheduled", target_kind="appointment", target_id=old.id,
                           details={"to": appointment.id, "from_slot_id": old_slot.id, "slot_id": slot.id})
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id, action="appointment.booked",
                           target_kind="appointment", target_id=appointment.id,
                           details={"slot_id": slot.id, "item": item.code, "rescheduled_from": old.id})
        # The old one ends as a cancellation and the new one starts as a booking, each linked to the other:
        # whoever follows appointments (the main hall, notifications) sees both.
        await outbox.emit("appointment.cancelled", {**_event(old, old_slot, item.code), "by": "resident",
                                                    "rescheduled_to": appointment.id},
                          using_db=tx, ordering_key=f"appointment:{old.id}")
        await outbox.emit("appointment.booked", {**_event(appointment, slot, item.code),
                                                 "rescheduled_from": old.id},
                          using_db=tx, ordering_key=f"appointment:{appointment.id}")
    return appointment, True


async def cancel(*, resident_id: int, appointment_id: int) -> Appointment:
    """Before the cut-off only; the seat is offered again after the cool-down (stops seat trading)."""
    appointment = await own_appointment(resident_id=resident_id, appointment_id=appointment_id)
    if appointment.status != AppointmentStatus.BOOKED:
        raise DomainError("booking.not_cancellable", details={"status": appointment.status.value})
    slot = await Slot.get(id=appointment.slot_id)  # type: ignore[attr-defined]
    rule = await rule_for(hall_id=slot.hall_id, item_id=slot.item_id)  # type: ignore[attr-defined]
    cutoff = slot.starts_at - timedelta(minutes=rule.cancel_cutoff_minutes)
    if clock.now() > cutoff:
        raise DomainError("booking.cancel_too_late", details={"cutoff": cutoff.astimezone(SHANGHAI).isoformat()})
    async with db.transaction() as tx:
        changed = await Appointment.filter(id=appointment.id, status=AppointmentStatus.BOOKED).using_db(tx).update(
            status=AppointmentStatus.CANCELLED, cancelled_at=clock.now(), cancelled_by="resident")
        if not changed:
            raise DomainError("booking.not_cancellable")
        item = await ServiceItem.get(id=slot.item_id).using_db(tx)  # type: ignore[attr-defined]
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id, action="appointment.cancelled",
                           target_kind="appointment", target_id=appointment.id)
        await outbox.emit("appointment.cancelled", {**_event(appointment, slot, item.code), "by": "resident"},
                          using_db=tx, ordering_key=f"appointment:{appointment.id}")
    await appointment.refresh_from_db()
    return appointment


async def release_cooled_down_seats(*, redis: Redis) -> int:
    """Give back the seats of cancellations whose cool-down has passed (a periodic task)."""
    released = 0
    for appointment in await Appointment.filter(status=AppointmentStatus.CANCELLED, seat_released=False):
        slot = await Slot.get(id=appointment.slot_id)  # type: ignore[attr-defined]
        rule = await rule_for(hall_id=slot.hall_id, item_id=slot.item_id)  # type: ignore[attr-defined]
        assert appointment.cancelled_at is not None
        if appointment.cancelled_at + timedelta(minutes=rule.release_cooldown_minutes) > clock.now():
            continue
        async with db.transaction() as tx:
            # Guarded by seat_released, so two workers never give the same seat back twice.
            mine = await Appointment.filter(id=appointment.id, seat_released=False).using_db(tx).update(
                seat_released=True)
            if not mine:
                continue
            await Slot.filter(id=slot.id, booked__gt=0).using_db(tx).update(booked=F("booked") - 1)
        await _gate_give_back(redis, slot.id)
        released += 1
    return released


async def mark_no_shows(*, policy: Policy) -> int:
    """Appointments not checked in by slot end plus grace; repeated no-shows bar the ID number."""
    now = clock.now()
    late = now - timedelta(minutes=policy.no_show_grace_minutes)
    marked = 0
    days: dict[tuple[int, date], calendar.DaySchedule | None] = {}
    for appointment in await Appointment.filter(status=AppointmentStatus.BOOKED,
                                                slot__ends_at__lt=late).prefetch_related("slot"):
        key = (appointment.hall_id, appointment.day)  # type: ignore[attr-defined]
        if key not in days:
            try:
                days[key] = await calendar.day_schedule(hall_id=key[0], day=key[1])
            except DomainError:
                days[key] = None  # a year nobody knows: no booking could be made in it
        schedule = days[key]
        if schedule is not None and not within(appointment.slot, [(p.start, p.end) for p in schedule.periods]):
            # The hall was closed then (a closure, new hours, a holiday loaded after the booking): the resident
            # could not have come, so it is the hall's cancellation, never a no-show.
            async with db.transaction() as tx:
                await cancel_by_hall(tx, appointment=appointment, slot=appointment.slot, reason=schedule.why_closed(),
                                     actor_kind="system", actor_id="no-show")
            continue
        async with db.transaction() as tx:
            changed = await Appointment.filter(id=appointment.id, status=AppointmentStatus.BOOKED).using_db(tx).update(
                status=AppointmentStatus.NO_SHOW, no_show_at=now)
            if not changed:
                continue
            marked += 1
            await audit.record(using_db=tx, actor_kind="system", actor_id="no-show", action="appointment.no_show",
                               target_kind="appointment", target_id=appointment.id)
            recent = await Appointment.filter(
                person_hash=appointment.person_hash, status=AppointmentStatus.NO_SHOW,
                no_show_at__gte=now - timedelta(days=policy.no_show_window_days)).using_db(tx).count()
            barred = await BookingBar.filter(person_hash=appointment.person_hash,
                                             ends_at__gt=now).using_db(tx).exists()
            bar = None
            if recent >= policy.no_show_limit and not barred:
                reason = f"{policy.no_show_window_days}天内预约未到{recent}次"
                bar = await BookingBar.create(person_hash=appointment.person_hash, reason=reason, starts_at=now,
                                              ends_at=now + timedelta(days=policy.no_show_bar_days), using_db=tx)
                await audit.record(using_db=tx, actor_kind="system", actor_id="no-show", action="booking.barred",
                                   target_kind="resident", target_id=appointment.resident_id,
                                   details={"reason": reason, "days": policy.no_show_bar_days})
            # The resident is told of the no-show, and of the bar it brought (whose end booking keeps).
            slot = await Slot.get(id=appointment.slot_id).using_db(tx)  # type: ignore[attr-defined]
            item = await ServiceItem.get(id=slot.item_id).using_db(tx)  # type: ignore[attr-defined]
            await outbox.emit("appointment.no_show", {
                **_event(appointment, slot, item.code), "no_shows": recent, "limit": policy.no_show_limit,
                "window_days": policy.no_show_window_days, "bar_id": bar.id if bar else None,
            }, using_db=tx, ordering_key=f"appointment:{appointment.id}")
    return marked


async def emit_reminders() -> int:
    """`appointment.reminder_due` once for each appointment of tomorrow (Asia/Shanghai)."""
    tomorrow = local_day(clock.now()) + timedelta(days=1)
    sent = 0
    for appointment in await Appointment.filter(status=AppointmentStatus.BOOKED, day=tomorrow, reminded=False):
        async with db.transaction() as tx:
            if not await Appointment.filter(id=appointment.id, reminded=False).using_db(tx).update(reminded=True):
                continue
            slot = await Slot.get(id=appointment.slot_id).using_db(tx)  # type: ignore[attr-defined]
            item = await ServiceItem.get(id=slot.item_id).using_db(tx)  # type: ignore[attr-defined]
            await outbox.emit("appointment.reminder_due", _event(appointment, slot, item.code), using_db=tx,
                              ordering_key=f"appointment:{appointment.id}")
            sent += 1
    return sent


async def booking_status(*, person_hash: str | None) -> dict[str, Any]:
    bar = await active_bar(person_hash=person_hash) if person_hash else None
    return {"barred": bar is not None,
            "bar": {"reason": bar.reason, "until": bar.ends_at.astimezone(SHANGHAI).isoformat()} if bar else None}


RULE_FIELDS = ("slot_minutes", "seats_per_slot", "horizon_days", "min_notice_minutes", "cancel_cutoff_minutes",
               "max_active_per_person", "release_cooldown_minutes", "checkin_early_minutes",
               "checkin_late_minutes", "walkin_daily_quota")


def describe_rule(rule: BookingRule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in RULE_FIELDS}


async def set_rule(*, hall_id: int, item_code: str | None, values: dict[str, int],
                   staff_id: int | None, operator: str = "cli") -> dict[str, Any]:
    """Change the hall's default rule or one item's, field by field: fields not given keep their values, and an
    item's own rule starts from the hall's default. Slots already made keep their seats. Audited when anything
    changes (staff_id None: the operator, `cli` or `demo`)."""
    item_id = None
    if item_code is not None:
        _, item = await _bookable_item(hall_id=hall_id, item_code=item_code)
        item_id, item_code = item.id, item.code
    unknown = set(values) - set(RULE_FIELDS)
    if unknown:
        raise ValueError(f"not rule fields: {sorted(unknown)}")
    if not values:
        # Nothing to change: the rule as it applies, and no row made for it.
        current = await rule_for(hall_id=hall_id, item_id=item_id) if item_id is not None else (
            await BookingRule.filter(hall_id=hall_id, item_id=None).first() or DEFAULT_RULE)
        return {"hall_id": hall_id, "item": item_code, **describe_rule(current)}
    async with db.transaction() as tx:
        rule = await BookingRule.filter(hall_id=hall_id, item_id=item_id).using_db(tx).select_for_update().first()
        before = describe_rule(rule) if rule else None
        if rule is None:
            base = None
            if item_id is not None:
                base = await BookingRule.filter(hall_id=hall_id, item_id=None).using_db(tx).first()
            rule = await BookingRule.create(hall_id=hall_id, item_id=item_id,
                                            **{**describe_rule(base or DEFAULT_RULE), **values}, using_db=tx)
        elif any(getattr(rule, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(rule, name, value)
            await rule.save(using_db=tx, update_fields=list(values))
        after = describe_rule(rule)
        if after != before:
            await audit.record(using_db=tx, actor_kind="staff" if staff_id is not None else "operator",
                               actor_id=staff_id if staff_id is not None else operator, action="booking.rule_set",
                               target_kind="hall", target_id=hall_id,
                               details={"item": item_code, "given": values, "before": before, "after": after})
    return {"hall_id": hall_id, "item": item_code, **after}


async def reset_rule(*, hall_id: int, item_code: str, staff_id: int | None, operator: str = "cli") -> dict[str, Any]:
    """Drop an item's own rule: the item books by the hall's default again. Audited."""
    _, item = await _bookable_item(hall_id=hall_id, item_code=item_code)
    async with db.transaction() as tx:
        rule = await BookingRule.filter(hall_id=hall_id, item_id=item.id).using_db(tx).first()
        if rule is None:
            raise DomainError("booking.rule_not_found")
        await BookingRule.filter(id=rule.id).using_db(tx).delete()
        await audit.record(using_db=tx, actor_kind="staff" if staff_id is not None else "operator",
                           actor_id=staff_id if staff_id is not None else operator, action="booking.rule_reset",
                           target_kind="hall", target_id=hall_id,
                           details={"item": item.code, "before": describe_rule(rule)})
    return await rules(hall_id=hall_id)


async def rules(*, hall_id: int) -> dict[str, Any]:
    """The hall's booking rules as they apply: its default (its own row, or the built-in one) and, for each item
    it offers, the rule that item books by and whether it is the item's own."""
    hall = await Hall.get_or_none(id=hall_id)
    if hall is None:
        raise DomainError("catalog.hall_not_found")
    rows = await BookingRule.filter(hall_id=hall_id)
    default = next((r for r in rows if r.item_id is None), None)  # type: ignore[attr-defined]
    own = {r.item_id: r for r in rows if r.item_id is not None}  # type: ignore[attr-defined]
    items = await ServiceItem.filter(halls__id=hall_id).order_by("code")
    return {
        "hall_id": hall_id,
        "default": {**describe_rule(default or DEFAULT_RULE), "own": default is not None},
        "items": [{"item": i.code, "name": i.name, "own": i.id in own,
                   **describe_rule(own.get(i.id) or default or DEFAULT_RULE)} for i in items],
    }


async def cancel_by_hall(tx: BaseDBAsyncClient, *, appointment: Appointment, slot: Slot, reason: str,
                         actor_kind: str, actor_id: str | int | None) -> bool:
    """The hall cancels a booked appointment it cannot serve (closed, or new hours leave its slot out), in the
    caller's transaction: the seat is free at once (no cool-down: nobody is trading it), the resident is told
    (`appointment.cancelled` with "by": "hall" and the reason), and it can never become a no-show. False when it
    was no longer booked (cancelled already, or checked in): closing twice cancels once.

    The Redis gate of the slot is the caller's to drop after the commit (`forget_gates`)."""
    changed = await Appointment.filter(id=appointment.id, status=AppointmentStatus.BOOKED).using_db(tx).update(
        status=AppointmentStatus.CANCELLED, cancelled_at=clock.now(), cancelled_by="hall",
        cancel_reason=reason[:200], seat_released=True)
    if not changed:
        return False
    await Slot.filter(id=slot.id, booked__gt=0).using_db(tx).update(booked=F("booked") - 1)
    item = await ServiceItem.get(id=slot.item_id).using_db(tx)  # type: ignore[attr-defined]
    await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="appointment.cancelled",
                       target_kind="appointment", target_id=appointment.id, details={"by": "hall", "reason": reason})
    await outbox.emit("appointment.cancelled", {**_event(appointment, slot, item.code), "by": "hall", "reason": reason},
                      using_db=tx, ordering_key=f"appointment:{appointment.id}")
    return True


async def forget_gates(redis: Redis, slot_ids: Iterable[int]) -> None:
    """Drop the Redis gates of these slots: the next booking rebuilds each from the database's seat count."""
    keys = [f"{GATE}{slot_id}" for slot_id in set(slot_ids)]
    if keys:
        await redis.delete(*keys)


STATUS_LABELS = {
    AppointmentStatus.BOOKED: "已预约，待签到",
    AppointmentStatus.CHECKED_IN: "已签到",
    AppointmentStatus.CANCELLED: "已取消",
    AppointmentStatus.NO_SHOW: "未按时签到（爽约）",
    AppointmentStatus.COMPLETED: "已办理",
}


def checkin_window(*, starts_at: datetime, rule: BookingRule) -> tuple[datetime, datetime]:
    """When an appointment may be checked in: from `checkin_early_minutes` before its slot starts to
    `checkin_late_minutes` after. Check-in enforces it and the appointment's QR page tells it."""
    return (starts_at - timedelta(minutes=rule.checkin_early_minutes),
            starts_at + timedelta(minutes=rule.checkin_late_minutes))


async def public_progress(*, appointment_id: int) -> dict[str, Any]:
    """What the appointment's QR shows anyone who scans it: no personal data at all."""
    from backend.booking.models import QueueTicket

    appointment = await Appointment.get_or_none(id=appointment_id)
    if appointment is None:
        raise DomainError("qr.invalid")
    card = await describe(appointment)
    ticket = await QueueTicket.filter(appointment_id=appointment.id).first()
    slot: Slot = appointment.slot
    rule = await rule_for(hall_id=slot.hall_id, item_id=slot.item_id)  # type: ignore[attr-defined]
    opens, closes = checkin_window(starts_at=slot.starts_at, rule=rule)
    return {"kind": "appointment", "status": card["status"],
            "status_label": STATUS_LABELS.get(appointment.status, appointment.status.value), "item": card["item"],
            "hall": {**card["hall"], "address": appointment.hall.address},  # type: ignore[attr-defined]
            "starts_at": card["starts_at"], "ends_at": card["ends_at"],
            "checkin": {"opens_at": opens.astimezone(SHANGHAI).isoformat(),
                        "closes_at": closes.astimezone(SHANGHAI).isoformat()},
            "ticket": ticket.code if ticket else None}


async def bar_summary(*, bar_id: int) -> dict[str, Any] | None:
    """A booking bar's reason and span, for other packages (the notice of the bar shows its end)."""
    row = await BookingBar.filter(id=bar_id).first().values("reason", "starts_at", "ends_at")
    if not row:
        return None
    return {"reason": row["reason"], "starts_at": row["starts_at"], "ends_at": row["ends_at"]}


async def appointment_parties(*, appointment_id: int) -> dict[str, int] | None:
    """Ids only, for other packages: whose appointment it is, for which item and hall."""
    row = await Appointment.filter(id=appointment_id).first().values("resident_id", "item_id", "hall_id")
    if not row:
        return None
    return {"resident_id": int(row["resident_id"]), "item_id": int(row["item_id"]), "hall_id": int(row["hall_id"])}


async def stored_person_hashes(*, batch: int = 1000) -> AsyncIterator[StoredIdentifier]:
    """The keyed ID-number hash of every appointment and booking bar (for `identity check-ids`): these rows
    keep no number, so a hash taken from a number not in its normal form can only be matched."""
    for model, table in ((Appointment, "appointment"), (BookingBar, "booking_bar")):
        last = 0
        while True:
            rows = await model.filter(id__gt=last).order_by("id").limit(batch).values_list("id", "person_hash")
            if not rows:
                break
            for row_id, person_hash in rows:
                last = row_id
                yield StoredIdentifier(table=table, row_id=row_id, field="person_hash", kind="id_number", value=None,
                                       hash=person_hash)
