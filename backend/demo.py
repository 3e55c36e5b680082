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
                                  address="杭州市西湖区转塘街道象山路1号", using_db=tx, actor_id="demo")


@step("catalog", "10 service items from data/catalog/demo_items.json, through `palmhall catalog import`'s importer")
async def _catalog(settings: Settings) -> None:
    from backend.catalog import importer

    report = await importer.import_file(importer.DEMO_FILE, actor_id="demo")
    if report.refused:
        raise RuntimeError(f"demo catalog: rows refused: {report.of('refused')}")


@step("staff", f"staff demo.clerk (clerk) and demo.admin (hall_admin), password {DEMO_PASSWORD}")
async def _staff(settings: Settings) -> None:
    from backend.identity import service as identity
    from backend.identity.models import StaffRole

    for username, name, role in (("demo.clerk", "演示窗口人员", StaffRole.CLERK),
                                 ("demo.admin", "演示大厅管理员", StaffRole.HALL_ADMIN)):
        await identity.create_staff(username=username, display_name=name, hall_code=DEMO_HALL, role=role,
                                    actor="demo")
        # A known password is acceptable for local demo data only; production accounts get one-time ones.
        await identity.set_known_password(username=username, password=DEMO_PASSWORD, actor="demo")


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
    from backend.catalog import service as catalog
    from backend.crypto import KeyRing
    from backend.identity import service as identity

    hall = await catalog.get_hall(code=DEMO_HALL)
    ours = [k for k in await identity.list_kiosks(hall_id=hall.id) if k["name"] == DEMO_KIOSK_NAME]
    if ours:
        device_id = ours[0]["device_id"]
    else:
        device, _ = await identity.register_kiosk(hall_code=DEMO_HALL, name=DEMO_KIOSK_NAME,
                                                  keyring=KeyRing.parse(settings.data_keys), actor="demo")
        device_id = device.device_id
    code, _ = await identity.issue_enrollment(device_id=device_id, actor="demo")
    print(f"  demo kiosk {device_id} enrollment link (one use, 24 h): "
          f"{identity.enrollment_link(settings.public_base_url, code)}")


@step("hours", "HX-01 open Mon–Fri 09:00–12:00 and 13:30–17:00, counters 1–3, booking rules")
async def _hours(settings: Settings) -> None:
    # Through the functions the staff API and `palmhall hall` use, so the demo is set up like any hall.
    from backend.booking import hall_setup
    from backend.booking import service as booking
    from backend.catalog import hours
    from backend.catalog import service as catalog

    hall = await catalog.get_hall(code=DEMO_HALL)
    day = [hours.span("09:00", "12:00"), hours.span("13:30", "17:00")]
    await hall_setup.set_week(hall_id=hall.id, week={weekday: day for weekday in range(5)}, staff_id=None,
                              redis=None, operator="demo")
    for number, name, groups in ((1, "综合受理1号窗口", ["A", "B"]), (2, "社保医保2号窗口", ["B", "C"]),
                                 (3, "综合受理3号窗口", ["A", "B", "C"])):
        await catalog.create_counter(hall_id=hall.id, number=number, name=name, groups=groups, items=[],
                                     actor_kind="operator", actor_id="demo")
    await booking.set_rule(hall_id=hall.id, item_code=None, staff_id=None, operator="demo", values={
        "slot_minutes": 30, "seats_per_slot": 6, "horizon_days": 14, "min_notice_minutes": 60,
        "cancel_cutoff_minutes": 120, "max_active_per_person": 3, "release_cooldown_minutes": 30,
        "walkin_daily_quota": 200})


@step("queue", "today's queue in HX-01: six walk-in tickets (groups A, B, C), the first two called at "
               "counters 1 and 3, so the board, the console and the dashboard have something to show")
async def _queue(settings: Settings) -> None:
    from backend.booking import queue
    from backend.catalog import service as catalog
    from backend.identity import service as identity
    from backend.stores import make_redis

    hall = await catalog.get_hall(code=DEMO_HALL)
    clerk = await identity.staff_id(username="demo.clerk")
    redis = make_redis(settings.redis_url)
    try:
        # Through the same functions a kiosk and a counter use, so every row, audit entry and event is real; at any
        # hour `make run` happens to run (a kiosk refuses tickets outside opening hours, the demo makes them anyway).
        for group in ("A", "A", "B", "A", "C", "B"):
            await queue.walk_in(hall_id=hall.id, group=group, actor="demo:demo", redis=redis, check_hours=False)
        for number in (1, 3):
            counter = await catalog.counter_number(hall_id=hall.id, number=number)
            await queue.call_next(counter_id=counter, staff_id=clerk, redis=redis)
    finally:
        await redis.aclose()
