"""Periodic tasks on cron-like schedules, each tick run once across all workers (Redis lock)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from croniter import croniter
from redis.asyncio import Redis

from backend import clock
from backend.clock import SHANGHAI

log = logging.getLogger("palmhall.periodic")

TaskFn = Callable[[datetime], Awaitable[None]]


@dataclass(frozen=True)
class PeriodicTask:
    name: str
    # Standard 5-field cron (or 6 with seconds last), read in Asia/Shanghai: "0 9 * * *" is 09:00 Beijing.
    cron: str
    fn: TaskFn
    timeout_seconds: float = 300

    def next_after(self, moment: datetime) -> datetime:
        local = moment.astimezone(SHANGHAI)
        nxt: datetime = croniter(self.cron, local).get_next(datetime)
        return nxt


@dataclass
class Schedule:
    tasks: dict[str, PeriodicTask] = field(default_factory=dict)

    def every(self, name: str, cron: str, *, timeout_seconds: float = 300) -> Callable[[TaskFn], TaskFn]:
        if not croniter.is_valid(cron):
            raise ValueError(f"invalid cron expression for {name}: {cron!r}")

        def register(fn: TaskFn) -> TaskFn:
            if name in self.tasks:
                raise ValueError(f"periodic task {name} registered twice")
            self.tasks[name] = PeriodicTask(name, cron, fn, timeout_seconds)
            return fn

        return register


# The process-wide schedule; packages register with `@schedule.every("name", "*/5 * * * *")`.
schedule = Schedule()

LOCK_PREFIX = "palmhall:periodic:tick:"
LAST_PREFIX = "palmhall:periodic:last:"


class Scheduler:
    """Runs due ticks. Each tick's lock key names the tick itself, so any number of
    schedulers (one per worker process) agree on who runs it without agreeing on clocks."""

    def __init__(self, redis: Redis, *, tasks: Schedule | None = None, owner: str = "") -> None:
        self.redis = redis
        self.schedule = tasks or schedule
        self.owner = owner
        self._next: dict[str, datetime] = {}
        self._stop = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        self._stop.set()

    async def run_due(self, now: datetime | None = None, *, wait: bool = True) -> list[str]:
        """Start every task whose tick has come; returns the names this scheduler won.

        With `wait` the won tasks are awaited; otherwise they run in the background so a long
        task does not hold back the others' ticks."""
        now = now or clock.now()
        won: list[str] = []
        runs = []
        for task in self.schedule.tasks.values():
            tick = self._next.get(task.name)
            if tick is None:
                tick = self._next[task.name] = task.next_after(now - timedelta(microseconds=1))
            if tick > now:
                continue
            self._next[task.name] = task.next_after(now)
            key = f"{LOCK_PREFIX}{task.name}:{tick.isoformat()}"
            ttl = max(60, int(task.timeout_seconds * 2))
            if await self.redis.set(key, self.owner or "1", nx=True, ex=ttl):
                won.append(task.name)
                runs.append(self._run(task, tick))
        if wait:
            await asyncio.gather(*runs)
        else:
            for coro in runs:
                t = asyncio.create_task(coro)
                self._running.add(t)
                t.add_done_callback(self._running.discard)
        return won

    async def _run(self, task: PeriodicTask, tick: datetime) -> None:
        started = clock.now()
        status = "ok"
        error = None
        try:
            async with asyncio.timeout(task.timeout_seconds):
                await task.fn(tick)
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("periodic task failed", extra={"task": task.name})
        record = {
            "tick": tick.isoformat(), "status": status, "error": error, "owner": self.owner,
            "seconds": (clock.now() - started).total_seconds(),
        }
        await self.redis.set(LAST_PREFIX + task.name, json.dumps(record))

    async def run(self, *, resolution: float = 1.0) -> None:
        log.info("periodic scheduler started", extra={"tasks": sorted(self.schedule.tasks)})
        while not self._stop.is_set():
            try:
                await self.run_due(wait=False)
            except Exception:
                log.exception("periodic scheduler tick failed")
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=resolution)
            except TimeoutError:
                pass
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
