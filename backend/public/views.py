"""Anonymous routes: liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json, raw
from sanic_ext import openapi

from backend import db, metrics
from backend.errors import error_response
from backend.hall_sync import service as hall_sync
from backend.jobs import outbox

log = logging.getLogger("palmhall.ready")

bp = Blueprint("public_ops")
ops = Blueprint("ops")

CHECK_TIMEOUT = 2.0


@bp.get("/health")
@openapi.summary("Liveness: the process answers")
@openapi.tag("public")
async def health(request: Request) -> HTTPResponse:
    return json({"status": "ok"})


async def _check_database() -> None:
    await db.connection().execute_query("SELECT 1")


async def _check_redis(request: Request) -> None:
    if not await request.app.ctx.redis.ping():
        raise RuntimeError("no PONG")


@bp.get("/ready")
@openapi.summary("Readiness: the database and Redis answer")
@openapi.tag("public")
@openapi.response(200, {"application/json": {"status": str, "checks": dict}}, "ready")
@openapi.response(503, {"application/json": {"error": dict}}, "a store did not answer")
async def ready(request: Request) -> HTTPResponse:
    checks: dict[str, str] = {}
    for name, coro in (("database", _check_database()), ("redis", _check_redis(request))):
        try:
            await asyncio.wait_for(coro, CHECK_TIMEOUT)
            checks[name] = "ok"
        except Exception as exc:
            log.warning("readiness check failed", extra={"check": name, "error": type(exc).__name__})
            checks[name] = "failed"
    failed = [name for name, state in checks.items() if state != "ok"]
    if failed:
        names = {"database": "数据库", "redis": "Redis"}
        return error_response(
            "ready.unavailable",
            message="服务暂不可用：" + "、".join(names[n] for n in failed) + " 无法连接",
            details={"checks": checks, "failed": failed},
        )
    return json({"status": "ready", "checks": checks})


@ops.get("/metrics")
@openapi.exclude()
async def prometheus(request: Request) -> HTTPResponse:
    try:
        stats = await outbox.stats()
    except Exception:
        log.exception("outbox stats unavailable for /metrics")
        stats = {"counts": {}, "oldest_pending_age_seconds": float("nan")}
    try:
        hall_lag = await hall_sync.lag_seconds()
    except Exception:
        log.exception("hall sync lag unavailable for /metrics")
        hall_lag = float("nan")
    body, content_type = metrics.render(stats, hall_sync_lag_seconds=hall_lag)
    return raw(body, content_type=content_type)
