"""`palmhall payments ...`: reconcile a day's bills against the ledger."""

from __future__ import annotations

import asyncio
import sys
from datetime import date
from typing import Any

import click


@click.group()
def payments() -> None:
    """Payment orders, refunds and reconciliation."""


@payments.command("reconcile")
@click.option("--date", "day", required=True, help="the business day, YYYY-MM-DD (Asia/Shanghai)")
def reconcile_cmd(day: str) -> None:
    """Fetch the WeChat Pay and Alipay bills of DAY and compare them line by line with the ledger; exits 1 on
    any difference."""
    from backend import db, runtime
    from backend.settings import Settings
    from backend.stores import make_redis
    from payments import reconcile

    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter("expected YYYY-MM-DD", param_hint="--date") from None
    settings = Settings.from_env()

    async def go() -> dict[str, Any]:
        await db.init(settings.database_url, pool_max=2)
        redis = make_redis(settings.redis_url)
        runtime.set_current(runtime.Runtime(settings=settings, redis=redis))
        try:
            return await reconcile.run(day=when, settings=settings)
        finally:
            await redis.aclose()
            await db.close()

    report = asyncio.run(go())
    click.echo(reconcile.render(report))
    sys.exit(0 if report["ok"] else 1)
