"""Every page opens in Chromium without script errors, switches to 适老模式, and passes axe-core."""

from __future__ import annotations

import pytest

from tests.browser_support import DESK_VIEWPORT, KIOSK_VIEWPORT, assert_accessible, new_page


@pytest.mark.parametrize(("path", "viewport"), [("/kiosk", KIOSK_VIEWPORT), ("/counter", DESK_VIEWPORT),
                                                ("/dashboard", DESK_VIEWPORT), ("/board/1", DESK_VIEWPORT)])
async def test_page_opens_and_large_type_mode_switches(live, browser, path: str, viewport: dict) -> None:
    page = await new_page(browser, viewport=viewport)
    await page.goto(live.url + path)
    toggle = page.locator("#large-type-toggle")
    await toggle.click()
    assert await page.evaluate("document.documentElement.classList.contains('large-type')")
    assert await toggle.get_attribute("aria-pressed") == "true"
    size = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert size >= 24
    await page.reload()  # a preference of this screen: it survives a reload
    assert await page.evaluate("document.documentElement.classList.contains('large-type')")
    await assert_accessible(page, path)
    assert page.errors == []
