"""Benchmark the booking rush: N residents booking M seats of one slot as fast as they can.

Each resident (real-name verified, own access token) sends exactly one
`POST /api/v1/mp/appointments` with its own Idempotency-Key, over C keep-alive connections
that take the next waiting resident as soon as they are free. Exactly M answers must be
201 (the rest 409 booking.slot_full), and the database must hold exactly M appointments.
The bare Sanic app then gets the same number of POSTs of the same size and headers.

The same file is also the set-up (`--seed`) and check-up (`--verify`) step, run as
subprocesses against palmhall's database; and, in the load process, the plan (`rush_plan`).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
from load import Request

BOOK_PATH = "/api/v1/mp/appointments"
SCRIPT = Path(__file__).resolve()
# Out of reach on purpose: each resident sends one request anyway, and the rate limiter is
# not what this benchmark measures. Its Redis counter still runs on every request.
RATE_BOOKING = "1000000/60"
TOKEN_TTL_SECONDS = 4 * 3600
# Real county codes (GB/T 2260), so the ID numbers look like real ones in every field.
REGIONS = ("110101", "310104", "330106", "420106", "440305", "510107")
MAX_RESIDENTS = 200_000


# ---- the plan, run in the load process --------------------------------------------------------


class _Queue:
    """The residents still to send, shared by every connection of the load process.

    All connections run on one event loop, so a plain index is safe: whichever connection is
    free takes the next resident, as a real rush would (no connection sits on a fixed share).
    Not a generator on purpose: load.py then skips parsing response headers.
    """

    def __init__(self, tokens: list[str], slot_id: int, expect: tuple[int, ...]) -> None:
        self._tokens = tokens
        self._next = 0
        self._body = json.dumps({"slot_id": slot_id}, separators=(",", ":")).encode()
        self._expect = expect

    def __iter__(self) -> _Queue:
        return self

    def __next__(self) -> Request:
        if self._next >= len(self._tokens):
            raise StopIteration
        token = self._tokens[self._next]
        self._next += 1
        headers = (
            ("Content-Type", "application/json"),
            ("Authorization", f"Bearer {token}"),
            ("Idempotency-Key", uuid.uuid4().hex),  # 32 characters, unique per request
        )
        return Request("POST", BOOK_PATH, headers, self._body, self._expect)


_QUEUES: dict[tuple[str, str], _Queue] = {}


def rush_plan(conn_index: int, *, seed_file: str, group: str, expect: Sequence[int]) -> _Queue:
    """Every connection gets the same queue of `group` ("residents" or "warmup")."""
    key = (seed_file, group)
    queue = _QUEUES.get(key)
    if queue is None:
        seed = json.loads(Path(seed_file).read_text("utf-8"))
        part = seed[group]
        queue = _QUEUES[key] = _Queue(part["tokens"], int(part["slot_id"]), tuple(expect))
    return queue


# ---- set-up and check-up, run as subprocesses with palmhall's environment --------------------


def _id_numbers(count: int) -> list[str]:
    """`count` distinct valid 18-digit ID numbers (GB 11643 check digit), random each run."""
    import random
    from datetime import date, timedelta

    from backend.identity.personal import id_check_char, validate_id_number

    rng = random.Random(secrets.randbits(64))
    seen: set[str] = set()
    out: list[str] = []
    for _ in range(count * 10):  # bounded; collisions are rare (6 × 20,000 × 1,000 numbers)
        if len(out) == count:
            break
        birth = date(1950, 1, 1) + timedelta(days=rng.randrange(20_000))  # born 1950 to 2004
        first17 = f"{rng.choice(REGIONS)}{birth:%Y%m%d}{rng.randrange(1000):03d}"
        number = validate_id_number(first17 + id_check_char(first17))
        if number not in seen:
            seen.add(number)
            out.append(number)
    if len(out) != count:
        raise RuntimeError("could not draw enough distinct ID numbers")
    return out


async def _calendar_ready(day: Any) -> str:
    """Make sure the calendar knows `day`'s year; a note when this had to load a year file.

    chinese-calendar covers the years up to its release; a later year must be loaded by an
    operator. For a year nobody knows, this loads `data/calendar/<year>.example.json` (needs
    backend/catalog/calendar.py), so use a scratch database.
    """
    try:
        from backend.catalog import calendar
    except ImportError:
        calendar = None  # type: ignore[assignment]
    if calendar is not None and hasattr(calendar, "year_known"):
        if await calendar.year_known(day.year):
            return ""
    else:
        import chinese_calendar

        try:
            chinese_calendar.is_workday(day)
            return ""
        except NotImplementedError:
            pass
    data_file = SCRIPT.parent.parent / "data" / "calendar" / f"{day.year}.example.json"
    if calendar is None or not hasattr(calendar, "load_year") or not data_file.exists():
        raise RuntimeError(f"the calendar does not know {day.year}: load it (palmhall calendar) "
                           f"or provide {data_file} and backend/catalog/calendar.py")
    data = json.loads(data_file.read_text("utf-8"))
    await calendar.load_year(data=data, source_name=f"bench: {data_file.name}")
    return f"calendar: {day.year} was unknown, loaded {data_file.name} into the bench database"


async def _booking_day(hall_id: int) -> tuple[Any, list[str]]:
    """The next day the hall is open (Mon–Fri and a working day), asked the way booking asks."""
    from datetime import timedelta

    import chinese_calendar

    from backend import clock

    try:
        from backend.catalog import calendar
    except ImportError:
        calendar = None  # type: ignore[assignment]
    today = clock.now().astimezone(clock.SHANGHAI).date()
    notes: list[str] = []
    for i in range(1, 30):
        day = today + timedelta(days=i)
        if day.weekday() >= 5:
            continue  # the hall's opening hours are Monday to Friday
        note = await _calendar_ready(day)
        if note and note not in notes:
            notes.append(note)
        if calendar is not None and hasattr(calendar, "hall_is_open"):
            is_open = await calendar.hall_is_open(hall_id=hall_id, day=day)
        else:
            is_open = chinese_calendar.is_workday(day)
        if is_open:
            return day, notes
    raise RuntimeError("the hall is open on none of the next 29 days")


def _hours(value: Any) -> Any:
    """An opening time as OpeningHours stores it.

    Python 3.11's sqlite3 cannot bind a `datetime.time` (tortoise's TimeField passes it
    through), so on SQLite this seed process teaches sqlite3 the ISO text that TimeField
    reads back; and if the field becomes text, "HH:MM" is given.
    """
    import sqlite3
    from datetime import time

    from tortoise import fields

    from backend.catalog.models import OpeningHours

    if not isinstance(OpeningHours._meta.fields_map["opens"], fields.TimeField):
        return value.strftime("%H:%M")
    sqlite3.register_adapter(time, time.isoformat)
    return value


async def _seed(out: Path, residents: int, seats: int, warmup: int) -> None:
    from datetime import datetime, time, timedelta

    from backend import clock, db
    from backend.booking.models import BookingRule, Slot
    from backend.catalog.models import Hall, OpeningHours, ServiceItem, SubjectType
    from backend.crypto import blind_index
    from backend.identity import tokens
    from backend.identity.models import Resident
    from backend.settings import Settings
    from backend.stores import make_redis

    settings = Settings.from_env()
    await db.init(settings.database_url, pool_max=2)
    try:
        run = secrets.token_hex(4)  # codes stay unique if the database is used again
        hall = await Hall.create(code=f"RUSH-{run}", name="压测便民服务中心", region_code="110101001",
                                 address="压测路 1 号")
        for weekday in range(5):
            await OpeningHours.create(hall=hall, weekday=weekday, opens=_hours(time(9)),
                                      closes=_hours(time(17)))
        item = await ServiceItem.create(code=f"RUSH-{run}", name="压测预约事项", department="压测办",
                                        subject_type=SubjectType.PERSON)
        await item.halls.add(hall)
        await BookingRule.create(hall=hall, item=item, seats_per_slot=seats, horizon_days=30,
                                 min_notice_minutes=0, max_active_per_person=1000)
        day, notes = await _booking_day(hall.id)

        def at(hour: int) -> datetime:
            return datetime.combine(day, time(hour), tzinfo=clock.SHANGHAI)

        # Made directly (no availability look-up first), with the rush's capacity.
        slot = await Slot.create(hall=hall, item=item, day=day, starts_at=at(9),
                                 ends_at=at(9) + timedelta(minutes=30), capacity=seats)
        warm = await Slot.create(hall=hall, item=item, day=day, starts_at=at(10),
                                 ends_at=at(10) + timedelta(minutes=30), capacity=max(1, warmup // 2))

        numbers = _id_numbers(residents + warmup)
        hashes = [blind_index(settings.hash_key, "id_number", n) for n in numbers]
        taken: set[str] = set()
        for i in range(0, len(hashes), 500):
            taken.update(await Resident.filter(id_number_hash__in=hashes[i:i + 500])
                         .values_list("id_number_hash", flat=True))
        if taken:
            raise RuntimeError(f"{len(taken)} drawn ID numbers are already in this database; run again")
        now = clock.now()
        await Resident.bulk_create([Resident(id_number_hash=h, verified_at=now) for h in hashes],
                                   batch_size=500)
        ids: dict[str, int] = {}
        for i in range(0, len(hashes), 500):
            ids.update(dict(await Resident.filter(id_number_hash__in=hashes[i:i + 500])
                            .values_list("id_number_hash", "id")))
        access = [tokens.issue(secret=settings.secret_key, kind="resident", subject=ids[h],
                               ttl_seconds=TOKEN_TTL_SECONDS)[0] for h in hashes]

        if settings.redis_url:
            # A Redis kept from an earlier run may hold a seat gate under the same slot id
            # (a new database numbers slots from 1 again): drop ours, booking rebuilds it.
            from backend.booking.service import GATE

            redis = make_redis(settings.redis_url)
            try:
                await redis.delete(f"{GATE}{slot.id}", f"{GATE}{warm.id}")
            finally:
                await redis.aclose()

        seed = {
            "hall_id": hall.id, "item": item.code, "day": day.isoformat(), "notes": notes,
            "residents": {"slot_id": slot.id, "capacity": seats, "tokens": access[:residents]},
            "warmup": {"slot_id": warm.id, "capacity": warm.capacity, "tokens": access[residents:]},
        }
        out.write_text(json.dumps(seed), "utf-8")
    finally:
        await db.close()


async def _verify(seed_file: Path, out: Path) -> None:
    """What the database holds for the rush slot: its counter and its appointments."""
    from backend import db
    from backend.booking.models import Appointment, Slot
    from backend.settings import Settings

    seed = json.loads(seed_file.read_text("utf-8"))
    settings = Settings.from_env()
    await db.init(settings.database_url, pool_max=2)
    try:
        slot_id = int(seed["residents"]["slot_id"])
        slot = await Slot.get(id=slot_id)
        appointments = await Appointment.filter(slot_id=slot_id).count()
        people = len(set(await Appointment.filter(slot_id=slot_id).values_list("person_hash", flat=True)))
        out.write_text(json.dumps({"capacity": slot.capacity, "booked": slot.booked,
                                   "appointments": appointments, "people": people}), "utf-8")
    finally:
        await db.close()


# ---- the benchmark, run by you ---------------------------------------------------------------


def _preflight(port: int) -> None:
    """Fail before the rush, with a clear message, if the booking route is not there."""
    conn = http.client.HTTPConnection(harness.LOOPBACK, port, timeout=10)
    try:
        # No token: a wired route answers 401 and nothing is booked.
        conn.request("POST", BOOK_PATH, body=b"{}", headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
    finally:
        conn.close()
    if status == 404:
        raise RuntimeError(f"POST {BOOK_PATH} answers 404: the booking routes are not on the "
                           "mini-program surface yet (see miniprogram_api/surface.py)")
    if status != 401:
        raise RuntimeError(f"POST {BOOK_PATH} without a token answered {status}, not 401")


def _rush(server: harness.Server, seed_file: Path, seed: dict[str, Any], *, concurrency: int,
          timeout: float, expect: Sequence[int]) -> dict[str, Any]:
    """The warm-up group (results dropped), then the measured group, with server CPU."""
    common: dict[str, Any] = {"duration": timeout, "concurrency": concurrency, "error_codes": True}
    if seed["warmup"]["tokens"]:
        harness.run_load(server.port, rush_plan, max_requests=len(seed["warmup"]["tokens"]),
                         factory_args={"seed_file": str(seed_file), "group": "warmup",
                                       "expect": list(expect)}, **common)
    cpu0 = harness.group_cpu_seconds(server.proc.pid)
    result = harness.run_load(server.port, rush_plan, max_requests=len(seed["residents"]["tokens"]),
                              factory_args={"seed_file": str(seed_file), "group": "residents",
                                            "expect": list(expect)}, **common)
    cpu1 = harness.group_cpu_seconds(server.proc.pid)
    if cpu0 is not None and cpu1 is not None and result["duration"] > 0:
        result["server_cpu"] = round((cpu1 - cpu0) / result["duration"], 3)
    result["server"] = server.name
    result["setup"] = server.description
    return result


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} ×{v:,}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "none"


def run(args: argparse.Namespace) -> int:
    residents, seats, concurrency = args.residents, args.seats, args.concurrency
    warmup = args.warmup if args.warmup is not None else 2 * concurrency
    env = {
        # Both sides of the token: the seed signs with it, the server verifies with it.
        "PALMHALL_SECRET_KEY": secrets.token_urlsafe(48),
        "PALMHALL_HASH_KEY": secrets.token_urlsafe(48),
        "RATE_BOOKING_RESIDENT": RATE_BOOKING,
    }
    with tempfile.TemporaryDirectory(prefix="palmhall-rush-") as tmp:
        seed_file = Path(tmp) / "seed.json"
        verify_file = Path(tmp) / "verify.json"

        def seed_database(server_env: dict[str, str], workdir: Path) -> None:
            harness.run_step([sys.executable, str(SCRIPT), "--seed", str(seed_file),
                              "--residents", str(residents), "--seats", str(seats),
                              "--warmup", str(warmup)],
                             env=server_env, cwd=workdir, log=workdir / "seed.log",
                             what="seeding residents and the slot")

        # palmhall first this time: the bare app is sent the very tokens the seed made.
        with harness.palmhall_server(args.database_url, args.redis_url, env=env,
                                     before_serve=seed_database) as server:
            _preflight(server.port)
            seed = json.loads(seed_file.read_text("utf-8"))
            ours = _rush(server, seed_file, seed, concurrency=concurrency, timeout=args.timeout,
                         expect=(201, 409))
            harness.run_step([sys.executable, str(SCRIPT), "--verify", str(seed_file),
                              "--out", str(verify_file)], env=server.env, cwd=server.log.parent,
                             log=server.log.parent / "verify.log", what="checking the database")
            db_state = json.loads(verify_file.read_text("utf-8"))
        with harness.bare_server() as bare:
            base = _rush(bare, seed_file, seed, concurrency=concurrency, timeout=args.timeout,
                         expect=(200,))

    title = (f"POST {BOOK_PATH}: {residents:,} residents, one request each, {seats:,} seats in one "
             f"slot ({seed['day']}), {concurrency} keep-alive connections, 1 worker process each, "
             f"loopback, {os.cpu_count()} CPUs")
    print(harness.format_table(title, [base, ours]), flush=True)

    expected = min(seats, residents)
    granted = int(ours["statuses"].get("201", 0))
    codes = dict(ours.get("error_codes", {}))
    unexpected = {k: v for k, v in codes.items() if k != "booking.slot_full"}
    unexpected_status = {s: n for s, n in ours["statuses"].items() if s not in ("201", "409")}
    db_ok = db_state["booked"] == expected and db_state["appointments"] == expected == db_state["people"]
    ok = granted == expected and db_ok
    fewer = " (fewer residents than seats: each gets one)" if expected < seats else ""
    print(f"bookings granted: {granted:,} of {seats:,} seats -> "
          f"{'OK' if ok else f'WRONG, expected {expected:,}'}{fewer} "
          f"(in the database: slot.booked={db_state['booked']:,}, "
          f"{db_state['appointments']:,} appointments of {db_state['people']:,} people)")
    print(f"palmhall answers by status: {_counts(ours['statuses'])}")
    print(f"errors by code: {_counts(codes)}")
    print(f"rush: {ours['requests']:,} requests answered in {ours['duration']:.2f} s by palmhall, "
          f"{base['duration']:.2f} s by bare; requests/s counts 201 and 409 answers for palmhall, "
          f"200 for bare; warm-up: {warmup:,} other residents on another slot first, not counted")
    for note in seed.get("notes", []):
        print(note)
    print(f"rate limits: RATE_BOOKING_RESIDENT={RATE_BOOKING}, out of reach on purpose (one request "
          "per resident anyway), so rate limiting is not what is measured; its Redis counter "
          "still runs on every request")
    if unexpected or unexpected_status or ours["errors"]:
        print("FAILED: answers other than 201 and 409 booking.slot_full, or client errors "
              f"(statuses {unexpected_status or '-'}, codes {unexpected or '-'}, "
              f"client {ours['error_kinds'] or '-'})", file=sys.stderr)
        return 1
    if not ok:
        print(f"FAILED: {granted:,} bookings granted, expected {expected:,}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--residents", type=int, default=5_000, help="residents, one POST each (default 5,000)")
    ap.add_argument("--seats", type=int, default=200, help="seats in the slot (default 200)")
    ap.add_argument("--concurrency", type=int, default=64, help="keep-alive connections (default 64)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="residents who book another slot first, not measured (default 2 × concurrency)")
    ap.add_argument("--timeout", type=float, default=300.0, help="longest a rush may take, in seconds")
    ap.add_argument("--database-url", default=None,
                    help="palmhall DATABASE_URL (default: a scratch SQLite file); a database you "
                         "don't mind filling, it gets a new hall and the residents each run")
    ap.add_argument("--redis-url", default=None,
                    help="palmhall REDIS_URL (default: the in-process fake Redis)")
    # Internal steps, run by the benchmark itself with palmhall's environment.
    ap.add_argument("--seed", metavar="OUT", help=argparse.SUPPRESS)
    ap.add_argument("--verify", metavar="SEED", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 1 <= args.residents <= MAX_RESIDENTS or not 1 <= args.seats <= MAX_RESIDENTS:
        ap.error(f"--residents and --seats must be in [1, {MAX_RESIDENTS:,}]")
    if not 1 <= args.concurrency <= 4096 or not 0 < args.timeout <= 3600:
        ap.error("--concurrency must be in [1, 4096] and --timeout in (0, 3600]")
    if args.warmup is not None and not 0 <= args.warmup <= 10_000:
        ap.error("--warmup must be in [0, 10,000]")
    if args.seed:
        asyncio.run(_seed(Path(args.seed), args.residents, args.seats,
                          args.warmup if args.warmup is not None else 2 * args.concurrency))
        return 0
    if args.verify:
        if not args.out:
            ap.error("--verify needs --out")
        asyncio.run(_verify(Path(args.verify), Path(args.out)))
        return 0
    harness.install_signal_handlers()
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; servers and load generator stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # required: the load process imports this file to find `rush_plan`
    sys.exit(main())
