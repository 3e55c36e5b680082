"""The hall dashboard's figures for the hall's own admins: today and a chosen period, with SVG charts."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend.booking import stats as booking_stats
from backend.bounds import Day, Input
from backend.cases import deadlines
from backend.cases import stats as case_stats
from backend.catalog import service as catalog
from backend.counter import charts
from backend.counter.auth import staff
from backend.errors import DomainError, register_codes
from backend.http import parse
from backend.identity.models import StaffRole

bp = Blueprint("staff_dashboard")

register_codes({"dashboard.forbidden": (403, "只有本大厅的管理员可以查看运行看板")})

DEFAULT_DAYS = 30
DAILY_UP_TO = 62  # longer periods are charted by month


def _year_after(day: date) -> date:
    """The same date a year later (29 February goes to 1 March): a period must end before it."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return date(day.year + 1, 3, 1)


class DashboardQuery(Input):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    start: Day | None = Field(default=None, alias="from")
    end: Day | None = Field(default=None, alias="to")

    @field_validator("end")
    @classmethod
    def _period(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start")
        if end is not None and start is not None:
            if end < start:
                raise ValueError("结束日期不能早于开始日期")
            if end >= _year_after(start):
                raise ValueError("统计期间不能超过一年")
        return end


def _period(q: DashboardQuery, today: date) -> tuple[date, date]:
    span = timedelta(days=DEFAULT_DAYS - 1)
    if q.start is not None:
        return q.start, q.end or q.start + span
    end = q.end or today
    return end - span, end


def _daily_chart(hall_name: str, daily: list[dict[str, Any]], start: date, end: date) -> str:
    by_day = {d["day"]: d for d in daily}
    keys = ("appointments", "checked_in", "no_shows")
    buckets: dict[str, list[int]] = {}
    day = start
    monthly = (end - start).days + 1 > DAILY_UP_TO
    while day <= end:
        label = f"{day.year}-{day.month:02d}" if monthly else f"{day.month}/{day.day}"
        row = by_day.get(day.isoformat(), {})
        totals = buckets.setdefault(label, [0, 0, 0])
        for i, k in enumerate(keys):
            totals[i] += int(row.get(k, 0))
        day += timedelta(days=1)
    labels = list(buckets)
    return charts.bar_chart(
        key="chart-daily", title=f"{hall_name} {'每月' if monthly else '每日'}预约、签到与爽约", categories=labels,
        series=[(name, [buckets[label][i] for label in labels]) for i, name in enumerate(("预约", "签到", "爽约"))])


def _charts(hall_name: str, period: dict[str, Any], now: dict[str, Any], start: date, end: date) -> dict[str, str]:
    return {
        "daily": _daily_chart(hall_name, period["daily"], start, end),
        "states": charts.hbar_chart(key="chart-states", title="本期间办件状态分布", rows=[
            (case_stats.state_label(s), n, "s0") for s, n in period["by_state"].items()]),
        "levels": charts.hbar_chart(key="chart-levels", title="在办件时限预警（当前）", rows=[
            (case_stats.level_label(lv), n, f"lv-{lv}") for lv, n in now["by_level"].items()],
            empty="当前没有计时中的办件"),
        "ratings": charts.hbar_chart(key="chart-ratings", title="本期间好差评分布", rows=[
            (case_stats.rating_label(lv), n, "s0") for lv, n in period["levels"].items()],
            empty="本期间没有评价"),
        # 一次性告知: notices sent again after an answered one, where they happen and who sends them.
        "notice_items": charts.hbar_chart(key="chart-notice-items", title="本期间再次告知（按事项）", rows=[
            (i["item_name"], i["repeats"], "s0") for i in period["notices_by_item"] if i["repeats"]],
            empty="本期间没有再次告知"),
        "notice_clerks": charts.hbar_chart(key="chart-notice-clerks", title="本期间再次告知（按工作人员）", rows=[
            (c["name"], c["repeats"], "s0") for c in period["notices_by_clerk"] if c["repeats"]],
            empty="本期间没有再次告知"),
    }


async def hall_dashboard(*, hall_id: int, start: date, end: date, today: date) -> dict[str, Any]:
    """Today's and the period's figures of one hall, the deadline levels of its running cases, and charts."""
    hall = await catalog.get_hall(hall_id=hall_id)

    async def figures(lo: date, hi: date) -> dict[str, Any]:
        return {**await booking_stats.hall_figures(hall_id=hall_id, start=lo, end=hi),
                **await case_stats.hall_figures(hall_id=hall_id, start=lo, end=hi, on=today)}

    period = await figures(start, end)
    now = await case_stats.open_levels(hall_id=hall_id, on=today)
    return {
        "hall": {"id": hall.id, "name": hall.name},
        "today": {"date": today.isoformat(), **await figures(today, today)},
        "period": {"from": start.isoformat(), "to": end.isoformat(), "days": (end - start).days + 1, **period},
        "now": now,
        "labels": {"states": {s: case_stats.state_label(s) for s in period["by_state"]},
                   "levels": {lv: case_stats.level_label(lv) for lv in now["by_level"]}},
        "charts": _charts(hall.name, period, now, start, end),
    }


@bp.get("/halls/<hall_id:int32>/dashboard")
@openapi.summary("Hall dashboard: appointments, check-ins, no-shows, waits, cases, satisfaction, materials, "
                 "repeat correction notices per item and per clerk")
@openapi.description("Own hall's admins only. Days are Asia/Shanghai; the period is at most one year and "
                     "defaults to the last 30 days. Charts are SVG documents, all text escaped.")
@openapi.tag("counter")
@openapi.secured("staff")
@openapi.parameter("from", str, "query", description="YYYY-MM-DD")
@openapi.parameter("to", str, "query", description="YYYY-MM-DD")
async def dashboard(request: Request, hall_id: int) -> HTTPResponse:
    q = parse(DashboardQuery, {k: request.args.get(k) for k in request.args})
    if hall_id not in staff(request).halls_with(StaffRole.HALL_ADMIN):
        raise DomainError("dashboard.forbidden", details={"hall_id": hall_id, "needs": [StaffRole.HALL_ADMIN.value]})
    today = deadlines.today()
    start, end = _period(q, today)
    return json(await hall_dashboard(hall_id=hall_id, start=start, end=end, today=today), ensure_ascii=False)
