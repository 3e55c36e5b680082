"""`palmhall hall-sync status|resync|reconcile`: the main hall sync seen and nudged by an operator."""

from __future__ import annotations

import json
from typing import Any

import click

from backend.settings import Settings


@click.group("hall-sync")
def hall_sync() -> None:
    """Main hall (实体大厅) sync: pending pushes, lag, cursor, breaker; resync a case."""


@hall_sync.command("status")
def status_cmd() -> None:
    """Pending and dead pushes, lag, last change-feed cursor and the breaker's state (JSON)."""
    from backend.cli import run_with_db

    async def run(settings: Settings) -> dict[str, Any]:
        from backend.hall_sync import service
        from backend.stores import make_redis

        redis = make_redis(settings.redis_url)
        try:
            return await service.status(settings=settings, redis=redis)
        finally:
            await redis.aclose()

    click.echo(json.dumps(run_with_db(run), ensure_ascii=False, indent=2))


@hall_sync.command("resync")
@click.argument("case_no")
def resync_cmd(case_no: str) -> None:
    """Send the hall a full snapshot of CASE_NO now: steps of the case still waiting for the hall (stuck behind a
    long backoff, or dead) are superseded by it instead of holding it back."""
    from backend.cli import run_with_db
    from backend.hall_sync import service

    async def run(settings: Settings) -> service.Resync:
        return await service.resync(case_no=case_no)

    from backend.errors import DomainError

    try:
        done = run_with_db(run)
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from None
    at = f" at sequence {done.seq}" if done.seq is not None else ""
    click.echo(f"queued snapshot of {case_no} as event {done.event_id}{at}, "
               f"superseding {done.superseded} waiting step(s)")
