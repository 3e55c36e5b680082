"""`palmhall hall ...`: set a hall up from the command line through the same service functions as the staff API
(create and edit it, its counters, weekly hours, special hours, closures, the items it offers and their booking
rules), and show the whole set-up. Every change is audited as the operator (`cli`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import click
from pydantic import ValidationError

from backend.settings import Settings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@click.group()
def hall() -> None:
    """Service halls: create and set them up (counters, hours, closures, items, booking rules)."""


def _run(fn: Callable[[Settings], Awaitable[Any]]) -> Any:
    """Run with the database; a refusal is printed for the operator (every bad field named) and exits 1."""
    from backend.cli import run_with_db  # here, not at the top: backend.cli imports this module
    from backend.errors import DomainError, FieldErrors

    async def guarded(settings: Settings) -> Any:
        try:
            return await fn(settings)
        except FieldErrors as exc:
            for f in exc.details["fields"]:
                click.echo(f"invalid: {f['field']}: {f['message']} [{f['code']}]", err=True)
            sys.exit(1)
        except DomainError as exc:
            click.echo(f"{exc.code}: {exc.message}", err=True)
            sys.exit(1)
        except ValueError as exc:
            click.echo(f"invalid: {exc}", err=True)
            sys.exit(2)

    return run_with_db(guarded)


def _parse(model: Any, data: dict[str, Any]) -> Any:
    """The staff API's own schema, so the command line is refused exactly where the API is."""
    from backend.errors import FieldErrors

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for f in FieldErrors.from_pydantic(exc).details["fields"]:
            click.echo(f"invalid: {f['field']}: {f['message']} [{f['code']}]", err=True)
        sys.exit(2)


async def _hall_id(code: str) -> int:
    from backend.catalog import service as catalog

    return (await catalog.get_hall(code=code)).id


def _redis(settings: Settings) -> Any:
    """The Redis the servers use, so a change of hours drops the booking gates they hold (with no REDIS_URL the
    server's in-process Redis cannot be reached; its gates heal when their slots fill or expire)."""
    from backend.stores import make_redis

    return make_redis(settings.redis_url)


def _periods(text: str) -> list[dict[str, str]]:
    """'09:00-12:00,13:30-17:00' -> periods; '' or 'closed' -> none."""
    if text.strip().lower() in ("", "closed", "none"):
        return []
    out = []
    for part in text.split(","):
        start, sep, end = part.strip().partition("-")
        if not sep:
            raise click.BadParameter(f"{part!r}: a period is HH:MM-HH:MM, e.g. 09:00-12:00")
        out.append({"opens": start.strip(), "closes": end.strip()})
    return out


def _weekdays(text: str) -> list[int]:
    """'mon-fri', 'sat', 'mon,wed' -> weekday numbers (0 = Monday)."""
    days: list[int] = []
    for part in text.lower().split(","):
        first, sep, last = part.strip().partition("-")
        if first not in WEEKDAYS or (sep and last not in WEEKDAYS):
            raise click.BadParameter(f"{part!r}: weekdays are {', '.join(WEEKDAYS)}, or a range such as mon-fri")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last) if sep else WEEKDAYS.index(first)
        days.extend(range(a, b + 1))
    return days


def _echo(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


# ---- the hall itself --------------------------------------------------------------------------


@hall.command("create")
@click.option("--code", required=True, help="short code, e.g. HX-01")
@click.option("--name", required=True)
@click.option("--region", "region_code", required=True, help="6-digit county or 9-digit township code")
@click.option("--address", default="")
def create(code: str, name: str, region_code: str, address: str) -> None:
    """Create a hall."""
    from backend.catalog import service as catalog

    async def run(_: Settings) -> None:
        h = await catalog.create_hall(code=code, name=name, region_code=region_code, address=address)
        click.echo(f"hall {h.code} created (id {h.id})")

    _run(run)


@hall.command("edit")
@click.argument("code")
@click.option("--name", default=None)
@click.option("--address", default=None)
@click.option("--region", "region_code", default=None, help="a new region code numbers the cases opened from then on")
def edit(code: str, name: str | None, address: str | None, region_code: str | None) -> None:
    """Change a hall's name, address or region code."""
    from backend.catalog import service as catalog
    from backend.catalog.schemas import HallChange

    given = {k: v for k, v in {"name": name, "address": address, "region_code": region_code}.items() if v is not None}
    change = _parse(HallChange, given)

    async def run(_: Settings) -> None:
        h = await catalog.update_hall(hall_id=await _hall_id(code), changes=change.model_dump(exclude_unset=True),
                                      actor_kind="operator", actor_id="cli")
        click.echo(f"hall {h['code']}: {h['name']}, {h['address'] or '-'}, region {h['region_code']}")

    _run(run)


@hall.command("show")
@click.argument("code")
def show(code: str) -> None:
    """The hall's whole set-up as JSON: counters, weekly hours, special hours, closures, items, booking rules."""
    from backend.booking import hall_setup

    async def run(_: Settings) -> None:
        _echo(await hall_setup.setup(hall_id=await _hall_id(code)))

    _run(run)


# ---- counters ---------------------------------------------------------------------------------


@hall.group("counter")
def counter() -> None:
    """The hall's counters (窗口)."""


def _list(text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


@counter.command("add")
@click.argument("code")
@click.option("--number", type=int, required=True, help="the number the board calls: 3号窗口")
@click.option("--name", required=True)
@click.option("--groups", default=None, help="queue group letters it calls, e.g. A,B")
@click.option("--items", default=None, help="item codes it serves (their queue groups are called)")
def counter_add(code: str, number: int, name: str, groups: str | None, items: str | None) -> None:
    """Add a counter."""
    from backend.catalog import service as catalog
    from backend.catalog.schemas import CounterIn

    payload = _parse(CounterIn, {"number": number, "name": name, "groups": _list(groups) or [],
                                 "items": _list(items) or []})

    async def run(_: Settings) -> None:
        c = await catalog.create_counter(hall_id=await _hall_id(code), number=payload.number, name=payload.name,
                                         groups=payload.groups, items=payload.items, actor_kind="operator",
                                         actor_id="cli")
        click.echo(f"counter {c['number']} ({c['name']}) added, id {c['id']}, groups {','.join(c['groups'])}")

    _run(run)


@counter.command("edit")
@click.argument("code")
@click.argument("number", type=int)
@click.option("--name", default=None)
@click.option("--new-number", type=int, default=None)
@click.option("--groups", default=None, help="replace the queue groups it calls, e.g. A,C")
@click.option("--items", default=None, help="replace what it serves by these items' queue groups")
@click.option("--close", "active", flag_value=False, default=None, help="close the counter")
@click.option("--open", "active", flag_value=True, help="reopen a closed counter")
def counter_edit(code: str, number: int, name: str | None, new_number: int | None, groups: str | None,
                 items: str | None, active: bool | None) -> None:
    """Rename, renumber, change what counter NUMBER serves, close or reopen it."""
    from backend.catalog import service as catalog
    from backend.catalog.schemas import CounterChange

    given = {"name": name, "number": new_number, "groups": _list(groups), "items": _list(items), "active": active}
    change = _parse(CounterChange, {k: v for k, v in given.items() if v is not None})

    async def run(_: Settings) -> None:
        hall_id = await _hall_id(code)
        counter_id = await catalog.counter_number(hall_id=hall_id, number=number)
        c = await catalog.update_counter(hall_id=hall_id, counter_id=counter_id,
                                         **change.model_dump(exclude_unset=True), actor_kind="operator",
                                         actor_id="cli")
        state = "open" if c["active"] else "CLOSED"
        click.echo(f"counter {c['number']} ({c['name']}) {state}, groups {','.join(c['groups'])}")

    _run(run)


# ---- hours, special hours, closures -----------------------------------------------------------


@hall.command("hours")
@click.argument("code")
@click.option("--day", "days", multiple=True,
              help="WEEKDAYS=PERIODS, e.g. mon-fri=09:00-12:00,13:30-17:00 (repeatable; weekdays not given close)")
def set_hours(code: str, days: tuple[str, ...]) -> None:
    """Replace the hall's weekly hours; without --day, show them. Appointments the new hours leave out are
    cancelled (residents told)."""
    from backend.booking import hall_setup
    from backend.catalog.schemas import WeekIn

    week: dict[int, list[dict[str, str]]] = {}
    for spec in days:
        which, sep, periods = spec.partition("=")
        if not sep:
            raise click.BadParameter(f"{spec!r}: WEEKDAYS=PERIODS, e.g. mon-fri=09:00-12:00,13:30-17:00")
        for d in _weekdays(which):
            week[d] = _periods(periods)
    payload = _parse(WeekIn, {"days": [{"weekday": d, "periods": p} for d, p in sorted(week.items()) if p]})

    async def run(settings: Settings) -> None:
        hall_id = await _hall_id(code)
        if not days:
            answer = await hall_setup.week(hall_id=hall_id)
        else:
            redis = _redis(settings)
            try:
                answer = await hall_setup.set_week(hall_id=hall_id, week=payload.week(), staff_id=None, redis=redis)
            finally:
                await redis.aclose()
        for d in answer["hours"]:
            periods = ", ".join(f"{p['opens']}-{p['closes']}" for p in d["periods"]) or "closed"
            click.echo(f"{WEEKDAYS[d['weekday']]}  {periods}")
        _cancelled(answer)

    _run(run)


def _cancelled(answer: dict[str, Any]) -> None:
    ids = answer.get("cancelled_appointments") or []
    if ids:
        click.echo(f"{len(ids)} appointment(s) cancelled, residents told: {', '.join(map(str, ids))}")


@hall.command("special")
@click.argument("code")
@click.argument("day", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--hours", "periods", default=None, help="that day's periods, e.g. 09:00-12:00; 'closed' for none")
@click.option("--reason", default=None)
@click.option("--clear", is_flag=True, help="back to the weekly hours that day")
def special(code: str, day: Any, periods: str | None, reason: str | None, clear: bool) -> None:
    """Special hours for one date (shorter, or closed) in place of the weekly hours."""
    from backend.booking import hall_setup
    from backend.catalog.schemas import SpecialHoursIn

    on: date = day.date()
    payload = None
    if not clear:
        if periods is None or reason is None:
            raise click.UsageError("give --hours and --reason, or --clear")
        payload = _parse(SpecialHoursIn, {"periods": _periods(periods), "reason": reason})

    async def run(settings: Settings) -> None:
        hall_id = await _hall_id(code)
        redis = _redis(settings)
        try:
            if payload is None:
                await hall_setup.clear_special_hours(hall_id=hall_id, day=on, staff_id=None, redis=redis)
                click.echo(f"{on}: weekly hours again")
                return
            answer = await hall_setup.set_special_hours(hall_id=hall_id, day=on, staff_id=None, redis=redis,
                                                        periods=[p.span() for p in payload.periods],
                                                        reason=payload.reason)
        finally:
            await redis.aclose()
        hours_text = ", ".join(f"{p['opens']}-{p['closes']}" for p in answer["periods"]) or "closed"
        click.echo(f"{on}: {hours_text} ({answer['reason']})")
        _cancelled(answer)

    _run(run)


@hall.command("close")
@click.argument("code")
@click.argument("day", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--reason", required=True)
@click.option("--period", "periods", multiple=True, help="close only this part, e.g. 14:00-17:00 (repeatable)")
def close(code: str, day: Any, reason: str, periods: tuple[str, ...]) -> None:
    """Close the hall on DAY (or parts of it); the appointments that falls on are cancelled, residents told."""
    from backend.booking import hall_setup
    from backend.catalog.schemas import ClosureIn

    on: date = day.date()
    parts = [p for text in periods for p in _periods(text)]
    payload = _parse(ClosureIn, {"reason": reason, "periods": [{"start": p["opens"], "end": p["closes"]}
                                                               for p in parts] or None})

    async def run(settings: Settings) -> None:
        redis = _redis(settings)
        try:
            answer = await hall_setup.close(hall_id=await _hall_id(code), day=on, reason=payload.reason,
                                            periods=payload.spans(), staff_id=None, redis=redis)
        finally:
            await redis.aclose()
        what = "all day" if answer["whole_day"] else ", ".join(f"{p['start']}-{p['end']}" for p in answer["periods"])
        click.echo(f"{on}: closed {what} ({answer['reason']})")
        _cancelled(answer)

    _run(run)


@hall.command("reopen")
@click.argument("code")
@click.argument("day", type=click.DateTime(formats=["%Y-%m-%d"]))
def reopen(code: str, day: Any) -> None:
    """Open the hall again on DAY (cancelled appointments stay cancelled; their seats are free)."""
    from backend.booking import hall_setup

    on: date = day.date()

    async def run(settings: Settings) -> None:
        redis = _redis(settings)
        try:
            await hall_setup.reopen(hall_id=await _hall_id(code), day=on, staff_id=None, redis=redis)
        finally:
            await redis.aclose()
        click.echo(f"{on}: open again")

    _run(run)


# ---- items and booking rules ------------------------------------------------------------------


@hall.command("items")
@click.argument("code")
@click.option("--set", "codes", default=None, help="the item codes the hall offers, comma-separated (the whole list)")
def items(code: str, codes: str | None) -> None:
    """Show the items the hall offers, or set them."""
    from backend.catalog import service as catalog
    from backend.catalog.schemas import HallItemsIn

    payload = None if codes is None else _parse(HallItemsIn, {"items": _list(codes)})

    async def run(_: Settings) -> None:
        hall_id = await _hall_id(code)
        if payload is None:
            offered = await catalog.hall_items(hall_id=hall_id)
        else:
            answer = await catalog.set_hall_items(hall_id=hall_id, codes=payload.items, actor_kind="operator",
                                                  actor_id="cli")
            offered = answer["items"]
            click.echo(f"{len(answer['added'])} added, {len(answer['removed'])} removed")
        for i in offered:
            click.echo(f"{i['code']}  {i['queue_group']}  {i['name']}")

    _run(run)


@hall.command("rule")
@click.argument("code")
@click.option("--item", default=None, help="an item's own rule (default: the hall's default rule)")
@click.option("--set", "values", multiple=True, help="FIELD=VALUE, e.g. seats_per_slot=8 (repeatable; others stay)")
@click.option("--reset", is_flag=True, help="drop the item's own rule: it books by the hall's default")
def rule(code: str, item: str | None, values: tuple[str, ...], reset: bool) -> None:
    """Change a booking rule field by field (fields not given keep their values), or show the rules."""
    from backend.booking import service as booking
    from backend.counter.booking_views import Rule

    given: dict[str, Any] = {"item": item} if item else {}
    for spec in values:
        name, sep, value = spec.partition("=")
        if not sep:
            raise click.BadParameter(f"{spec!r}: FIELD=VALUE, e.g. seats_per_slot=8")
        given[name.strip()] = value.strip()
    payload = _parse(Rule, given)
    if reset and not item:
        raise click.UsageError("--reset needs --item")

    async def run(_: Settings) -> None:
        hall_id = await _hall_id(code)
        if reset:
            await booking.reset_rule(hall_id=hall_id, item_code=str(item), staff_id=None)
        elif payload.values():
            await booking.set_rule(hall_id=hall_id, item_code=payload.item, values=payload.values(), staff_id=None)
        _echo(await booking.rules(hall_id=hall_id))

    _run(run)
