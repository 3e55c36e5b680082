"""Catalog operations other packages call: halls, and service items (事项) with versioned guides."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q

from backend import db
from backend.audit import service as audit
from backend.catalog.models import Counter, Hall, OpeningHours, ServiceItem, ServiceItemVersion
from backend.catalog.schemas import (
    CHANNEL_LABELS,
    DEPTH_LABELS,
    FORM_LABELS,
    SUBJECT_LABELS,
    WEEKDAY_LABELS,
    Channel,
    CounterOut,
    DayHours,
    FeeOut,
    Guide,
    HallOut,
    HallRef,
    ItemIn,
    ItemSummary,
    MaterialOut,
    Period,
    fen_display,
    today,
    validate_hall_code,
    validate_region,
)
from backend.errors import DomainError, FieldErrors, register_codes

register_codes({
    "catalog.hall_not_found": (404, "未找到该服务大厅"),
    "catalog.counter_number_taken": (409, "本厅已有这个号码的窗口"),
    "catalog.counter_serves_nothing": (422, "窗口应至少办理一个业务类别或事项"),
    "catalog.hall_exists": (409, "该服务大厅编码已存在"),
    "catalog.counter_not_found": (404, "该服务大厅没有这个窗口"),
    "catalog.item_not_found": (404, "未找到该事项"),
    "catalog.version_not_found": (404, "该事项没有这个版本的办事指南"),
    "catalog.item_inactive": (409, "该事项已停止办理"),
})

Outcome = Literal["added", "changed", "unchanged"]

# The versioned part of an item: a change to any of these makes a new ServiceItemVersion.
CONTENT_FIELDS = (
    "name", "department", "subject_type", "legal_basis", "conditions", "materials", "statutory_days",
    "promised_days", "fees", "channels", "online_depth", "certificate_type",
)
# Kept on the item and changed in place (search aids and hall operations, not the guide's promise).
ITEM_FIELDS = ("keywords", "queue_group", "active")


async def get_hall(*, code: str | None = None, hall_id: int | None = None,
                   using_db: BaseDBAsyncClient | None = None) -> Hall:
    query = Hall.filter(code=code) if code is not None else Hall.filter(id=hall_id)
    hall = await query.using_db(using_db).first()
    if hall is None:
        raise DomainError("catalog.hall_not_found")
    return hall


async def hall_counter(*, counter_id: int, hall_id: int) -> Counter:
    """One of the hall's active counters: another hall's is "not found" here, like one that does not exist."""
    counter = await Counter.get_or_none(id=counter_id, hall_id=hall_id, active=True)
    if counter is None:
        raise DomainError("catalog.counter_not_found", details={"counter_id": counter_id})
    return counter


async def create_hall(*, code: str, name: str, region_code: str, address: str = "",
                      using_db: BaseDBAsyncClient | None = None, actor_kind: str = "operator",
                      actor_id: str | int | None = "cli") -> Hall:
    """A new hall, audited. The region code must be one the region table knows (InvalidValue, a ValueError,
    says why in Chinese)."""
    region_code = validate_region(region_code)
    code = validate_hall_code(code.strip())
    if using_db is None:
        async with db.transaction() as tx:
            return await _create_hall(tx, code, name.strip(), region_code, address.strip(), actor_kind, actor_id)
    return await _create_hall(using_db, code, name.strip(), region_code, address.strip(), actor_kind, actor_id)


async def _create_hall(tx: BaseDBAsyncClient, code: str, name: str, region_code: str, address: str,
                       actor_kind: str, actor_id: str | int | None) -> Hall:
    if await Hall.filter(code=code).using_db(tx).exists():
        raise DomainError("catalog.hall_exists", details={"code": code})
    try:
        hall = await Hall.create(code=code, name=name, region_code=region_code, address=address, using_db=tx)
    except IntegrityError:
        raise DomainError("catalog.hall_exists", details={"code": code}) from None
    await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="hall.created",
                       target_kind="hall", target_id=hall.id,
                       details={"code": code, "name": name, "region_code": region_code, "address": address})
    return hall


def describe_hall(hall: Hall) -> dict[str, Any]:
    return {"id": hall.id, "code": hall.code, "name": hall.name, "region_code": hall.region_code,
            "address": hall.address, "active": hall.active}


HALL_FIELDS = ("name", "address", "region_code")


async def update_hall(*, hall_id: int, changes: dict[str, Any], actor_kind: str,
                      actor_id: str | int | None) -> dict[str, Any]:
    """Change a hall's name, address or region code (fields not given keep their values); audited when
    anything changes. A new region code numbers the cases opened from then on."""
    async with db.transaction() as tx:
        hall = await Hall.filter(id=hall_id).using_db(tx).select_for_update().first()
        if hall is None:
            raise DomainError("catalog.hall_not_found")
        wanted = {k: v.strip() if isinstance(v, str) else v for k, v in changes.items()
                  if k in HALL_FIELDS and v is not None}
        if "region_code" in wanted:
            wanted["region_code"] = validate_region(wanted["region_code"])
        changed = {k: v for k, v in wanted.items() if getattr(hall, k) != v}
        if changed:
            before = {k: getattr(hall, k) for k in changed}
            for k, v in changed.items():
                setattr(hall, k, v)
            await hall.save(using_db=tx, update_fields=list(changed))
            await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="hall.changed",
                               target_kind="hall", target_id=hall_id, details={"before": before, "after": changed})
    return describe_hall(hall)


async def halls_for(*, hall_ids: set[int] | None) -> list[dict[str, Any]]:
    """Halls, active or not, by code: every hall (hall_ids None) or those named."""
    query = Hall.all() if hall_ids is None else Hall.filter(id__in=sorted(hall_ids))
    return [describe_hall(h) for h in await query.order_by("code")]


async def list_halls() -> list[dict[str, Any]]:
    """Active halls with their active counters and weekly opening hours (Asia/Shanghai)."""
    halls = await Hall.filter(active=True).order_by("code")
    ids = [h.id for h in halls]
    counters: dict[int, list[CounterOut]] = {}
    for c in await Counter.filter(hall_id__in=ids, active=True).order_by("number"):
        counters.setdefault(c.hall_id, []).append(  # type: ignore[attr-defined]
            CounterOut(id=c.id, number=c.number, name=c.name, groups=list(c.groups)))
    hours: dict[int, dict[int, list[Period]]] = {}
    for oh in await OpeningHours.filter(hall_id__in=ids).order_by("weekday", "opens"):
        hours.setdefault(oh.hall_id, {}).setdefault(oh.weekday, []).append(  # type: ignore[attr-defined]
            Period(opens=oh.opens.strftime("%H:%M"), closes=oh.closes.strftime("%H:%M")))
    return [HallOut(
        id=h.id, code=h.code, name=h.name, region_code=h.region_code, address=h.address,
        counters=counters.get(h.id, []),
        opening_hours=[DayHours(weekday=d, weekday_label=WEEKDAY_LABELS[d], periods=p)
                       for d, p in sorted(hours.get(h.id, {}).items())],
    ).model_dump(mode="json") for h in halls]


async def queue_groups(*, hall_id: int) -> dict[str, Any]:
    """A hall's queue groups as a kiosk offers them for walk-in tickets: the active items of each group and
    the counters that serve it."""
    hall = await get_hall(hall_id=hall_id)
    groups: dict[str, dict[str, Any]] = {}
    for item in await ServiceItem.filter(halls__id=hall_id, active=True).order_by("code"):
        groups.setdefault(item.queue_group, {"group": item.queue_group, "items": [], "counters": []})[
            "items"].append(item.name)
    for c in await Counter.filter(hall_id=hall_id, active=True).order_by("number"):
        for g in c.groups:
            if g in groups:
                groups[g]["counters"].append(c.number)
    return {"hall": {"id": hall.id, "name": hall.name}, "groups": [groups[g] for g in sorted(groups)]}


# ---- service items --------------------------------------------------------------------------


def item_content(row: ItemIn) -> dict[str, Any]:
    """The versioned guide of a row, as JSON values (what a version stores and its hash covers)."""
    data = row.model_dump(mode="json", include=set(CONTENT_FIELDS))
    return {k: data[k] for k in CONTENT_FIELDS}


def content_hash(content: dict[str, Any]) -> str:
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _version_content(v: ServiceItemVersion) -> dict[str, Any]:
    return {k: (getattr(v, k).value if k == "subject_type" else getattr(v, k)) for k in CONTENT_FIELDS}


async def missing_halls(codes: list[str], *, using_db: BaseDBAsyncClient | None = None) -> list[str]:
    """Those of `codes` that name no hall."""
    if not codes:
        return []
    found = set(await Hall.filter(code__in=codes).using_db(using_db).values_list("code", flat=True))
    return sorted(set(codes) - found)


async def upsert_item(*, row: ItemIn, using_db: BaseDBAsyncClient | None = None,
                      actor_kind: str = "operator", actor_id: str | None = "import") -> Outcome:
    """Add the item or bring it in line with `row`; a new version only when the guide's content changes.

    Raises FieldErrors for what only the database can tell (unknown halls, an effective date before
    the current version's); nothing is written then.
    """
    if using_db is None:
        async with db.transaction() as tx:
            return await _upsert(row, tx, actor_kind, actor_id)
    return await _upsert(row, using_db, actor_kind, actor_id)


async def _upsert(row: ItemIn, tx: BaseDBAsyncClient, actor_kind: str, actor_id: str | None) -> Outcome:
    problems: list[dict[str, str]] = []
    missing = await missing_halls(row.halls, using_db=tx)
    if missing:
        problems.append({"field": "halls", "code": "catalog.unknown_hall",
                         "message": f"服务大厅不存在：{'、'.join(missing)}"})
    halls = await Hall.filter(code__in=row.halls).using_db(tx).order_by("code")
    content = item_content(row)
    digest = content_hash(content)
    # Serializes concurrent imports of one item (PostgreSQL; a no-op on SQLite, whose writers take turns).
    item = await ServiceItem.filter(code=row.code).using_db(tx).select_for_update().first()

    if item is None:
        if problems:
            raise FieldErrors(problems)
        item = await ServiceItem.create(
            code=row.code, name=row.name, department=row.department, subject_type=row.subject_type,
            keywords=row.keywords, queue_group=row.queue_group, active=row.active, current_version=1,
            using_db=tx,
        )
        await ServiceItemVersion.create(item=item, version=1, effective_from=row.effective_from or today(),
                                        content_hash=digest, using_db=tx, **content)
        if halls:
            await item.halls.add(*halls, using_db=tx)
        await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="catalog.item_added",
                           target_kind="service_item", target_id=row.code,
                           details={"version": 1, "halls": row.halls})
        return "added"

    current = await ServiceItemVersion.filter(item_id=item.id, version=item.current_version).using_db(tx).get()
    changed = [k for k, v in _version_content(current).items() if content[k] != v]
    if digest != current.content_hash and not changed:
        changed = ["content"]  # same values, hashed differently (an older canonical form)
    new_effective = row.effective_from or today()
    new_version = bool(changed) or (row.effective_from is not None and row.effective_from != current.effective_from)
    if new_version and new_effective < current.effective_from:
        problems.append({"field": "effective_from", "code": "catalog.effective_before_current",
                         "message": f"生效日期不能早于当前版本（第{current.version}版，"
                                    f"{current.effective_from.isoformat()}生效）"})
    if problems:
        raise FieldErrors(problems)

    linked = sorted(await item.halls.all().using_db(tx).values_list("code", flat=True))
    item_changes = [k for k in ITEM_FIELDS if getattr(row, k) != getattr(item, k)]
    if linked != row.halls:
        item_changes.append("halls")
    if not new_version and not item_changes:
        return "unchanged"

    for k in ITEM_FIELDS:
        setattr(item, k, getattr(row, k))
    if new_version:
        item.current_version = current.version + 1
        item.name, item.department, item.subject_type = row.name, row.department, row.subject_type
        await ServiceItemVersion.create(item=item, version=item.current_version, effective_from=new_effective,
                                        content_hash=digest, using_db=tx, **content)
        if not changed:
            changed = ["effective_from"]
    await item.save(using_db=tx)
    if "halls" in item_changes:
        await item.halls.clear(using_db=tx)
        if halls:
            await item.halls.add(*halls, using_db=tx)
    await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="catalog.item_changed",
                       target_kind="service_item", target_id=row.code,
                       details={"version": item.current_version, "new_version": new_version,
                                "fields": changed + item_changes})
    return "changed"


async def _current_versions(items: list[ServiceItem]) -> dict[int, ServiceItemVersion]:
    """Each item's current version, in one query."""
    if not items:
        return {}
    wanted = {(i.id, i.current_version) for i in items}
    rows = await ServiceItemVersion.filter(item_id__in=[i.id for i in items],
                                           version__in=list({v for _, v in wanted}))
    return {r.item_id: r for r in rows if (r.item_id, r.version) in wanted}  # type: ignore[attr-defined]


def _has_fees(fees: list[dict[str, Any]]) -> bool:
    # A listed fee of 0 fen (e.g. 工本费 waived) is still "no fee" for the person.
    return any(f["amount_fen"] > 0 for f in fees)


async def search_items(*, keyword: str | None, department: str | None, subject_type: str | None,
                       hall_id: int | None, limit: int, offset: int) -> tuple[list[ItemSummary], int]:
    """Active items matching every whitespace-separated word of `keyword` in name, keywords or department.

    `icontains` becomes LIKE with % and _ escaped by tortoise, so it behaves the same on SQLite and
    PostgreSQL and a user's "%" matches a literal percent sign.
    """
    q = ServiceItem.filter(active=True)
    for term in (keyword or "").split()[:5]:
        q = q.filter(Q(name__icontains=term) | Q(keywords__icontains=term) | Q(department__icontains=term))
    if department:
        q = q.filter(department=department)
    if subject_type:
        q = q.filter(subject_type=subject_type)
    if hall_id is not None:
        q = q.filter(halls__id=hall_id)
    total = await q.count()
    items = await q.order_by("code").offset(offset).limit(limit)
    versions = await _current_versions(items)
    out = []
    for item in items:
        v = versions[item.id]
        out.append(ItemSummary(code=item.code, name=item.name, department=item.department,
                               subject_type=item.subject_type, online_depth=v.online_depth,
                               channels=v.channels, has_fees=_has_fees(v.fees), promised_days=v.promised_days))
    return out, total


async def _get_item(code: str) -> ServiceItem:
    item = await ServiceItem.get_or_none(code=code.strip().upper())
    if item is None:
        raise DomainError("catalog.item_not_found", details={"code": code})
    return item


def _days(n: int) -> str:
    return "即办" if n == 0 else f"{n}个工作日"


async def get_guide(*, code: str, version: int | None = None) -> dict[str, Any]:
    """The full guide (办事指南) of the current or a named version, as JSON values."""
    item = await _get_item(code)
    number = version if version is not None else item.current_version
    v = await ServiceItemVersion.get_or_none(item_id=item.id, version=number)
    if v is None:
        raise DomainError("catalog.version_not_found", details={"code": item.code, "version": number})
    halls = await item.halls.filter(active=True).order_by("code")
    channels = [Channel(c) for c in v.channels]
    guide = Guide(
        code=item.code, name=v.name, department=v.department, subject_type=v.subject_type,
        subject_type_label=SUBJECT_LABELS[v.subject_type], keywords=item.keywords,
        legal_basis=v.legal_basis, conditions=v.conditions,
        materials=[MaterialOut(**m, form_label=FORM_LABELS[m["form"]]) for m in v.materials],
        fees=[FeeOut(**f, amount_display=fen_display(f["amount_fen"])) for f in v.fees],
        has_fees=_has_fees(v.fees),
        statutory_days=v.statutory_days, promised_days=v.promised_days,
        statutory_display=_days(v.statutory_days), promised_display=_days(v.promised_days),
        channels=channels, channel_labels=[CHANNEL_LABELS[c] for c in channels],
        online_depth=v.online_depth, online_depth_label=DEPTH_LABELS[v.online_depth],
        certificate_type=v.certificate_type, queue_group=item.queue_group,
        halls=[HallRef(id=h.id, code=h.code, name=h.name, address=h.address) for h in halls],
        version=v.version, current_version=item.current_version, effective_from=v.effective_from,
        active=item.active,
    )
    return guide.model_dump(mode="json")


async def item_version(*, code: str) -> ServiceItemVersion:
    """The current version of an item in service: a new case pins it and keeps it."""
    item = await _get_item(code)
    if not item.active:
        raise DomainError("catalog.item_inactive", details={"code": item.code})
    return await ServiceItemVersion.get(item_id=item.id, version=item.current_version)


async def export_items() -> list[dict[str, Any]]:
    """Every item (active or not) as an import row; importing the result changes nothing."""
    items = await ServiceItem.all().order_by("code").prefetch_related("halls")
    versions = await _current_versions(list(items))
    out = []
    for item in items:
        v = versions[item.id]
        row: dict[str, Any] = {"code": item.code, **_version_content(v), "keywords": item.keywords,
                               "queue_group": item.queue_group, "halls": sorted(h.code for h in item.halls),
                               "effective_from": v.effective_from.isoformat(), "active": item.active}
        out.append({k: row[k] for k in ItemIn.model_fields})
    return out


# ---- names for other packages (notifications show them) -------------------------------------------


async def hall_name(*, hall_id: int | None) -> str:
    """A hall's name, or "" when there is none."""
    if hall_id is None:
        return ""
    name = await Hall.filter(id=int(hall_id)).first().values_list("name", flat=True)
    return str(name or "")


async def item_name(*, item_id: int | None = None, code: str | None = None) -> str:
    """A service item's name by id or by code, or "" when there is none."""
    if item_id is None and code is None:
        return ""
    query = ServiceItem.filter(id=int(item_id)) if item_id is not None else ServiceItem.filter(code=str(code))
    name = await query.first().values_list("name", flat=True)
    return str(name or "")


# ---- setting a hall up: its counters and the items it offers --------------------------------


async def _hall_items(hall_id: int, tx: BaseDBAsyncClient | None = None) -> list[ServiceItem]:
    return list(await ServiceItem.filter(halls__id=hall_id).using_db(tx).order_by("code"))


def describe_counter(counter: Counter, items: list[ServiceItem]) -> dict[str, Any]:
    """A counter as its hall admin sees it: the groups it calls and the hall's items in them."""
    groups = list(counter.groups)
    return {"id": counter.id, "number": counter.number, "name": counter.name, "groups": groups,
            "items": [i.code for i in items if i.queue_group in groups], "active": counter.active}


async def _served_groups(tx: BaseDBAsyncClient, hall_id: int, groups: list[str], codes: list[str]) -> list[str]:
    """The groups a counter calls: those given, and those of the items given (which the hall must offer)."""
    wanted = sorted({c.strip().upper() for c in codes})
    offered = {i.code: i for i in await _hall_items(hall_id, tx)}
    missing = [c for c in wanted if c not in offered]
    if missing:
        known = set(await ServiceItem.filter(code__in=missing).using_db(tx).values_list("code", flat=True))
        problems = []
        unknown = [c for c in missing if c not in known]
        if unknown:
            problems.append({"field": "items", "code": "catalog.unknown_item",
                             "message": f"事项不存在：{'、'.join(unknown)}"})
        elsewhere = [c for c in missing if c in known]
        if elsewhere:
            problems.append({"field": "items", "code": "catalog.item_not_offered",
                             "message": f"本厅未开办这些事项，请先在本厅开办：{'、'.join(elsewhere)}"})
        raise FieldErrors(problems)
    return sorted(set(groups) | {offered[c].queue_group for c in wanted})


async def _number_free(tx: BaseDBAsyncClient, hall_id: int, number: int, counter_id: int | None = None) -> None:
    taken = await Counter.filter(hall_id=hall_id, number=number).using_db(tx).first()
    if taken is not None and taken.id != counter_id:
        state = "" if taken.active else "，已关闭，可重新启用"
        raise DomainError("catalog.counter_number_taken", message=f"本厅已有{number}号窗口（{taken.name}{state}）",
                          details={"number": number, "counter_id": taken.id})


async def create_counter(*, hall_id: int, number: int, name: str, groups: list[str], items: list[str],
                         actor_kind: str, actor_id: str | int | None) -> dict[str, Any]:
    """A new counter of the hall, serving the given queue groups and the groups of the given items; audited."""
    async with db.transaction() as tx:
        await get_hall(hall_id=hall_id, using_db=tx)
        served = await _served_groups(tx, hall_id, groups, items)
        if not served:
            raise DomainError("catalog.counter_serves_nothing")
        await _number_free(tx, hall_id, number)
        try:
            counter = await Counter.create(hall_id=hall_id, number=number, name=name.strip(), groups=served,
                                           using_db=tx)
        except IntegrityError:
            raise DomainError("catalog.counter_number_taken", message=f"本厅已有{number}号窗口",
                              details={"number": number}) from None
        await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="hall.counter_added",
                           target_kind="counter", target_id=counter.id,
                           details={"hall_id": hall_id, "number": number, "name": counter.name, "groups": served})
        return describe_counter(counter, await _hall_items(hall_id, tx))


async def update_counter(*, hall_id: int, counter_id: int, number: int | None = None, name: str | None = None,
                         groups: list[str] | None = None, items: list[str] | None = None,
                         active: bool | None = None, actor_kind: str, actor_id: str | int | None) -> dict[str, Any]:
    """Rename, renumber, change what it serves (groups or items given replace it), close or reopen one of the
    hall's counters; fields not given keep their values. Audited when anything changes."""
    async with db.transaction() as tx:
        counter = await Counter.filter(id=counter_id, hall_id=hall_id).using_db(tx).select_for_update().first()
        if counter is None:
            raise DomainError("catalog.counter_not_found", details={"counter_id": counter_id})
        wanted: dict[str, Any] = {}
        if number is not None:
            wanted["number"] = number
        if name is not None:
            wanted["name"] = name.strip()
        if groups is not None or items is not None:
            wanted["groups"] = await _served_groups(tx, hall_id, groups or [], items or [])
            if not wanted["groups"]:
                raise DomainError("catalog.counter_serves_nothing")
        if active is not None:
            wanted["active"] = active
        changed = {k: v for k, v in wanted.items() if getattr(counter, k) != v}
        if "number" in changed:
            await _number_free(tx, hall_id, changed["number"], counter.id)
        if changed:
            before = {k: getattr(counter, k) for k in changed}
            for k, v in changed.items():
                setattr(counter, k, v)
            try:
                await counter.save(using_db=tx, update_fields=list(changed))
            except IntegrityError:
                raise DomainError("catalog.counter_number_taken", details={"number": number}) from None
            action = ("hall.counter_closed" if changed.get("active") is False
                      else "hall.counter_reopened" if changed.get("active") is True else "hall.counter_changed")
            await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action=action,
                               target_kind="counter", target_id=counter.id,
                               details={"hall_id": hall_id, "before": before, "after": changed})
        return describe_counter(counter, await _hall_items(hall_id, tx))


async def list_counters(*, hall_id: int) -> list[dict[str, Any]]:
    """Every counter of the hall, closed ones too, by number."""
    items = await _hall_items(hall_id)
    return [describe_counter(c, items) for c in await Counter.filter(hall_id=hall_id).order_by("number")]


async def counter_number(*, hall_id: int, number: int) -> int:
    """The id of the hall's counter with this number (for the operator's command line and the demo)."""
    counter = await Counter.filter(hall_id=hall_id, number=number).first()
    if counter is None:
        raise DomainError("catalog.counter_not_found", details={"number": number})
    return counter.id


def describe_offered(item: ServiceItem) -> dict[str, Any]:
    return {"code": item.code, "name": item.name, "department": item.department, "queue_group": item.queue_group,
            "active": item.active}


async def hall_items(*, hall_id: int) -> list[dict[str, Any]]:
    """The items the hall offers, by code."""
    await get_hall(hall_id=hall_id)
    return [describe_offered(i) for i in await _hall_items(hall_id)]


async def set_hall_items(*, hall_id: int, codes: list[str], actor_kind: str,
                         actor_id: str | int | None) -> dict[str, Any]:
    """Make the hall offer exactly these items; audited when that changes anything. Unknown codes and items no
    longer in service are refused, every one named. Appointments already booked for an item taken off keep
    their seats: the hall serves what it promised.

    (`palmhall catalog import` also sets an item's halls, from the row's `halls` list.)"""
    wanted = sorted({c.strip().upper() for c in codes})
    async with db.transaction() as tx:
        hall = await get_hall(hall_id=hall_id, using_db=tx)
        found = {i.code: i for i in await ServiceItem.filter(code__in=wanted).using_db(tx)}
        problems = []
        unknown = [c for c in wanted if c not in found]
        if unknown:
            problems.append({"field": "items", "code": "catalog.unknown_item",
                             "message": f"事项不存在：{'、'.join(unknown)}"})
        current = {i.code: i for i in await _hall_items(hall_id, tx)}
        stopped = [c for c in wanted if c in found and not found[c].active and c not in current]
        if stopped:
            problems.append({"field": "items", "code": "catalog.item_inactive",
                             "message": f"事项已停止办理，不能开办：{'、'.join(stopped)}"})
        if problems:
            raise FieldErrors(problems)
        added = [c for c in wanted if c not in current]
        removed = [c for c in current if c not in found]
        for code in added:
            await found[code].halls.add(hall, using_db=tx)
        for code in removed:
            await current[code].halls.remove(hall, using_db=tx)
        if added or removed:
            await audit.record(using_db=tx, actor_kind=actor_kind, actor_id=actor_id, action="hall.items_set",
                               target_kind="hall", target_id=hall_id, details={"added": added, "removed": removed})
        items = await _hall_items(hall_id, tx)
    return {"hall_id": hall_id, "items": [describe_offered(i) for i in items], "added": added, "removed": removed}
