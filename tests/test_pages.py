"""The pages' HTTP contract: served with security and cache headers, static files versioned by content."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import pytest

from backend import web

PAGES = ["/kiosk", "/counter", "/dashboard", "/board/1"]


@pytest.mark.parametrize("path", PAGES)
async def test_page_is_html_with_security_headers(live, path: str) -> None:
    r = await live.client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # The only inline script is the import map, allowed by exactly its hash.
    inline = re.findall(r'<script type="importmap">(.*?)</script>', r.text, re.S)
    assert len(inline) == 1 and len(re.findall(r"<script(?![^>]*\bsrc=)", r.text)) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in csp
    assert '<html lang="zh-CN">' in r.text
    assert 'id="large-type-toggle"' in r.text  # 适老模式 on every page


async def test_static_links_are_versioned_and_cached_for_a_year(live) -> None:
    html = (await live.client.get("/kiosk")).text
    links = re.findall(r'(?:href|src)="(/static/[^"]+)"', html)
    assert links, html
    for link in links:
        r = await live.client.get(link)
        assert r.status_code == 200, link
        assert r.headers["cache-control"] == web.IMMUTABLE
        again = await live.client.get(link, headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
    js = await live.client.get(web.static_url("web", "common.js"))
    assert js.headers["content-type"].startswith("text/javascript")
    stale = await live.client.get("/static/web/common.js?v=000000000000")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", ["/static/web/../__init__.py", "/static/web/%2e%2e/__init__.py",
                                  "/static/nope/common.js", "/static/web/missing.js", "/static/web/.hidden"])
async def test_static_refuses_what_is_not_a_static_file(live, path: str) -> None:
    r = await live.client.get(path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] in ("web.static_not_found", "request.not_found")


async def test_import_map_points_every_script_at_its_versioned_url(live) -> None:
    html = (await live.client.get("/counter")).text
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S).group(1))["imports"]
    assert imports["/static/web/common.js"] == web.static_url("web", "common.js")
    for family, base in web.STATIC_DIRS.items():
        for path in base.rglob("*.js"):
            plain = f"/static/{family}/{path.relative_to(base).as_posix()}"
            assert imports[plain].startswith(plain + "?v="), plain
            assert (await live.client.get(imports[plain])).headers["cache-control"] == web.IMMUTABLE
