"""Demo data for `make run`: loaded once, recorded in palmhall_meta so a rerun adds nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from backend import db
from backend.audit import service as audit
from backend.meta import Meta
from backend.settings import Settings

MARKER = "demo_data"

Loader = Callable[[Settings], Awaitable[None]]
# (name, loader, what it prints for the person running `make run`)
Step = tuple[str, Loader, str]
STEPS: list[Step] = []


def step(name: str, description: str) -> Callable[[Loader], Loader]:
    def register(fn: Loader) -> Loader:
        STEPS.append((name, fn, description))
        return fn

    return register


async def load(settings: Settings) -> bool:
    """Run every step not yet recorded; returns False when there was nothing to do."""
    marker = await Meta.get_or_none(key=MARKER)
    done: list[str] = list(marker.value) if marker else []
    todo = [s for s in STEPS if s[0] not in done]
    if marker is not None and not todo:
        return False
    for name, fn, _ in todo:
        await fn(settings)
        done.append(name)
    async with db.transaction() as tx:
        await Meta.update_or_create(key=MARKER, defaults={"value": done}, using_db=tx)
        await audit.record(using_db=tx, actor_kind="system", actor_id="demo", action="demo.loaded",
                           details={"steps": [s[0] for s in todo]})
    return True


def describe() -> list[str]:
    return [desc for _, _, desc in STEPS]


DEMO_HALL = "HX-01"
DEMO_PASSWORD = "palmhall-demo-2026"  # noqa: S105 - local demo data only, printed by `make run`


@step("hall", f"hall {DEMO_HALL} 西湖区转塘街道便民服务中心")
async def _hall(settings: Settings) -> None:
    from backend.catalog import service as catalog

    async with db.transaction() as tx:
        await catalog.create_hall(code=DEMO_HALL, name="西湖区转塘街道便民服务中心", region_code="330106011",
                                  address="杭州市西湖区转塘街道象山路1号", using_db=tx)


@step("catalog", "10 service items from data/catalog/demo_items.json, through `palmhall catalog import`'s importer")
async def _catalog(settings: Settings) -> None:
    from backend.catalog import importer

    report = await importer.import_file(importer.DEMO_FILE, actor_id="demo")
    if report.refused:
        raise RuntimeError(f"demo catalog: rows refused: {report.of('refused')}")


@step("staff", f"staff demo.clerk (clerk) and demo.admin (hall_admin), password {DEMO_PASSWORD}")
async def _staff(settings: Settings) -> None:
    from backend.identity import service as identity
    from backend.identity.models import Staff, StaffRole

    for username, name, role in (("demo.clerk", "演示窗口人员", StaffRole.CLERK),
                                 ("demo.admin", "演示大厅管理员", StaffRole.HALL_ADMIN)):
        member, _ = await identity.create_staff(username=username, display_name=name, hall_code=DEMO_HALL,
                                                role=role, actor="demo")
        # A known password is acceptable for local demo data only; production accounts get one-time ones.
        await Staff.filter(id=member.id).update(password_hash=identity.hash_password(DEMO_PASSWORD),
                                                must_change_password=False)


DEMO_KIOSK_NAME = "演示自助终端"


@step("kiosk", "one kiosk in HX-01 (`palmhall kiosk list`; its secret was printed when it was registered)")
async def _kiosk(settings: Settings) -> None:
    from backend.crypto import KeyRing
    from backend.identity import service as identity

    device, secret = await identity.register_kiosk(hall_code=DEMO_HALL, name=DEMO_KIOSK_NAME,
                                                   keyring=KeyRing.parse(settings.data_keys), actor="demo")
    print(f"  demo kiosk {device.device_id} secret {secret}")


@step("kiosk_link", "the demo kiosk's one-time enrollment link, printed above: open it in the kiosk's browser "
                    "(expired or used? `palmhall kiosk link DEVICE_ID` prints a new one)")
async def _kiosk_link(settings: Settings) -> None:
    from backend.catalog.models import Hall
    from backend.crypto import KeyRing
    from backend.identity import service as identity
    from backend.identity.models import Kiosk

    hall = await Hall.get(code=DEMO_HALL)
    device = await Kiosk.filter(hall_id=hall.id, name=DEMO_KIOSK_NAME).order_by("id").first()
    if device is None:
        device, _ = await identity.register_kiosk(hall_code=DEMO_HALL, name=DEMO_KIOSK_NAME,
                                                  keyring=KeyRing.parse(settings.data_keys), actor="demo")
    code, _ = await identity.issue_enrollment(device_id=device.device_id, actor="demo")
    print(f"  demo kiosk {device.device_id} enrollment link (one use, 24 h): "
          f"{identity.enrollment_link(settings.public_base_url, code)}")


@step("hours", "HX-01 open Mon–Fri 09:00–12:00 and 13:30–17:00, counters 1–3, booking rules")
async def _hours(settings: Settings) -> None:
    from datetime import time

    from backend.booking.models import BookingRule
    from backend.catalog.models import Counter, Hall, OpeningHours

    hall = await Hall.get(code=DEMO_HALL)
    async with db.transaction() as tx:
        for weekday in range(5):
            await OpeningHours.create(hall=hall, weekday=weekday, opens=time(9), closes=time(12), using_db=tx)
            await OpeningHours.create(hall=hall, weekday=weekday, opens=time(13, 30), closes=time(17), using_db=tx)
        for number, name, groups in ((1, "综合受理1号窗口", ["A", "B"]), (2, "社保医保2号窗口", ["B", "C"]),
                                     (3, "综合受理3号窗口", ["A", "B", "C"])):
            await Counter.create(hall=hall, number=number, name=name, groups=groups, using_db=tx)
        await BookingRule.create(hall=hall, item=None, slot_minutes=30, seats_per_slot=6, horizon_days=14,
                                 min_notice_minutes=60, cancel_cutoff_minutes=120, max_active_per_person=3,
                                 release_cooldown_minutes=30, walkin_daily_quota=200, using_db=tx)


@step("queue", "today's queue in HX-01: six walk-in tickets (groups A, B, C), the first two called at "
               "counters 1 and 3, so the board, the console and the dashboard have something to show")
async def _queue(settings: Settings) -> None:
    from backend.booking import queue
    from backend.catalog.models import Counter, Hall
    from backend.identity.models import Staff
    from backend.stores import make_redis

    hall = await Hall.get(code=DEMO_HALL)
    clerk = await Staff.get(username="demo.clerk")
    redis = make_redis(settings.redis_url)
    try:
        # Through the same functions a kiosk and a counter use, so every row, audit entry and event is real.
        for group in ("A", "A", "B", "A", "C", "B"):
            await queue.walk_in(hall_id=hall.id, group=group, actor="demo:demo", redis=redis)
        for number in (1, 3):
            counter = await Counter.get(hall_id=hall.id, number=number)
            await queue.call_next(counter_id=counter.id, staff_id=clerk.id, redis=redis)
    finally:
        await redis.aclose()
