"""Case figures of a hall over Asia/Shanghai days: states, deadline levels, satisfaction, materials not asked again.

Read-only queries for the hall dashboard; callers check who may see them. The definitions match the
counter's own statistics (GET /stats/materials, GET /evaluations) so the figures agree everywhere.
"""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from backend.cases import deadlines
from backend.cases.evaluation import SATISFIED_LEVELS
from backend.cases.models import Case, CaseMaterial, CaseStatus, Evaluation, MaterialSource, WarningLevel
from backend.cases.schemas import LEVEL_LABELS
from backend.cases.service import STATUS_LABELS, period_bounds

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


async def hall_figures(*, hall_id: int, start: date, end: date, on: date) -> dict[str, Any]:
    return {**await case_figures(hall_id=hall_id, start=start, end=end, on=on),
            **await satisfaction(hall_id=hall_id, start=start, end=end),
            **await materials_avoided(hall_id=hall_id, start=start, end=end)}


def state_label(status: str) -> str:
    return STATUS_LABELS[CaseStatus(status)]


def level_label(level: str) -> str:
    return LEVEL_NAMES[WarningLevel(level)]


def rating_label(level: str) -> str:
    return str(LEVEL_LABELS[int(level)])
