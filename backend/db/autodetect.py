"""The config tortoise's migration autodetector reads (`palmhall makemigrations`), and a dry check.

Migrations are database-neutral operations; the autodetector compares the models with the
committed migration files, so an in-memory database is all it needs.
"""

from __future__ import annotations

from backend.db import tortoise_config

TORTOISE_ORM = tortoise_config("sqlite://:memory:")


async def pending_changes() -> list[str]:
    """Names of the migrations `makemigrations` would write now; writes nothing."""
    from tortoise.cli.cli import tortoise_cli_context
    from tortoise.migrations.autodetector import MigrationAutodetector

    apps = {label: dict(app) for label, app in TORTOISE_ORM["apps"].items()}
    async with tortoise_cli_context(TORTOISE_ORM) as ctx:
        assert ctx.apps is not None
        writers = await MigrationAutodetector(ctx.apps, apps).changes()
    return [f"{w.app_label}: {w.name}" for w in writers]
