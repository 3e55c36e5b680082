"""好差评: ratings after completion, rectification of bad ones, complaints and questions with reply limits."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

from tortoise.expressions import Q
from tortoise.models import Model

from backend import clock, db
from backend.audit import service as audit
from backend.cases import deadlines, events, service
from backend.cases.models import (
    Case,
    Complaint,
    ComplaintKind,
    Evaluation,
    Rectification,
    TicketState,
    WarningLevel,
)
from backend.cases.schemas import LEVEL_LABELS, LEVELS, ComplaintIn, EvaluationIn
from backend.cases.statemachine import COMPLETED
from backend.catalog import service as catalog
from backend.errors import DomainError, register_codes
from backend.identity.models import StaffRole
from backend.identity.service import StaffPrincipal
from backend.jobs import outbox

register_codes({
    "evaluation.not_completed": (409, "办件办结后才能评价"),
    "evaluation.already_given": (409, "该办件已评价，每个办件只能评价一次"),
    "rectification.not_found": (404, "未找到该整改单"),
    "rectification.closed": (409, "该整改单已办结"),
    "complaint.not_found": (404, "未找到该投诉或咨询"),
    "complaint.answered": (409, "该投诉或咨询已答复"),
})

RECTIFICATION_DAYS = 15
BAD_LEVELS = (1, 2)  # 不满意, 非常不满意
SATISFIED_LEVELS = (3, 4, 5)  # 基本满意 and better count as satisfied


async def _due(start: date, days: int) -> tuple[date, date | None, bool]:
    """(due day, the day 80% is used, provisional) for a reply owed in `days` working days."""
    due = await deadlines.due_date(start, days, [])
    yellow_days = math.ceil(days * deadlines.YELLOW_SHARE)
    yellow = await deadlines.due_date(start, yellow_days, []) if 0 < yellow_days < days else None
    return due.day, (yellow.day if yellow else None), due.provisional or bool(yellow and yellow.provisional)


# ---- ratings --------------------------------------------------------------------------------


async def evaluate(*, resident_id: int, case_no: str, payload: EvaluationIn) -> dict[str, Any]:
    """Rate a completed case once. A bad rating opens a rectification for the hall admin."""
    level = LEVELS[payload.level]
    async with db.transaction() as tx:
        case = await service.owned_case(resident_id, case_no, tx)
        if case.status not in COMPLETED:
            raise DomainError("evaluation.not_completed", details={"status": case.status.value})
        if await Evaluation.filter(case_id=case.id).using_db(tx).exists():
            raise DomainError("evaluation.already_given")
        now = clock.now()
        ev = await Evaluation.create(case_id=case.id, resident_id=resident_id, hall_id=case.hall_id,  # type: ignore[attr-defined]
                                     item_id=case.item_id, counter_id=case.counter_id,  # type: ignore[attr-defined]
                                     level=level, comment=payload.comment, created_at=now, using_db=tx)
        rect = None
        if level in BAD_LEVELS:
            due, yellow, provisional = await _due(deadlines.local_day(now), RECTIFICATION_DAYS)
            rect = await Rectification.create(evaluation_id=ev.id, hall_id=case.hall_id,  # type: ignore[attr-defined]
                                              limit_days=RECTIFICATION_DAYS, due_on=due, yellow_on=yellow,
                                              due_provisional=provisional, created_at=now, using_db=tx)
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id, action="evaluation.received",
                           target_kind="case", target_id=case.case_no,
                           details={"level": level, "rectification_id": rect.id if rect else None})
        await outbox.emit(events.EVALUATION_RECEIVED, {
            "evaluation_id": ev.id, "case_id": case.id, "case_no": case.case_no,
            "hall_id": case.hall_id, "level": level,  # type: ignore[attr-defined]
            "rectification_id": rect.id if rect else None,
        }, using_db=tx, ordering_key=events.ordering_key(case.case_no))
    return await for_case(case_id=case.id) or {}


async def for_case(*, case_id: int) -> dict[str, Any] | None:
    """A case's rating and, for a bad one, the rectification and its written response."""
    ev = await Evaluation.get_or_none(case_id=case_id)
    if ev is None:
        return None
    rect = await Rectification.get_or_none(evaluation_id=ev.id)
    return {
        "level": ev.level, "level_label": LEVEL_LABELS[ev.level], "comment": ev.comment,
        "created_at": ev.created_at.isoformat(),
        "rectification": None if rect is None else {
            "id": rect.id, "state": rect.state.value, "due_on": rect.due_on.isoformat(),
            "response": rect.response or None, "closed_at": rect.closed_at.isoformat() if rect.closed_at else None,
        },
    }


async def close_rectification(*, rectification_id: int, staff: StaffPrincipal, response: str) -> dict[str, Any]:
    """The hall admin closes a rectification with a written response the resident reads."""
    async with db.transaction() as tx:
        rect = await Rectification.filter(id=rectification_id).using_db(tx).select_for_update().first()
        if rect is None:
            raise DomainError("rectification.not_found")
        staff.require(rect.hall_id, StaffRole.HALL_ADMIN)
        if rect.state == TicketState.CLOSED:
            raise DomainError("rectification.closed")
        rect.state, rect.response, rect.closed_by, rect.closed_at = TicketState.CLOSED, response, staff.id, clock.now()
        await rect.save(using_db=tx, update_fields=["state", "response", "closed_by", "closed_at"])
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff.id, action="rectification.closed",
                           target_kind="rectification", target_id=rect.id, details={"hall_id": rect.hall_id})
        ev = await Evaluation.get(id=rect.evaluation_id).using_db(tx)  # type: ignore[attr-defined]
        case = await Case.get(id=ev.case_id).using_db(tx)  # type: ignore[attr-defined]
        case_no = case.case_no
        # The resident who rated hears the response (好差评: every bad rating's rectification is fed back).
        # No ordering key: the notice need not wait behind the case's pushes to the main hall.
        await outbox.emit(events.RECTIFICATION_CLOSED, {
            "rectification_id": rect.id, "evaluation_id": ev.id, "case_id": ev.case_id,
            "case_no": case_no, "hall_id": rect.hall_id,
        }, using_db=tx)
    return {"id": rect.id, "state": rect.state.value, "response": rect.response,
            "closed_at": rect.closed_at.isoformat() if rect.closed_at else None}


async def rectifications(*, staff: StaffPrincipal, hall_id: int, state: TicketState | None) -> list[dict[str, Any]]:
    staff.require(hall_id, StaffRole.HALL_ADMIN, StaffRole.AUDITOR)
    q = Rectification.filter(hall_id=hall_id)
    if state is not None:
        q = q.filter(state=state)
    out = []
    for r in await q.order_by("due_on", "id").prefetch_related("evaluation"):
        ev: Evaluation = r.evaluation
        out.append({"id": r.id, "state": r.state.value, "due_on": r.due_on.isoformat(),
                    "warning_level": r.warning_level.value, "level": ev.level, "level_label": LEVEL_LABELS[ev.level],
                    "comment": ev.comment, "response": r.response or None})
    return out


async def stats(*, staff: StaffPrincipal, hall_id: int, start: date, end: date) -> dict[str, Any]:
    """Counts per level and satisfaction rate, by hall, item and counter, for a period (Shanghai days)."""
    staff.require(hall_id, StaffRole.HALL_ADMIN, StaffRole.AUDITOR)
    lo, hi = service.period_bounds(start, end)
    rows = await Evaluation.filter(hall_id=hall_id, created_at__gte=lo, created_at__lt=hi).values(
        "level", "item_id", "counter_id", "case__item__code", "case__item__name")

    def block() -> dict[str, Any]:
        return {"total": 0, "levels": {label: 0 for label in LEVEL_LABELS.values()}, "satisfied": 0}

    hall = block()
    items: dict[str, dict[str, Any]] = {}
    counters: dict[int | None, dict[str, Any]] = {}
    for r in rows:
        targets = [hall,
                   items.setdefault(r["case__item__code"], {"item_code": r["case__item__code"],
                                                            "item_name": r["case__item__name"], **block()}),
                   counters.setdefault(r["counter_id"], {"counter_id": r["counter_id"], **block()})]
        for t in targets:
            t["total"] += 1
            t["levels"][LEVEL_LABELS[r["level"]]] += 1
            t["satisfied"] += r["level"] in SATISFIED_LEVELS

    def rate(t: dict[str, Any]) -> dict[str, Any]:
        return {**t, "satisfaction_rate": round(t["satisfied"] / t["total"], 4) if t["total"] else None}

    return {"hall_id": hall_id, "from": start.isoformat(), "to": end.isoformat(), "hall": rate(hall),
            "items": [rate(v) for _, v in sorted(items.items())],
            "counters": [rate(v) for _, v in sorted(counters.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))]}


# ---- complaints and questions ---------------------------------------------------------------


async def complain(*, resident_id: int, payload: ComplaintIn, reply_days: int) -> dict[str, Any]:
    hall = await catalog.get_hall(hall_id=payload.hall_id)
    async with db.transaction() as tx:
        case_id = None
        if payload.case_no:
            case_id = (await service.owned_case(resident_id, payload.case_no, tx)).id
        now = clock.now()
        due, yellow, provisional = await _due(deadlines.local_day(now), reply_days)
        c = await Complaint.create(resident_id=resident_id, kind=ComplaintKind(payload.kind), hall_id=hall.id,
                                   case_id=case_id, content=payload.content, limit_days=reply_days,
                                   due_on=due, yellow_on=yellow,
                                   due_provisional=provisional, created_at=now, using_db=tx)
        await audit.record(using_db=tx, actor_kind="resident", actor_id=resident_id, action="complaint.received",
                           target_kind="complaint", target_id=c.id, details={"kind": payload.kind,
                                                                              "hall_id": hall.id})
    return _complaint_out(c)


def _complaint_out(c: Complaint) -> dict[str, Any]:
    return {"id": c.id, "kind": c.kind.value, "hall_id": c.hall_id, "content": c.content, "state": c.state.value,
            "due_on": c.due_on.isoformat(), "warning_level": c.warning_level.value, "answer": c.answer or None,
            "answered_at": c.answered_at.isoformat() if c.answered_at else None,
            "created_at": c.created_at.isoformat()}


async def own_complaints(*, resident_id: int, limit: int = 20, offset: int = 0) -> dict[str, Any]:
    """One page of the resident's complaints and questions, newest first, and how many there are."""
    query = Complaint.filter(resident_id=resident_id)
    rows = await query.order_by("-id").offset(offset).limit(limit)
    return {"complaints": [_complaint_out(c) for c in rows], "total": await query.count(), "limit": limit,
            "offset": offset}


async def hall_complaints(*, staff: StaffPrincipal, hall_id: int, state: TicketState | None,
                          warning: WarningLevel | None) -> list[dict[str, Any]]:
    staff.require(hall_id, StaffRole.CLERK, StaffRole.HALL_ADMIN, StaffRole.AUDITOR)
    q = Complaint.filter(hall_id=hall_id)
    if state is not None:
        q = q.filter(state=state)
    if warning is not None:
        q = q.filter(warning_level=warning)
    return [_complaint_out(c) for c in await q.order_by("due_on", "id")]


async def answer_complaint(*, complaint_id: int, staff: StaffPrincipal, answer: str) -> dict[str, Any]:
    async with db.transaction() as tx:
        c = await Complaint.filter(id=complaint_id).using_db(tx).select_for_update().first()
        if c is None:
            raise DomainError("complaint.not_found")
        staff.require(c.hall_id, StaffRole.CLERK, StaffRole.HALL_ADMIN)
        if c.state == TicketState.CLOSED:
            raise DomainError("complaint.answered")
        c.state, c.answer, c.answered_by, c.answered_at = TicketState.CLOSED, answer, staff.id, clock.now()
        await c.save(using_db=tx, update_fields=["state", "answer", "answered_by", "answered_at"])
        await audit.record(using_db=tx, actor_kind="staff", actor_id=staff.id, action="complaint.answered",
                           target_kind="complaint", target_id=c.id, details={"hall_id": c.hall_id})
        await outbox.emit(events.COMPLAINT_ANSWERED, {"complaint_id": c.id, "hall_id": c.hall_id,
                                                      "kind": c.kind.value}, using_db=tx)
    return _complaint_out(c)


async def complaint_reply(*, complaint_id: int) -> dict[str, Any] | None:
    """Who asked, where, when, and the hall's answer: for the resident's notice that it was answered."""
    c = await Complaint.get_or_none(id=complaint_id)
    if c is None:
        return None
    return {"resident_id": c.resident_id, "kind": c.kind.value, "hall_id": c.hall_id, "case_id": c.case_id,
            "created_at": c.created_at, "answer": c.answer, "answered_at": c.answered_at}


async def rectification_reply(*, rectification_id: int) -> dict[str, Any] | None:
    """Who rated which case, and the hall's written response: for the rater's notice of the rectification."""
    rect = await Rectification.get_or_none(id=rectification_id).prefetch_related("evaluation")
    if rect is None:
        return None
    ev: Evaluation = rect.evaluation
    return {"resident_id": ev.resident_id, "case_id": ev.case_id, "hall_id": rect.hall_id,  # type: ignore[attr-defined]
            "item_id": ev.item_id, "level": ev.level, "response": rect.response, "closed_at": rect.closed_at}


# ---- warnings on replies owed (the periodic task) -------------------------------------------


def _level(due_on: date, yellow_on: date | None, on: date) -> WarningLevel:
    if on > due_on:
        return WarningLevel.RED
    if yellow_on is not None and on >= yellow_on:
        return WarningLevel.YELLOW
    return WarningLevel.NONE


_ORDER = [WarningLevel.NONE, WarningLevel.YELLOW, WarningLevel.RED]


async def _warn(model: type[Complaint] | type[Rectification], topic: str, on: date) -> list[tuple[int, str]]:
    sent: list[tuple[int, str]] = []
    model_q: Any = model
    candidates = await model_q.filter(
        Q(warning_level=WarningLevel.NONE, yellow_on__lte=on) | Q(due_on__lt=on),
        state=TicketState.OPEN,
    ).exclude(warning_level=WarningLevel.RED)
    for row in candidates:
        level = _level(row.due_on, row.yellow_on, on)
        if _ORDER.index(level) <= _ORDER.index(row.warning_level):
            continue
        async with db.transaction() as tx:
            moved = await model_q.filter(id=row.id, warning_level=row.warning_level).using_db(tx).update(
                warning_level=level)
            if not moved:
                continue  # another worker warned first
            # Each level once: a row that jumped straight to red gets both, in order.
            for lvl in _ORDER[_ORDER.index(row.warning_level) + 1:_ORDER.index(level) + 1]:
                await outbox.emit(topic, {"id": row.id, "hall_id": row.hall_id, "level": lvl.value,
                                          "due_on": row.due_on.isoformat()}, using_db=tx)
                sent.append((row.id, lvl.value))
    return sent


async def warn_replies(*, on: date | None = None) -> dict[str, list[tuple[int, str]]]:
    on = on or deadlines.today()
    return {"complaints": await _warn(Complaint, events.COMPLAINT_DEADLINE_WARNING, on),
            "rectifications": await _warn(Rectification, events.RECTIFICATION_DEADLINE_WARNING, on)}


async def recompute_provisional() -> int:
    """Replies owed into a year the calendar did not know yet get their final due dates."""
    n = 0
    model: type[Model]
    for model in (Complaint, Rectification):
        rows: list[Any] = await model.filter(due_provisional=True, state=TicketState.OPEN)
        for row in rows:
            due, yellow, provisional = await _due(deadlines.local_day(row.created_at), row.limit_days)
            await model.filter(id=row.id).update(due_on=due, yellow_on=yellow, due_provisional=provisional)
            n += 1
    return n
