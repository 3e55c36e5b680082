"""Write events into the outbox inside the caller's transaction; read and replay them."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.functions import Count

from backend import clock
from backend.errors import DomainError, register_codes
from backend.jobs.models import OutboxEvent, OutboxStatus

register_codes(
    {
        "outbox.not_found": (404, "未找到该事件"),
        "outbox.not_dead": (409, "只有失败终止的事件可以重放"),
    }
)

DEFAULT_MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class Event:
    """What a handler receives: `id` is stable across retries, use it for idempotency."""

    id: uuid.UUID
    topic: str
    payload: dict[str, Any]
    attempt: int
    ordering_key: str | None = None


Handler = Callable[[Event], Awaitable[None]]


@dataclass
class Registry:
    handlers: dict[str, list[Handler]] = field(default_factory=dict)

    def on(self, topic: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.handlers.setdefault(topic, []).append(fn)
            return fn

        return register

    def for_topic(self, topic: str) -> list[Handler]:
        return self.handlers.get(topic, [])


# The process-wide registry; packages register with `@registry.on("topic")`.
registry = Registry()


def handler_name(fn: Handler) -> str:
    return f"{fn.__module__}.{getattr(fn, '__qualname__', repr(fn))}"


async def emit(
    topic: str,
    payload: dict[str, Any],
    *,
    using_db: BaseDBAsyncClient,
    ordering_key: str | None = None,
    delay_seconds: float = 0,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> uuid.UUID:
    """Record an event in the same transaction as the change it reports.

    `using_db` is required on purpose: an event written outside the change's transaction
    could survive a rollback or be lost after a commit.
    """
    event = await OutboxEvent.create(
        event_id=uuid.uuid4(),
        topic=topic,
        payload=payload,
        ordering_key=ordering_key,
        available_at=clock.now_ms() + int(delay_seconds * 1000),
        max_attempts=max_attempts,
        using_db=using_db,
    )
    return event.event_id


async def list_events(*, status: OutboxStatus | None = None, limit: int = 50) -> list[OutboxEvent]:
    query = OutboxEvent.all().order_by("-seq").limit(limit)
    if status is not None:
        query = query.filter(status=status)
    return await query


async def replay(*, event_id: uuid.UUID) -> OutboxEvent:
    """Give a dead event a fresh set of attempts, due now."""
    event = await OutboxEvent.get_or_none(event_id=event_id)
    if event is None:
        raise DomainError("outbox.not_found")
    if event.status != OutboxStatus.DEAD:
        raise DomainError("outbox.not_dead", details={"status": str(event.status)})
    await OutboxEvent.filter(event_id=event_id, status=OutboxStatus.DEAD).update(
        status=OutboxStatus.PENDING, attempts=0, available_at=clock.now_ms(), lease_until=None,
        locked_by=None, finished_at=None,
    )
    await event.refresh_from_db()
    return event


async def stats() -> dict[str, Any]:
    """Counts by status and the age of the oldest pending event (for /metrics)."""
    rows = await OutboxEvent.annotate(n=Count("seq")).group_by("status").values("status", "n")
    counts = {s.value: 0 for s in OutboxStatus}
    for row in rows:
        counts[str(row["status"])] = int(row["n"])
    oldest = await (
        OutboxEvent.filter(status__in=[OutboxStatus.PENDING, OutboxStatus.RUNNING])
        .order_by("created_at")
        .first()
        .values_list("created_at", flat=True)
    )
    age = 0.0
    if isinstance(oldest, datetime):
        age = max(0.0, (clock.now() - oldest).total_seconds())
    return {"counts": counts, "oldest_pending_age_seconds": age}
