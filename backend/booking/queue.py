"""The hall queue: check-in gives a ticket, walk-ins take one, clerks call, boards watch (pub/sub)."""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.functions import Max

from backend import clock, db
from backend.audit import service as audit
from backend.booking.models import Appointment, AppointmentStatus, QueueTicket, Slot, TicketStatus
from backend.booking.service import checkin_window, local_day, rule_for
from backend.catalog import calendar, hours
from backend.catalog.models import Counter, Hall, ServiceItem
from backend.clock import SHANGHAI
from backend.errors import DomainError, register_codes
from backend.jobs import outbox

register_codes({
    "booking.checkin_window": (422, "不在签到时间内，请在预约时段前后规定时间内签到"),
    "booking.checkin_wrong_hall": (422, "该预约不属于本服务大厅"),
    "booking.not_checkable": (409, "该预约当前状态不能签到"),
    "queue.quota_reached": (409, "今日现场取号已满，请改日或网上预约"),
    "queue.hall_closed": (422, "大厅今天不办公，不能取号"),
    "queue.before_hours": (422, "大厅尚未开始办公，请在办公时间内取号"),
    "queue.break_time": (422, "现在是休息时间，请在下一办公时段取号"),
    "queue.after_hours": (422, "今天的办公时间已结束，请在办公时间内取号或网上预约"),
    "queue.no_such_group": (422, "没有该业务类别"),
    "queue.counter_not_found": (404, "未找到该窗口"),
    "queue.empty": (404, "当前没有等候的号码"),
    "queue.nothing_called": (409, "该窗口当前没有已叫的号码"),
})

CHANNEL = "palmhall:queue:"
MAX_CALLS = 3


async def _next_number(tx: BaseDBAsyncClient, *, hall_id: int, day: Any, group: str) -> int:
    if tx.capabilities.dialect == "postgres":
        # Numbers of one group on one day are handed out in turn.
        await tx.execute_query("SELECT pg_advisory_xact_lock(hashtext($1))", [f"ticket:{hall_id}:{day}:{group}"])
    row = await (QueueTicket.filter(hall_id=hall_id, day=day, group=group).using_db(tx)
                 .annotate(top=Max("number")).first().values("top"))
    return int((row or {}).get("top") or 0) + 1


async def _issue(tx: BaseDBAsyncClient, *, hall_id: int, group: str, item_id: int | None,
                 appointment_id: int | None, priority: int, issued_by: str) -> QueueTicket:
    day = local_day(clock.now())
    number = await _next_number(tx, hall_id=hall_id, day=day, group=group)
    return await QueueTicket.create(
        hall_id=hall_id, day=day, group=group, number=number, code=f"{group}{number:03d}", item_id=item_id,
        appointment_id=appointment_id, priority=priority, issued_by=issued_by, using_db=tx,
    )


def describe_ticket(t: QueueTicket, *, ahead: int | None = None) -> dict[str, Any]:
    return {"id": t.id, "code": t.code, "group": t.group, "status": t.status.value, "hall_id": t.hall_id,  # type: ignore[attr-defined]
            "issued_at": t.created_at.astimezone(SHANGHAI).isoformat(), "waiting_ahead": ahead,
            "appointment_id": t.appointment_id}  # type: ignore[attr-defined]


async def _ahead(t: QueueTicket) -> int:
    return await QueueTicket.filter(hall_id=t.hall_id, day=t.day, group=t.group, status=TicketStatus.WAITING,  # type: ignore[attr-defined]
                                    priority__lte=t.priority, id__lt=t.id).count()


async def check_in(*, appointment_id: int, hall_id: int, actor: str, redis: Redis) -> dict[str, Any]:
    """Scan on the day, within the window around the slot: the visitor gets a priority ticket."""
    appointment = await Appointment.get_or_none(id=appointment_id)
    if appointment is None:
        raise DomainError("booking.not_found")
    if appointment.hall_id != hall_id:  # type: ignore[attr-defined]
        raise DomainError("booking.checkin_wrong_hall")
    if appointment.status == AppointmentStatus.CHECKED_IN:
        ticket = await QueueTicket.filter(appointment_id=appointment.id).first()
        if ticket is not None:
            return {"appointment_id": appointment.id, "ticket": describe_ticket(ticket, ahead=await _ahead(ticket)),
                    "already": True}
    if appointment.status != AppointmentStatus.BOOKED:
        raise DomainError("booking.not_checkable", details={"status": appointment.status.value})
    slot = await Slot.get(id=appointment.slot_id)  # type: ignore[attr-defined]
    rule = await rule_for(hall_id=slot.hall_id, item_id=slot.item_id)  # type: ignore[attr-defined]
    now = clock.now()
    opens, closes = checkin_window(starts_at=slot.starts_at, rule=rule)
    if not opens <= now <= closes:
        raise DomainError("booking.checkin_window", details={
            "from": opens.astimezone(SHANGHAI).isoformat(), "to": closes.astimezone(SHANGHAI).isoformat()})
    item = await ServiceItem.get(id=slot.item_id)  # type: ignore[attr-defined]
    async with db.transaction() as tx:
        changed = await Appointment.filter(id=appointment.id, status=AppointmentStatus.BOOKED).using_db(tx).update(
            status=AppointmentStatus.CHECKED_IN, checked_in_at=now)
        if not changed:
            raise DomainError("booking.not_checkable")
        ticket = await _issue(tx, hall_id=hall_id, group=item.queue_group, item_id=item.id,
                              appointment_id=appointment.id, priority=0, issued_by=actor)
        await audit.record(using_db=tx, actor_kind=actor.split(":", 1)[0], actor_id=actor.split(":", 1)[-1],
                           action="appointment.checked_in", target_kind="appointment", target_id=appointment.id,
                           details={"ticket": ticket.code})
        await outbox.emit("appointment.checked_in", {"appointment_id": appointment.id, "hall_id": hall_id,
                                                     "ticket": ticket.code, "resident_id": appointment.resident_id},
                          using_db=tx, ordering_key=f"appointment:{appointment.id}")
    await publish(redis, hall_id)
    return {"appointment_id": appointment.id, "ticket": describe_ticket(ticket, ahead=await _ahead(ticket)),
            "already": False}


async def _open_now(hall_id: int) -> None:
    """A walk-in ticket is taken while the hall serves: refused, saying why and when it opens, on a closed day,
    before opening, in a break (lunch, or a part of the day closed) and after hours."""
    now = clock.now().astimezone(SHANGHAI)
    try:
        schedule = await calendar.day_schedule(hall_id=hall_id, day=now.date())
    except DomainError as exc:
        if exc.code != "calendar.year_unknown":
            raise
        raise DomainError("queue.hall_closed", message="今年的节假日安排尚未发布，大厅暂不能现场取号") from None
    state, period = hours.where(list(schedule.periods), now.time().replace(tzinfo=None))
    today_hours = "、".join(p.text() for p in schedule.periods)
    details = {"periods": [{"opens": hours.hhmm(p.start), "closes": hours.hhmm(p.end)} for p in schedule.periods],
               "reason": schedule.why_closed() if state == "closed" or schedule.closure or schedule.special else None}
    if state == "open":
        return
    if state == "closed":
        raise DomainError("queue.hall_closed", message=f"大厅今天不办公（{schedule.why_closed()}），不能取号",
                          details=details)
    if state == "after" or period is None:
        why = f"{schedule.why_closed()}，" if schedule.closure or schedule.special else ""
        raise DomainError("queue.after_hours", details=details,
                          message=f"今天的办公时间（{today_hours}）已结束，{why}请明天再来或网上预约")
    opens = hours.hhmm(period.start)
    if state == "before":
        raise DomainError("queue.before_hours", details=details,
                          message=f"大厅尚未开始办公，今天{opens}起可以取号（办公时间：{today_hours}）")
    raise DomainError("queue.break_time", details=details,
                      message=f"现在是休息时间，{opens}起可以取号（今天办公时间：{today_hours}）")


async def walk_in(*, hall_id: int, group: str, actor: str, redis: Redis, check_hours: bool = True) -> dict[str, Any]:
    """A ticket without an appointment, while the hall serves (see `_open_now`) and within its daily quota.

    `check_hours=False` is for the demo alone, which makes today's queue whatever time `make run` runs at; kiosks
    and counters never skip the check."""
    if check_hours:
        await _open_now(hall_id)
    groups = set(await ServiceItem.filter(halls__id=hall_id, active=True).values_list("queue_group", flat=True))
    if group not in groups:
        raise DomainError("queue.no_such_group", details={"groups": sorted(str(g) for g in groups)})
    hall_rule = await rule_for(hall_id=hall_id, item_id=0)
    async with db.transaction() as tx:
        today = local_day(clock.now())
        issued = await QueueTicket.filter(hall_id=hall_id, day=today, appointment_id=None).using_db(tx).count()
        if issued >= hall_rule.walkin_daily_quota:
            raise DomainError("queue.quota_reached")
        ticket = await _issue(tx, hall_id=hall_id, group=group, item_id=None, appointment_id=None, priority=1,
                              issued_by=actor)
        await audit.record(using_db=tx, actor_kind=actor.split(":", 1)[0], actor_id=actor.split(":", 1)[-1],
                           action="ticket.issued", target_kind="ticket", target_id=ticket.id,
                           details={"code": ticket.code})
    await publish(redis, hall_id)
    return describe_ticket(ticket, ahead=await _ahead(ticket))


async def counter_of(*, counter_id: int) -> Counter:
    counter = await Counter.get_or_none(id=counter_id, active=True)
    if counter is None:
        raise DomainError("queue.counter_not_found")
    return counter


async def _current(counter: Counter, tx: BaseDBAsyncClient | None = None) -> QueueTicket | None:
    today = local_day(clock.now())
    return await QueueTicket.filter(counter_id=counter.id, day=today, status=TicketStatus.CALLED).using_db(tx).first()


async def call_next(*, counter_id: int, staff_id: int, redis: Redis) -> dict[str, Any]:
    """Finish this counter's current ticket and call the next: appointments before walk-ins, then FIFO."""
    counter = await counter_of(counter_id=counter_id)
    today = local_day(clock.now())
    async with db.transaction() as tx:
        current = await _current(counter, tx)
        if current is not None:
            await QueueTicket.filter(id=current.id).using_db(tx).update(status=TicketStatus.DONE,
                                                                        finished_at=clock.now())
        waiting = QueueTicket.filter(hall_id=counter.hall_id, day=today, status=TicketStatus.WAITING,  # type: ignore[attr-defined]
                                     group__in=list(counter.groups)).order_by("priority", "id").using_db(tx)
        if tx.capabilities.dialect == "postgres":
            # Two counters calling at once never get the same ticket.
            waiting = waiting.select_for_update(skip_locked=True)
        ticket = await waiting.first()
        if ticket is None:
            raise DomainError("queue.empty")
        await QueueTicket.filter(id=ticket.id).using_db(tx).update(
            status=TicketStatus.CALLED, counter_id=counter.id, call_count=1, called_at=clock.now())
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff_id, action="ticket.called",
                           target_kind="ticket", target_id=ticket.id,
                           details={"code": ticket.code, "counter": counter.number})
        await outbox.emit("ticket.called", {"ticket_id": ticket.id, "code": ticket.code, "hall_id": counter.hall_id,  # type: ignore[attr-defined]
                                            "counter": counter.number, "appointment_id": ticket.appointment_id},  # type: ignore[attr-defined]
                          using_db=tx)
    await ticket.refresh_from_db()
    await publish(redis, counter.hall_id, announce={"code": ticket.code, "counter": counter.number})  # type: ignore[attr-defined]
    return {"ticket": describe_ticket(ticket), "counter": counter.number}


async def recall(*, counter_id: int, staff_id: int, redis: Redis) -> dict[str, Any]:
    """Call the current ticket again; at the third call without showing it becomes missed."""
    counter = await counter_of(counter_id=counter_id)
    async with db.transaction() as tx:
        current = await _current(counter, tx)
        if current is None:
            raise DomainError("queue.nothing_called")
        if current.call_count >= MAX_CALLS:
            status = TicketStatus.MISSED
            await QueueTicket.filter(id=current.id).using_db(tx).update(status=status, finished_at=clock.now())
        else:
            status = TicketStatus.CALLED
            await QueueTicket.filter(id=current.id).using_db(tx).update(call_count=current.call_count + 1)
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff_id,
                           action="ticket.missed" if status == TicketStatus.MISSED else "ticket.recalled",
                           target_kind="ticket", target_id=current.id, details={"code": current.code})
    await current.refresh_from_db()
    announce = {"code": current.code, "counter": counter.number} if status == TicketStatus.CALLED else None
    await publish(redis, counter.hall_id, announce=announce)  # type: ignore[attr-defined]
    return {"ticket": describe_ticket(current), "counter": counter.number, "calls": current.call_count}


async def mark_missed(*, counter_id: int, staff_id: int, redis: Redis) -> dict[str, Any]:
    counter = await counter_of(counter_id=counter_id)
    async with db.transaction() as tx:
        current = await _current(counter, tx)
        if current is None:
            raise DomainError("queue.nothing_called")
        await QueueTicket.filter(id=current.id).using_db(tx).update(status=TicketStatus.MISSED,
                                                                    finished_at=clock.now())
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff_id, action="ticket.missed",
                           target_kind="ticket", target_id=current.id, details={"code": current.code})
    await current.refresh_from_db()
    await publish(redis, counter.hall_id)  # type: ignore[attr-defined]
    return {"ticket": describe_ticket(current), "counter": counter.number}


async def snapshot(*, hall_id: int) -> dict[str, Any]:
    """What a display board shows: now calling, recently called, waiting per group."""
    hall = await Hall.get_or_none(id=hall_id)
    if hall is None:
        raise DomainError("catalog.hall_not_found")
    today = local_day(clock.now())
    tickets = await QueueTicket.filter(hall_id=hall_id, day=today).prefetch_related("counter")
    waiting: dict[str, int] = {}
    called = []
    for t in tickets:
        if t.status == TicketStatus.WAITING:
            waiting[t.group] = waiting.get(t.group, 0) + 1
        elif t.called_at is not None and t.counter is not None:
            called.append(t)
    called.sort(key=lambda t: t.called_at, reverse=True)  # type: ignore[arg-type,return-value]
    calling = [{"code": t.code, "counter": t.counter.number, "calls": t.call_count}  # type: ignore[union-attr]
               for t in called if t.status == TicketStatus.CALLED]
    recent = [{"code": t.code, "counter": t.counter.number, "status": t.status.value}  # type: ignore[union-attr]
              for t in called[:10]]
    return {"hall_id": hall_id, "hall": hall.name, "date": today.isoformat(), "calling": calling,
            "recent": recent, "waiting": dict(sorted(waiting.items())), "at": clock.now().isoformat()}


async def publish(redis: Redis, hall_id: int, *, announce: dict[str, Any] | None = None) -> None:
    state = await snapshot(hall_id=hall_id)
    if announce:
        state["announce"] = announce
    await redis.publish(f"{CHANNEL}{hall_id}", json.dumps(state, ensure_ascii=False))
