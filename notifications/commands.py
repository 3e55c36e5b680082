"""`palmhall notifications`: delivery statistics and retrying failed messages."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import click

from backend import clock
from backend.clock import SHANGHAI
from backend.settings import Settings

_AGO = re.compile(r"^(\d+)\s*([smhd])$")


def parse_since(text: str) -> datetime:
    """`24h`, `30m`, `7d` ago, or an ISO date / time (read in Asia/Shanghai when it has no zone)."""
    m = _AGO.match(text.strip())
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return clock.now() - timedelta(**{unit: int(m.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter("use e.g. 24h, 7d, 2026-03-01 or 2026-03-01T08:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=SHANGHAI)


@click.group("notifications")
def notifications() -> None:
    """Notification delivery: statistics and retries."""


@notifications.command("stats")
@click.option("--since", default="24h", show_default=True, help="24h, 7d or an ISO date/time")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def stats(since: str, as_json: bool) -> None:
    """Counts by channel, template and state (delivered where the channel reports it); p50/p99 seconds from
    event to sent."""
    from backend.cli import run_with_db
    from notifications import service

    moment = parse_since(since)

    async def run(_: Settings) -> dict[str, Any]:
        return await service.stats(since=moment)

    result = run_with_db(run)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    click.echo(f"since {result['since']}")
    click.echo(f"{'channel':<12} {'template':<32} {'state':<18} {'count':>7}")
    for row in result["counts"]:
        click.echo(f"{row['channel']:<12} {row['template']:<32} {row['status']:<18} {row['n']:>7}")
    for channel, lag in result["lag"].items():
        click.echo(f"{channel}: {lag['sent']} sent ({lag.get('delivered', 0)} delivered), "
                   f"event to sent p50 {lag['p50_seconds']:.3f}s p99 {lag['p99_seconds']:.3f}s")


@notifications.command("retry")
@click.option("--failed-since", required=True, help="24h, 7d or an ISO date/time")
def retry(failed_since: str) -> None:
    """Queue again the messages that failed since then (each once more on its channel)."""
    from backend.cli import run_with_db
    from notifications import service

    moment = parse_since(failed_since)

    async def run(settings: Settings) -> list[int]:
        return await service.retry_failed(since=moment, policy=service.Policy.from_settings(settings))

    ids = run_with_db(run)
    click.echo(f"{len(ids)} message(s) queued again" + (f": {', '.join(map(str, ids))}" if ids else ""))
