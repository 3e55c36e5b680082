"""create_app(settings) -> Sanic: every blueprint, listener and cross-cutting middleware."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from sanic import Request, Sanic
from sanic.response import HTTPResponse
from sanic_ext import Extend

from backend import bounds, db, errors, logs, metrics, providers, runtime, web, wiring
from backend.crypto import KeyRing
from backend.identity.service import TokenConfig
from backend.jobs.periodic import Scheduler
from backend.jobs.worker import Worker, WorkerConfig
from backend.settings import Settings
from backend.stores import make_redis

log = logging.getLogger("palmhall.app")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
APP_NAME = "palmhall"


def worker_config(settings: Settings) -> WorkerConfig:
    return WorkerConfig(
        lease_seconds=settings.outbox_lease_seconds,
        backoff_base=settings.outbox_backoff_base,
        backoff_max=settings.outbox_backoff_max,
        poll_seconds=settings.outbox_poll_seconds,
        batch=settings.outbox_batch,
    )


def create_app(settings: Settings | None = None, *, name: str = APP_NAME) -> Sanic:
    settings = settings or Settings.from_env()
    app = Sanic(name, log_config=logs.log_config(settings.log_level), configure_logging=True)
    bounds.install(app)  # before any route: every path parameter is bounded (backend/bounds.py)
    if settings.fakes_enabled:
        settings = providers.mount_fakes(app, settings)
    app.config.ACCESS_LOG = False  # our own access line below carries the request id
    app.config.FALLBACK_ERROR_FORMAT = "json"
    app.config.REQUEST_MAX_SIZE = 25 * 1024 * 1024
    app.config.OAS_URL_PREFIX = "/docs"
    app.config.OAS_UI_DEFAULT = "swagger"
    app.config.OAS_UI_REDOC = True
    app.config.CORS = False
    # sanic-ext would add a HEAD and an OPTIONS route beside every route at start-up, re-finalizing the
    # router once per route (seconds at this many routes). No client of ours sends them, and CORS is off.
    app.config.HTTP_AUTO_HEAD = False
    app.config.HTTP_AUTO_OPTIONS = False
    app.ctx.settings = settings
    app.ctx.keyring = KeyRing.parse(settings.data_keys)
    app.ctx.token_config = TokenConfig(
        secret=settings.secret_key, access_ttl=settings.access_token_ttl,
        refresh_ttl_days=settings.refresh_token_ttl_days, staff_ttl=settings.staff_token_ttl,
    )
    web.configure(app)
    Extend(app)
    app.ext.openapi.describe(
        "palmhall API",
        version="1",
        description="掌上办 backend: mini programs (/api/v1/mp), kiosks (/api/v1/kiosk), "
        "counters (/api/v1/staff) and anonymous routes. Errors are "
        '`{"error": {"code", "message", "details"}}`.',
    )

    _register_blueprints(app)
    web.register(app)
    _register_middleware(app)
    bounds.document(app)
    app.error_handler.add(Exception, errors.handle_exception)
    _register_listeners(app, settings)
    return app


def _register_blueprints(app: Sanic) -> None:
    from backend.counter import surface as counter
    from backend.hall_sync.views import bp as hall_callbacks
    from backend.public import surface as public
    from backend.public.views import ops
    from kiosks import surface as kiosk
    from miniprogram_api import surface as mp

    app.blueprint(ops)
    from payments.views import bp as payment_callbacks

    # A copy: module-level blueprints are shared by every app this process builds.
    app.blueprint(payment_callbacks.copy(payment_callbacks.name, with_registration=False))
    # The main hall's callbacks: anonymous surface, each request verified by its signature in the view.
    app.blueprint(hall_callbacks.copy(hall_callbacks.name, with_registration=False))
    # Delivery receipts of WeChat's message push and Aliyun's SMS status reports, verified in the view.
    from notifications.views import bp as notification_callbacks

    app.blueprint(notification_callbacks.copy(notification_callbacks.name, with_registration=False))
    # One group per audience, each authenticated once (see ARCHITECTURE: HTTP lives with its audience).
    for surface in (public, mp, counter, kiosk):
        app.blueprint(surface.group())


def _register_middleware(app: Sanic) -> None:
    access = logging.getLogger("palmhall.access")

    @app.on_request(priority=100)  # type: ignore[call-arg]
    async def assign_request_id(request: Request) -> None:
        incoming = request.headers.get("x-request-id", "")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.ctx.request_id = rid
        request.ctx.started = time.perf_counter()
        logs.request_id_var.set(rid)

    @app.on_response(priority=100)
    async def stamp_response(request: Request, response: HTTPResponse) -> None:
        rid = getattr(request.ctx, "request_id", None) or uuid.uuid4().hex
        response.headers["X-Request-Id"] = rid
        started = getattr(request.ctx, "started", None)
        elapsed = time.perf_counter() - started if started else 0.0
        route = f"/{request.route.path}" if request.route else "<unmatched>"
        metrics.observe(request.method, route, response.status, elapsed)
        access.info(
            "%s %s %s", request.method, request.path, response.status,
            extra={"request_id": rid, "status": response.status, "ms": round(elapsed * 1000, 2),
                   "route": route},
        )


def _register_listeners(app: Sanic, settings: Settings) -> None:
    @app.before_server_start
    async def open_stores(app: Sanic) -> None:
        wiring.load()
        await db.init(settings.database_url, pool_max=settings.database_pool_max)
        app.ctx.redis = make_redis(settings.redis_url)
        app.ctx.providers = providers.build(settings, app.ctx.redis)
        runtime.set_current(runtime.Runtime(settings=settings, redis=app.ctx.redis))
        if settings.redis_embedded:
            log.info("REDIS_URL is not set: using an in-process fake Redis; "
                     "serving with a single worker process")
        app.ctx.background = []

    @app.after_server_start
    async def start_embedded_worker(app: Sanic) -> None:
        if not settings.runs_embedded_worker:
            return
        worker = Worker(worker_config(settings))
        scheduler = Scheduler(app.ctx.redis, owner=worker.name)
        app.ctx.embedded = (worker, scheduler)
        app.ctx.background = [
            asyncio.get_running_loop().create_task(worker.run()),
            asyncio.get_running_loop().create_task(scheduler.run()),
        ]
        log.info("outbox worker and periodic tasks run inside this server process")

    @app.before_server_stop
    async def stop_embedded_worker(app: Sanic) -> None:
        if getattr(app.ctx, "embedded", None):
            for part in app.ctx.embedded:
                part.stop()
            await asyncio.gather(*app.ctx.background, return_exceptions=True)

    @app.after_server_stop
    async def close_stores(app: Sanic) -> None:
        await app.ctx.providers.aclose()
        await app.ctx.redis.aclose()
        await db.close()
