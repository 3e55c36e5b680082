"""Periodic tasks: each tick runs once however many workers schedule it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from backend.jobs.periodic import Schedule, Scheduler
from backend.stores import make_redis
from tests.conftest import REDIS_URL


async def test_two_schedulers_run_each_tick_once(redis) -> None:
    sched = Schedule()
    runs: list[tuple[str, datetime]] = []

    @sched.every("sweep", "*/5 * * * *")
    async def sweep(tick: datetime) -> None:
        runs.append(("sweep", tick))

    a = Scheduler(redis, tasks=sched, owner="a")
    # A second process would have its own client on the same Redis server.
    b_client = make_redis(REDIS_URL) if REDIS_URL else redis
    b = Scheduler(b_client, tasks=sched, owner="b")
    t0 = datetime(2026, 3, 2, 1, 3, tzinfo=UTC)
    assert await a.run_due(t0) == [] and await b.run_due(t0) == []
    t1 = t0 + timedelta(minutes=2)  # 01:05 UTC = 09:05 Shanghai, a tick
    won = await a.run_due(t1) + await b.run_due(t1)
    assert won == ["sweep"]
    t2 = t1 + timedelta(minutes=5)
    won = await b.run_due(t2) + await a.run_due(t2)
    assert won == ["sweep"]
    assert [tick.astimezone(UTC) for _, tick in runs] == [
        datetime(2026, 3, 2, 1, 5, tzinfo=UTC), datetime(2026, 3, 2, 1, 10, tzinfo=UTC)]
    if b_client is not redis:
        await b_client.aclose()


async def test_cron_is_read_in_shanghai_time(redis) -> None:
    sched = Schedule()
    ticks: list[datetime] = []

    @sched.every("morning", "0 9 * * *")
    async def morning(tick: datetime) -> None:
        ticks.append(tick)

    s = Scheduler(redis, tasks=sched)
    await s.run_due(datetime(2026, 3, 2, 0, 59, tzinfo=UTC))
    await s.run_due(datetime(2026, 3, 2, 1, 0, 1, tzinfo=UTC))  # 09:00:01 in Shanghai
    assert [t.astimezone(UTC) for t in ticks] == [datetime(2026, 3, 2, 1, 0, tzinfo=UTC)]


async def test_concurrent_schedulers_in_real_time_never_double_run(redis) -> None:
    sched = Schedule()
    runs: list[datetime] = []

    @sched.every("tick", "* * * * * */1")  # every second (6th field: seconds)
    async def tick(t: datetime) -> None:
        runs.append(t)

    schedulers = [Scheduler(redis, tasks=sched, owner=str(i)) for i in range(3)]
    tasks = [asyncio.create_task(s.run(resolution=0.05)) for s in schedulers]
    await asyncio.sleep(3.2)
    for s in schedulers:
        s.stop()
    await asyncio.gather(*tasks)
    assert len(runs) >= 2
    assert len(runs) == len(set(runs)), "a tick ran more than once"


async def test_failing_task_is_recorded_and_does_not_stop_the_others(redis) -> None:
    import json

    sched = Schedule()
    ok: list[datetime] = []

    @sched.every("bad", "*/5 * * * *")
    async def bad(t: datetime) -> None:
        raise RuntimeError("upstream broken")

    @sched.every("good", "*/5 * * * *")
    async def good(t: datetime) -> None:
        ok.append(t)

    s = Scheduler(redis, tasks=sched)
    await s.run_due(datetime(2026, 3, 2, 1, 4, tzinfo=UTC))
    await s.run_due(datetime(2026, 3, 2, 1, 5, tzinfo=UTC))
    assert len(ok) == 1
    last = json.loads(await redis.get("palmhall:periodic:last:bad"))
    assert last["status"] == "failed" and "upstream broken" in last["error"]


def test_invalid_cron_is_refused_at_registration() -> None:
    with pytest.raises(ValueError):
        Schedule().every("x", "not a cron")
