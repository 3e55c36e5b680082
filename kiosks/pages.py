"""Kiosk pages (/kiosk): the touch screen in a township hall, a signed client of /api/v1/kiosk."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.web import page

bp = Blueprint("kiosk_pages")


@bp.get("/kiosk", ctx_public=True)
async def kiosk_home(request: Request) -> HTTPResponse:
    return await page(request, "kiosk/index.html")


@bp.get("/kiosk/enroll", ctx_public=True)
async def kiosk_enroll(request: Request) -> HTTPResponse:
    # The one-time code is in the link's fragment, read by the page's script: it never reaches this server's logs.
    return await page(request, "kiosk/enroll.html")
