"""Time limits in working days: the arithmetic (hypothesis), pauses over the Spring Festival, warnings, recompute."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import chinese_calendar
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import db
from backend.cases import deadlines, handlers
from backend.cases import service as cases
from backend.cases.models import Case, CaseStatus, WarningLevel
from backend.cases.schemas import CorrectionIn, TransitionIn
from backend.cases.statemachine import STAFF, Actor, transition
from backend.identity import service as identity
from backend.jobs.models import OutboxEvent
from backend.jobs.outbox import Event
from backend.jobs.periodic import schedule
from tests.cases_support import (
    SIMPLE,
    ZHANG,
    World,
    application,
    build_world,
    resident,
    upload_id,
)
from tests.conftest import Live, Platforms


def workday(d: date) -> bool:
    return bool(chinese_calendar.is_workday(d))


def oracle(start: date, days: int, pauses: list[tuple[date, date]]) -> date:
    """Walk day by day: a working day counts unless a pause (P, R] holds it."""
    d, n = start, 0
    while n < days:
        d += timedelta(days=1)
        if workday(d) and not any(p < d <= r for p, r in pauses):
            n += 1
    return d


# 2026 is fully known to chinese-calendar; the Spring Festival (15–23 February, make-up days 14 and
# 28 February) sits inside the range on purpose.
starts = st.dates(min_value=date(2026, 1, 5), max_value=date(2026, 9, 30))


@st.composite
def pause_lists(draw: st.DrawFn, start: date) -> list[tuple[date, date]]:
    pauses = []
    cursor = start
    for _ in range(draw(st.integers(0, 3))):
        p = cursor + timedelta(days=draw(st.integers(0, 12)))
        r = p + timedelta(days=draw(st.integers(0, 15)))
        pauses.append((p, r))
        cursor = r
    return pauses


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), start=starts, days=st.integers(0, 30))
async def test_due_date_matches_a_day_by_day_count(orm: str, data: st.DataObject, start: date, days: int) -> None:
    pauses = data.draw(pause_lists(start))
    due = await deadlines.due_date(start, days, pauses)
    assert due.day == oracle(start, days, pauses)
    assert not due.provisional
    if days:
        assert workday(due.day)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accepted=st.dates(min_value=date(2026, 2, 2), max_value=date(2026, 2, 13)),
       pause_after=st.integers(0, 3), answered=st.dates(min_value=date(2026, 2, 16), max_value=date(2026, 3, 6)),
       promised=st.integers(1, 12))
async def test_a_correction_pause_over_the_spring_festival(orm: str, accepted: date, pause_after: int,
                                                           answered: date, promised: int) -> None:
    """The state machine's clock: accepted, correction requested, answered after the holiday."""
    paused = accepted + timedelta(days=pause_after)
    case = Case(accepted_on=None, promised_days=promised, statutory_days=promised + 5, pauses=[],
                status=CaseStatus.ACCEPTED)
    await deadlines.apply(case, CaseStatus.SUBMITTED, CaseStatus.ACCEPTED, accepted)
    assert case.promised_due == oracle(accepted, promised, [])
    await deadlines.apply(case, CaseStatus.ACCEPTED, CaseStatus.NEEDS_CORRECTION, paused)
    assert case.paused_since == paused
    await deadlines.apply(case, CaseStatus.NEEDS_CORRECTION, CaseStatus.ACCEPTED, answered)
    assert case.paused_since is None and case.pauses == [[paused.isoformat(), answered.isoformat()]]
    expected = oracle(accepted, promised, [(paused, answered)])
    assert case.promised_due == expected
    assert case.statutory_due == oracle(accepted, promised + 5, [(paused, answered)])
    # Elapsed days never count the pause: on the due day exactly the promised days are used.
    if paused < oracle(accepted, promised, []):
        assert await deadlines.elapsed(case, expected) == promised


async def test_elapsed_stops_while_paused(orm: str) -> None:
    case = Case(accepted_on=None, promised_days=5, statutory_days=10, pauses=[], status=CaseStatus.ACCEPTED)
    await deadlines.apply(case, CaseStatus.SUBMITTED, CaseStatus.ACCEPTED, date(2026, 2, 10))  # Tuesday
    await deadlines.apply(case, CaseStatus.ACCEPTED, CaseStatus.AWAITING_PAYMENT, date(2026, 2, 12))
    # Wed 11 and Thu 12 are used; the holiday and the wait do not count.
    assert await deadlines.elapsed(case, date(2026, 2, 27)) == 2
    await deadlines.apply(case, CaseStatus.AWAITING_PAYMENT, CaseStatus.IN_REVIEW, date(2026, 2, 26))
    assert await deadlines.elapsed(case, date(2026, 2, 27)) == 3
    # 2 used before the pause, 3 more after it: 27 Feb, 28 Feb (a make-up Saturday), 2 Mar.
    assert case.promised_due == date(2026, 3, 2)


# ---- through the service, with the clock frozen ---------------------------------------------


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


async def principal(username: str) -> Any:
    from backend.identity.models import Staff

    staff = await Staff.get(username=username)
    return await identity.staff_principal(staff_id=staff.id, version=staff.token_version)


async def test_a_case_due_when_paused_turns_red_once_on_resuming(live: Live, platforms: Platforms,
                                                                frozen_clock: Any) -> None:
    frozen_clock.set(datetime(2026, 2, 10, 2, 0, tzinfo=UTC))  # Tuesday 10:00 in Shanghai
    world: World = await build_world(live)
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    case_no = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))).json()["case_no"]
    clerk = await principal("hx.clerk")
    links = {"keyring": live.app.ctx.keyring, "secret": "s" * 40, "base_url": "http://x"}
    await cases.act(case_no=case_no, payload=TransitionIn(action="accept"), staff=clerk, **links)
    row = await Case.get(case_no=case_no)
    # SIMPLE promises 2 working days: yellow when 2 are used (80% rounds up), red after the due day.
    assert (row.accepted_on, row.yellow_on, row.promised_due) == (date(2026, 2, 10), None, date(2026, 2, 12))
    # A correction on Thursday 12th, answered after the Spring Festival on Wednesday 25th.
    frozen_clock.set(datetime(2026, 2, 12, 2, 0, tzinfo=UTC))
    await cases.act(case_no=case_no, payload=TransitionIn(action="request_correction",
                                                          items=[{"code": "FORM", "reason": "未签字"}]),
                    staff=clerk, **links)
    assert await cases.warn_deadlines(on=date(2026, 2, 24)) == []  # paused: no warnings
    frozen_clock.set(datetime(2026, 2, 25, 2, 0, tzinfo=UTC))
    fresh = await upload_id_for(live, platforms, me)
    await cases.answer_correction(resident_id=row.resident_id or 0, case_no=case_no,
                                  payload=CorrectionIn.model_validate(
                                      {"materials": [{"code": "FORM", "upload_id": fresh}]}), **links)
    row = await Case.get(case_no=case_no)
    assert row.status == CaseStatus.ACCEPTED
    # Two days used before the pause (11th, 12th): nothing was left, so the due day stays the 12th...
    assert row.promised_due == date(2026, 2, 12)
    assert row.pauses == [["2026-02-12", "2026-02-25"]]
    # ...and the case is overdue at once: red, once.
    sent = await cases.warn_deadlines(on=date(2026, 2, 25))
    assert sent == [(case_no, "red")]
    assert await cases.warn_deadlines(on=date(2026, 2, 26)) == []
    assert (await Case.get(case_no=case_no)).warning_level == WarningLevel.RED
    events = await OutboxEvent.filter(topic="case.deadline_warning")
    assert [e.payload["level"] for e in events] == ["red"] and events[0].ordering_key == f"case:{case_no}"


async def upload_id_for(live: Live, platforms: Platforms, headers: dict[str, str]) -> int:
    """Uploads straight through the service: the frozen clock has outlived the HTTP login."""
    from backend.cases import files
    from tests.cases_support import pdf_bytes

    rid = int(identity_from(headers, live))
    out = await cases.store_upload(resident_id=rid, data=pdf_bytes(uuid.uuid4().hex), name="form.pdf",
                                   store=files.store_for(live.app.ctx.settings), max_bytes=10**7, max_pixels=10**7,
                                   daily_limit=100)
    return int(out["id"])


def identity_from(headers: dict[str, str], live: Live) -> int:
    import jwt

    token = headers["Authorization"].split()[1]
    return int(jwt.decode(token, options={"verify_signature": False})["sub"])


async def test_yellow_then_red_from_the_periodic_task(live: Live, platforms: Platforms, frozen_clock: Any) -> None:
    frozen_clock.set(datetime(2026, 3, 2, 2, 0, tzinfo=UTC))  # Monday
    world = await build_world(live)
    me = await resident(live, platforms, ZHANG)
    mats = [{"code": c, "upload_id": await upload_id(live, me)} for c in ("ID", "FORM", "LEASE")]
    from tests.cases_support import RESIDENCE

    case_no = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], RESIDENCE, mats))).json()["case_no"]
    clerk = await principal("hx.clerk")
    links = {"keyring": live.app.ctx.keyring, "secret": "s" * 40, "base_url": "http://x"}
    await cases.act(case_no=case_no, payload=TransitionIn(action="accept"), staff=clerk, **links)
    row = await Case.get(case_no=case_no)
    # 5 promised days from Monday 2 March: due Monday 9th, yellow on day 4 (Friday 6th).
    assert (row.yellow_on, row.promised_due) == (date(2026, 3, 6), date(2026, 3, 9))
    assert "cases.deadline_warnings" in schedule.tasks
    await handlers.deadline_warnings(datetime(2026, 3, 5, 16, 15, tzinfo=UTC))  # Friday 00:15 in Shanghai
    await handlers.deadline_warnings(datetime(2026, 3, 6, 8, 0, tzinfo=UTC))
    assert (await Case.get(case_no=case_no)).warning_level == WarningLevel.YELLOW
    await handlers.deadline_warnings(datetime(2026, 3, 9, 8, 0, tzinfo=UTC))  # the due day itself: still yellow
    await handlers.deadline_warnings(datetime(2026, 3, 9, 16, 30, tzinfo=UTC))  # Tuesday 10th in Shanghai
    await handlers.deadline_warnings(datetime(2026, 3, 11, 2, 0, tzinfo=UTC))
    levels = [e.payload["level"] for e in await OutboxEvent.filter(topic="case.deadline_warning").order_by("seq")]
    assert levels == ["yellow", "red"]
    assert (await Case.get(case_no=case_no)).warning_level == WarningLevel.RED
    # Deciding ends the clock: no more warnings for it.
    async with db.transaction() as tx:
        case = await Case.get(case_no=case_no)
        await transition(case, CaseStatus.IN_REVIEW, actor=Actor(STAFF, str(clerk.id)), using_db=tx)
        await transition(case, CaseStatus.REJECTED, actor=Actor(STAFF, str(clerk.id)), using_db=tx, reason="x")
    assert await cases.warn_deadlines(on=date(2026, 4, 1)) == []


async def test_year_loaded_recomputes_provisional_due_dates(live: Live, platforms: Platforms) -> None:
    world = await build_world(live)
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    case_no = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))).json()["case_no"]
    await Case.filter(case_no=case_no).update(status=CaseStatus.ACCEPTED, accepted_on=date(2026, 9, 30),
                                              promised_due=date(2030, 1, 1), due_provisional=True)
    await handlers.year_loaded(Event(id=uuid.uuid4(), topic="calendar.year_loaded", payload={"year": 2026},
                                     attempt=1))
    row = await Case.get(case_no=case_no)
    # 30 September 2026, then the National Day holiday (1–7 October, make-up on Saturday 10th).
    assert row.promised_due == oracle(date(2026, 9, 30), 2, []) == date(2026, 10, 9)
    assert row.due_provisional is False
