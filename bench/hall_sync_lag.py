"""Main hall sync lag: cases submitted through the API, pushed by outbox workers to a fake hall that answers
after a set delay. Prints cases/s acknowledged, p50/p99 lag from commit to acknowledgement, and the ratio
to the fake hall's own capacity measured alone (same delay, same concurrency) in the same run."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sanic import Sanic  # noqa: E402

from backend import db  # noqa: E402
from backend.hall_sync.client import HallGateway  # noqa: E402
from backend.hall_sync.fake import FakeHall, blueprint  # noqa: E402
from backend.loopback import start_app, stop_app  # noqa: E402
from backend.settings import Settings  # noqa: E402

SECRET = "bench-hall-secret-0123456789"


def id_number(n: int) -> str:
    from backend.identity.personal import id_check_char

    first17 = f"33010619900101{n % 1000:03d}"
    return first17 + id_check_char(first17)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def hall_alone(url: str, pushes: int, concurrency: int) -> float:
    """Pushes per second the fake hall acknowledges when nothing else runs (the baseline)."""
    gw = HallGateway(base_url=url, app_id="palmhall", secret=SECRET, timeout=30)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(pushes):
        queue.put_nowait(i)

    async def one() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            await gw.push_case(idempotency_key=f"baseline-{i}", push={"case_no": f"BASE{i}", "seq": 1,
                                                                      "kind": "created", "status": "submitted"})

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await gw.aclose()
    return pushes / elapsed


async def run(args: argparse.Namespace) -> None:
    from backend.app import create_app, worker_config
    from backend.catalog import service as catalog
    from backend.catalog.codes import make_item_code, make_uscc
    from backend.catalog.schemas import ItemIn
    from backend.hall_sync.models import HallPush
    from backend.identity import service as identity
    from backend.identity.models import StaffRole
    from backend.jobs.worker import Worker

    tmp = Path(tempfile.mkdtemp(prefix="palmhall-bench-"))
    database_url = args.database_url or f"sqlite://{tmp / 'bench.sqlite3'}"
    await db.migrate(database_url)

    Sanic.test_mode = True
    fake = FakeHall(app_id="palmhall", secret=SECRET, delay=args.delay)
    hall_app = Sanic(f"bench_hall_{uuid.uuid4().hex[:6]}")
    hall_app.blueprint(blueprint(fake))
    hall_server, hall_url = await start_app(hall_app)
    concurrency = args.workers * args.batch

    from backend.identity.alipay_fake import FakeAlipay

    alipay = FakeAlipay.generate(app_id="2021000000000001")  # the client needs real keys to start
    settings = Settings.model_validate({
        "env": "test", "database_url": database_url, "redis_url": args.redis_url or "",
        "embedded_worker": "false", "platform_fakes": "false", "secrets_file": str(tmp / "secrets.json"),
        "log_level": "ERROR", "hall_api_base": hall_url, "hall_app_id": "palmhall", "hall_app_secret": SECRET,
        "hall_timeout_seconds": 30, "outbox_batch": args.batch, "outbox_poll_seconds": 0.02,
        "database_pool_max": max(10, concurrency), "files_dir": str(tmp / "files"),
        "alipay_app_private_key": alipay.app_private_key_b64, "alipay_public_key": alipay.alipay_public_key_b64,
    }).with_dev_secrets()
    app = create_app(settings, name=f"bench_palmhall_{uuid.uuid4().hex[:6]}")
    server, url = await start_app(app)
    try:
        # The hall alone first, with as many pushes in flight as the workers can have.
        capacity = await hall_alone(hall_url, min(args.cases * 2, 4000), concurrency)
        fake.answers.clear()
        fake.cases.clear()
        fake.calls.clear()

        agency = make_uscc("11330106002501730")
        code = make_item_code(agency, "4000607018000")
        hall = await catalog.create_hall(code="HB", name="基准测试便民服务中心", region_code="330106011")
        await catalog.upsert_item(row=ItemIn.model_validate({
            "code": code, "name": "困难证明开具", "department": "转塘街道办事处", "subject_type": "person",
            "materials": [{"code": "FORM", "name": "申请表", "form": "original"}], "statutory_days": 3,
            "promised_days": 2, "fees": [], "online_depth": 3, "channels": ["counter"], "halls": ["HB"],
            "effective_from": "2025-01-01"}))
        _, password = await identity.create_staff(username="bench.clerk", display_name="bench", hall_code="HB",
                                                  role=StaffRole.CLERK)
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            r = await client.post("/api/v1/staff/auth/login", json={"username": "bench.clerk", "password": password})
            r.raise_for_status()
            # A one-time password opens only the password change: set the clerk's own first.
            chosen = "bench-clerk-2026"
            r = await client.post("/api/v1/staff/auth/password",
                                  json={"old_password": password, "new_password": chosen},
                                  headers={"Authorization": f"Bearer {r.json()['access_token']}"})
            r.raise_for_status()
            r = await client.post("/api/v1/staff/auth/login", json={"username": "bench.clerk", "password": chosen})
            r.raise_for_status()
            headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
            workers = [Worker(worker_config(settings), name=f"bench-{i}") for i in range(args.workers)]
            tasks = [asyncio.create_task(w.run()) for w in workers]
            started = time.perf_counter()

            async def submit(i: int) -> None:
                body = {"item_code": code, "hall_id": hall.id, "form": {}, "materials": [
                    {"code": "FORM", "paper": True}], "delivery": {"method": "pickup"},
                        "applicant_name": "王小明", "applicant_id_number": id_number(i)}
                resp = await client.post("/api/v1/staff/cases", json=body, headers=headers)
                resp.raise_for_status()

            sem = asyncio.Semaphore(args.submitters)

            async def bounded(i: int) -> None:
                async with sem:
                    await submit(i)

            await asyncio.gather(*(bounded(i) for i in range(args.cases)))
            submitted = time.perf_counter() - started
            want = args.cases * 2
            while await HallPush.filter(acked_at__isnull=False).count() < want:
                await asyncio.sleep(0.05)
                if time.perf_counter() - started > args.timeout:
                    raise RuntimeError("timed out waiting for the hall to acknowledge every push")
            elapsed = time.perf_counter() - started
            for w in workers:
                w.stop()
            await asyncio.gather(*tasks)
        rows = await HallPush.filter(seq=2).values("committed_at", "acked_at")
        lags = [(r["acked_at"] - r["committed_at"]).total_seconds() for r in rows]
        rate = args.cases / elapsed
        hall_cases = capacity / 2  # each case is two pushes (created, submitted)
        print(f"cases: {args.cases}, hall delay {args.delay * 1000:.0f} ms, workers {args.workers} x batch "
              f"{args.batch}, database {database_url.split(':')[0]}")
        print(f"submitted through the API in {submitted:.1f}s; all acknowledged after {elapsed:.1f}s")
        print(f"acknowledged: {rate:.1f} cases/s")
        print(f"lag commit -> ack: p50 {statistics.median(lags) * 1000:.0f} ms, p99 {pct(lags, 0.99) * 1000:.0f} ms")
        print(f"fake hall alone: {capacity:.1f} pushes/s = {hall_cases:.1f} cases/s")
        print(f"ratio palmhall sync / hall capacity: {rate / hall_cases:.2f}")
        print(f"hall counted: {dict(fake.calls)}")
    finally:
        await stop_app(server)
        await stop_app(hall_server)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--delay", type=float, default=0.01, help="seconds the fake hall takes to answer a push")
    ap.add_argument("--workers", type=int, default=4, help="outbox workers (in this process)")
    ap.add_argument("--batch", type=int, default=20, help="events per worker claim")
    ap.add_argument("--submitters", type=int, default=8, help="concurrent API clients submitting cases")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                    help="a scratch database (default: a new SQLite file); it is migrated and filled")
    ap.add_argument("--redis-url", default=None)
    args = ap.parse_args(argv)
    try:
        asyncio.run(run(args))
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
