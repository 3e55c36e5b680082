"""The transactional outbox: atomic with the change, retried with backoff, leased, ordered."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from backend import db
from backend.audit.models import AuditEntry
from backend.jobs import outbox
from backend.jobs.models import OutboxEvent, OutboxStatus
from backend.jobs.outbox import Event, Registry
from backend.jobs.worker import Worker, WorkerConfig, backoff_delay
from tests.conftest import ROOT, postgres_only

pytestmark = pytest.mark.usefixtures("orm")


def make_worker(reg: Registry, **kw: float) -> Worker:
    cfg = WorkerConfig(lease_seconds=kw.get("lease", 30), backoff_base=kw.get("base", 2),
                       backoff_max=kw.get("cap", 60), poll_seconds=0.05, batch=int(kw.get("batch", 20)))
    return Worker(cfg, handlers=reg)


async def emit_one(topic: str, payload: dict | None = None, **kw) -> uuid.UUID:
    async with db.transaction() as tx:
        return await outbox.emit(topic, payload or {}, using_db=tx, **kw)


async def test_rollback_leaves_no_event() -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.transaction() as tx:
            from backend.audit import service as audit

            await audit.record(using_db=tx, actor_kind="system", actor_id="t", action="x.changed")
            await outbox.emit("x.changed", {"n": 1}, using_db=tx)
            raise Boom
    assert await OutboxEvent.all().count() == 0
    assert await AuditEntry.all().count() == 0
    await emit_one("x.changed", {"n": 2})
    rows = await OutboxEvent.all()
    assert [(r.topic, r.payload, r.status) for r in rows] == [("x.changed", {"n": 2}, "pending")]


async def test_fails_twice_then_succeeds_is_done_after_three_attempts(frozen_clock) -> None:
    reg = Registry()
    seen: list[tuple[uuid.UUID, int]] = []

    @reg.on("flaky")
    async def flaky(event: Event) -> None:
        seen.append((event.id, event.attempt))
        if event.attempt < 3:
            raise ConnectionError(f"upstream down (attempt {event.attempt})")

    eid = await emit_one("flaky", {"k": "v"})
    worker = make_worker(reg, base=2, cap=60)
    assert await worker.run_once() == 1
    row = await OutboxEvent.get(event_id=eid)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "upstream down (attempt 1)" in row.last_error
    # Backoff: not due before base/2, due after base.
    assert row.available_at >= frozen_clock.now_ms() + 1000
    assert await worker.run_once() == 0
    frozen_clock.advance(2.01)
    assert await worker.run_once() == 1
    row = await OutboxEvent.get(event_id=eid)
    assert (row.status, row.attempts) == ("pending", 2)
    assert row.available_at >= frozen_clock.now_ms() + 2000  # doubled
    frozen_clock.advance(4.01)
    assert await worker.run_once() == 1
    row = await OutboxEvent.get(event_id=eid)
    assert (row.status, row.attempts, row.last_error) == ("done", 3, None)
    assert row.finished_at is not None
    # The handler saw one stable event id across all attempts.
    assert seen == [(eid, 1), (eid, 2), (eid, 3)]


async def test_always_failing_event_ends_dead_with_last_error_and_can_be_replayed(frozen_clock) -> None:
    reg = Registry()

    @reg.on("doomed")
    async def doomed(event: Event) -> None:
        raise ValueError(f"bad data #{event.attempt}")

    eid = await emit_one("doomed", max_attempts=4)
    worker = make_worker(reg, base=1, cap=8)
    for _ in range(10):
        await worker.run_once()
        frozen_clock.advance(10)
    row = await OutboxEvent.get(event_id=eid)
    assert (row.status, row.attempts) == ("dead", 4)
    assert "ValueError: bad data #4" in row.last_error
    assert await worker.run_once() == 0  # dead stays dead

    dead = await outbox.list_events(status=OutboxStatus.DEAD)
    assert [e.event_id for e in dead] == [eid]
    await outbox.replay(event_id=eid)
    row = await OutboxEvent.get(event_id=eid)
    assert (row.status, row.attempts) == ("pending", 0)
    assert await worker.run_once() == 1


async def test_replay_refuses_an_event_that_is_not_dead() -> None:
    from backend.errors import DomainError

    eid = await emit_one("anything")
    with pytest.raises(DomainError) as err:
        await outbox.replay(event_id=eid)
    assert err.value.code == "outbox.not_dead"
    with pytest.raises(DomainError) as err:
        await outbox.replay(event_id=uuid.uuid4())
    assert err.value.code == "outbox.not_found"


async def test_retry_skips_handlers_that_already_succeeded(frozen_clock) -> None:
    reg = Registry()
    calls: Counter[str] = Counter()

    @reg.on("fanout")
    async def first(event: Event) -> None:
        calls["first"] += 1

    @reg.on("fanout")
    async def second(event: Event) -> None:
        calls["second"] += 1
        if event.attempt == 1:
            raise TimeoutError("slow provider")

    await emit_one("fanout")
    worker = make_worker(reg, base=1)
    await worker.run_once()
    frozen_clock.advance(5)
    await worker.run_once()
    assert calls == {"first": 1, "second": 2}
    assert (await OutboxEvent.first()).status == "done"


async def test_events_sharing_an_ordering_key_run_in_write_order(frozen_clock) -> None:
    reg = Registry()
    order: list[str] = []

    @reg.on("step")
    async def step(event: Event) -> None:
        if event.payload["n"] == 1 and event.attempt == 1:
            raise ConnectionError("hall down")
        order.append(f"{event.ordering_key}:{event.payload['n']}")

    for n in (1, 2, 3):
        await emit_one("step", {"n": n}, ordering_key="case-A")
    await emit_one("step", {"n": 1}, ordering_key="case-B")
    worker = make_worker(reg, base=1)
    # First pass: case-A #1 fails, so #2 and #3 must wait; case-B goes ahead in parallel.
    await worker.run_once()
    assert order == []  # B#1 also failed on its first attempt
    frozen_clock.advance(5)
    for _ in range(5):
        await worker.run_once()
    assert order.index("case-A:1") < order.index("case-A:2") < order.index("case-A:3")
    assert sorted(order) == ["case-A:1", "case-A:2", "case-A:3", "case-B:1"]


async def test_lease_expiry_lets_another_worker_take_the_event(frozen_clock) -> None:
    reg = Registry()
    ran: list[str] = []

    @reg.on("leased")
    async def handler(event: Event) -> None:
        ran.append(event.payload["x"])

    eid = await emit_one("leased", {"x": "y"})
    a = make_worker(reg, lease=30)
    b = make_worker(reg, lease=30)
    claimed = await a.claim()  # A claims, then (say) dies before finishing
    assert len(claimed) == 1
    assert await b.run_once() == 0  # still leased to A
    frozen_clock.advance(31)
    assert await b.run_once() == 1
    row = await OutboxEvent.get(event_id=eid)
    assert (row.status, row.attempts, row.locked_by) == ("done", 2, b.name)
    assert ran == ["y"]


def test_backoff_grows_exponentially_and_is_capped() -> None:
    import random

    rng = random.Random(7)
    delays = [backoff_delay(a, base=2, cap=100, rng=rng) for a in range(1, 10)]
    for attempt, d in enumerate(delays, start=1):
        full = min(100, 2 * 2 ** (attempt - 1))
        assert full / 2 <= d <= full


def _worker_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update({
        "DATABASE_URL": database_url,
        "PALMHALL_ENV": "test",
        "SECRETS_FILE": str(Path(database_url.split("://", 1)[1]).parent / "secrets.json")
        if database_url.startswith("sqlite") else "/tmp/palmhall-test-secrets.json",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **extra,
    })
    return env


def _spawn_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker", "--import", "tests.worker_handlers", "--no-periodic"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


async def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def test_worker_killed_mid_handler_leaves_event_for_another_after_lease(orm: str, tmp_path: Path) -> None:
    log = tmp_path / "block.log"
    eid = await emit_one("test.block", {"log": str(log)})
    env = _worker_env(orm, OUTBOX_LEASE_SECONDS="3", OUTBOX_POLL_SECONDS="0.1")
    first = _spawn_worker(env)
    try:
        await _wait_for(lambda: asyncio.sleep(0, log.exists()))
        row = await OutboxEvent.get(event_id=eid)
        assert row.status == "running"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    second = _spawn_worker(env)
    try:
        async def finished() -> bool:
            return (await OutboxEvent.get(event_id=eid)).status == "done"

        await _wait_for(finished, timeout=30)
    finally:
        second.terminate()
        second.wait(timeout=10)
    row = await OutboxEvent.get(event_id=eid)
    assert row.attempts == 2
    lines = log.read_text().splitlines()
    assert lines[0].startswith(f"start {first.pid} {eid} attempt=1")
    assert lines[1].startswith(f"start {second.pid} {eid} attempt=2")
    assert lines[2] == f"done {second.pid} {eid}"
    assert len(lines) == 3


@postgres_only
async def test_two_workers_on_postgres_run_each_of_1000_events_exactly_once(orm: str, tmp_path: Path) -> None:
    log = tmp_path / "count.log"
    async with db.transaction() as tx:
        ids = [await outbox.emit("test.count", {"log": str(log)}, using_db=tx) for _ in range(1000)]
    env = _worker_env(orm, OUTBOX_BATCH="10", OUTBOX_POLL_SECONDS="0.05")
    workers = [_spawn_worker(env), _spawn_worker(env)]
    try:
        async def all_done() -> bool:
            return await OutboxEvent.filter(status="done").count() == 1000

        await _wait_for(all_done, timeout=120)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait(timeout=10)
    starts: Counter[str] = Counter()
    pids_by_event: dict[str, str] = {}
    open_runs: set[str] = set()
    for line in log.read_text().splitlines():
        kind, eid, pid = line.split()
        if kind == "start":
            assert eid not in open_runs, f"event {eid} ran twice at once"
            open_runs.add(eid)
            starts[eid] += 1
            pids_by_event[eid] = pid
        else:
            open_runs.discard(eid)
    assert set(starts) == {str(i) for i in ids}
    assert set(starts.values()) == {1}, "some event ran more than once"
    # Both workers really took part.
    assert len(set(pids_by_event.values())) == 2
    assert await OutboxEvent.filter(attempts=1).count() == 1000
