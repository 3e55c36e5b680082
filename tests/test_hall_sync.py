"""Main hall sync against a fake hall served on loopback: a case mirrored both ways, a simulated hour of
outage with 200 cases, signed callbacks (duplicate, forged, stale, replayed), conflicts, reconciliation,
and two workers that never reorder one case's steps."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sanic import Sanic

from backend import clock, runtime
from backend.app import worker_config
from backend.audit.models import AuditEntry
from backend.cases.models import Case, CaseHistory, CaseStatus
from backend.hall_sync import service
from backend.hall_sync.client import (
    Breaker,
    BreakerOpen,
    HallGateway,
    HallUnavailable,
    signed_headers,
)
from backend.hall_sync.fake import FakeHall, blueprint
from backend.hall_sync.models import HallCaseLink, HallSyncConflict, HallSyncCursor
from backend.jobs.models import OutboxEvent, OutboxStatus
from backend.jobs.worker import Worker
from tests.cases_support import SIMPLE, WANG, World, act, application, build_world, resident, upload_id
from tests.conftest import TEST_SECRETS, Live, Platforms, postgres_only, start_app, stop_app

APP_ID = "palmhall-test"


@dataclass
class Hall:
    fake: FakeHall
    url: str


@pytest.fixture
async def hall() -> AsyncIterator[Hall]:
    fake = FakeHall(app_id=APP_ID, secret=TEST_SECRETS["hall_app_secret"])
    Sanic.test_mode = True
    app = Sanic(f"hall_{uuid.uuid4().hex[:8]}")
    app.blueprint(blueprint(fake))
    server, url = await start_app(app)
    try:
        yield Hall(fake=fake, url=url)
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


@pytest.fixture
def settings_overrides(tmp_path: Path, hall: Hall) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files"), "hall_api_base": hall.url, "hall_app_id": APP_ID,
            "hall_breaker_failures": 3, "hall_breaker_pause_seconds": 60, "hall_timeout_seconds": 2,
            "hall_material_link_ttl_seconds": 3600}


@pytest.fixture
async def world(live: Live, hall: Hall) -> World:
    hall.fake.callback_url = f"{live.url}/api/v1/hall/callbacks"
    return await build_world(live)


def new_worker(live: Live) -> Worker:
    return Worker(worker_config(live.app.ctx.settings))


async def drain(worker: Worker, rounds: int = 200) -> int:
    """Run every due event (and what becomes due by running them) now; returns how many were run."""
    total = 0
    for _ in range(rounds):
        n = await worker.run_once()
        if not n:
            break
        total += n
    return total


async def walk_in(live: Live, world: World) -> str:
    body = {**application(world.halls["HX"], SIMPLE, [{"code": "FORM", "paper": True}]),
            "applicant_name": WANG["name"], "applicant_id_number": WANG["id_number"]}
    r = await live.client.post("/api/v1/staff/cases", json=body, headers=world.clerk)
    assert r.status_code == 201 and r.json()["status"] == "submitted", r.text
    return str(r.json()["case_no"])


async def status_of(case_no: str) -> str:
    return str((await Case.get(case_no=case_no)).status)


async def hall_pending() -> int:
    return await OutboxEvent.filter(topic__in=list(service.ALL_TOPICS),
                                    status__in=[OutboxStatus.PENDING, OutboxStatus.RUNNING]).count()


# ---- a case's life mirrored both ways -------------------------------------------------------


async def test_a_case_is_mirrored_both_ways(live: Live, platforms: Platforms, hall: Hall, world: World,
                                           frozen_clock: clock.FrozenClock) -> None:
    me = await resident(live, platforms, WANG)
    form = await upload_id(live, me)
    r = await live.client.post("/api/v1/mp/cases", headers=me,
                               json=application(world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))
    assert r.status_code == 201 and r.json()["status"] == "submitted", r.text
    case_no = r.json()["case_no"]
    worker = new_worker(live)
    await drain(worker)
    assert hall.fake.steps(case_no) == ["created:submitted", "status:submitted"]
    link = await HallCaseLink.get(case_no=case_no)
    assert link.hall_case_id == hall.fake.cases[case_no].hall_case_id and link.hall_case_id
    assert (link.last_seq_sent, link.last_seq_acked) == (2, 2)

    # The material travels as a signed link that works, and stops working when it expires.
    created = hall.fake.cases[case_no].steps[0]
    [material] = created["materials"]
    url = httpx.URL(material["url"])
    r = await live.client.get(url.raw_path.decode())
    assert r.status_code == 200 and r.content.startswith(b"%PDF")
    forged = url.raw_path.decode().replace("sig=", "sig=0")
    assert (await live.client.get(forged)).status_code == 403
    frozen_clock.advance(3601)
    r = await live.client.get(url.raw_path.decode())
    assert (r.status_code, r.json()["error"]["code"]) == (403, "hall.link_invalid")

    # The hall accepts: our case follows through the state machine, with history and audit.
    _, answer = await hall.fake.change(case_no, "accepted")
    assert answer is not None and answer.status_code == 200, answer.text if answer else None
    assert await status_of(case_no) == "accepted"
    last = await CaseHistory.filter(case__case_no=case_no).order_by("-id").first()
    assert last is not None and (last.actor_kind, last.actor_id) == ("staff", "main_hall")
    await drain(worker)
    # The hall's own move is not pushed back to it as news.
    assert hall.fake.steps(case_no) == ["created:submitted", "status:submitted"]

    # A clerk here starts the review: the hall hears of it.
    r = await act(live, world.clerk, case_no, "start_review")
    assert r.status_code == 200 and r.json()["status"] == "in_review", r.text
    await drain(worker)
    assert hall.fake.steps(case_no)[-1] == "status:in_review"

    # The hall approves and delivers; the resident sees it here.
    for step in ("approved", "delivered"):
        _, answer = await hall.fake.change(case_no, step)
        assert answer is not None and answer.status_code == 200, answer.text if answer else None
    assert await status_of(case_no) == "delivered"
    await drain(worker)
    assert hall.fake.steps(case_no) == ["created:submitted", "status:submitted", "status:in_review"]
    assert hall.fake.calls["duplicates"] == 0 and hall.fake.calls["out_of_order"] == 0


# ---- callbacks ------------------------------------------------------------------------------


async def test_callbacks_duplicate_forged_stale_and_replayed(live: Live, hall: Hall, world: World) -> None:
    case_no = await walk_in(live, world)
    await drain(new_worker(live))
    change = hall.fake.record_change(case_no, "accepted")
    body = hall.fake.callback_body(change)
    path = "/api/v1/hall/callbacks"

    # Forged: signed with another secret.
    forged = signed_headers(app_id=APP_ID, secret="not-the-secret", method="POST", path=path, body=body)
    r = await hall.fake.send_callback(change, headers=forged)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "hall.signature_invalid")
    # Tampered: a genuine signature over another body.
    good = signed_headers(app_id=APP_ID, secret=hall.fake.secret, method="POST", path=path, body=body)
    r = await hall.fake.send_callback(change, headers=good, body=body.replace(b"accepted", b"rejected"))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "hall.signature_invalid")
    # Stale: signed ten minutes ago.
    old = signed_headers(app_id=APP_ID, secret=hall.fake.secret, method="POST", path=path, body=body,
                         timestamp=int(clock.now().timestamp()) - 600)
    r = await hall.fake.send_callback(change, headers=old)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "hall.timestamp_stale")
    assert await status_of(case_no) == "submitted"

    # Genuine: applied once.
    r = await hall.fake.send_callback(change, headers=good)
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    # Replayed: the very same request again.
    r = await hall.fake.send_callback(change, headers=good)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "hall.nonce_replayed")
    # Duplicate: the same hall event, freshly signed: answered, not applied twice.
    r = await hall.fake.send_callback(change)
    assert r.status_code == 200 and r.json() == {"outcome": "applied", "duplicate": True, "case_no": case_no,
                                                 "status": "accepted"}
    moves = await CaseHistory.filter(case__case_no=case_no, to_status=CaseStatus.ACCEPTED).count()
    assert moves == 1 and await status_of(case_no) == "accepted"


async def test_a_refused_change_is_a_conflict_and_the_case_is_unchanged(live: Live, hall: Hall,
                                                                       world: World) -> None:
    case_no = await walk_in(live, world)
    await drain(new_worker(live))
    history = await CaseHistory.filter(case__case_no=case_no).count()
    change, r = await hall.fake.change(case_no, "approved")  # never accepted here: the machine refuses
    assert r is not None and (r.status_code, r.json()["error"]["code"]) == (409, "hall.conflict"), r and r.text
    assert await status_of(case_no) == "submitted"
    assert await CaseHistory.filter(case__case_no=case_no).count() == history
    # Told again: the same answer, one conflict.
    r = await hall.fake.send_callback(change)
    assert r.status_code == 409
    r = await live.client.get("/api/v1/staff/sync/conflicts", headers=world.clerk)
    assert r.status_code == 200, r.text
    [conflict] = r.json()["conflicts"]
    assert (conflict["case_no"], conflict["hall_status"], conflict["our_status"], conflict["source"]) == (
        case_no, "approved", "submitted", "callback")
    # Another hall's clerk does not see it; anonymous callers get nothing.
    r = await live.client.get("/api/v1/staff/sync/conflicts", headers=world.other_clerk)
    assert r.json()["conflicts"] == []
    assert (await live.client.get("/api/v1/staff/sync/conflicts")).status_code == 401
    # An unknown status is refused before anything changes.
    _, r = await hall.fake.change(case_no, "teleported")
    assert r is not None and r.status_code == 422


# ---- reconciliation -------------------------------------------------------------------------


async def test_a_lost_callback_is_repaired_by_reconciliation(live: Live, hall: Hall, world: World) -> None:
    case_no = await walk_in(live, world)
    other = await walk_in(live, world)
    await drain(new_worker(live))
    await hall.fake.change(case_no, "accepted", deliver=False)  # the callback never arrives
    await hall.fake.change(case_no, "needs_correction", items=[{"code": "FORM", "reason": "签名缺失"}],
                           deliver=False)
    assert await status_of(case_no) == "submitted"
    counts = await service.reconcile()
    assert counts["changes"] == 2 and counts["applied"] == 2 and counts["conflicts"] == 0
    assert await status_of(case_no) == "needs_correction"
    assert (await HallSyncCursor.get(name="changes")).cursor == "2"
    # Nothing new: nothing done twice.
    again = await service.reconcile()
    assert again["changes"] == 0 and await status_of(case_no) == "needs_correction"

    # A difference the change feed does not explain is reported to staff.
    hall.fake.cases[other].status = "rejected"
    counts = await service.reconcile()
    assert counts["differences"] == 1
    conflict = await HallSyncConflict.get(case_no=other)
    assert (conflict.source, conflict.hall_status, conflict.our_status) == ("reconcile", "rejected", "submitted")
    assert await status_of(other) == "submitted"


# ---- outages --------------------------------------------------------------------------------


@pytest.fixture
def clock_at_now() -> Iterator[clock.FrozenClock]:
    """Time injected but starting at the wall clock, so rows the database stamps itself (outbox
    created_at) agree with it and the lag reads in simulated time."""
    c = clock.FrozenClock(datetime.now(UTC))
    previous = clock.use(c)
    try:
        yield c
    finally:
        clock.use(previous)


async def test_an_hour_of_outage_with_200_cases_loses_nothing_and_keeps_order(
        clock_at_now: clock.FrozenClock, live: Live, hall: Hall, world: World) -> None:
    frozen_clock = clock_at_now
    hall.fake.down = True
    worker = new_worker(live)
    expected: dict[str, list[str]] = {}
    for i in range(200):
        case_no = await walk_in(live, world)
        steps = ["created:submitted", "status:submitted"]
        r = await act(live, world.clerk, case_no, "accept")
        assert r.status_code == 200, r.text
        steps.append("status:accepted")
        if i % 2 == 0:
            r = await act(live, world.clerk, case_no, "start_review")
            assert r.status_code == 200, r.text
            steps.append("status:in_review")
        expected[case_no] = steps
        if i % 20 == 0:
            await drain(worker)
            frozen_clock.advance(15)
    # An hour passes with the hall down: the breaker keeps us from hammering it.
    for _ in range(60):
        frozen_clock.advance(60)
        await drain(worker)
    state = await Breaker(runtime.current().redis).state()
    assert state["state"] in ("open", "half_open")
    assert hall.fake.calls["pushes"] == 0
    assert hall.fake.calls["unavailable"] < 200, hall.fake.calls  # far fewer calls than waiting steps
    r = await live.client.get("/metrics")
    lag = [ln for ln in r.text.splitlines() if ln.startswith("palmhall_hall_sync_lag_seconds")]
    assert lag and float(lag[0].split()[-1]) >= 3000  # an hour, less the real seconds the test took
    assert await OutboxEvent.filter(status=OutboxStatus.DEAD).count() == 0

    hall.fake.down = False
    for _ in range(120):
        frozen_clock.advance(60)
        await drain(worker)
        if not await hall_pending():
            break
    assert await hall_pending() == 0
    assert await OutboxEvent.filter(status=OutboxStatus.DEAD).count() == 0
    for case_no, steps in expected.items():
        assert hall.fake.steps(case_no) == steps, case_no
        assert [s["seq"] for s in hall.fake.cases[case_no].steps] == list(range(1, len(steps) + 1))
    assert hall.fake.calls["pushes"] == sum(len(s) for s in expected.values())
    assert hall.fake.calls["duplicates"] == 0 and hall.fake.calls["out_of_order"] == 0
    assert await service.lag_seconds() == 0
    assert (await Breaker(runtime.current().redis).state())["state"] == "closed"


async def test_timeouts_and_refused_connections_count_as_outages(redis: Any, frozen_clock: clock.FrozenClock
                                                                 ) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("hall too slow", request=request)

    breaker = Breaker(redis, failures=2, pause_seconds=30)
    gw = HallGateway(base_url="https://hall.example", app_id=APP_ID, secret="s", timeout=0.5, breaker=breaker,
                     transport=httpx.MockTransport(slow))
    refused = HallGateway(base_url="http://127.0.0.1:9", app_id=APP_ID, secret="s", timeout=0.5, breaker=breaker)
    try:
        with pytest.raises(HallUnavailable):
            await gw.push_case(idempotency_key="k1", push={"case_no": "X", "seq": 1})
        with pytest.raises(HallUnavailable):
            await refused.push_case(idempotency_key="k1", push={"case_no": "X", "seq": 1})
        # Open: not even called.
        with pytest.raises(BreakerOpen):
            await refused.push_case(idempotency_key="k1", push={"case_no": "X", "seq": 1})
        assert (await breaker.state())["state"] == "open"
        frozen_clock.advance(31)
        # After the pause one probe goes through (and fails again here); the others keep waiting.
        with pytest.raises(HallUnavailable):
            await refused.push_case(idempotency_key="k1", push={"case_no": "X", "seq": 1})
        with pytest.raises(BreakerOpen):
            await refused.push_case(idempotency_key="k1", push={"case_no": "X", "seq": 1})
        assert gw.client.timeout.read == 0.5 and gw.client._transport is not None
    finally:
        await gw.aclose()
        await refused.aclose()


async def test_status_and_resync(live: Live, hall: Hall, world: World) -> None:
    case_no = await walk_in(live, world)
    worker = new_worker(live)
    hall.fake.down = True
    await drain(worker)
    s = await service.status(settings=live.app.ctx.settings, redis=live.app.ctx.redis)
    assert s["pending"] == 2 and s["dead"] == 0 and s["last_cursor"] is None
    hall.fake.down = False
    await runtime.current().redis.delete("palmhall:hall:breaker")
    await OutboxEvent.filter(status=OutboxStatus.PENDING).update(available_at=clock.now_ms())
    await drain(worker)
    event_id = (await service.resync(case_no=case_no)).event_id
    await drain(worker)
    assert hall.fake.steps(case_no) == ["created:submitted", "status:submitted", "snapshot:submitted"]
    assert hall.fake.cases[case_no].steps[-1]["event_id"] == str(event_id)
    s = await service.status(settings=live.app.ctx.settings, redis=live.app.ctx.redis)
    assert s["pending"] == 0 and s["lag_seconds"] == 0 and s["breaker"]["state"] == "closed"


# ---- a hall that lost steps, a step that is stuck -------------------------------------------


async def test_a_hall_that_wants_an_earlier_step_gets_the_steps_from_there(live: Live, hall: Hall,
                                                                          world: World) -> None:
    case_no = await walk_in(live, world)
    worker = new_worker(live)
    await drain(worker)
    first_id = hall.fake.cases[case_no].hall_case_id
    # The hall loses its store (restored from an old backup, or a fake restarted without its file).
    hall.fake.cases.clear()
    hall.fake.answers.clear()
    r = await act(live, world.clerk, case_no, "accept")
    assert r.status_code == 200, r.text
    await drain(worker)
    # It answered out_of_order (expected 1) once; we sent steps 1 and 2 again, then 3: no hours of retrying.
    assert hall.fake.calls["out_of_order"] == 1
    assert hall.fake.steps(case_no) == ["created:submitted", "status:submitted", "status:accepted"]
    assert [s["seq"] for s in hall.fake.cases[case_no].steps] == [1, 2, 3]
    assert hall.fake.cases[case_no].status == await status_of(case_no) == "accepted"
    [event] = [e for e in await OutboxEvent.filter(topic="case.status_changed") if e.payload.get("to") == "accepted"]
    assert (event.status, event.attempts) == (OutboxStatus.DONE, 1)
    link = await HallCaseLink.get(case_no=case_no)
    assert link.hall_case_id == hall.fake.cases[case_no].hall_case_id != first_id  # the id it gave this time
    assert (link.last_seq_sent, link.last_seq_acked, link.hall_status) == (3, 3, "accepted")
    # The resent steps are the same steps: same idempotency keys, same materials.
    assert hall.fake.cases[case_no].steps[0]["materials"][0]["code"] == "FORM"
    assert await hall_pending() == 0


@pytest.mark.parametrize("stuck", ["pending", "dead"])
async def test_resync_of_a_stuck_case_goes_at_once_and_supersedes_the_stuck_step(live: Live, hall: Hall,
                                                                                 world: World, stuck: str) -> None:
    case_no = await walk_in(live, world)
    worker = new_worker(live)
    await drain(worker)
    hall.fake.down = True
    r = await act(live, world.clerk, case_no, "accept")
    assert r.status_code == 200, r.text
    await drain(worker)  # refused: retried later
    [step] = [e for e in await OutboxEvent.filter(topic="case.status_changed") if e.payload.get("to") == "accepted"]
    assert step.status == OutboxStatus.PENDING
    # Stuck: its next attempt hours away (the backoff of a step refused for hours), or given up on.
    if stuck == "pending":
        await OutboxEvent.filter(seq=step.seq).update(available_at=clock.now_ms() + 5 * 3600 * 1000)
    else:
        await OutboxEvent.filter(seq=step.seq).update(status=OutboxStatus.DEAD, attempts=10)
    r = await act(live, world.clerk, case_no, "start_review")  # a later step waits behind it
    assert r.status_code == 200, r.text
    hall.fake.down = False
    await runtime.current().redis.delete("palmhall:hall:breaker")
    await drain(worker)
    assert hall.fake.steps(case_no) == ["created:submitted", "status:submitted"]  # still stuck

    done = await service.resync(case_no=case_no)
    await drain(worker)
    # The snapshot went at once, in the stuck step's place; the superseded steps are not sent after it.
    assert hall.fake.steps(case_no) == ["created:submitted", "status:submitted", "snapshot:in_review"]
    assert (done.superseded, done.seq) == (2, 3)
    assert [s["seq"] for s in hall.fake.cases[case_no].steps] == [1, 2, 3]
    assert hall.fake.cases[case_no].steps[-1]["event_id"] == str(done.event_id)
    assert await hall_pending() == 0 and await OutboxEvent.filter(status=OutboxStatus.DEAD).count() == 0
    link = await HallCaseLink.get(case_no=case_no)
    assert (link.last_seq_sent, link.last_seq_acked, link.hall_status) == (3, 3, "in_review")
    # The case goes on in sequence after it.
    r = await act(live, world.clerk, case_no, "approve")
    assert r.status_code == 200, r.text
    await drain(worker)
    assert hall.fake.steps(case_no)[-1] == "status:approved"
    assert [s["seq"] for s in hall.fake.cases[case_no].steps] == [1, 2, 3, 4]
    assert hall.fake.calls["out_of_order"] == 0 and hall.fake.calls["duplicates"] == 0
    assert await AuditEntry.filter(action="hall_sync.resync", target_id=case_no).count() == 1


def test_the_push_handler_is_named_as_resync_marks_it(live: Live) -> None:
    from backend.hall_sync import handlers
    from backend.jobs.outbox import handler_name

    assert handler_name(handlers.push_to_hall) == service.PUSH_HANDLER


def test_the_fake_hall_keeps_its_store_across_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "var" / "fakes" / "hall.json")

    def push(fake: FakeHall, key: str, case_no: str, seq: int, status: str) -> tuple[int, dict[str, Any]]:
        return fake.push_case(key, {"case_no": case_no, "seq": seq, "kind": "status", "status": status})

    before = FakeHall(app_id=APP_ID, state_file=path)
    assert push(before, "k1", "C1", 1, "submitted")[0] == 200
    assert push(before, "k2", "C1", 2, "accepted")[0] == 200
    change = before.record_change("C1", "approved")

    after = FakeHall(app_id=APP_ID, state_file=path)  # the process restarted
    assert after.steps("C1") == before.steps("C1") == ["status:submitted", "status:accepted"]
    assert after.cases["C1"].status == "approved" and after.changes == [change]
    assert push(after, "k3", "C1", 3, "in_review") == (200, {"hall_case_id": "HALL-000001", "seq": 3})
    assert push(after, "k2", "C1", 2, "accepted") == (200, {"hall_case_id": "HALL-000001", "seq": 2})
    assert push(after, "k4", "C2", 1, "submitted")[1]["hall_case_id"] == "HALL-000002"  # ids go on
    assert after.calls["out_of_order"] == 0 and after.calls["duplicates"] == 1
    # Without a state file a restart forgets, as the fake in tests always did.
    forgetful = FakeHall(app_id=APP_ID)
    assert push(forgetful, "k5", "C1", 3, "in_review")[0] == 409


# ---- two workers ----------------------------------------------------------------------------


@postgres_only
async def test_two_workers_never_reorder_one_cases_steps(live: Live, hall: Hall, world: World) -> None:
    hall.fake.delay = 0.005  # answers take a moment, so the two workers overlap
    expected: dict[str, list[str]] = {}
    for _ in range(30):
        case_no = await walk_in(live, world)
        for action in ("accept", "start_review"):
            r = await act(live, world.clerk, case_no, action)
            assert r.status_code == 200, r.text
        expected[case_no] = ["created:submitted", "status:submitted", "status:accepted", "status:in_review"]
    a, b = new_worker(live), new_worker(live)
    a.config.batch = b.config.batch = 5

    async def loop(w: Worker) -> None:
        for _ in range(200):
            if not await w.run_once() and not await hall_pending():
                return
            await asyncio.sleep(0)

    await asyncio.gather(loop(a), loop(b))
    for case_no, steps in expected.items():
        assert hall.fake.steps(case_no) == steps, case_no
    assert hall.fake.calls["out_of_order"] == 0 and hall.fake.calls["duplicates"] == 0
    # Both workers did part of the work (the lock holder stays on a done event).
    ran = await OutboxEvent.filter(topic__in=list(service.ALL_TOPICS)).values_list("locked_by", flat=True)
    assert set(ran) == {a.name, b.name}


# ---- appointments, the operator's command, the demo console ---------------------------------


async def test_appointment_steps_reach_the_hall_in_order(live: Live, hall: Hall, world: World) -> None:
    from backend import db
    from backend.jobs import outbox

    payload = {"appointment_id": 77, "resident_id": 1, "hall_id": world.halls["HX"], "item_code": SIMPLE,
               "starts_at": "2026-03-03T01:00:00+00:00", "ends_at": "2026-03-03T01:30:00+00:00"}
    async with db.transaction() as tx:
        for topic in ("appointment.booked", "appointment.checked_in"):
            await outbox.emit(topic, payload, using_db=tx, ordering_key="appointment:77")
    await drain(new_worker(live))
    assert [(s["seq"], s["kind"]) for s in hall.fake.appointments["77"]] == [(1, "booked"), (2, "checked_in")]


def test_status_and_resync_from_the_command_line(database_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {"DATABASE_URL": database_url, "PALMHALL_ENV": "test", "PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING",
           "SECRETS_FILE": str(tmp_path / "secrets.json"), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "backend.cli", "hall-sync", "status"], env=env, capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    assert {"pending", "dead", "lag_seconds", "last_cursor", "breaker"} <= set(shown)
    assert shown["breaker"]["state"] == "closed" and shown["pending"] == 0
    r = subprocess.run([sys.executable, "-m", "backend.cli", "hall-sync", "resync", "NOPE"], env=env,
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode != 0 and "case.not_found" in r.stderr + r.stdout


async def test_the_fake_halls_console_moves_a_case_and_calls_back(live: Live, hall: Hall, world: World) -> None:
    case_no = await walk_in(live, world)
    await drain(new_worker(live))
    async with httpx.AsyncClient(base_url=hall.url) as client:
        r = await client.post(f"/console/cases/{case_no}/status", json={"status": "accepted"})
        assert r.status_code == 200 and r.json()["callback_status"] == 200, r.text
        listed = (await client.get("/console/cases")).json()["cases"]
    assert [c["status"] for c in listed if c["case_no"] == case_no] == ["accepted"]
    assert await status_of(case_no) == "accepted"


def test_development_serves_the_fake_hall_and_points_the_client_at_it(settings: Any) -> None:
    from backend.app import create_app

    Sanic.test_mode = True
    app = create_app(settings.with_overrides(platform_fakes="true"), name=f"dev_{uuid.uuid4().hex[:8]}")
    try:
        assert app.ctx.settings.hall_api_base == f"http://127.0.0.1:{settings.port}/_fakes/hall"
        assert isinstance(app.ctx.fakes["hall"], FakeHall)
        assert app.ctx.fakes["hall"].state_file == str(Path(settings.fakes_state_dir) / "hall.json")
        assert app.ctx.fakes["hall"].callback_url.endswith("/api/v1/hall/callbacks")
        paths = {r.path for r in app.router.routes}
        assert "_fakes/hall/v1/cases/push" in paths and "api/v1/hall/callbacks" in paths
    finally:
        Sanic._app_registry.pop(app.name, None)
