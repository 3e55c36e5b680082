"""No input is a 500 (issue 20, point 5): every route of the app's router, called as its own kind of caller, with
values no column can hold, answers 4xx in the error shape, writes nothing and logs no traceback.

The routes, their path parameters, their query schemas and their body schemas are enumerated from the app
itself (the router, `body()`'s model, the views' `parse(...)` calls), never listed here, so a new route is
probed the day it is added. Then one test per kind of input the issue names: non-ASCII signatures, a long
static file name, far-future statistics, over-long identities from the platforms."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import logging
import math
import pkgutil
import re
import types
import typing
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from enum import Enum
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest
from pydantic import AfterValidator, BaseModel
from sanic import Sanic
from tortoise import Tortoise

from backend import bounds, db
from backend.app import create_app
from backend.bounds import INT32_MAX, INT64_MAX, STR_MAX, Input
from backend.hall_sync.client import signed_headers as hall_signed_headers
from backend.identity import service as identity
from backend.identity.models import ChannelIdentity
from backend.settings import Settings
from backend.web import _file
from miniprogram_api import limits
from notifications.wechat_push import sign as push_sign
from notifications.wechat_push_fake import generate_aes_key
from tests.cases_support import ZHANG, World, build_world, kiosk_headers, resident
from tests.conftest import Live, Platforms

PACKAGES = ("backend", "miniprogram_api", "kiosks", "notifications", "payments")
PUSH_TOKEN = "palmhallPushToken2026"
REPORT_TOKEN = "sms-report-token-0123456789abcdef"
UNLIMITED = "1000000/60"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Thousands of probes from one address, resident and kiosk: no rate limit may answer for the bounds.
    resident_writes = {setting for _, setting in [*limits.WRITE_LIMITS.values(), limits.DEFAULT]}
    rates = {name: UNLIMITED for name in ("rate_login_ip", "rate_login_account", "rate_kiosk", "rate_progress_ip",
                                          "rate_link_account", "rate_link_id_number", *resident_writes)}
    return {**rates, "rate_qr_miss_ip": "1000000/600", "wechat_push_token": PUSH_TOKEN,
            "wechat_push_aes_key": generate_aes_key(), "sms_report_token": REPORT_TOKEN}


class Kept(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def logged(name: str, level: int) -> Iterator[list[logging.LogRecord]]:
    """Records of logger `name` at `level` or above (palmhall's loggers do not propagate to the root)."""
    handler = Kept(level)
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def tracebacks() -> Iterator[list[logging.LogRecord]]:
    """What the one error handler logged as an unhandled error while the test ran."""
    with logged("palmhall.errors", logging.ERROR) as records:
        yield records


# ---- callers --------------------------------------------------------------------------------


@dataclass
class Callers:
    """Each surface called as its own kind of caller, so a request gets past authentication."""

    live: Live
    world: World
    resident: dict[str, str]
    kiosk: tuple[str, str]  # device id, secret

    def headers(self, method: str, target: str, body: bytes) -> dict[str, str]:
        if target.startswith("/api/v1/mp/"):
            return dict(self.resident)
        if target.startswith("/api/v1/staff/"):
            return dict(self.world.admin)  # a hall admin of HX
        if target.startswith("/api/v1/kiosk/"):
            return kiosk_headers(*self.kiosk, method, target, body)
        if target == "/api/v1/hall/callbacks":
            settings = self.live.app.ctx.settings
            return hall_signed_headers(app_id=settings.hall_app_id, secret=settings.hall_app_secret,
                                       method=method, path=target, body=body)
        return {}

    async def send(self, method: str, path: str, *, query: dict[str, str] | None = None,
                   body: bytes | None = None) -> httpx.Response:
        target = path + ("?" + urlencode(query, quote_via=quote) if query else "")
        headers = self.headers(method, target, body or b"")
        if body is not None:
            headers["Content-Type"] = "application/json"
        return await self.live.client.request(method, target, content=body, headers=headers)


@pytest.fixture
async def callers(live: Live, platforms: Platforms) -> Callers:
    world = await build_world(live)
    me = await resident(live, platforms, ZHANG)
    device, secret = await identity.register_kiosk(hall_code="HX", name="一楼自助机", keyring=live.app.ctx.keyring)
    return Callers(live=live, world=world, resident=me, kiosk=(device.device_id, secret))


async def row_counts() -> dict[str, int]:
    return {name: await model.all().count() for name, model in sorted(Tortoise.apps[db.APP_LABEL].items())}


def assert_refused(r: httpx.Response, where: str) -> dict[str, Any]:
    """4xx in the error shape; the error."""
    assert 400 <= r.status_code < 500, (where, r.status_code, r.text[:300])
    error = r.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] and error["message"], (where, r.text[:300])
    return dict(error)


# Payment platforms' callbacks answer in the platform's own format, which the platform reads.
PLATFORM_FORMAT = ("/api/v1/payments/callbacks/",)


def assert_no_5xx(r: httpx.Response, where: str) -> None:
    assert r.status_code < 500, (where, r.status_code, r.text[:300])
    if (r.status_code >= 400 and r.headers.get("content-type", "").startswith("application/json")
            and not r.url.path.startswith(PLATFORM_FORMAT)):
        assert_refused(r, where)


def named(error: dict[str, Any], field: str) -> bool:
    fields = (error.get("details") or {}).get("fields") or []
    return any(f["field"] == field or f["field"].startswith(field + ".") for f in fields)


# ---- what the app says about its own routes -------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # /api/v1/halls/<hall_id:int32>/queue
    params: tuple[tuple[str, str], ...]  # (name, label) in order
    query: type[Input] | None
    body: type[Input] | None


_PARSE = re.compile(r"\bparse\(\s*(\w+)\s*,([^\n]*)")


def schemas_of(handler: Any) -> tuple[type[Input] | None, type[Input] | None]:
    """(query schema, body schema) of a view: `body()`'s model, and the models its own `parse(...)` calls use."""
    view = inspect.unwrap(handler)
    found_body = getattr(handler, "body_model", None)
    query = None
    if not inspect.isfunction(view):
        return None, found_body  # sanic-ext's documentation pages
    for name, rest in _PARSE.findall(inspect.getsource(view)):
        model = view.__globals__[name]
        if "json_body" in rest:
            found_body = found_body or model
        else:
            query = model
    return query, found_body


def endpoints(live: Live) -> list[Endpoint]:
    out = []
    for route in live.app.router.routes:
        query, body = schemas_of(route.handler)
        params = tuple((p.name, p.label) for p in route.defined_params.values())
        for method in sorted(route.methods):
            out.append(Endpoint(method, "/" + route.path, params, query, body))
    assert len(out) > 80  # the whole app, not a corner of it
    return out


# Per path label: a value that fits (the largest or longest there is, so it reaches the view and the
# database and names nothing that exists), and values that do not.
FITS = {"int": str(INT64_MAX), "int32": str(INT32_MAX), "str": "z" * 64, "ymd": "2099-12-31",
        "path": "a/" + "b" * 150 + ".js", "case_no": "9" * 32, "cert_no": "DZ" + "9" * 38, "item_code": "Z" * 40,
        "session_id": "f" * 32, "qr_token": "A" * 64}
NUMBERS = [str(2**63), str(10**30), "-1", "0", "1" + "0" * 4400, "01", "+1", "1.0"]
TEXT = ["x" * 5000, "%00", "%E4%B8%AD" * 40, "a%2F..%2Fb"]
DOES_NOT_FIT = {"int": NUMBERS, "int32": [*NUMBERS, str(2**31)], "ymd": ["9999-12-31", "0001-01-01", "2026-02-30",
                                                                       "1999-12-31", "x" * 5000],
                "path": ["a" * 5000, ".env", "a%00b", "a b"], "str": TEXT, "case_no": [*TEXT, "1" * 33],
                "cert_no": [*TEXT, "DZ" + "1" * 39], "item_code": [*TEXT, "A" * 41], "session_id": [*TEXT, "f" * 33],
                "qr_token": [*TEXT, "A" * 65]}


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"<(\w+):[^>]+>", lambda m: values[m.group(1)], path)


def fitting(e: Endpoint, hall: int) -> str:
    """The path with values that fit, the hall being HX (whose admin calls), so hall-scoped views read on."""
    return fill(e.path, {name: str(hall) if name == "hall_id" else FITS[label] for name, label in e.params})


def test_every_path_parameter_of_every_route_is_bounded(live: Live, settings: Settings) -> None:
    assert bounds.unbounded_params(live.app) == []
    # Development mounts the platforms' fakes on the same app: their routes are bounded too.
    Sanic.test_mode = True
    dev = create_app(settings.with_overrides(platform_fakes="true"), name=f"dev_{uuid.uuid4().hex[:8]}")
    try:
        assert any(r.path.startswith("_fakes/") and r.defined_params for r in dev.router.routes)
        assert bounds.unbounded_params(dev) == []
    finally:
        Sanic._app_registry.pop(dev.name, None)
    labels = {label for e in endpoints(live) for _, label in e.params}
    assert labels <= set(bounds.PATH_KINDS) and {"int", "int32", "case_no", "qr_token"} <= labels
    for label in bounds.PATH_KINDS:
        assert label in FITS and label in DOES_NOT_FIT, label  # a new kind gets probes here


def test_path_kinds_refuse_what_does_not_fit_and_take_what_does() -> None:
    for label, cast in bounds.PATH_CASTS.items():
        cast(FITS[label])
        for value in DOES_NOT_FIT[label]:
            with pytest.raises(ValueError):
                cast(value)


async def test_every_route_refuses_path_values_that_do_not_fit(callers: Callers, tracebacks: list) -> None:
    before = await row_counts()
    probed = 0
    for e in endpoints(callers.live):
        fits = {name: FITS[label] for name, label in e.params}
        for name, label in e.params:
            for bad in DOES_NOT_FIT[label]:
                r = await callers.send(e.method, fill(e.path, {**fits, name: bad}))
                assert_refused(r, f"{e.method} {e.path} {name}={bad[:40]}")
                probed += 1
        if e.params:
            # The largest values that fit reach the view and the database: refused there, never a 500.
            r = await callers.send(e.method, fill(e.path, fits))
            assert_no_5xx(r, f"{e.method} {e.path} {fits}")
    assert probed > 300
    assert await row_counts() == before
    assert tracebacks == []


def test_every_route_schema_derives_from_the_bounded_base() -> None:
    """Every model a view parses a request into (`body(M)`, `parse(M, ...)` anywhere in the surfaces and
    domains), and every model nested in one, derives from Input."""
    used: dict[str, type[BaseModel]] = {}
    for module in _app_modules():
        source = inspect.getsource(module)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("parse", "body"):
                if node.args and isinstance(node.args[0], ast.Name) and node.args[0].id in vars(module):
                    model = vars(module)[node.args[0].id]
                    if isinstance(model, type) and issubclass(model, BaseModel):
                        used[f"{module.__name__}.{model.__name__}"] = model
    assert len(used) > 30, sorted(used)
    seen: set[type[BaseModel]] = set()
    for where, model in used.items():
        for m in _with_nested(model, seen):
            assert issubclass(m, Input), f"{where}: {m.__module__}.{m.__name__} does not derive from bounds.Input"
            for name, field in m.model_fields.items():
                # A date is a bounds.Day, refused out of bounds before any validator works with it.
                assert _only_bounded_days(field.annotation, field.metadata), f"{m.__name__}.{name}: a date, not a Day"


def _only_bounded_days(annotation: Any, metadata: list[Any]) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *metadata = typing.get_args(annotation)
    if annotation is date:
        return any(isinstance(m, AfterValidator) and m.func is bounds._bounded_day for m in metadata)
    return all(_only_bounded_days(arg, []) for arg in typing.get_args(annotation))


def _app_modules() -> Iterator[types.ModuleType]:
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if ".migrations" not in info.name:
                yield importlib.import_module(info.name)


def _with_nested(model: type[BaseModel], seen: set[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    if model in seen:
        return
    seen.add(model)
    yield model
    for field in model.model_fields.values():
        for t in _types_in(field.annotation):
            if isinstance(t, type) and issubclass(t, BaseModel):
                yield from _with_nested(t, seen)


def _types_in(annotation: Any) -> Iterator[Any]:
    yield annotation
    for arg in typing.get_args(annotation):
        yield from _types_in(arg)


# ---- query strings --------------------------------------------------------------------------


def _base_type(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return _base_type(args[0])
    if typing.get_origin(annotation) is typing.Annotated:
        return _base_type(args[0])
    return annotation


def _sample(annotation: Any, hall_id: int) -> str:
    """A value that fits a query field, so the one probed field is the only thing wrong."""
    kind = _base_type(annotation)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return str(next(iter(kind)).value)
    if typing.get_origin(kind) is typing.Literal:
        return str(typing.get_args(kind)[0])
    return {bool: "false", int: str(hall_id), date: "2026-03-02"}.get(kind, "x")


QUERY_POISON = {"int": [str(2**63), str(10**30), str(-(2**63) - 1), "1" + "0" * 4400, "1\x00"],
                "date": ["9999-12-31", "0001-01-01", "1\x00"],
                "other": ["a\x00b", "\x00"]}


async def test_every_query_schema_refuses_values_that_do_not_fit(callers: Callers, tracebacks: list) -> None:
    before = await row_counts()
    probed = 0
    hall = callers.world.halls["HX"]
    for e in endpoints(callers.live):
        if e.query is None:
            continue
        path = fitting(e, hall)
        fields = {f.alias or name: f for name, f in e.query.model_fields.items()}
        baseline = {alias: _sample(f.annotation, hall) for alias, f in fields.items()}
        days = [alias for alias, f in fields.items() if _base_type(f.annotation) is date]
        for alias, f in fields.items():
            kind = _base_type(f.annotation)
            poison = QUERY_POISON["int" if kind is int else "date" if kind is date else "other"]
            for bad in poison:
                # A period's two ends move together, so the period itself stays well-formed.
                query = {**baseline, **({d: bad for d in days} if kind is date else {alias: bad})}
                r = await callers.send(e.method, path, query=query)
                error = assert_refused(r, f"{e.method} {e.path}?{alias}={bad[:30]!r}")
                assert error["code"] == "validation.failed" and named(error, alias), (e.path, alias, bad[:30], error)
                probed += 1
            # Long text is refused or harmless, never a 500.
            r = await callers.send(e.method, path, query={**baseline, alias: "x" * 5000})
            assert_no_5xx(r, f"{e.method} {e.path}?{alias}=x*5000")
    assert probed > 60
    assert await row_counts() == before
    assert tracebacks == []


# ---- JSON bodies ----------------------------------------------------------------------------

# JSON as Python's json writes it: NaN and Infinity are accepted by most parsers, a lone surrogate is an escape.
BODY_POISON: list[Any] = [2**63, -(2**63) - 1, 10**30, math.nan, math.inf, -math.inf, "a\x00b", "\ud800",
                          "x" * (STR_MAX + 1)]


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=True).encode()


async def test_every_json_body_refuses_values_no_column_can_hold(callers: Callers, tracebacks: list) -> None:
    before = await row_counts()
    probed = 0
    hall = callers.world.halls["HX"]
    for e in endpoints(callers.live):
        if e.method not in ("POST", "PUT", "PATCH", "DELETE"):
            continue
        path = fitting(e, hall)
        if e.body is None:
            # A route without a body schema reads no JSON body: whatever it is sent, never a 500.
            for bad in ({"x": 2**63, "y": "\x00", "z": math.nan}, ["\ud800"]):
                r = await callers.send(e.method, path, body=_json(bad))
                assert_no_5xx(r, f"{e.method} {e.path} {bad!r:.40}")
            continue
        for alias in [f.alias or name for name, f in e.body.model_fields.items()]:
            for bad in [*BODY_POISON, [2**63], {"k": "\x00"}, [{"k": math.nan}]]:
                r = await callers.send(e.method, path, body=_json({alias: bad}))
                error = assert_refused(r, f"{e.method} {e.path} {alias}={bad!r:.40}")
                assert r.status_code == 422 and named(error, alias), (e.path, alias, repr(bad)[:40], error)
                probed += 1
    assert probed > 500
    assert await row_counts() == before
    assert tracebacks == []


# ---- one test per kind of input the issue names ----------------------------------------------


NON_ASCII = ["é" * 64, "ｆ" * 64, "0" * 63 + "٣"]


async def test_non_ascii_signatures_are_refused_at_each_place(callers: Callers, tracebacks: list) -> None:
    live = callers.live
    settings = live.app.ctx.settings
    # 1. The main hall's signed material link.
    for sig in NON_ASCII:
        r = await live.client.get("/api/v1/hall/materials/1", params={"expires": "9999999999", "sig": sig})
        assert (r.status_code, assert_refused(r, "link")["code"]) == (403, "hall.link_invalid")
    # 2. The main hall's callback (headers carry UTF-8 and bytes that are not UTF-8 alike).
    body = _json({"event_id": "e1", "case_no": "33010601120260302" + "00001", "status": "accepted"})
    for sig in [*[s.encode() for s in NON_ASCII], b"\xff" * 64]:
        headers: dict[str, Any] = hall_signed_headers(app_id=settings.hall_app_id, secret=settings.hall_app_secret,
                                                      method="POST", path="/api/v1/hall/callbacks", body=body)
        headers["X-Hall-Signature"] = sig
        r = await live.client.post("/api/v1/hall/callbacks", content=body, headers=headers)
        assert (r.status_code, assert_refused(r, "callback")["code"]) == (401, "hall.signature_invalid")
    headers = hall_signed_headers(app_id=settings.hall_app_id, secret=settings.hall_app_secret, method="POST",
                                  path="/api/v1/hall/callbacks", body=body)
    headers["X-Hall-Nonce"] = b"\xff" * 16  # signed over, so it must be text
    r = await live.client.post("/api/v1/hall/callbacks", content=body, headers=headers)
    assert (r.status_code, assert_refused(r, "callback nonce")["code"]) == (401, "hall.signature_invalid")
    # 3. The WeChat message push's URL check.
    for sig in NON_ASCII:
        r = await live.client.get("/api/v1/notifications/callbacks/wechat",
                                  params={"signature": sig, "timestamp": "1700000000", "nonce": "n1", "echostr": "e"})
        assert (r.status_code, assert_refused(r, "push")["code"]) == (401, "notify.push_refused")
    good = push_sign(PUSH_TOKEN, "1700000000", "n1")
    r = await live.client.get("/api/v1/notifications/callbacks/wechat",
                              params={"signature": good.upper(), "timestamp": "1700000000", "nonce": "n1",
                                      "echostr": "echo-1"})
    assert (r.status_code, r.text) == (200, "echo-1")  # the shape check keeps hex in either case
    # 4. Kiosk requests.
    device, secret = callers.kiosk
    path = "/api/v1/kiosk/heartbeat"
    hb = _json({"software_version": "1"})
    for sig in [*[s.encode() for s in NON_ASCII], b"\xff" * 64]:
        headers = kiosk_headers(device, secret, "POST", path, hb)
        headers["X-Signature"] = sig
        r = await live.client.post(path, content=hb, headers=headers)
        assert (r.status_code, assert_refused(r, "kiosk")["code"]) == (401, "kiosk.signature_invalid")
    for field, value in (("X-Timestamp", "١٧٠٠٠٠٠٠٠٠".encode()), ("X-Timestamp", b"1" * 4400),
                         ("X-Kiosk-Id", b"\xff" * 8)):
        headers = kiosk_headers(device, secret, "POST", path, hb)
        headers[field] = value
        r = await live.client.post(path, content=hb, headers=headers)
        assert (r.status_code, assert_refused(r, "kiosk")["code"]) == (401, "kiosk.signature_invalid")
    assert (await live.client.post(path, content=hb, headers=kiosk_headers(device, secret, "POST", path, hb))
            ).status_code == 200
    assert tracebacks == []


async def test_undecodable_tokens_and_keys_in_headers_are_refused(callers: Callers, tracebacks: list) -> None:
    live = callers.live
    before = await row_counts()
    for token in (b"\xff" * 20, "令牌".encode(), b"a" * 5000):
        for path in ("/api/v1/mp/me", "/api/v1/staff/me"):
            r = await live.client.get(path, headers={"Authorization": b"Bearer " + token})
            assert (r.status_code, assert_refused(r, path)["code"]) == (401, "auth.token_invalid")
    r = await live.client.post("/api/v1/mp/appointments", json={"slot_id": 1},
                               headers={**callers.resident, "Idempotency-Key": b"\xff" * 20})
    assert (r.status_code, assert_refused(r, "key")["code"]) == (400, "booking.idempotency_key_missing")
    r = await live.client.post("/api/v1/mp/payments", json={"case_no": "33010601120260302" + "00001",
                                                            "channel": "wechat"},
                               headers={**callers.resident, "Idempotency-Key": b"key-\x01-0123"})
    assert (r.status_code, assert_refused(r, "key")["code"]) == (400, "payment.idempotency_key_missing")
    assert await row_counts() == before
    assert tracebacks == []


async def test_a_5000_character_static_name_is_404(live: Live, tracebacks: list) -> None:
    for name in ("a" * 5000, "a" * 300 + ".js", "a/" * 2000 + "b.js"):
        r = await live.client.get(f"/static/web/{name}")
        assert r.status_code == 404 and assert_refused(r, "static")["code"] in ("request.not_found",
                                                                              "web.static_not_found")
    # The file system is not asked about a name out of bounds, whoever asks.
    assert _file("web", "a" * 5000) is None and _file("web", "a\x00b.js") is None and _file("web", ".x") is None
    assert (await live.client.get("/static/web/common.js")).status_code == 200
    assert tracebacks == []


async def test_far_future_date_ranges_on_staff_statistics_are_refused(callers: Callers, tracebacks: list) -> None:
    hall = callers.world.halls["HX"]
    far = {"/api/v1/staff/stats/materials": [{"hall_id": hall, "from": "9999-12-01", "to": "9999-12-31"},
                                             {"hall_id": hall, "from": "0001-01-01", "to": "0001-12-31"}],
           "/api/v1/staff/evaluations": [{"hall_id": hall, "from": "9999-12-01", "to": "9999-12-31"}],
           f"/api/v1/staff/halls/{hall}/dashboard": [{"from": "9999-12-31"}, {"to": "0001-01-01"},
                                                      {"from": "2200-01-01", "to": "2200-01-31"}],
           f"/api/v1/staff/halls/{hall}/closures": [{"from": "9999-12-31"}, {"from": "2100-06-01"}],
           "/api/v1/staff/payments/reconciliation": [{"date": "9999-12-31"}, {"date": "0001-01-01"}]}
    for path, queries in far.items():
        for query in queries:
            r = await callers.send("GET", path, query={k: str(v) for k, v in query.items()})
            error = assert_refused(r, f"{path} {query}")
            assert (r.status_code, error["code"]) == (422, "validation.failed"), (path, query, r.text)
            assert "2099-12-31" in json.dumps(error, ensure_ascii=False)  # says what the bounds are
    # A year is the longest period.
    r = await callers.send("GET", "/api/v1/staff/stats/materials",
                           query={"hall_id": str(hall), "from": "2025-01-01", "to": "2026-03-01"})
    assert r.status_code == 422
    r = await callers.send("GET", "/api/v1/staff/stats/materials",
                           query={"hall_id": str(hall), "from": "2025-03-02", "to": "2026-03-01"})
    assert r.status_code == 200, r.text
    assert tracebacks == []


async def test_an_over_long_openid_from_wechat_is_the_providers_fault(live: Live, platforms: Platforms,
                                                                      tracebacks: list) -> None:
    for openid, unionid in (("o" * 129, None), ("o_ok", "u" * 129), ("o_\x00", None), ("o_我", None)):
        code = platforms.wechat.issue_code(openid, unionid)
        with logged("palmhall.identity.wechat", logging.WARNING) as warnings:
            r = await live.client.post("/api/v1/mp/auth/wechat", json={"code": code})
        assert (r.status_code, assert_refused_502(r)) == (502, "auth.wechat_failed"), r.text
        assert [w.levelno for w in warnings] == [logging.WARNING]
    assert await ChannelIdentity.all().count() == 0
    code = platforms.wechat.issue_code("o" * 128, "u" * 128)  # as long as the columns
    assert (await live.client.post("/api/v1/mp/auth/wechat", json={"code": code})).status_code == 200
    assert tracebacks == []


async def test_an_over_long_user_id_from_alipay_is_the_providers_fault(live: Live, platforms: Platforms,
                                                                       tracebacks: list) -> None:
    for user_id, open_id in (("2088" + "1" * 61, None), (None, "a" * 129), ("2088 1", None)):
        code = platforms.alipay.add_code(user_id=user_id, open_id=open_id)
        with logged("palmhall.identity.alipay", logging.WARNING) as warnings:
            r = await live.client.post("/api/v1/mp/auth/alipay", json={"authCode": code})
        assert (r.status_code, assert_refused_502(r)) == (502, "auth.alipay_failed"), r.text
        assert [w.levelno for w in warnings] == [logging.WARNING]
    assert await ChannelIdentity.all().count() == 0
    code = platforms.alipay.add_code(user_id="2088" + "1" * 60)
    assert (await live.client.post("/api/v1/mp/auth/alipay", json={"authCode": code})).status_code == 200
    assert tracebacks == []


def assert_refused_502(r: httpx.Response) -> str:
    error = r.json()["error"]
    assert set(error) == {"code", "message", "details"}
    return str(error["code"])
