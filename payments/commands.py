"""`palmhall payments ...`: reconcile a day's bills against the ledger."""

from __future__ import annotations

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
    from backend import runtime
    from backend.cli import run_with_db
    from backend.errors import DomainError
    from backend.settings import Settings, SettingsError
    from backend.stores import make_redis
    from payments import channels, reconcile

    try:
        when = date.fromisoformat(day)
    except ValueError:
        raise click.BadParameter("expected YYYY-MM-DD", param_hint="--date") from None

    seen: list[Settings] = []

    async def go(settings: Settings) -> dict[str, Any]:
        seen.append(settings)
        try:
            channels.for_settings(settings)
        except ValueError as exc:  # a key that does not load: name the settings, never the key
            raise SettingsError(f"ALIPAY_APP_PRIVATE_KEY / ALIPAY_PUBLIC_KEY: {exc}") from None
        redis = make_redis(settings.redis_url)
        runtime.set_current(runtime.Runtime(settings=settings, redis=redis))
        try:
            return await reconcile.run(day=when, settings=settings)
        finally:
            await redis.aclose()

    try:
        # The CLI's settings are the server's: in development, the fakes' addresses and keys.
        report = run_with_db(go)
    except SettingsError as exc:
        click.echo(f"palmhall: {exc}", err=True)
        sys.exit(2)
    except DomainError as exc:  # a platform that does not answer: say which, without a traceback
        hint = ""
        if exc.code == "payment.channel_unavailable" and seen and seen[0].fakes_enabled:
            hint = (f" (development: the platforms are the fakes `palmhall serve` serves on port {seen[0].port};"
                    " is it running?)")
        raise click.ClickException(f"{exc.code}: {exc.message}{hint}") from None
    click.echo(reconcile.render(report))
    sys.exit(0 if report["ok"] else 1)
