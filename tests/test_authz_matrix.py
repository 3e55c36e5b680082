"""Every object belongs to its hall or to its resident, proven over every route the app serves.

The routes come from the app's own router, keyed by name (not by path text). Every /api/v1/staff and
/api/v1/mp route that names an object (a path parameter, a query parameter or a JSON body field that is an
identifier) is in MATRIX, with probes that point it at an object of hall HX or of resident A; every other route
is listed in NAMES_NO_OBJECT. A route in neither list fails, and so does an identifier that a listed route takes
but the lists do not account for.

Each probe is sent by strangers, all at once: a clerk and a hall admin of HY (and, where the route needs a hall
admin, the clerk of HX) or resident B. Each must answer in the error shape, 403 or 404 to staff and 404 to a
resident (who must not learn that another's object exists), and no row may change (audit rows aside: refusals
are audited; rate-limit and nonce state live in Redis). Then the rightful owners send the same requests (or, where
the stranger named an object of their own, the same request on the owner's), one after another, and each must
succeed: the probes are well formed, so the refusals are the rule at work and not a malformed request.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import typing
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from backend import clock, db
from backend.audit.models import AuditEntry
from backend.booking import hall_setup, queue
from backend.booking import service as booking
from backend.catalog import hours
from backend.catalog import service as catalog
from backend.catalog.codes import make_item_code
from backend.catalog.schemas import ItemIn
from backend.identity import tokens
from backend.identity.models import ChannelIdentity, StaffRole
from backend.jobs.outbox import Registry
from backend.jobs.worker import Worker, WorkerConfig
from notifications import handlers
from tests.cases_support import (
    AGENCY,
    LI,
    LICENCE,
    RESIDENCE,
    SIMPLE,
    WANG,
    ZHANG,
    act,
    application,
    build_world,
    item_row,
    resident,
    staff_headers,
    upload_id,
)
from tests.conftest import ON_POSTGRES, Live, Platforms
from tests.payments_support import awaiting_case, payer, start_payment, wire
from tests.test_identity import alipay_login, auth, wechat_login

STAFF, MP = "/api/v1/staff", "/api/v1/mp"

# What names an object: `id`, a QR `code` or `token`, and anything ending in _id, _ids, _no or _token.
IDENTIFIER = re.compile(r"^(id|code|token)$|_(id|ids|no|token)$")

# An item whose one material an e-certificate of A's (居住证明, from a RESIDENCE case) stands for.
CERT_ITEM = make_item_code(AGENCY, "4000607019000")

CHECKLIST = "an entry code of the item's public checklist"

# Routes that name no object of a hall or of a resident; what they take that looks like an identifier, and why
# it names nothing of anyone's.
NAMES_NO_OBJECT: dict[str, Mapping[str, str]] = {
    "mp_identity.login_wechat": {"body:code": "the one-time code of wx.login: the login itself, no caller yet"},
    "mp_identity.login_alipay": {},
    "mp_identity.refresh": {"body:refresh_token": "the caller's own secret, not a reference to an object"},
    "mp_identity.me": {},
    "mp_identity.bind_real_name": {},
    "mp_identity.sessions": {},
    "mp_identity.channels": {},
    "mp_cases.upload": {},
    "mp_cases.library": {},
    "mp_cases.list_cases": {},
    "mp_cases.list_complaints": {},
    "mp_cases.list_certificates": {},
    "mp_booking.book": {"body:slot_id": "a slot the hall publishes as available: any resident may book it"},
    "mp_booking.mine": {},
    "mp_notify.inbox": {"query:before_id": "a cursor within the caller's own messages, which alone are read"},
    "mp_notify.read_all": {},
    "mp_notify.subscribe": {},
    "mp_notify.subscriptions": {},
    "mp_notify.get_settings": {},
    "mp_notify.put_settings": {},
    "mp_kiosk_codes.issue": {"body:hall_id": "the hall whose kiosks may accept the code: any hall a resident "
                                             "stands in (the code is the caller's own)"},
    "staff_identity.login": {},
    "staff_identity.change_password": {},
    "staff_identity.me": {},
    # Scoped by the hall of each notification's order: tests/test_payments_callbacks.py.
    "staff_payments.suspects": {},
    "staff_payments.reconciliation": {},
    # Admins only (a run reads both platforms' whole bills): tests/test_payments_kiosk_and_reconcile.py.
    "staff_payments.reconcile_now": {},
    # Every hall for an admin, the caller's own halls for anyone else.
    "staff_halls.list_halls": {},
    "staff_halls.create_hall": {"body:code": "the new hall's own code, chosen by the admin creating it"},
}


@dataclass(frozen=True)
class Entry:
    covers: frozenset[str]  # identifiers the probes point at someone else's object
    public: Mapping[str, str] = field(default_factory=dict)  # identifiers naming nothing owned, and why


def entry(*covers: str, public: Mapping[str, str] | None = None) -> Entry:
    return Entry(frozenset(covers), public or {})


MATRIX: dict[str, Entry] = {
    # ---- the mini program: resident A's objects, resident B calling -------------------------------------
    "mp_identity.end_session": entry("path:session_id"),
    "mp_identity.confirm_real_name": entry("body:challenge_id", public={
        "body:code": "the six-digit code texted to the phone on record: the proof itself, not a reference"}),
    "mp_identity.detach_channel": entry("path:identity_id"),
    "mp_cases.upload_info": entry("path:upload_id"),
    "mp_cases.upload_file": entry("path:upload_id"),
    "mp_cases.apply": entry("body:materials[].upload_id", "body:materials[].reuse_id",
                            "body:materials[].certificate_id", public={
                                "body:hall_id": "a hall that serves the item: any resident may apply there",
                                "body:materials[].code": CHECKLIST}),
    "mp_cases.get_case": entry("path:case_no"),
    "mp_cases.corrections": entry("path:case_no", "body:materials[].upload_id", "body:materials[].reuse_id",
                                  "body:materials[].certificate_id", public={"body:materials[].code": CHECKLIST}),
    "mp_cases.withdraw": entry("path:case_no"),
    "mp_cases.evaluate": entry("path:case_no"),
    "mp_cases.complain": entry("body:case_no", public={"body:hall_id": "the hall complained about: any may be"}),
    "mp_booking.cancel": entry("path:appointment_id"),
    "mp_booking.detail": entry("path:appointment_id"),
    "mp_booking.reschedule": entry("path:appointment_id", public={
        "body:slot_id": "a slot the hall publishes as available: any resident may book it"}),
    "mp_booking.qr_png": entry("path:appointment_id"),
    "mp_booking.qr_svg": entry("path:appointment_id"),
    "mp_payments.pay": entry("body:case_no"),
    "mp_payments.show": entry("path:order_id"),
    "mp_notify.read_one": entry("path:notification_id"),
    # ---- the counter: hall HX's objects, staff of HY (and HX's clerk for admin-only actions) calling -----
    "staff_identity.hall_kiosks": entry("path:hall_id"),
    # A certificate's QR is public (anyone verifies it at /api/v1/certificates/verify/{token}): scanned at any
    # counter it answers that same verification, so only appointment and case codes are probed.
    "staff_scan.scan": entry("body:code"),
    "staff_cases.work_list": entry("query:hall_id"),
    # A walk-in's reuse and certificates are the applicant's, found by the ID number the clerk types: any hall
    # may use them for that person (materials handed in once serve everywhere), none for someone else.
    "staff_cases.walk_in": entry("body:hall_id", "body:materials[].upload_id", "body:materials[].reuse_id",
                                 "body:materials[].certificate_id", public={"body:materials[].code": CHECKLIST}),
    "staff_cases.get_case": entry("path:case_no"),
    "staff_cases.act": entry("path:case_no", "body:counter_id", public={
        "body:items[].code": CHECKLIST, "body:tracking_no": "a courier's waybill number, no object of ours"}),
    "staff_cases.ask_further_notice": entry("path:case_no", public={"body:items[].code": CHECKLIST}),
    "staff_cases.notice_requests": entry("query:hall_id"),
    "staff_cases.decide_further_notice": entry("path:request_id"),
    "staff_cases.material_stats": entry("query:hall_id"),
    "staff_cases.evaluations": entry("query:hall_id"),
    "staff_cases.rectifications": entry("query:hall_id"),
    "staff_cases.close_rectification": entry("path:rectification_id"),
    "staff_cases.complaints": entry("query:hall_id"),
    "staff_cases.answer_complaint": entry("path:complaint_id"),
    "staff_cases.revoke": entry("path:cert_no"),
    "staff_booking.check_in": entry("path:appointment_id"),
    "staff_booking.call_next": entry("path:counter_id"),
    "staff_booking.recall": entry("path:counter_id"),
    "staff_booking.missed": entry("path:counter_id"),
    "staff_booking.set_rule": entry("path:hall_id"),
    "counter_calendar.put_closure": entry("path:hall_id", "path:day"),
    "counter_calendar.delete_closure": entry("path:hall_id", "path:day"),
    "counter_calendar.list_closures": entry("path:hall_id"),
    "staff_payments.refund": entry("path:order_id"),
    "staff_payments.show": entry("path:order_id"),
    "staff_sync.conflicts": entry("query:hall_id"),
    "staff_notify.inbox": entry("query:hall_id"),
    "staff_notify.read": entry("path:notification_id"),
    "staff_console.hall_counters": entry("path:hall_id"),
    "staff_console.material_content": entry("path:case_no", "path:material_id"),
    "staff_dashboard.dashboard": entry("path:hall_id"),
    "staff_identity.add_staff": entry("path:hall_id"),
    "staff_identity.list_staff": entry("path:hall_id"),
    "staff_halls.edit_hall": entry("path:hall_id"),
    "staff_halls.setup": entry("path:hall_id"),
    "staff_halls.add_counter": entry("path:hall_id"),
    "staff_halls.edit_counter": entry("path:hall_id", "path:counter_id"),
    "staff_halls.hours": entry("path:hall_id"),
    "staff_halls.set_hours": entry("path:hall_id"),
    "staff_halls.list_special_hours": entry("path:hall_id"),
    "staff_halls.put_special_hours": entry("path:hall_id", "path:day"),
    "staff_halls.delete_special_hours": entry("path:hall_id", "path:day"),
    "staff_halls.day": entry("path:hall_id", "path:day"),
    "staff_halls.items": entry("path:hall_id"),
    "staff_halls.set_items": entry("path:hall_id"),
    "staff_booking.rules": entry("path:hall_id"),
    "staff_booking.reset_rule": entry("path:hall_id",
                                      public={"path:code": "a service item's code: the catalog is public"}),
    "staff_booking.walk_in_ticket": entry("path:hall_id"),
}

# Who calls: the strangers of each audience, and the rightful owners.
OTHER_HALL = ("hy_clerk", "hy_admin")
OTHER_HALL_AND_CLERK = (*OTHER_HALL, "hx_clerk")  # for actions only a hall admin of HX may take
OTHER_RESIDENT = ("b",)


# ---- the routes and what they take ----------------------------------------------------------------


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every field of a request model by the name the client sends, nested ones as `list[].field`."""
    for name, f in model.model_fields.items():
        key = prefix + (f.alias or name)
        yield key
        many = typing.get_origin(f.annotation) is list
        for sub in _models_in(f.annotation):
            yield from _fields(sub, key + ("[]." if many else "."))


def _body_model(handler: Any) -> type[BaseModel] | None:
    """The model `backend.http.body` validates the JSON body into, found in its wrapper's closure."""
    fn = handler
    while fn is not None:
        cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))
        if {"view", "model"} <= set(cells):
            model: type[BaseModel] = cells["model"].cell_contents
            return model
        fn = getattr(fn, "__wrapped__", None)
    return None


def identifiers(route: Any) -> set[str]:
    """What a route takes that names an object: path parameters (all of them), and the identifier-like fields of
    its JSON body model and of the query models its view parses (`parse(Model, ...)`, or `request.args.get`)."""
    found = {f"path:{p.name}" for p in route.params.values()}
    model = _body_model(route.handler)
    if model is not None:
        found |= {f"body:{n}" for n in _fields(model) if IDENTIFIER.search(n.rsplit(".", 1)[-1])}
    view = inspect.unwrap(route.handler)
    source = inspect.getsource(view)
    for name in re.findall(r"\bparse\((\w+)", source):
        query: type[BaseModel] = view.__globals__[name]
        found |= {f"query:{n}" for n in _fields(query) if IDENTIFIER.search(n.rsplit(".", 1)[-1])}
    found |= {f"query:{n}" for n in re.findall(r"request\.args\.get\(\s*[\"'](\w+)", source) if IDENTIFIER.search(n)}
    return found


def audience_routes(live: Live) -> dict[str, Any]:
    """Every /api/v1/staff and /api/v1/mp route of the running app, by name without the app's own prefix."""
    out: dict[str, Any] = {}
    for route in live.app.router.routes:
        if not ("/" + route.path).startswith((STAFF + "/", MP + "/")):
            continue
        name = route.name.split(".", 1)[1]
        assert name not in out, f"two routes are named {name}"
        out[name] = route
    return out


async def test_every_route_naming_an_object_is_in_the_matrix(live: Live) -> None:
    routes = audience_routes(live)
    assert len(routes) > 60  # the router was read, not an empty list
    unknown = sorted(set(routes) - set(MATRIX) - set(NAMES_NO_OBJECT))
    problems = [f"{name} ({'/' + routes[name].path}, takes {sorted(identifiers(routes[name])) or 'nothing'}): "
                "not in the authorization matrix; add it to MATRIX with probes, or to NAMES_NO_OBJECT"
                for name in unknown]
    for name in sorted(set(routes) & set(NAMES_NO_OBJECT)):
        extra = identifiers(routes[name]) - set(NAMES_NO_OBJECT[name])
        if extra:
            problems.append(f"{name} now takes {sorted(extra)}: move it to MATRIX and probe them")
    for name in sorted(set(routes) & set(MATRIX)):
        declared = MATRIX[name].covers | set(MATRIX[name].public)
        found = identifiers(routes[name])
        if found - declared:
            problems.append(f"{name} takes {sorted(found - declared)} that no probe points at someone else's object")
        if declared - found:
            problems.append(f"{name} no longer takes {sorted(declared - found)}: update the matrix")
    gone = sorted((set(MATRIX) | set(NAMES_NO_OBJECT)) - set(routes))
    problems += [f"{name} is listed but the app has no such route" for name in gone]
    assert set(MATRIX).isdisjoint(NAMES_NO_OBJECT)
    assert not problems, "\n".join(problems)


async def test_the_identifier_finder_sees_paths_bodies_and_queries(live: Live) -> None:
    """The finder itself, on routes whose identifiers are known: a nested body list, a query model, a path."""
    routes = audience_routes(live)
    assert identifiers(routes["mp_cases.apply"]) == {
        "body:hall_id", "body:materials[].code", "body:materials[].upload_id", "body:materials[].reuse_id",
        "body:materials[].certificate_id"}
    assert identifiers(routes["staff_cases.work_list"]) == {"query:hall_id"}
    assert identifiers(routes["staff_console.material_content"]) == {"path:case_no", "path:material_id"}
    assert identifiers(routes["mp_identity.me"]) == set()


# ---- requests, probes, the world they run in ------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    json: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    route: str
    covers: frozenset[str]
    call: Call
    strangers: tuple[str, ...]
    owner: str | None  # who rightly sends it; None only with `no_owner` saying why
    owner_call: Call | None = None  # the owner's request when it is not the same one (another object of theirs)
    no_owner: str = ""


def probe(route: str, covers: str | set[str], call: Call, strangers: tuple[str, ...], owner: str | None,
          owner_call: Call | None = None, no_owner: str = "") -> Probe:
    return Probe(route, frozenset({covers} if isinstance(covers, str) else covers), call, strangers, owner,
                 owner_call, no_owner)


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    # Resident A makes more cases here than a resident may in an hour: the limit is not what this test is about.
    return {"files_dir": str(tmp_path / "files"), "rate_case_resident": "100/3600"}


@dataclass
class Matrix:
    callers: dict[str, dict[str, str]]
    probes: list[Probe]


async def _drain_notifications() -> None:
    """Plan the notifications the setup's events call for (inbox rows for A, the staff inbox of HX): only the
    planning handlers run, nothing is sent anywhere."""
    reg = Registry()
    for topic in handlers.TOPICS:
        reg.on(topic)(handlers.plan)
    worker = Worker(WorkerConfig(lease_seconds=30, backoff_base=0.01, backoff_max=0.01), handlers=reg)
    while await worker.run_once():
        pass


async def build(live: Live, platforms: Platforms) -> Matrix:
    """Halls HX and HY, resident A (ZHANG) owning one object of every kind in HX, resident B (LI), staff of
    both halls; every object made the way the product makes it, through the API where there is one."""
    c = live.client
    world = await build_world(live)
    wire(platforms, live)
    hx, hy = world.halls["HX"], world.halls["HY"]
    await catalog.upsert_item(row=ItemIn.model_validate(item_row(CERT_ITEM, "租房补贴申请", materials=[
        {"code": "RES", "name": "居住证明", "form": "original", "certificate_type": "居住证明"}])))
    callers = {"hx_clerk": world.clerk, "hx_admin": world.admin, "hy_clerk": world.other_clerk,
               "hy_admin": await staff_headers(live, "hy.admin", "HY", StaffRole.HALL_ADMIN)}

    # HX's hours (it opens at 08:30, so the walk-ins below are taken in opening hours), booking rules and
    # counter, through the functions the staff API and `palmhall demo load` use.
    workday = [hours.span("08:30", "12:00"), hours.span("13:30", "17:00")]
    await hall_setup.set_week(hall_id=hx, week={d: workday for d in range(5)}, staff_id=None, redis=None)
    await booking.set_rule(hall_id=hx, item_code=None, staff_id=None, values={
        "slot_minutes": 30, "seats_per_slot": 10, "min_notice_minutes": 10, "max_active_per_person": 3})
    await booking.set_rule(hall_id=hx, item_code=SIMPLE, staff_id=None, values={"seats_per_slot": 5})
    counter = (await catalog.create_counter(hall_id=hx, number=1, name="综合受理1号窗口", groups=["A"], items=[],
                                            actor_kind="operator", actor_id="cli"))["id"]
    r = await c.put(f"{STAFF}/halls/{hx}/closures/2026-03-11", json={"reason": "系统升级停办"}, headers=world.admin)
    assert r.status_code == 200, r.text

    # The residents, A with a second session (another phone).
    a = await payer(live, platforms, "wechat")
    callers["a"] = a.headers
    second = await wechat_login(live, platforms, openid=a.subject)
    family = tokens.verify(second["access_token"], secret=live.app.ctx.settings.secret_key, kind="resident").family
    callers["b"] = b = await resident(live, platforms, LI)
    # C: A on Alipay, asking to join A's account (a code texted to A's phone); and A's one login so far.
    c_tokens = await alipay_login(live, platforms)
    callers["c"] = auth(c_tokens)
    r = await c.put(f"{MP}/me/real-name", json=ZHANG, headers=callers["c"])
    assert r.status_code == 202, r.text
    challenge = {"challenge_id": r.json()["link"]["challenge_id"], "code": platforms.sms.sent[-1]["params"]["code"]}
    a_login = (await c.get(f"{MP}/me/channels", headers=a.headers)).json()["channels"][0]["id"]
    c_login = await ChannelIdentity.filter(resident_id=c_tokens["resident_id"]).first().values_list("id", flat=True)

    async def apply(headers: dict[str, str], hall: int, item: str, materials: list[dict[str, Any]]) -> str:
        r = await c.post(f"{MP}/cases", json=application(hall, item, materials), headers=headers)
        assert r.status_code == 201, r.text
        return str(r.json()["case_no"])

    async def clerk_does(case_no: str, *actions: str) -> None:
        for action in actions:
            r = await act(live, world.clerk, case_no, action)
            assert r.status_code == 200, r.text

    ups = {code: await upload_id(live, a.headers) for code in ("ID", "FORM", "LEASE")}
    complete = [{"code": code, "upload_id": u} for code, u in ups.items()]
    form_only = [{"code": "FORM", "upload_id": ups["FORM"]}]
    readable = await apply(a.headers, hx, RESIDENCE, complete)
    to_correct = await apply(a.headers, hx, RESIDENCE, form_only)  # missing ID and LEASE
    to_correct_by_reuse = await apply(a.headers, hx, RESIDENCE, [m for m in complete if m["code"] != "ID"])
    to_correct_by_cert = await apply(a.headers, hx, CERT_ITEM, [])
    to_withdraw = await apply(a.headers, hx, SIMPLE, form_only)
    to_accept = await apply(a.headers, hx, SIMPLE, form_only)
    to_rate, rated_badly = await apply(a.headers, hx, SIMPLE, form_only), await apply(a.headers, hx, SIMPLE, form_only)
    await clerk_does(to_rate, "accept", "start_review", "approve")
    await clerk_does(rated_badly, "accept", "start_review", "approve")
    certified = await apply(a.headers, hx, RESIDENCE, complete)
    await clerk_does(certified, "accept", "start_review", "approve")  # issues A's 居住证明
    to_pay = await awaiting_case(live, world, a)
    order = (await start_payment(live, a, to_pay)).json()["order"]["id"]
    paid_case = await awaiting_case(live, world, a)
    paid = (await start_payment(live, a, paid_case)).json()["order"]
    answer = await platforms.wechatpay.pay(paid["out_trade_no"])
    assert answer is not None and answer.status_code == 204
    r = await c.post(f"{MP}/cases/{rated_badly}/evaluation", json={"level": "不满意", "comment": "等了很久"},
                     headers=a.headers)
    assert r.status_code == 201, r.text
    rectification = r.json()["rectification"]["id"]
    r = await c.post(f"{MP}/complaints", json={"kind": "question", "hall_id": hx, "content": "周六上午是否办理？"},
                     headers=a.headers)
    assert r.status_code == 201, r.text
    complaint = r.json()["id"]
    shown = (await c.get(f"{MP}/cases/{readable}", headers=a.headers)).json()
    material, case_qr = shown["materials"][0]["id"], shown["progress_url"]
    library = (await c.get(f"{MP}/materials", headers=a.headers, params={"item": RESIDENCE})).json()
    reuse = next(m["reuse_id"] for m in library["materials"] if m["code"] == "ID")
    cert = (await c.get(f"{MP}/certificates", headers=a.headers)).json()["certificates"][0]

    # A's appointments today in HX (one a day per item): one to check in now, one to cancel before its cut-off,
    # one to move to 15:30.
    appointments, later = {}, {}
    for at, item in (("09:00", RESIDENCE), ("16:30", SIMPLE), ("15:00", LICENCE)):
        r = await c.get(f"/api/v1/halls/{hx}/availability", params={"item": item, "date": "2026-03-02"})
        slot = next(s["slot_id"] for s in r.json()["slots"] if s["starts_at"][11:16] == at)
        later[at] = next(s["slot_id"] for s in r.json()["slots"] if s["starts_at"][11:16] == "15:30")
        r = await c.post(f"{MP}/appointments", json={"slot_id": slot}, headers={**a.headers, **key()})
        assert r.status_code == 201, r.text
        appointments[at] = r.json()
    for _ in range(2):  # walk-ins waiting at the counter
        await queue.walk_in(hall_id=hx, group="A", actor="kiosk:test", redis=live.app.ctx.redis)

    # B's own cases: one at HY for its clerk to accept, two in HX waiting for B's corrections.
    b_form = await upload_id(live, b)
    theirs = await apply(b, hy, SIMPLE, [{"code": "FORM", "upload_id": b_form}])
    b_to_correct = await apply(b, hx, RESIDENCE, [{"code": "FORM", "upload_id": b_form}])
    b_to_correct_by_cert = await apply(b, hx, CERT_ITEM, [])

    # Two of A's cases whose clerk's notice A answered: a further notice needs a hall admin. On one the clerk of HX
    # has asked for it already.
    answered = []
    for _ in range(2):
        case_no = await apply(a.headers, hx, RESIDENCE, complete)
        await clerk_does(case_no, "accept")
        r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "LEASE"}])
        assert r.status_code == 200, r.text
        r = await c.post(f"{MP}/cases/{case_no}/corrections", headers=a.headers,
                         json={"materials": [{"code": "LEASE", "upload_id": ups["LEASE"]}]})
        assert r.status_code == 200, r.text
        answered.append(case_no)
    further = {"items": [{"code": "FORM", "reason": "签名不一致"}], "reason": "审查时发现申请表签名与身份证不一致"}
    r = await c.post(f"{STAFF}/cases/{answered[1]}/notice-requests", json=further, headers=world.clerk)
    assert r.status_code == 201, r.text
    notice_request = r.json()["id"]

    await _drain_notifications()
    a_note = (await c.get(f"{MP}/inbox", headers=a.headers)).json()["items"][0]["id"]
    hx_note = (await c.get(f"{STAFF}/inbox", headers=world.clerk)).json()["items"][0]["id"]

    def walk_in(hall: int, person: dict[str, str], item: str, materials: list[dict[str, Any]]) -> dict[str, Any]:
        return {**application(hall, item, materials), "applicant_name": person["name"],
                "applicant_id_number": person["id_number"]}

    by_cert = [{"code": "RES", "certificate_id": cert["id"]}]
    corrections = {"materials": [{"code": "ID", "upload_id": ups["ID"]}, {"code": "LEASE", "upload_id": ups["LEASE"]}]}
    period = {"hall_id": hx, "from": "2026-01-01", "to": "2026-12-31"}
    refund = Call("POST", f"{STAFF}/payments/{paid['id']}/refunds", {"reason": "多收费用退回"}, headers=key())
    probes = [
        # The mini program, in the order the owner's requests may run one after another.
        probe("mp_identity.end_session", "path:session_id", Call("DELETE", f"{MP}/me/sessions/{family}"),
              OTHER_RESIDENT, "a"),
        probe("mp_identity.confirm_real_name", "body:challenge_id",
              Call("POST", f"{MP}/me/real-name/confirm", challenge), OTHER_RESIDENT, "c"),
        # After C joined A, A detaches C's Alipay login again; B may detach none of A's.
        probe("mp_identity.detach_channel", "path:identity_id", Call("DELETE", f"{MP}/me/channels/{a_login}"),
              OTHER_RESIDENT, "a", owner_call=Call("DELETE", f"{MP}/me/channels/{c_login}")),
        probe("mp_cases.upload_info", "path:upload_id", Call("GET", f"{MP}/uploads/{ups['ID']}"), OTHER_RESIDENT, "a"),
        probe("mp_cases.upload_file", "path:upload_id", Call("GET", f"{MP}/uploads/{ups['ID']}/content"),
              OTHER_RESIDENT, "a"),
        probe("mp_cases.apply", "body:materials[].upload_id",
              Call("POST", f"{MP}/cases", application(hx, SIMPLE, form_only)), OTHER_RESIDENT, "a"),
        probe("mp_cases.apply", "body:materials[].reuse_id",
              Call("POST", f"{MP}/cases", application(hx, RESIDENCE, [{"code": "ID", "reuse_id": reuse}])),
              OTHER_RESIDENT, "a"),
        probe("mp_cases.apply", "body:materials[].certificate_id",
              Call("POST", f"{MP}/cases", application(hx, CERT_ITEM, by_cert)), OTHER_RESIDENT, "a"),
        probe("mp_cases.get_case", "path:case_no", Call("GET", f"{MP}/cases/{readable}"), OTHER_RESIDENT, "a"),
        probe("mp_cases.corrections", "path:case_no",
              Call("POST", f"{MP}/cases/{to_correct}/corrections", corrections), OTHER_RESIDENT, "a"),
        probe("mp_cases.corrections", "body:materials[].upload_id",
              Call("POST", f"{MP}/cases/{b_to_correct}/corrections", corrections), OTHER_RESIDENT, None,
              no_owner="the probe before sends these uploads to their owner's own case"),
        probe("mp_cases.corrections", "body:materials[].reuse_id",
              Call("POST", f"{MP}/cases/{b_to_correct}/corrections", {"materials": [
                  {"code": "ID", "reuse_id": reuse}, {"code": "LEASE", "upload_id": b_form}]}),
              OTHER_RESIDENT, "a", owner_call=Call("POST", f"{MP}/cases/{to_correct_by_reuse}/corrections",
                                                   {"materials": [{"code": "ID", "reuse_id": reuse}]})),
        probe("mp_cases.corrections", "body:materials[].certificate_id",
              Call("POST", f"{MP}/cases/{b_to_correct_by_cert}/corrections", {"materials": by_cert}),
              OTHER_RESIDENT, "a",
              owner_call=Call("POST", f"{MP}/cases/{to_correct_by_cert}/corrections", {"materials": by_cert})),
        probe("mp_cases.withdraw", "path:case_no",
              Call("POST", f"{MP}/cases/{to_withdraw}/withdraw", {"reason": "不需要了"}), OTHER_RESIDENT, "a"),
        probe("mp_cases.evaluate", "path:case_no",
              Call("POST", f"{MP}/cases/{to_rate}/evaluation", {"level": "满意"}), OTHER_RESIDENT, "a"),
        probe("mp_cases.complain", "body:case_no", Call("POST", f"{MP}/complaints", {
            "kind": "complaint", "hall_id": hx, "case_no": readable, "content": "办理进度太慢了"}),
              OTHER_RESIDENT, "a"),
        probe("mp_booking.qr_png", "path:appointment_id",
              Call("GET", f"{MP}/appointments/{appointments['16:30']['id']}/qr.png"), OTHER_RESIDENT, "a"),
        probe("mp_booking.qr_svg", "path:appointment_id",
              Call("GET", f"{MP}/appointments/{appointments['16:30']['id']}/qr.svg"), OTHER_RESIDENT, "a"),
        probe("mp_booking.detail", "path:appointment_id",
              Call("GET", f"{MP}/appointments/{appointments['16:30']['id']}"), OTHER_RESIDENT, "a"),
        probe("mp_booking.reschedule", "path:appointment_id",
              Call("POST", f"{MP}/appointments/{appointments['15:00']['id']}/reschedule",
                   {"slot_id": later["15:00"]}, headers=key()), OTHER_RESIDENT, "a"),
        probe("mp_booking.cancel", "path:appointment_id",
              Call("DELETE", f"{MP}/appointments/{appointments['16:30']['id']}"), OTHER_RESIDENT, "a"),
        probe("mp_payments.pay", "body:case_no",
              Call("POST", f"{MP}/payments", {"case_no": to_pay, "channel": "wechat"}, headers=key()),
              OTHER_RESIDENT, "a"),
        probe("mp_payments.show", "path:order_id", Call("GET", f"{MP}/payments/{order}"), OTHER_RESIDENT, "a"),
        probe("mp_notify.read_one", "path:notification_id", Call("POST", f"{MP}/inbox/{a_note}/read"),
              OTHER_RESIDENT, "a"),

        # The counter.
        probe("staff_identity.hall_kiosks", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/kiosks"),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_scan.scan", "body:code", Call("POST", f"{STAFF}/scan", {"code": appointments["09:00"]["qr_url"]}),
              OTHER_HALL, "hx_clerk"),
        probe("staff_scan.scan", "body:code", Call("POST", f"{STAFF}/scan", {"code": case_qr}), OTHER_HALL,
              "hx_clerk"),
        probe("staff_cases.work_list", "query:hall_id", Call("GET", f"{STAFF}/cases", params={"hall_id": hx}),
              OTHER_HALL, "hx_clerk"),
        probe("staff_cases.walk_in", "body:hall_id",
              Call("POST", f"{STAFF}/cases", walk_in(hx, WANG, SIMPLE, [{"code": "FORM", "paper": True}])),
              OTHER_HALL, "hx_clerk"),
        probe("staff_cases.walk_in", "body:materials[].upload_id",
              Call("POST", f"{STAFF}/cases", walk_in(hy, ZHANG, SIMPLE, form_only)), OTHER_HALL, None,
              no_owner="a walk-in never takes a resident's upload: the counter receives paper, or reuses"),
        probe("staff_cases.walk_in", "body:materials[].reuse_id",
              Call("POST", f"{STAFF}/cases", walk_in(hy, WANG, RESIDENCE, [{"code": "ID", "reuse_id": reuse}])),
              OTHER_HALL, "hx_clerk", owner_call=Call("POST", f"{STAFF}/cases", walk_in(
                  hx, ZHANG, RESIDENCE, [{"code": "ID", "reuse_id": reuse}]))),
        probe("staff_cases.walk_in", "body:materials[].certificate_id",
              Call("POST", f"{STAFF}/cases", walk_in(hy, WANG, CERT_ITEM, by_cert)), OTHER_HALL, "hx_clerk",
              owner_call=Call("POST", f"{STAFF}/cases", walk_in(hx, ZHANG, CERT_ITEM, by_cert))),
        probe("staff_cases.get_case", "path:case_no", Call("GET", f"{STAFF}/cases/{readable}"), OTHER_HALL,
              "hx_clerk"),
        probe("staff_cases.act", "path:case_no", Call("POST", f"{STAFF}/cases/{to_accept}/transitions",
                                                       {"action": "accept", "counter_id": counter}),
              OTHER_HALL, "hx_clerk"),
        probe("staff_cases.act", "body:counter_id", Call("POST", f"{STAFF}/cases/{theirs}/transitions",
                                                          {"action": "accept", "counter_id": counter}),
              OTHER_HALL, None, no_owner="the probe before is this accept, on a case of the counter's own hall"),
        probe("staff_cases.ask_further_notice", "path:case_no",
              Call("POST", f"{STAFF}/cases/{answered[0]}/notice-requests", further), OTHER_HALL, "hx_clerk"),
        probe("staff_cases.notice_requests", "query:hall_id",
              Call("GET", f"{STAFF}/notice-requests", params={"hall_id": hx}), OTHER_HALL, "hx_clerk"),
        # The clerk who asked is not the one to approve: a hall admin of HX is.
        probe("staff_cases.decide_further_notice", "path:request_id",
              Call("POST", f"{STAFF}/notice-requests/{notice_request}/decision",
                   {"approve": True, "reason": "确需补正，同意再次告知"}), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_cases.material_stats", "query:hall_id", Call("GET", f"{STAFF}/stats/materials", params=period),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_cases.evaluations", "query:hall_id", Call("GET", f"{STAFF}/evaluations", params=period),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_cases.rectifications", "query:hall_id",
              Call("GET", f"{STAFF}/rectifications", params={"hall_id": hx}), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_cases.close_rectification", "path:rectification_id",
              Call("POST", f"{STAFF}/rectifications/{rectification}/close",
                   {"response": "已约谈窗口人员并整改，欢迎再次评价。"}), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_cases.complaints", "query:hall_id", Call("GET", f"{STAFF}/complaints", params={"hall_id": hx}),
              OTHER_HALL, "hx_clerk"),
        probe("staff_cases.answer_complaint", "path:complaint_id",
              Call("POST", f"{STAFF}/complaints/{complaint}/answer", {"answer": "周六上午照常办理。"}), OTHER_HALL,
              "hx_clerk"),
        probe("staff_booking.check_in", "path:appointment_id",
              Call("POST", f"{STAFF}/appointments/{appointments['09:00']['id']}/check-in"), OTHER_HALL, "hx_clerk"),
        probe("staff_booking.call_next", "path:counter_id", Call("POST", f"{STAFF}/counters/{counter}/call-next"),
              OTHER_HALL, "hx_clerk"),
        probe("staff_booking.recall", "path:counter_id", Call("POST", f"{STAFF}/counters/{counter}/recall"),
              OTHER_HALL, "hx_clerk"),
        probe("staff_booking.missed", "path:counter_id", Call("POST", f"{STAFF}/counters/{counter}/missed"),
              OTHER_HALL, "hx_clerk"),
        probe("staff_booking.set_rule", "path:hall_id",
              Call("PUT", f"{STAFF}/halls/{hx}/booking-rule", {"slot_minutes": 30, "seats_per_slot": 8}),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("counter_calendar.put_closure", {"path:hall_id", "path:day"},
              Call("PUT", f"{STAFF}/halls/{hx}/closures/2026-03-10", {"reason": "停电检修"}), OTHER_HALL_AND_CLERK,
              "hx_admin"),
        probe("counter_calendar.delete_closure", {"path:hall_id", "path:day"},
              Call("DELETE", f"{STAFF}/halls/{hx}/closures/2026-03-11"), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("counter_calendar.list_closures", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/closures"),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_payments.refund", "path:order_id", refund, OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_payments.show", "path:order_id", Call("GET", f"{STAFF}/payments/{paid['id']}"), OTHER_HALL,
              "hx_clerk"),
        probe("staff_sync.conflicts", "query:hall_id", Call("GET", f"{STAFF}/sync/conflicts", params={"hall_id": hx}),
              OTHER_HALL, "hx_clerk"),
        probe("staff_notify.inbox", "query:hall_id", Call("GET", f"{STAFF}/inbox", params={"hall_id": hx}),
              OTHER_HALL, "hx_clerk"),
        probe("staff_notify.read", "path:notification_id", Call("POST", f"{STAFF}/inbox/{hx_note}/read"),
              OTHER_HALL, "hx_clerk"),
        probe("staff_console.hall_counters", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/counters"),
              OTHER_HALL, "hx_clerk"),
        probe("staff_console.material_content", {"path:case_no", "path:material_id"},
              Call("GET", f"{STAFF}/cases/{readable}/materials/{material}/content"), OTHER_HALL, "hx_clerk"),
        probe("staff_console.material_content", "path:material_id",
              Call("GET", f"{STAFF}/cases/{theirs}/materials/{material}/content"), OTHER_HALL, None,
              no_owner="the probe before asks for this material of its own case"),
        probe("staff_dashboard.dashboard", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/dashboard"),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        # Setting the hall up: for its hall admins (and admins), never another hall's or its clerks.
        probe("staff_identity.add_staff", "path:hall_id", Call("POST", f"{STAFF}/halls/{hx}/staff", {
            "username": "hx.new.clerk", "display_name": "新窗口人员", "role": "clerk"}), OTHER_HALL_AND_CLERK,
              "hx_admin"),
        probe("staff_identity.list_staff", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/staff"),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_halls.edit_hall", "path:hall_id", Call("PATCH", f"{STAFF}/halls/{hx}", {
            "address": "杭州市西湖区转塘街道象山路1号"}), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_halls.setup", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/setup"), OTHER_HALL_AND_CLERK,
              "hx_admin"),
        probe("staff_halls.add_counter", "path:hall_id", Call("POST", f"{STAFF}/halls/{hx}/counters", {
            "number": 9, "name": "9号窗口", "groups": ["A"]}), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_halls.edit_counter", {"path:hall_id", "path:counter_id"},
              Call("PATCH", f"{STAFF}/halls/{hx}/counters/{counter}", {"name": "综合受理一号窗口"}),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        # HY's admin names HX's counter under its own hall: not one of HY's counters.
        probe("staff_halls.edit_counter", "path:counter_id",
              Call("PATCH", f"{STAFF}/halls/{hy}/counters/{counter}", {"active": False}), OTHER_HALL_AND_CLERK,
              None, no_owner="the probe before renames this counter under its own hall"),
        probe("staff_halls.hours", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/hours"), OTHER_HALL_AND_CLERK,
              "hx_admin"),
        probe("staff_halls.set_hours", "path:hall_id", Call("PUT", f"{STAFF}/halls/{hx}/hours", {"days": [
            {"weekday": d, "periods": [{"opens": "08:30", "closes": "12:00"}, {"opens": "13:30", "closes": "17:00"}]}
            for d in range(5)]}), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_halls.put_special_hours", {"path:hall_id", "path:day"},
              Call("PUT", f"{STAFF}/halls/{hx}/special-hours/2026-03-12", {
                  "periods": [{"opens": "09:00", "closes": "11:00"}], "reason": "下午防汛演练"}),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_halls.list_special_hours", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/special-hours"),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_halls.day", {"path:hall_id", "path:day"}, Call("GET", f"{STAFF}/halls/{hx}/days/2026-03-12"),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_halls.delete_special_hours", {"path:hall_id", "path:day"},
              Call("DELETE", f"{STAFF}/halls/{hx}/special-hours/2026-03-12"), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_halls.items", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/items"), OTHER_HALL_AND_CLERK,
              "hx_admin"),
        probe("staff_halls.set_items", "path:hall_id", Call("PUT", f"{STAFF}/halls/{hx}/items", {
            "items": [RESIDENCE, LICENCE, SIMPLE, CERT_ITEM]}), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_booking.rules", "path:hall_id", Call("GET", f"{STAFF}/halls/{hx}/booking-rules"),
              OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_booking.reset_rule", "path:hall_id",
              Call("DELETE", f"{STAFF}/halls/{hx}/items/{SIMPLE}/booking-rule"), OTHER_HALL_AND_CLERK, "hx_admin"),
        probe("staff_booking.walk_in_ticket", "path:hall_id", Call("POST", f"{STAFF}/halls/{hx}/tickets", {
            "group": "A"}), OTHER_HALL, "hx_clerk"),
        # Last: the owner's revocation ends the certificate the requests above attach.
        probe("staff_cases.revoke", "path:cert_no",
              Call("POST", f"{STAFF}/certificates/{cert['cert_no']}/revoke", {"reason": "证照信息有误"}),
              OTHER_HALL_AND_CLERK, "hx_admin"),
    ]
    return Matrix(callers=callers, probes=probes)


# ---- every row of every table ---------------------------------------------------------------------


async def snapshot() -> dict[str, list[str]]:
    """Every row of every table but the audit log's (refusals are audited), each as canonical JSON."""
    conn = db.connection()
    rows = await conn.execute_query_dict(
        "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'" if ON_POSTGRES
        else "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    out = {}
    for table in sorted(r["name"] for r in rows):
        if table == AuditEntry._meta.db_table:
            continue
        content = await conn.execute_query_dict(f'SELECT * FROM "{table}"')  # names from the catalog
        out[table] = sorted(json.dumps(dict(r), sort_keys=True, default=str) for r in content)
    return out


def changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    out = []
    for table in sorted(set(before) | set(after)):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        out += [f"{table}: - {row}" for row in sorted(old - new)] + [f"{table}: + {row}" for row in sorted(new - old)]
    return out


# ---- the test -------------------------------------------------------------------------------------


# A 404 for a path the router does not know says nothing about the object.
GENERIC = {"request.not_found"}


async def send(client: httpx.AsyncClient, headers: dict[str, str], call: Call) -> httpx.Response:
    return await client.request(call.method, call.path, json=call.json, params=call.params,
                                headers={**headers, **call.headers})


def refusal_problem(r: httpx.Response, allowed: tuple[int, ...]) -> str | None:
    """None when the answer is one of `allowed` in the error shape, about the object rather than the request."""
    if r.status_code not in allowed:
        return f"answered {r.status_code}: {r.text[:300]}"
    try:
        body = r.json()
    except ValueError:
        return f"answered {r.status_code} without a JSON body: {r.text[:300]}"
    error = body.get("error") if isinstance(body, dict) else None
    if set(body) != {"error"} or not isinstance(error, dict) or not {"code", "message", "details"} <= set(error):
        return f"answered {r.status_code} outside the error shape: {r.text[:300]}"
    if error["code"] in GENERIC:
        return f"answered {error['code']}: the request itself is wrong, so it proves nothing"
    return None


async def test_strangers_are_refused_everywhere_and_change_nothing_owners_are_served(
        live: Live, platforms: Platforms, frozen_clock: clock.FrozenClock) -> None:
    frozen_clock.set(datetime(2026, 3, 2, 0, 40, tzinfo=UTC))  # Monday 08:40 in Shanghai
    m = await build(live, platforms)

    # The probes are the matrix: each route in it probed, every identifier it declares pointed at an object.
    by_route: dict[str, set[str]] = {}
    for p in m.probes:
        by_route.setdefault(p.route, set()).update(p.covers)
        assert p.covers <= MATRIX[p.route].covers, (p.route, p.covers)
        assert p.owner is not None or p.no_owner, f"{p.route}: a probe without an owner's request says why"
        audience = p.call.path.startswith(MP)
        assert all((s == "b") == audience for s in p.strangers), (p.route, p.strangers)
    assert {r: frozenset(c) for r, c in by_route.items()} == {r: e.covers for r, e in MATRIX.items()}

    before = await snapshot()
    attempts = [(p, who) for p in m.probes for who in p.strangers]
    answers = await asyncio.gather(*(send(live.client, m.callers[who], p.call) for p, who in attempts))
    # Another hall's object: 403 or 404, as the code base answers. Another resident's: 404, never revealing it.
    refused = [f"{p.route} ({p.call.method} {p.call.path}) by {who}: {problem}"
               for (p, who), r in zip(attempts, answers, strict=True)
               if (problem := refusal_problem(r, (404,) if who in OTHER_RESIDENT else (403, 404)))]
    assert not refused, "strangers were not refused:\n" + "\n".join(refused)
    changed = changes(before, await snapshot())
    assert not changed, "strangers' refused requests changed rows:\n" + "\n".join(changed[:40])
    assert len(attempts) >= 2 * len(MATRIX)

    # The same requests from their rightful owners succeed, one after another in the matrix's order.
    served = []
    for p in m.probes:
        if p.owner is None:
            continue
        r = await send(live.client, m.callers[p.owner], p.owner_call or p.call)
        if not 200 <= r.status_code < 300:
            served.append(f"{p.route} by {p.owner}: {r.status_code} {r.text[:300]}")
    assert not served, "the owners' own requests failed, so the probes prove nothing:\n" + "\n".join(served)
