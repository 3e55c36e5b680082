"""The outbox worker: claim due events under a lease, run their handlers, retry or bury them."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from backend import clock, db
from backend.jobs.models import OutboxEvent, OutboxStatus
from backend.jobs.outbox import Event, Registry, handler_name, registry

log = logging.getLogger("palmhall.worker")

# A row is due when it is pending and its time has come, or when it is running but the
# worker holding it let its lease expire (crashed, killed, partitioned). Events sharing an
# ordering key wait for every earlier one that is not done, so one case's steps keep order.
_DUE = """
    ((c.status = 'pending' AND c.available_at <= {now})
      OR (c.status = 'running' AND c.lease_until < {now}))
    AND (c.ordering_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM outbox_event p
        WHERE p.ordering_key = c.ordering_key AND p.seq < c.seq
          AND p.status IN ('pending', 'running', 'dead')))
"""

_CLAIM = """
UPDATE outbox_event
   SET status = 'running', attempts = attempts + 1, locked_by = {me}, lease_until = {lease}
 WHERE seq IN (
    SELECT c.seq FROM outbox_event c
     WHERE {due}
     ORDER BY c.available_at, c.seq
     LIMIT {limit} {lock})
RETURNING seq, event_id, topic, payload, attempts, max_attempts, done_handlers, ordering_key
"""


def _claim_sql(dialect: str) -> str:
    if dialect == "postgres":
        return _CLAIM.format(
            me="$1", lease="$2", due=_DUE.format(now="$3"), limit="$4", lock="FOR UPDATE SKIP LOCKED"
        )
    # SQLite has one writer at a time, so the single UPDATE is the claim. Its '?' are bound in
    # order of appearance: me, lease, now, now, limit.
    return _CLAIM.format(me="?", lease="?", due=_DUE.format(now="?"), limit="?", lock="")


@dataclass
class WorkerConfig:
    lease_seconds: float = 60
    backoff_base: float = 2
    backoff_max: float = 3600
    poll_seconds: float = 0.5
    batch: int = 20


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: half fixed, half random, so retries spread out."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    r = (rng or random).random()
    return delay / 2 + r * delay / 2


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


class Worker:
    def __init__(self, config: WorkerConfig, *, handlers: Registry | None = None, name: str | None = None) -> None:
        self.config = config
        self.handlers = handlers or registry
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def claim(self) -> list[dict[str, Any]]:
        now = clock.now_ms()
        lease = now + int(self.config.lease_seconds * 1000)
        conn = db.connection()
        dialect = db.dialect()
        sql = _claim_sql(dialect)
        if dialect == "postgres":
            params: list[Any] = [self.name, lease, now, self.config.batch]
        else:
            params = [self.name, lease, now, now, self.config.batch]
        # execute_query_dict: tortoise's execute_query drops the rows of an UPDATE on asyncpg.
        return await conn.execute_query_dict(sql, params)

    async def run_once(self) -> int:
        """Claim one batch and run it to the end; returns how many events were claimed."""
        rows = await self.claim()
        if rows:
            await asyncio.gather(*(self._process(row) for row in rows))
        return len(rows)

    async def run(self) -> None:
        log.info("outbox worker started", extra={"worker": self.name})
        while not self._stop.is_set():
            try:
                claimed = await self.run_once()
            except Exception:
                log.exception("outbox claim failed; retrying")
                claimed = 0
            if claimed == 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=self.config.poll_seconds)
                except TimeoutError:
                    pass
        log.info("outbox worker stopped", extra={"worker": self.name})

    async def _process(self, row: dict[str, Any]) -> None:
        event = Event(
            id=uuid.UUID(str(row["event_id"])),
            topic=row["topic"],
            payload=_loads(row["payload"]),
            attempt=int(row["attempts"]),
            ordering_key=row.get("ordering_key"),
        )
        done: list[str] = list(_loads(row["done_handlers"]) or [])
        error: str | None = None
        timeout = self.config.lease_seconds * 0.8
        for fn in self.handlers.for_topic(event.topic):
            name = handler_name(fn)
            if name in done:
                continue  # a handler that already succeeded is not run again on retry
            try:
                async with asyncio.timeout(timeout):
                    await fn(event)
            except Exception as exc:
                error = f"{name}: {type(exc).__name__}: {exc}\n" + "".join(
                    traceback.format_exception(exc)[-3:]
                )
                break
            done.append(name)
        await self._finish(int(row["seq"]), event, int(row["max_attempts"]), done, error)

    async def _finish(self, seq: int, event: Event, max_attempts: int, done: list[str], error: str | None) -> None:
        held = OutboxEvent.filter(seq=seq, locked_by=self.name, status=OutboxStatus.RUNNING)
        if error is None:
            changed = await held.update(
                status=OutboxStatus.DONE, finished_at=clock.now(), lease_until=None,
                done_handlers=done, last_error=None,
            )
            outcome = "done"
        elif event.attempt >= max_attempts:
            changed = await held.update(
                status=OutboxStatus.DEAD, finished_at=clock.now(), lease_until=None,
                done_handlers=done, last_error=error[:4000],
            )
            outcome = "dead"
        else:
            delay = backoff_delay(event.attempt, base=self.config.backoff_base, cap=self.config.backoff_max)
            changed = await held.update(
                status=OutboxStatus.PENDING, available_at=clock.now_ms() + int(delay * 1000),
                lease_until=None, locked_by=None, done_handlers=done, last_error=error[:4000],
            )
            outcome = "retry"
        if not changed:
            # Our lease ran out and another worker took the event; it will finish it.
            log.warning("outbox lease lost", extra={"event_id": str(event.id), "topic": event.topic})
            return
        level = logging.WARNING if outcome != "done" else logging.DEBUG
        log.log(level, "outbox event %s", outcome, extra={
            "event_id": str(event.id), "topic": event.topic, "attempt": event.attempt,
            "error": (error or "").splitlines()[0] if error else None,
        })
