"""Tortoise configuration, start-up and shut-down, transactions and migrations."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tortoise import Tortoise
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.connection import get_connection
from tortoise.context import TortoiseContext
from tortoise.transactions import in_transaction

# tortoise hands datetime.time to sqlite3 as is, and sqlite3 has no adapter for it (TimeField
# reads ISO strings back fine): store it as ISO text, which also sorts correctly.
sqlite3.register_adapter(dt.time, lambda t: t.isoformat())

APP_LABEL = "palmhall"
MIGRATIONS = "backend.db.migrations"

# Every module that defines tortoise models. One app, one migration history: foreign keys
# between packages stay possible, ownership of tables stays with each package's service.
MODEL_MODULES: list[str] = [
    "backend.jobs.models",
    "backend.audit.models",
    "backend.meta",
    "backend.catalog.models",
    "backend.identity.models",
    "backend.booking.models",
    "backend.cases.models",
    "backend.hall_sync.models",
    "payments.models",
    "notifications.models",
]


def normalize_url(url: str) -> str:
    """Accept the usual spellings (postgresql://, postgres+asyncpg://) and make SQLite dirs."""
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres+asyncpg", "postgresql+asyncpg", "asyncpg"):
        url = "postgres://" + url.split("://", 1)[1]
    elif scheme == "sqlite":
        path = url.split("://", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    return url


def tortoise_config(database_url: str, *, pool_max: int = 10) -> dict[str, Any]:
    url = normalize_url(database_url)
    if url.startswith("postgres://"):
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}maxsize={pool_max}&minsize=1"
    elif url.startswith("sqlite://") and "journal_mode" not in url:
        # WAL lets readers go on while a writer commits; busy_timeout waits instead of failing.
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}journal_mode=WAL&busy_timeout=10000"
    return {
        "connections": {"default": url},
        "apps": {
            APP_LABEL: {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": MIGRATIONS,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def init(database_url: str, *, pool_max: int = 10) -> TortoiseContext:
    """Open the ORM for this process; the context is global so every task sees it."""
    return await Tortoise.init(
        config=tortoise_config(database_url, pool_max=pool_max), _enable_global_fallback=True
    )


async def close() -> None:
    await Tortoise.close_connections()


def connection() -> BaseDBAsyncClient:
    return get_connection("default")


def dialect() -> str:
    """'postgres' or 'sqlite'."""
    return str(connection().capabilities.dialect)


@asynccontextmanager
async def transaction() -> AsyncIterator[BaseDBAsyncClient]:
    """One database transaction; pass the yielded connection as `using_db=`."""
    async with in_transaction("default") as conn:
        yield conn


async def migrate(database_url: str, *, progress: Any = None) -> None:
    """Apply the committed migrations (never `generate_schemas`)."""
    from tortoise.migrations.api import migrate as run_migrations

    await run_migrations(config=tortoise_config(database_url, pool_max=2), progress=progress)
    await Tortoise.close_connections()


