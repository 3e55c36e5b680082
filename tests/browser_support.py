"""Real-browser tests: Debian's Chromium driven by Playwright against a live palmhall on loopback.

`make test` runs them when /usr/bin/chromium is there and prints one line when it is not;
`.ci/run` installs Chromium with apt first, so CI always runs them.

The pages' CSP forbids eval, so `page.wait_for_function` takes a function ("() => ..."), never a bare
expression string (Playwright evaluates those with eval and the page refuses).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("PALMHALL_CHROMIUM", "/usr/bin/chromium")
HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK)
SKIP_LINE = (f"browser tests skipped: no Chromium at {CHROMIUM} "
             "(apt-get install chromium fonts-noto-cjk; .ci/run does this)")
ARTIFACTS = Path(os.environ.get("PALMHALL_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
SCREENSHOTS = ARTIFACTS / "screenshots"

KIOSK_VIEWPORT = {"width": 1080, "height": 1920}
DESK_VIEWPORT = {"width": 1920, "height": 1080}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        if os.environ.get("PALMHALL_REQUIRE_BROWSER"):
            pytest.fail(f"PALMHALL_REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
        pytest.skip(SKIP_LINE)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            await b.close()


async def new_page(browser: Any, *, viewport: dict[str, int] = DESK_VIEWPORT, **options: Any) -> Any:
    """A page in a fresh context (its own storage), failing the test on any uncaught script error."""
    context = await browser.new_context(viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai",
                                        **options)
    page = await context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error"
            and "Failed to load resource" not in msg.text else None)
    return page


async def screenshot(page: Any, name: str) -> Path:
    """Written to test-artifacts/screenshots/<name>.png (the README shows some of them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path


async def assert_accessible(page: Any, label: str) -> None:
    """No serious or critical axe-core violations on the page as it stands."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    detail = "; ".join(f"{v['id']} ({v['impact']}): {v['help']} at "
                       f"{[n['target'] for n in v['nodes']][:3]}" for v in bad)
    assert not bad, f"{label}: {detail}"
