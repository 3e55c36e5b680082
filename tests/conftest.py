"""Shared fixtures: a migrated database per test, Redis, and a live palmhall on loopback.

The suite runs on the embedded default (SQLite file, in-process fake Redis). When
DATABASE_URL / REDIS_URL point at real servers (CI's second run), the same tests run there:
PostgreSQL gets a scratch database migrated once and truncated between tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from sanic import Sanic

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from backend import clock, db  # noqa: E402
from backend.loopback import free_socket, start_app, stop_app  # noqa: E402, F401 - re-exported for tests
from backend.settings import Settings  # noqa: E402
from backend.stores import make_redis  # noqa: E402
from tests.browser_support import browser  # noqa: E402, F401 - the Chromium fixture for page tests

TEST_SECRETS = {
    "secret_key": "test-secret-key-0123456789abcdef0123456789",
    "hash_key": "test-hash-key-0123456789abcdef0123456789abc",
    "data_keys": "k1:" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "wechat_app_secret": "test-wechat-secret",
    "alipay_app_private_key": "test-alipay-key",
    "hall_app_secret": "test-hall-secret",
}

DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")
ON_POSTGRES = DATABASE_URL.startswith(("postgres", "postgresql"))

postgres_only = pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL")
real_redis_only = pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL pointing at a Redis server")


def _cheap_password_hashing() -> None:
    """argon2id at production cost takes ~125 ms a hash here, and every staff account in a test is hashed and
    checked five times (created, logged in, one-time password changed, logged in again). Tests keep argon2id
    and its checks (wrong passwords, lockout, rehash) at the smallest cost; production keeps OWASP's."""
    from argon2 import PasswordHasher

    from backend.identity import service as identity_service

    identity_service._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    identity_service._DUMMY_HASH = identity_service._hasher.hash("palmhall-dummy-password")


_cheap_password_hashing()


def pytest_report_header(config: pytest.Config) -> str:
    return (f"palmhall stores: database={'postgres' if ON_POSTGRES else 'sqlite'}, "
            f"redis={'server' if REDIS_URL else 'in-process fake'}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One clear line when the browser tests could not run (no Chromium on this machine)."""
    from tests.browser_support import HAVE_CHROMIUM, SKIP_LINE

    if not HAVE_CHROMIUM and not hasattr(config, "workerinput"):
        terminalreporter.write_line(SKIP_LINE, yellow=True, bold=True)


# ---- database -------------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_with_database(url, "postgres").replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@dataclass
class Database:
    url: str
    template: Path | None  # SQLite: a migrated file each test copies


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    if ON_POSTGRES:
        given = urlsplit(DATABASE_URL).path.lstrip("/")
        if given.startswith(("palmhall_ci_", "palmhall_test")):
            # A scratch database made for this run (.ci/run): the suite owns it.
            asyncio.run(db.migrate(DATABASE_URL))
            yield Database(url=DATABASE_URL, template=None)
            return
        # Any other database is never touched: the suite makes its own beside it.
        name = f"palmhall_test_{os.getpid()}"
        url = _with_database(DATABASE_URL, name)
        asyncio.run(_pg_admin(DATABASE_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(_pg_admin(DATABASE_URL, f'CREATE DATABASE "{name}"'))
        asyncio.run(db.migrate(url))
        yield Database(url=url, template=None)
        asyncio.run(_pg_admin(DATABASE_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    template = tmp_path_factory.mktemp("db") / "template.sqlite3"
    asyncio.run(db.migrate(f"sqlite://{template}"))
    yield Database(url="", template=template)


async def _truncate_all() -> None:
    conn = db.connection()
    _, rows = await conn.execute_query(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'tortoise_%'"
    )
    tables = ", ".join(f'"{r["tablename"]}"' for r in rows)
    if tables:
        await conn.execute_script(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
def database_url(database: Database, tmp_path: Path) -> str:
    if database.template is None:
        return database.url
    path = tmp_path / "palmhall.sqlite3"
    shutil.copy(database.template, path)
    return f"sqlite://{path}"


@pytest.fixture
async def orm(database_url: str) -> AsyncIterator[str]:
    """The ORM open on a clean, migrated database for this test."""
    await db.init(database_url, pool_max=20)
    if ON_POSTGRES:
        await _truncate_all()
    try:
        yield database_url
    finally:
        await db.close()


# ---- redis ----------------------------------------------------------------


@pytest.fixture
async def redis() -> AsyncIterator[Any]:
    client = make_redis(REDIS_URL)
    if REDIS_URL:
        await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


# ---- the platforms' fakes, as real HTTP servers on loopback ------------------


@dataclass
class Platforms:
    url: str
    wechat: Any
    alipay: Any
    realname: Any
    wechatpay: Any = None  # payments.wechatpay_fake.FakeWeChatPay
    alipay_trades: Any = None  # payments.alipay_fake.AlipayTrades (trade methods on the fake Alipay gateway)
    sms: Any = None  # notifications.sms_fake.FakeSms (texts: one-time codes; notices in test_notifications)

    def settings(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.wechatpay is not None:
            extra.update(self.wechatpay.client_settings(f"{self.url}/wechatpay"))
        if self.alipay_trades is not None:
            extra["alipay_seller_id"] = self.alipay_trades.seller_id
        if self.sms is not None:
            extra.update(sms_endpoint=f"{self.url}/sms/", sms_access_key_id=self.sms.access_key_id,
                            sms_access_key_secret=self.sms.access_key_secret)
        return {
            **extra,
            "wechat_api_base": f"{self.url}/wechat", "wechat_app_id": self.wechat.app_id,
            "wechat_app_secret": self.wechat.app_secret,
            "alipay_gateway": f"{self.url}/alipay/gateway.do", "alipay_app_id": self.alipay.app_id,
            "alipay_app_private_key": self.alipay.app_private_key_b64,
            "alipay_public_key": self.alipay.alipay_public_key_b64,
            "realname_api_base": f"{self.url}/realname", "realname_app_id": self.realname.app_id,
            "realname_secret": self.realname.secret,
        }


@pytest.fixture(scope="session")
def alipay_keys() -> Any:
    """RSA key pairs made at test time, once: generating them per test would cost seconds."""
    from backend.identity.alipay_fake import FakeAlipay

    return FakeAlipay.generate(app_id="2021000000000001")


@pytest.fixture(scope="session")
def wechatpay_keys() -> Any:
    """WeChat Pay merchant and platform key pairs, made once per test run."""
    from payments.wechatpay_fake import Keys

    return Keys.generate()


@pytest.fixture
async def platforms(alipay_keys: Any, wechatpay_keys: Any) -> AsyncIterator[Platforms]:
    from backend.identity import alipay_fake, realname_fake, wechat_fake
    from notifications import sms_fake
    from payments import alipay_fake as alipay_trades_fake
    from payments import wechatpay_fake

    Sanic.test_mode = True
    app = Sanic(f"fakes_{uuid.uuid4().hex[:8]}")
    wechat = wechat_fake.FakeWeChat(app_id="wx1234567890abcdef", app_secret="wechat-test-secret")
    alipay = alipay_fake.FakeAlipay(
        app_id=alipay_keys.app_id, app_public_key=alipay_keys.app_public_key,
        alipay_private_key=alipay_keys.alipay_private_key, app_private_key_b64=alipay_keys.app_private_key_b64,
        app_public_key_b64=alipay_keys.app_public_key_b64, alipay_public_key_b64=alipay_keys.alipay_public_key_b64,
    )
    realname = realname_fake.FakeRealName(app_id="palmhall-test", secret="realname-test-secret")
    app.blueprint(wechat_fake.blueprint(wechat, url_prefix="/wechat"))
    app.blueprint(alipay_fake.blueprint(alipay, url_prefix="/alipay"))
    app.blueprint(realname_fake.blueprint(realname, url_prefix="/realname"))
    wechatpay = wechatpay_fake.FakeWeChatPay.create(appid=wechat.app_id, keys=wechatpay_keys)
    alipay_trades = alipay_trades_fake.AlipayTrades(alipay)
    app.blueprint(wechatpay_fake.blueprint(wechatpay, url_prefix="/wechatpay"))
    app.blueprint(alipay_trades_fake.blueprint(alipay_trades, url_prefix="/alipay"))
    sms = sms_fake.FakeSms()
    app.blueprint(sms_fake.blueprint(sms, url_prefix="/sms"))
    server, url = await start_app(app)
    wechatpay.base_url, alipay_trades.base_url = f"{url}/wechatpay", f"{url}/alipay"
    try:
        yield Platforms(url=url, wechat=wechat, alipay=alipay, realname=realname, wechatpay=wechatpay,
                        alipay_trades=alipay_trades, sms=sms)
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


# ---- settings and a live server -------------------------------------------


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Tests override this to change settings of the live server."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, platforms: Platforms, settings_overrides: dict[str, Any]) -> Settings:
    return Settings(**{
        "env": "test",
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "embedded_worker": "false",
        "platform_fakes": "false",
        "secrets_file": str(tmp_path / "secrets.json"),
        "fakes_state_dir": str(tmp_path / "fakes"),
        "log_level": "WARNING",
        **TEST_SECRETS,
        **platforms.settings(),
        **settings_overrides,
    })


@dataclass
class Live:
    app: Sanic
    url: str
    client: httpx.AsyncClient


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[Live]:
    """palmhall serving real HTTP on loopback; tests may also use the ORM directly."""
    from backend.app import create_app

    Sanic.test_mode = True
    app = create_app(settings, name=f"palmhall_{uuid.uuid4().hex[:8]}")
    server, url = await start_app(app)
    if ON_POSTGRES:
        await _truncate_all()
    if REDIS_URL:
        await app.ctx.redis.flushdb()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        try:
            yield Live(app=app, url=url, client=client)
        finally:
            await stop_app(server)
            Sanic._app_registry.pop(app.name, None)


@pytest.fixture
def frozen_clock() -> Iterator[clock.FrozenClock]:
    from datetime import UTC, datetime

    c = clock.FrozenClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    previous = clock.use(c)
    try:
        yield c
    finally:
        clock.use(previous)
