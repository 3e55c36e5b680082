"""The HTTP contract every surface shares: errors, request ids, health, readiness, docs, metrics."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import json as json_response

from backend import db
from backend.errors import DomainError, FieldErrors
from backend.jobs import outbox
from backend.logs import JsonFormatter
from tests.conftest import Live, start_app, stop_app


async def test_health_answers_ok_with_a_request_id(live: Live) -> None:
    r = await live.client.get("/api/v1/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert len(r.headers["x-request-id"]) == 32


async def test_a_callers_request_id_is_kept(live: Live) -> None:
    r = await live.client.get("/api/v1/health", headers={"X-Request-Id": "kiosk-7f3a-0001"})
    assert r.headers["x-request-id"] == "kiosk-7f3a-0001"
    # Something that could smuggle into logs is replaced, not echoed.
    r = await live.client.get("/api/v1/health", headers={"X-Request-Id": "a b\n<script>;drop".replace("\n", " ")})
    assert r.headers["x-request-id"] != "a b <script>;drop" and len(r.headers["x-request-id"]) == 32


async def test_ready_when_both_stores_answer(live: Live) -> None:
    r = await live.client.get("/api/v1/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_ready_is_503_naming_redis_when_redis_is_down(live: Live) -> None:
    from redis.asyncio import Redis

    working = live.app.ctx.redis
    # A real client to a port nobody listens on: connection refused.
    live.app.ctx.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        r = await live.client.get("/api/v1/ready")
    finally:
        await live.app.ctx.redis.aclose()
        live.app.ctx.redis = working
    assert r.status_code == 503
    body = r.json()["error"]
    assert body["code"] == "ready.unavailable"
    assert "Redis" in body["message"]
    assert body["details"] == {"checks": {"database": "ok", "redis": "failed"}, "failed": ["redis"]}


async def test_ready_is_503_naming_the_database_when_it_is_down(live: Live) -> None:
    await db.close()
    try:
        # A real PostgreSQL URL to a port nobody listens on: connection refused.
        await db.init("postgres://nobody@127.0.0.1:1/none")
        r = await live.client.get("/api/v1/ready")
    finally:
        await db.close()
        await db.init(live.app.ctx.settings.database_url)
    assert r.status_code == 503
    assert r.json()["error"]["details"]["failed"] == ["database"]


async def test_unknown_route_is_404_in_the_error_shape(live: Live) -> None:
    r = await live.client.get("/api/v1/no-such-thing")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "request.not_found", "message": "请求的地址不存在",
                                  "details": {"path": "/api/v1/no-such-thing"}}}
    assert r.headers["x-request-id"]


async def test_wrong_method_is_405_in_the_error_shape(live: Live) -> None:
    r = await live.client.post("/api/v1/health")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "request.method_not_allowed"


class Probe(BaseModel):
    name: str = Field(min_length=2, max_length=10)
    age: int = Field(ge=0, le=150)


@pytest.fixture
async def probe_app(settings):
    """palmhall with a few extra routes that exercise the shared error handling."""
    from sanic import Sanic

    from backend.app import create_app

    Sanic.test_mode = True
    app = create_app(settings, name=f"palmhall_probe_{uuid.uuid4().hex[:6]}")
    bp = Blueprint("probe", url_prefix="/probe")

    @bp.post("/validate")
    async def validate(request: Request):
        from pydantic import ValidationError

        try:
            Probe.model_validate(request.json or {})
        except ValidationError as exc:
            raise FieldErrors.from_pydantic(exc) from None
        return json_response({"ok": True})

    @bp.get("/domain")
    async def domain(request: Request):
        raise DomainError("not_found", details={"id": 7})

    @bp.get("/crash")
    async def crash(request: Request):
        secret = "postgres://admin:hunter2@db/prod"
        raise RuntimeError(f"connection to {secret} failed")

    app.blueprint(bp)
    server, url = await start_app(app)
    import httpx

    async with httpx.AsyncClient(base_url=url) as client:
        yield client
    await stop_app(server)
    Sanic._app_registry.pop(app.name, None)


async def test_validation_error_lists_every_bad_field(probe_app) -> None:
    r = await probe_app.post("/probe/validate", json={"name": "x", "age": 999})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "validation.failed"
    assert err["message"] == "提交的内容有误，请检查后重试"
    fields = {f["field"]: f for f in err["details"]["fields"]}
    assert set(fields) == {"name", "age"}
    assert fields["name"]["message"] == "内容过短"
    assert fields["age"]["message"] == "数值过大"


async def test_domain_error_keeps_its_code_and_status(probe_app) -> None:
    r = await probe_app.get("/probe/domain")
    assert r.status_code == 404
    assert r.json() == {"error": {"code": "not_found", "message": "未找到该对象", "details": {"id": 7}}}


async def test_unexpected_error_is_500_with_request_id_and_no_internals(probe_app, caplog) -> None:
    r = await probe_app.get("/probe/crash")
    assert r.status_code == 500
    body = r.json()
    assert body["error"]["code"] == "internal"
    assert body["error"]["message"] == "服务器内部错误，请稍后重试"
    assert body["error"]["details"] == {"request_id": r.headers["x-request-id"]}
    text = r.text
    for leak in ("hunter2", "Traceback", "RuntimeError", "crash"):
        assert leak not in text


def test_log_lines_are_json_with_the_request_id() -> None:
    from backend.logs import request_id_var

    token = request_id_var.set("req-12345678")
    try:
        record = logging.LogRecord("palmhall.x", logging.INFO, __file__, 1, "hello %s", ("世界",), None)
        record.case_no = "C1"
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello 世界"
    assert line["request_id"] == "req-12345678"
    assert line["case_no"] == "C1"
    assert line["level"] == "info"


async def test_access_log_carries_the_same_request_id_as_the_response(live: Live) -> None:
    lines: list[dict] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(JsonFormatter().format(record)))

    handler = Collect()
    logger = logging.getLogger("palmhall.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        r = await live.client.get("/api/v1/health")
    finally:
        logger.removeHandler(handler)
    mine = [entry for entry in lines if entry.get("request_id") == r.headers["x-request-id"]]
    assert mine and mine[0]["status"] == 200 and mine[0]["route"] == "/api/v1/health"


async def test_docs_page_and_openapi_document(live: Live) -> None:
    r = await live.client.get("/docs", follow_redirects=True)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    spec = (await live.client.get("/docs/openapi.json")).json()
    assert spec["info"]["title"] == "palmhall API"
    assert "/api/v1/health" in spec["paths"] and "/api/v1/ready" in spec["paths"]


async def test_metrics_count_requests_by_route_and_status_and_show_the_outbox(live: Live) -> None:
    await live.client.get("/api/v1/health")
    await live.client.get("/api/v1/nothing-here")
    async with db.transaction() as tx:
        await outbox.emit("demo.topic", {}, using_db=tx)
        await outbox.emit("demo.topic", {}, using_db=tx)
    r = await live.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'palmhall_http_requests_total{method="GET",route="/api/v1/health",status="200"}' in text
    assert 'palmhall_http_requests_total{method="GET",route="<unmatched>",status="404"}' in text
    assert "palmhall_http_request_duration_seconds_bucket" in text
    assert 'palmhall_outbox_events{status="pending"} 2.0' in text
    assert 'palmhall_outbox_events{status="dead"} 0.0' in text
    assert "palmhall_outbox_oldest_pending_age_seconds" in text
