"""Public pages: the hall display board (/board/{hall_id}) and what a scanned QR code opens (/q/{token}).

Every QR code palmhall prints encodes `{PUBLIC_BASE_URL}/q/{token}`. In WeChat or Alipay, with the link
rule set in their consoles (README: QR codes), scanning it opens the mini program instead; anywhere else
it opens this page: an appointment's hall, time, check-in window and what to bring, a case's progress, or
a certificate's verification. The page is rendered on the server from the same masked answers as the
public API (`/api/v1/progress/...`, `/api/v1/certificates/verify/...`), shares its per-address limits,
and a forged or unknown token is a friendly 404 page that counts as a miss like the API's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date, datetime
from typing import Any

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, text
from sanic_ext import openapi

from backend import qr
from backend.booking import service as booking
from backend.cases import certificates
from backend.cases import service as cases
from backend.catalog import service as catalog
from backend.clock import SHANGHAI
from backend.crypto import KeyRing
from backend.errors import DomainError
from backend.http import client_ip, limit
from backend.public.progress_views import guarded, token_of
from backend.web import page

bp = Blueprint("public_pages")


@bp.get("/board/<hall_id:int32>", ctx_public=True)
async def hall_board(request: Request, hall_id: int) -> HTTPResponse:
    return await page(request, "board/board.html", hall_id=hall_id)


# ---- what a scanned QR code opens ------------------------------------------------------------

WEEKDAYS = "一二三四五六日"


def when(moment: str | None) -> str:
    """"2026-03-03T09:00:00+08:00" -> "2026年3月3日（星期二）09:00", in Shanghai time."""
    if not moment:
        return ""
    at = datetime.fromisoformat(moment).astimezone(SHANGHAI)
    return f"{day(at.date().isoformat())} {at:%H:%M}"


def day(value: str | None) -> str:
    """"2026-03-03" -> "2026年3月3日（星期二）"."""
    if not value:
        return ""
    d = date.fromisoformat(value[:10])
    return f"{d.year}年{d.month}月{d.day}日（星期{WEEKDAYS[d.weekday()]}）"


def clock_time(moment: str) -> str:
    return f"{datetime.fromisoformat(moment).astimezone(SHANGHAI):%H:%M}"


async def _what_to_bring(item_code: str) -> list[dict[str, Any]] | None:
    """The item's materials checklist from its current guide; None when the item has no published guide."""
    try:
        guide = await catalog.get_guide(code=item_code)
    except DomainError:
        return None
    return list(guide["materials"])


async def _appointment(object_id: int, keyring: KeyRing) -> tuple[str, dict[str, Any]]:
    shown = await booking.public_progress(appointment_id=object_id)
    starts, ends, window = shown["starts_at"], shown["ends_at"], shown["checkin"]
    same_day = window["opens_at"][:10] == window["closes_at"][:10] == starts[:10]
    return "qr/appointment.html", {
        "a": shown,
        "slot": f"{when(starts)}–{clock_time(ends)}",
        "checkin": (f"当天 {clock_time(window['opens_at'])} 至 {clock_time(window['closes_at'])}" if same_day
                    else f"{when(window['opens_at'])} 至 {when(window['closes_at'])}"),
        "open": shown["status"] == "booked",
        "materials": await _what_to_bring(shown["item"]["code"]) if shown["status"] == "booked" else None,
    }


async def _case(object_id: int, keyring: KeyRing) -> tuple[str, dict[str, Any]]:
    shown = await cases.public_progress(case_id=object_id, keyring=keyring)
    deadline = shown["deadline"]
    return "qr/case.html", {
        "c": shown,
        "promised_due": day(deadline.get("promised_due")),
        "history": [{"at": when(step["at"]), "step": step["step"]} for step in reversed(shown["history"])],
    }


async def _certificate(object_id: int, keyring: KeyRing) -> tuple[str, dict[str, Any]]:
    shown = await certificates.verify(certificate_id=object_id, keyring=keyring)
    cert = shown.get("certificate")
    return "qr/certificate.html", {
        "v": shown, "cert": cert,
        "issued_on": day(cert["issued_on"]) if cert else "",
        "valid_until": (day(cert["valid_until"]) if cert["valid_until"] else "长期") if cert else "",
        "revoked_at": when(cert["revoked_at"]) if cert and cert["revoked_at"] else "",
    }


# kind -> what its page shows. A kind without a page (payment: no QR of ours carries one) is not found.
Shown = Callable[[int, KeyRing], Awaitable[tuple[str, dict[str, Any]]]]
QR_PAGES: dict[str, Shown] = {"appointment": _appointment, "case": _case, "certificate": _certificate}


@bp.get("/q/<token:qr_token>", ctx_public=True)
@openapi.exclude()
async def scanned(request: Request, token: str) -> HTTPResponse:
    ctx = request.app.ctx
    ip = client_ip(request)
    found: dict[str, Any] = {}

    async def look_up() -> dict[str, Any]:
        kind, object_id = qr.read_token(ctx.settings.secret_key, token_of(token))
        show = QR_PAGES.get(kind)
        if show is None:
            raise DomainError("qr.invalid")
        found["template"], found["context"] = await show(object_id, ctx.keyring)
        return found

    try:
        await limit(request, f"progress:ip:{ip}", ctx.settings.rate_progress_ip)
        await guarded(request, f"ip:{ip}", look_up)
    except DomainError as exc:
        if exc.code == "qr.invalid":
            return await page(request, "qr/missing.html", status=404)
        if exc.code == "rate_limited":
            minutes = max(1, -(-int(exc.headers.get("Retry-After", "60")) // 60))
            return await page(request, "qr/limited.html", status=429, headers=exc.headers, minutes=minutes)
        raise
    return await page(request, found["template"], **found["context"])


# ---- the platforms' domain check files -------------------------------------------------------


def add_configured_routes(app: Sanic) -> None:
    """WECHAT_LINK_VERIFY_FILE / ALIPAY_LINK_VERIFY_FILE, each at the root and under /q/ (WeChat looks in the
    rule's last folder, Alipay at the root); none when not configured, so every other name stays a 404."""
    for name, content in app.ctx.settings.link_verify_files.items():
        route = re.sub(r"[^a-z0-9]+", "_", name.lower())
        for where, path in (("root", f"/{name}"), ("q", f"/q/{name}")):
            app.add_route(_check_file(content), path, methods=["GET"], name=f"link_verify_{where}_{route}")


def _check_file(content: str) -> Callable[[Request], Coroutine[Any, Any, HTTPResponse]]:
    @openapi.exclude()
    async def check_file(request: Request) -> HTTPResponse:
        return text(content, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    return check_file
