"""Counter console (/counter) and hall dashboard (/dashboard): clients of /api/v1/staff.

The HTML is the same for everyone and holds no data; the clerk's token lives in the page's session
storage and goes in the Authorization header, so there is no cookie to forge a request with.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from backend.web import page

bp = Blueprint("counter_pages")


@bp.get("/counter", ctx_public=True)
async def counter_console(request: Request) -> HTTPResponse:
    return await page(request, "counter/console.html")


@bp.get("/dashboard", ctx_public=True)
async def hall_dashboard(request: Request) -> HTTPResponse:
    return await page(request, "counter/dashboard.html")
