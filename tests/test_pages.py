"""The pages' HTTP contract: served with security and cache headers, static files versioned by content."""

from __future__ import annotations

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
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
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
