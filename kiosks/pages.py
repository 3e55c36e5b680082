"""Kiosk pages (/kiosk): the touch screen in a township hall, a signed client of /api/v1/kiosk."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.web import page

bp = Blueprint("kiosk_pages")


@bp.get("/kiosk", ctx_public=True)
async def kiosk_home(request: Request) -> HTTPResponse:
    return await page(request, "kiosk/index.html")
