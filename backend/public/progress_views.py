"""Anonymous QR look-ups: a case's (or appointment's) progress and an e-certificate's verification."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from backend import qr, ratelimit
from backend.booking import service as booking
from backend.cases import certificates
from backend.cases import service as cases
from backend.crypto import KeyRing
from backend.errors import DomainError
from backend.http import client_ip, limit

bp = Blueprint("public_progress")

# kind -> async (object id, keyring) -> masked progress. Cases register here; another domain whose
# QR codes show progress (appointments) adds its own kind the same way.
Progress = Callable[[int, KeyRing], Awaitable[dict[str, Any]]]
PROGRESS: dict[str, Progress] = {}


def progress_kind(kind: str) -> Callable[[Progress], Progress]:
    def register(fn: Progress) -> Progress:
        PROGRESS[kind] = fn
        return fn

    return register


@progress_kind("appointment")
async def _appointment_progress(appointment_id: int, keyring: KeyRing) -> dict[str, Any]:
    return await booking.public_progress(appointment_id=appointment_id)


@progress_kind("case")
async def _case_progress(case_id: int, keyring: KeyRing) -> dict[str, Any]:
    return await cases.public_progress(case_id=case_id, keyring=keyring)


MISS_PREFIX = "palmhall:qrmiss:"


def token_of(code: str) -> str:
    """A scanner sends the whole QR URL or just its last segment."""
    return code.strip().rstrip("/").rsplit("/", 1)[-1]


async def guarded(request: Request, who: str, look_up: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a token look-up for `who` (an IP or a device): too many unknown or forged tokens and every
    look-up is refused for a while, so nobody can try tokens in bulk."""
    ctx = request.app.ctx
    misses = ratelimit.Limit.parse(ctx.settings.rate_qr_miss_ip)
    key = MISS_PREFIX + who
    if int(await ctx.redis.get(key) or 0) >= misses.count:
        retry = max(1, int(await ctx.redis.ttl(key)))
        raise DomainError("rate_limited", details={"retry_after": retry}, headers={"Retry-After": str(retry)})
    try:
        return await look_up()
    except DomainError as exc:
        if exc.code == "qr.invalid":
            count = await ctx.redis.incr(key)
            if count == 1:
                await ctx.redis.expire(key, misses.seconds)
        raise


async def progress_answer(request: Request, token: str, who: str) -> dict[str, Any]:
    ctx = request.app.ctx

    async def look_up() -> dict[str, Any]:
        kind, object_id = qr.read_token(ctx.settings.secret_key, token_of(token))
        show = PROGRESS.get(kind)
        if show is None:
            raise DomainError("qr.invalid")
        return await show(object_id, ctx.keyring)

    return await guarded(request, who, look_up)


@bp.get("/progress/<token:qr_token>")
@openapi.summary("A case's progress behind its QR code, personal data masked")
@openapi.description("Item, current state, the steps with their dates, and the time limit. Unknown or forged "
                     "tokens answer 404 and count against the caller's address.")
@openapi.tag("public")
async def progress(request: Request, token: str) -> HTTPResponse:
    ip = client_ip(request)
    await limit(request, f"progress:ip:{ip}", request.app.ctx.settings.rate_progress_ip)
    return json(await progress_answer(request, token, f"ip:{ip}"), ensure_ascii=False)


@bp.get("/certificates/verify/<token:qr_token>")
@openapi.summary("Is this e-certificate genuine, current and unrevoked?")
@openapi.description("`result` is genuine, expired, revoked or not_genuine (the stored certificate no longer "
                     "matches its signature). The holder is masked.")
@openapi.tag("public")
async def verify_certificate(request: Request, token: str) -> HTTPResponse:
    ctx = request.app.ctx
    ip = client_ip(request)
    await limit(request, f"progress:ip:{ip}", ctx.settings.rate_progress_ip)

    async def look_up() -> dict[str, Any]:
        _, cert_id = qr.read_token(ctx.settings.secret_key, token_of(token), kind="certificate")
        return await certificates.verify(certificate_id=cert_id, keyring=ctx.keyring)

    return json(await guarded(request, f"ip:{ip}", look_up), ensure_ascii=False)
