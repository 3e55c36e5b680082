"""Case figures of a hall over Asia/Shanghai days: states, deadline levels, satisfaction, materials not asked again,
correction notices and the repeat ones (再次告知) per item and per clerk.

Read-only queries for the hall dashboard; callers check who may see them. The definitions match the
counter's own statistics (GET /stats/materials, GET /evaluations) so the figures agree everywhere.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from backend.cases import deadlines
from backend.cases.evaluation import SATISFIED_LEVELS
from backend.cases.models import (
    Case,
    CaseMaterial,
    CaseStatus,
    CorrectionNotice,
    CorrectionRequest,
    Evaluation,
    MaterialSource,
    NoticeRequestState,
    WarningLevel,
)
from backend.cases.schemas import LEVEL_LABELS
from backend.cases.service import STATUS_LABELS, period_bounds
from backend.identity import service as identity

LEVELS = (WarningLevel.NONE, WarningLevel.YELLOW, WarningLevel.RED)
LEVEL_NAMES = {WarningLevel.NONE: "正常", WarningLevel.YELLOW: "黄色预警", WarningLevel.RED: "红色超期"}
AVOIDED = frozenset({MaterialSource.REUSE.value, MaterialSource.CERTIFICATE.value})


def _levels(cases: list[Case], on: date) -> dict[str, int]:
    counts = Counter(deadlines.level_on(c, on) for c in cases)
    return {level.value: counts[level] for level in LEVELS}


async def case_figures(*, hall_id: int, start: date, end: date, on: date) -> dict[str, Any]:
    """Cases submitted in [start, end] by their state now, and those whose clock runs by their level on `on`."""
    lo, hi = period_bounds(start, end)
    cases = await Case.filter(hall_id=hall_id, submitted_at__gte=lo, submitted_at__lt=hi).only(
        "id", "status", "promised_due", "yellow_on")
    states = Counter(c.status for c in cases)
    running = [c for c in cases if c.status in deadlines.RUNNING]
    return {
        "submitted": len(cases),
        "by_state": {s.value: states[s] for s in CaseStatus if states[s]},
        "running": len(running),
        "by_level": _levels(running, on),
    }


async def open_levels(*, hall_id: int, on: date) -> dict[str, Any]:
    """Every case of the hall whose clock runs now, whenever it was submitted, by its level on `on`."""
    running = await Case.filter(hall_id=hall_id, status__in=list(deadlines.RUNNING)).only(
        "id", "status", "promised_due", "yellow_on")
    return {"running": len(running), "by_level": _levels(running, on)}


async def satisfaction(*, hall_id: int, start: date, end: date) -> dict[str, Any]:
    """Ratings given in [start, end]: counts per level and the share 基本满意 or better."""
    lo, hi = period_bounds(start, end)
    levels = await Evaluation.filter(hall_id=hall_id, created_at__gte=lo, created_at__lt=hi).values_list(
        "level", flat=True)
    counts = Counter(int(v) for v in levels)  # type: ignore[call-overload]
    satisfied = sum(counts[v] for v in SATISFIED_LEVELS)
    return {"evaluations": len(levels), "satisfied": satisfied,
            "satisfaction_rate": round(satisfied / len(levels), 4) if levels else None,
            "levels": {str(v): counts[v] for v in sorted(LEVEL_LABELS, reverse=True)}}


async def materials_avoided(*, hall_id: int, start: date, end: date) -> dict[str, Any]:
    """Required materials of cases submitted in [start, end]: met by reuse or an e-certificate versus fresh."""
    lo, hi = period_bounds(start, end)
    sources = await CaseMaterial.filter(case__hall_id=hall_id, case__submitted_at__gte=lo,
                                        case__submitted_at__lt=hi, required=True,
                                        superseded=False).values_list("source", flat=True)
    avoided = len([s for s in sources if str(s) in AVOIDED])
    return {"materials_required": len(sources), "materials_avoided": avoided,
            "materials_avoided_rate": round(avoided / len(sources), 4) if sources else None}


def _clerk_id(label: str) -> int | None:
    """The staff id of `staff:<id>`; None for the automatic pre-review and the main hall."""
    kind, _, who = label.partition(":")
    return int(who) if kind == "staff" and who.isdigit() else None


async def notices(*, hall_id: int, start: date, end: date) -> dict[str, Any]:
    """Correction notices issued in [start, end] and how many were repeats (再次告知, sent after an answered notice),
    per item and per clerk who wrote them, with the clerks' requests for repeats refused or still waiting."""
    lo, hi = period_bounds(start, end)
    rows = await CorrectionNotice.filter(case__hall_id=hall_id, created_at__gte=lo, created_at__lt=hi).values(
        "repeat", "created_by", "case__item__code", "case__item__name")
    asked = await CorrectionRequest.filter(hall_id=hall_id, requested_at__gte=lo, requested_at__lt=hi).values(
        "state", "requested_by")
    by_item: dict[str, dict[str, Any]] = {}
    by_clerk: dict[int, dict[str, Any]] = {}

    def clerk(staff_id: int) -> dict[str, Any]:
        return by_clerk.setdefault(staff_id, {"staff_id": staff_id, "notices": 0, "repeats": 0, "refused": 0,
                                              "pending": 0})

    for r in rows:
        item = by_item.setdefault(r["case__item__code"], {"item_code": r["case__item__code"],
                                                          "item_name": r["case__item__name"], "notices": 0,
                                                          "repeats": 0})
        item["notices"] += 1
        item["repeats"] += int(bool(r["repeat"]))
        staff_id = _clerk_id(str(r["created_by"]))
        if staff_id is not None:
            clerk(staff_id)["notices"] += 1
            clerk(staff_id)["repeats"] += int(bool(r["repeat"]))
    for a in asked:
        state = NoticeRequestState(a["state"])
        if state != NoticeRequestState.APPROVED:
            clerk(int(a["requested_by"]))[state.value] += 1
    names = await identity.staff_names(staff_ids=set(by_clerk)) if by_clerk else {}
    clerks = [{**c, "name": names.get(c["staff_id"], f"工作人员{c['staff_id']}")} for c in by_clerk.values()]
    return {
        "notices": len(rows), "repeat_notices": sum(1 for r in rows if r["repeat"]),
        "repeat_requests_refused": sum(1 for a in asked if a["state"] == NoticeRequestState.REFUSED.value),
        "repeat_requests_pending": sum(1 for a in asked if a["state"] == NoticeRequestState.PENDING.value),
        "notices_by_item": sorted(by_item.values(), key=lambda e: (-e["repeats"], -e["notices"], e["item_code"])),
        "notices_by_clerk": sorted(clerks, key=lambda e: (-e["repeats"], -e["notices"], e["staff_id"])),
    }


async def hall_figures(*, hall_id: int, start: date, end: date, on: date) -> dict[str, Any]:
    return {**await case_figures(hall_id=hall_id, start=start, end=end, on=on),
            **await satisfaction(hall_id=hall_id, start=start, end=end),
            **await materials_avoided(hall_id=hall_id, start=start, end=end),
            **await notices(hall_id=hall_id, start=start, end=end)}


def state_label(status: str) -> str:
    return STATUS_LABELS[CaseStatus(status)]


def level_label(level: str) -> str:
    return LEVEL_NAMES[WarningLevel(level)]


def rating_label(level: str) -> str:
    return str(LEVEL_LABELS[int(level)])
