"""Benchmark notification dispatch: N events queued, two worker processes sending to the fake WeChat server.

Prints messages/s, p50/p99 lag from event commit to sent, and the ratio to a bare loop that posts the
same payloads to the same fake with the same HTTP client (httpx) and the same concurrency.

    .venv/bin/python bench/notify_dispatch.py --events 10000 \
        --database-url postgres://postgres@127.0.0.1:5432/postgres --redis-url redis://127.0.0.1:6379/15

A PostgreSQL URL gets a scratch database beside the one named (dropped afterwards); the two workers
share Redis (the access token and the send-rate bucket), so a Redis URL is required.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRETS = {
    "PALMHALL_ENV": "test",
    "PALMHALL_SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789",
    "PALMHALL_HASH_KEY": "bench-hash-key-0123456789abcdef0123456789ab",
    "PALMHALL_DATA_KEYS": "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "WECHAT_APP_ID": "wxbench000000000000",
    "WECHAT_APP_SECRET": "bench-wechat-secret",
    "NOTIFY_QUIET_HOURS": "",
    "NOTIFY_RATE_WECHAT": "1000000/1",
    "NOTIFY_DAILY_CAP": "1000",
    "EMBEDDED_WORKER": "false",
    "PLATFORM_FAKES": "false",
    "LOG_LEVEL": "ERROR",
}
TEMPLATE = "appointment.booked"


def _with_db(url: str, name: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + name, p.query, p.fragment))


async def _pg(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_with_db(url, "postgres").replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# ---- the worker process ----------------------------------------------------------------------


async def worker_main() -> None:
    from backend import db, runtime
    from backend.jobs.outbox import Registry
    from backend.jobs.worker import Worker, WorkerConfig
    from backend.settings import Settings
    from backend.stores import make_redis
    from notifications import handlers

    settings = Settings.from_env()
    await db.init(settings.database_url, pool_max=25)
    redis = make_redis(settings.redis_url)
    runtime.set_current(runtime.Runtime(settings=settings, redis=redis))
    reg = Registry()
    handlers.register(reg)
    worker = Worker(WorkerConfig(lease_seconds=60, backoff_base=1, backoff_max=5, poll_seconds=0.02, batch=20),
                    handlers=reg)
    task = asyncio.create_task(worker.run())
    # The parent stops us by closing stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    worker.stop()
    await task
    await handlers.current()[1].aclose()
    await redis.aclose()
    await db.close()


# ---- the run ------------------------------------------------------------------------------------


async def seed(n: int, wechat_app_id: str) -> list[str]:
    from backend import db
    from backend.catalog import service as catalog
    from backend.identity.models import Channel, ChannelIdentity, Resident
    from backend.jobs import outbox
    from notifications import render
    from notifications.models import NotifyChannel, Subscription, SubscriptionKind

    hall = await catalog.create_hall(code="HB", name="转塘街道便民服务中心", region_code="330106011")
    template_id = render.load().templates[TEMPLATE].wechat["template_id"]  # type: ignore[index]
    openids = [f"o_bench_{i:06d}" for i in range(n)]
    await Resident.bulk_create([Resident() for _ in range(n)], batch_size=1000)
    ids = list(await Resident.all().order_by("id").values_list("id", flat=True))[:n]
    await ChannelIdentity.bulk_create([
        ChannelIdentity(resident_id=rid, channel=Channel.WECHAT, app_id=wechat_app_id, subject=openid)
        for rid, openid in zip(ids, openids, strict=True)], batch_size=1000)
    await Subscription.bulk_create([
        Subscription(resident_id=rid, channel=NotifyChannel.WECHAT, template_id=template_id,
                     kind=SubscriptionKind.ONE_TIME, remaining=1, last_answer="accept") for rid in ids],
        batch_size=1000)
    for start in range(0, n, 500):
        async with db.transaction() as tx:
            for i, rid in enumerate(ids[start:start + 500], start):
                await outbox.emit(TEMPLATE, {"appointment_id": i + 1, "resident_id": rid, "hall_id": hall.id,
                                             "item_code": "none", "starts_at": "2026-03-03T01:30:00+00:00",
                                             "ends_at": "2026-03-03T02:00:00+00:00"}, using_db=tx)
    return openids


def pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def bare_loop(url: str, payloads: list[dict[str, Any]], token: str, concurrency: int) -> float:
    """The same bodies to the same endpoint with the same client: what the network and the fake cost."""
    import httpx

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    async with httpx.AsyncClient(timeout=5.0) as http:
        async def one() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                r = await http.post(url, params={"access_token": token},
                                    content=json.dumps(body, ensure_ascii=False).encode(),
                                    headers={"Content-Type": "application/json; charset=utf-8"})
                assert r.json().get("errcode") == 0, r.text

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    from sanic import Sanic

    from backend import db
    from backend.identity import wechat_fake
    from backend.settings import Settings
    from notifications.models import Notification, NotifyChannel, NotifyStatus
    from tests.conftest import start_app, stop_app

    database_url = args.database_url
    scratch = None
    if database_url.startswith("postgres"):
        scratch = f"palmhall_bench_notify_{os.getpid()}"
        await _pg(database_url, f'CREATE DATABASE "{scratch}"')
        database_url = _with_db(database_url, scratch)
    Sanic.test_mode = True
    app = Sanic("bench_fake_wechat")
    fake = wechat_fake.FakeWeChat(app_id=SECRETS["WECHAT_APP_ID"], app_secret=SECRETS["WECHAT_APP_SECRET"])
    app.blueprint(wechat_fake.blueprint(fake, url_prefix="/wechat"))
    server, url = await start_app(app)
    env = {**os.environ, **SECRETS, "DATABASE_URL": database_url, "REDIS_URL": args.redis_url,
           "WECHAT_API_BASE": f"{url}/wechat", "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await db.migrate(database_url)
        settings = Settings.from_env(env)
        await db.init(settings.database_url, pool_max=5)
        from backend.stores import make_redis

        redis = make_redis(args.redis_url)
        await redis.flushdb()
        await redis.aclose()
        print(f"seeding {args.events} residents with consent and {args.events} events ...", flush=True)
        await seed(args.events, settings.wechat_app_id)
        started = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--worker"], env=env, cwd=ROOT, stdin=subprocess.PIPE)
                 for _ in range(args.workers)]
        done = 0
        while done < args.events:
            await asyncio.sleep(0.2)
            done = await Notification.filter(channel=NotifyChannel.WECHAT,
                                             status__in=[NotifyStatus.SENT, NotifyStatus.PERMANENT_FAILURE,
                                                         NotifyStatus.CANCELLED]).count()
            if time.perf_counter() - started > args.timeout:
                raise SystemExit(f"timed out with {done} of {args.events} done")
        elapsed = time.perf_counter() - started
        sent_rows = await Notification.filter(channel=NotifyChannel.WECHAT, status=NotifyStatus.SENT).values_list(
            "event_at_ms", "sent_at_ms")
        lags = sorted((s - e) / 1000 for e, s in sent_rows)
        failed = args.events - len(sent_rows)
        rate = len(sent_rows) / elapsed
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            p.wait(timeout=30)
        procs = []
        token = fake.current_token or ""
        payloads = [dict(m) for m in fake.sent]
        received = len(payloads)
        bare_seconds = await bare_loop(f"{url}/wechat/cgi-bin/message/subscribe/send", payloads, token,
                                       args.workers * 20)
        bare_rate = len(payloads) / bare_seconds
        print(json.dumps({
            "events": args.events, "workers": args.workers, "sent": len(sent_rows), "not_sent": failed,
            "wechat_messages_received": received,
            "seconds": round(elapsed, 2), "messages_per_second": round(rate, 1),
            "lag_p50_seconds": round(pct(lags, 50), 3), "lag_p99_seconds": round(pct(lags, 99), 3),
            "bare_loop_messages_per_second": round(bare_rate, 1),
            "ratio_to_bare_loop": round(rate / bare_rate, 3),
            "database": database_url.split("://", 1)[0],
        }, indent=2))
    finally:
        for p in procs:
            p.kill()
        await db.close()
        await stop_app(server)
        if scratch is not None:
            await _pg(args.database_url, f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker_main())
        return
    if not args.redis_url:
        parser.error("two worker processes share the access token and rate bucket in Redis: give --redis-url")
    if not args.database_url:
        scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"notify-bench-{uuid.uuid4().hex[:6]}.sqlite3"
        args.database_url = f"sqlite://{scratch}"
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
