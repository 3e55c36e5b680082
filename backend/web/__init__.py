"""The people-facing pages (kiosk, counter console, hall board, dashboard): one way to serve them.

Pages are server-rendered Jinja2 templates (through sanic-ext) with small plain JavaScript modules and
no build step. They are clients of palmhall's own `/api/v1`: a page's HTML never carries personal data
and never changes anything itself. The one exception to "client of the API" is the page behind a scanned
QR code (/q/{token}): it is rendered on the server from the same masked answer the public API gives, so
it works on any phone without a round trip or JavaScript. Each audience keeps its pages beside its HTTP
surface (`kiosks/pages.py`, `backend/counter/pages.py`, `backend/public/pages.py`); this module holds what
they share: template lookup, static files with cache headers, and the security headers every page is sent with.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import mimetypes
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, raw
from sanic_ext import render

from backend.errors import DomainError, register_codes

HERE = Path(__file__).parent
ROOT = HERE.parent.parent

register_codes({"web.static_not_found": (404, "未找到该页面资源")})

# Each module defines `bp` with its pages; add a module here to serve its pages.
PAGE_MODULES = [
    "kiosks.pages",
    "backend.counter.pages",
    "backend.public.pages",
]

# Template folders: names inside them start with the page family ("kiosk/…", "counter/…") so they never clash.
TEMPLATE_DIRS = [
    HERE / "templates",
    ROOT / "kiosks" / "templates",
    ROOT / "backend" / "counter" / "templates",
    ROOT / "backend" / "public" / "templates",
]

# Static files by family, served at /static/<family>/<file>.
STATIC_DIRS = {
    "web": HERE / "static",
    "kiosk": ROOT / "kiosks" / "static",
    "counter": ROOT / "backend" / "counter" / "static",
    "public": ROOT / "backend" / "public" / "static",
}

IMMUTABLE = "public, max-age=31536000, immutable"

# The pages load only their own scripts and styles, talk only to this origin, and cannot be framed.
# The one inline script is the import map, allowed by its hash. blob: is for materials a clerk opens
# inline (PDF, images) and for receipt QR images.
CSP = ("default-src 'self'; script-src 'self' '{import_map_hash}'; style-src 'self'; "
       "img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' blob:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


# What a static file's name may be, checked before the file system is asked anything: no hidden names, no
# "..", a length every file system accepts (a 5,000-character name would be an OSError, not a 404).
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._/-]{0,199}")


@lru_cache(maxsize=512)
def _file(family: str, name: str) -> tuple[bytes, str, str] | None:
    """(bytes, content type, short hash) of a static file, or None; read once per process."""
    base = STATIC_DIRS.get(family)
    if base is None or not _STATIC_NAME.fullmatch(name) or any(p in ("", ".", "..") or p.startswith(".")
                                                              for p in name.split("/")):
        return None
    path = (base / name).resolve()
    if not path.is_relative_to(base.resolve()) or not path.is_file():
        return None
    data = path.read_bytes()
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
        kind += "; charset=utf-8"
    if path.suffix == ".js":
        kind = "text/javascript; charset=utf-8"
    return data, kind, hashlib.sha256(data).hexdigest()[:12]


def static_url(family: str, name: str) -> str:
    """The URL a template links: versioned by content, so it may be cached for a year."""
    found = _file(family, name)
    if found is None:
        raise LookupError(f"no static file {family}/{name}")
    return f"/static/{family}/{name}?v={found[2]}"


@lru_cache(maxsize=1)
def import_map() -> str:
    """Every page script's plain path mapped to its content-versioned URL.

    Modules import each other by plain path (`import {api} from "/static/web/common.js"`, `"./session.js"`);
    the browser rewrites those through this map, so a module loaded by a page and imported by another
    script is one instance, and every script is cached for a year yet never stale.
    """
    imports = {}
    for family, base in sorted(STATIC_DIRS.items()):
        for path in sorted(base.rglob("*.js")):
            name = path.relative_to(base).as_posix()
            imports[f"/static/{family}/{name}"] = static_url(family, name)
    return json.dumps({"imports": imports}, separators=(",", ":"), sort_keys=True)


@lru_cache(maxsize=1)
def csp() -> str:
    """The pages' policy, with the import map's hash: both fixed for the process, so worked out once."""
    digest = base64.b64encode(hashlib.sha256(import_map().encode()).digest()).decode()
    return CSP.format(import_map_hash=f"sha256-{digest}")


statics = Blueprint("web_static")


@statics.get("/static/<family:str>/<name:path>")
async def static_file(request: Request, family: str, name: str) -> HTTPResponse:
    found = _file(family, name)
    if found is None:
        raise DomainError("web.static_not_found")
    data, kind, digest = found
    etag = f'"{digest}"'
    versioned = request.args.get("v") == digest
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE if versioned else "no-cache",
               "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return raw(b"", status=304, headers=headers)
    return raw(data, content_type=kind, headers=headers)


async def page(request: Request, template: str, *, status: int = 200, headers: dict[str, str] | None = None,
               **context: Any) -> HTTPResponse:
    """Render one page with the headers every page carries."""
    headers = {**PAGE_HEADERS, "Content-Security-Policy": csp(), **(headers or {})}
    return await render(template, status=status, context=context, headers=headers, app=request.app)


def configure(app: Sanic) -> None:
    """Before Extend(app): where sanic-ext's Jinja2 finds templates."""
    app.config.TEMPLATING_PATH_TO_TEMPLATES = [str(p) for p in TEMPLATE_DIRS]


def register(app: Sanic) -> None:
    """After Extend(app): the static route, the template globals and every page module."""
    env = app.ext.environment
    env.globals["static"] = static_url
    env.globals["import_map"] = import_map
    app.blueprint(statics.copy(statics.name, with_registration=False))
    for module in PAGE_MODULES:
        found = importlib.import_module(module)
        app.blueprint(found.bp.copy(found.bp.name, with_registration=False))
        # Routes that exist only when the settings ask for them (the platforms' domain check files).
        if hasattr(found, "add_configured_routes"):
            found.add_configured_routes(app)
