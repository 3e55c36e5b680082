"""The hall display board in Chromium: calls made through the staff API, recent calls, waiting counts,
reconnection after the stream drops, spoken calls, and an unknown hall."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from backend.booking import queue
from backend.catalog.models import Counter, Hall, ServiceItem
from backend.identity.models import StaffRole
from tests.browser_support import DESK_VIEWPORT, assert_accessible, new_page, screenshot
from tests.cases_support import settled_staff
from tests.conftest import Live

SPEECH_STUB = """
window.__spoken = [];
class FakeUtterance { constructor(text) { this.text = text; this.lang = ""; this.rate = 1; } }
Object.defineProperty(window, "SpeechSynthesisUtterance", { value: FakeUtterance, configurable: true, writable: true });
Object.defineProperty(window, "speechSynthesis", { configurable: true, value: {
  speak(u) { window.__spoken.push({ text: u.text, lang: u.lang }); },
  cancel() {},
} });
"""


@dataclass
class Board:
    live: Live
    hall_id: int
    counters: dict[int, int]  # number -> id
    clerk: dict[str, str]

    @property
    def url(self) -> str:
        return f"{self.live.url}/board/{self.hall_id}"

    async def take(self, group: str) -> str:
        # The board shows the tickets there are; these tests run at any hour, so their tickets are taken the way
        # the demo takes its own, without the opening-hours check a kiosk makes (tests/test_closures.py has that).
        ticket = await queue.walk_in(hall_id=self.hall_id, group=group, actor="kiosk:test",
                                     redis=self.live.app.ctx.redis, check_hours=False)
        return str(ticket["code"])

    async def call(self, number: int, action: str = "call-next") -> dict[str, Any]:
        r = await self.live.client.post(f"/api/v1/staff/counters/{self.counters[number]}/{action}",
                                        headers=self.clerk)
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
async def board(live: Live) -> Board:
    hall = await Hall.create(code="HX-09", name="转塘街道便民服务中心", region_code="330106011")
    for code, name, group in (("ITEM-A", "居住证明开具", "A"), ("ITEM-B", "养老保险参保登记", "B")):
        item = await ServiceItem.create(code=code, name=name, department="街道", subject_type="person",
                                        queue_group=group)
        await item.halls.add(hall)
    three = await Counter.create(hall=hall, number=3, name="综合受理3号窗口", groups=["A", "B"])
    five = await Counter.create(hall=hall, number=5, name="社保5号窗口", groups=["B"])
    password = await settled_staff(live.client, "board.clerk", "HX-09", StaffRole.CLERK, display_name="窗口")
    r = await live.client.post("/api/v1/staff/auth/login", json={"username": "board.clerk", "password": password})
    return Board(live=live, hall_id=hall.id, counters={3: three.id, 5: five.id},
                 clerk={"Authorization": f"Bearer {r.json()['access_token']}"})


async def open_board(browser: Any, board: Board, *, init_script: str | None = None) -> Any:
    page = await new_page(browser, viewport=DESK_VIEWPORT)
    if init_script:
        await page.add_init_script(init_script)
    await page.goto(board.url)
    await page.wait_for_selector("#conn[data-state=live]")
    return page


async def now_calling(page: Any) -> tuple[str, str]:
    box = page.locator("#now-calling")
    return (await box.locator("[data-field=ticket]").inner_text(),
            await box.locator("[data-field=counter]").inner_text())


async def wait_for_call(page: Any, code: str, timeout_ms: int) -> None:
    await page.wait_for_function(
        "code => document.querySelector('#now-calling [data-field=ticket]').textContent === code", arg=code,
        timeout=timeout_ms)


async def waiting(page: Any) -> dict[str, str]:
    items = page.locator("#waiting-list li[data-group]")
    return {await li.get_attribute("data-group"): await li.locator(".count").inner_text()
            for li in await items.all()}


async def test_a_call_reaches_the_board_within_two_seconds(live: Live, board: Board, browser) -> None:
    for group in ("A", "A", "A", "B"):
        await board.take(group)
    page = await open_board(browser, board)
    assert await page.locator("#hall-name").inner_text() == "转塘街道便民服务中心 · 叫号屏"
    assert await now_calling(page) == ("—", "请稍候")
    assert await waiting(page) == {"A": "3", "B": "1"}
    assert await page.locator("#recent-list").inner_text() == "今日尚未叫号"

    started = time.monotonic()
    assert (await board.call(3))["ticket"]["code"] == "A001"
    await wait_for_call(page, "A001", timeout_ms=2000)
    assert time.monotonic() - started < 2
    assert await now_calling(page) == ("A001", "3号窗口")
    assert await page.locator("#call-line").inner_text() == "请A001号到3号窗口办理"
    await page.wait_for_function("() => document.querySelector('#waiting-list').textContent.includes('等候 2 人')")
    assert await waiting(page) == {"A": "2", "B": "1"}

    await board.call(5)  # B001 at counter 5; A001 is still being served at 3
    await wait_for_call(page, "B001", timeout_ms=2000)
    assert await now_calling(page) == ("B001", "5号窗口")
    assert await page.locator("#also-calling li").all_inner_texts() == ["A001 → 3号窗口"]
    await board.call(3)  # A001 done, A002 called
    await wait_for_call(page, "A002", timeout_ms=2000)
    recent = [[c.strip() for c in row.split("\n") if c.strip()]
              for row in await page.locator("#recent-list li").all_inner_texts()]
    assert recent == [["A002", "3号窗口", "请前往"], ["B001", "5号窗口", "请前往"], ["A001", "3号窗口", "已办理"]]
    assert await waiting(page) == {"A": "1"}
    # Ticket numbers and counters only: the board has nothing else to show.
    text = await page.locator("main").inner_text()
    assert "board.clerk" not in text and "窗口" in text
    await screenshot(page, "board-calling")
    await assert_accessible(page, "/board")
    await page.click("#large-type-toggle")
    await page.wait_for_timeout(1700)  # the call's highlight has stopped flashing
    await screenshot(page, "board-large-type")
    await assert_accessible(page, "/board large type")
    assert page.errors == []


async def test_the_board_reconnects_after_the_stream_drops(live: Live, board: Board, browser) -> None:
    for group in ("A", "A", "A"):
        await board.take(group)
    await board.call(3)
    # Every stream's Redis subscription is kept, so the test can break it as a lost Redis connection would.
    subscriptions: list[Any] = []
    redis = live.app.ctx.redis
    make_pubsub = redis.pubsub

    def recording_pubsub(**kw: Any) -> Any:
        ps = make_pubsub(**kw)
        subscriptions.append(ps)
        return ps

    redis.pubsub = recording_pubsub
    page = await open_board(browser, board)
    await wait_for_call(page, "A001", timeout_ms=2000)
    streams: list[str] = []
    snapshots: list[str] = []
    page.on("request", lambda req: streams.append(req.url) if req.url.endswith("/queue/stream") else
            snapshots.append(req.url) if req.url.endswith("/queue") else None)
    # The next two attempts find the server answering 503, which EventSource by itself never retries.
    refused = {"left": 2}

    async def flaky(route: Any) -> None:
        if refused["left"] > 0:
            refused["left"] -= 1
            await route.fulfill(status=503, content_type="application/json",
                                body='{"error": {"code": "unavailable", "message": "服务暂时不可用"}}')
        else:
            await route.continue_()

    await page.route("**/queue/stream", flaky)

    async def dropped(*args: Any, **kw: Any) -> None:
        raise RedisConnectionError("connection to Redis lost")

    assert len(subscriptions) == 1
    subscriptions[0].get_message = dropped
    await page.wait_for_selector("#conn[data-state=reconnecting]", timeout=5000)
    # Called while the board is cut off: it must still show it once it is back (it reads /queue again).
    await board.call(3)
    await wait_for_call(page, "A002", timeout_ms=15000)
    await page.wait_for_selector("#conn[data-state=live]", timeout=15000)
    assert refused["left"] == 0 and len(streams) >= 3 and len(snapshots) >= 3
    assert len(subscriptions) == 2  # one new subscription, after the two refused attempts
    # And the new stream is live: the next call arrives within two seconds.
    await board.call(3)
    await wait_for_call(page, "A003", timeout_ms=2000)
    assert await now_calling(page) == ("A003", "3号窗口")
    await screenshot(page, "board-reconnected")
    # Chromium reports the refused EventSource answers on the console; nothing else may go wrong.
    assert [e for e in page.errors if "EventSource" not in e and "503" not in e] == []


async def test_calls_are_spoken_only_when_enabled(live: Live, board: Board, browser) -> None:
    for group in ("A", "A", "A"):
        await board.take(group)
    page = await open_board(browser, board, init_script=SPEECH_STUB)
    toggle = page.locator("#speech-toggle")
    assert (await toggle.get_attribute("aria-pressed"), await toggle.inner_text()) == ("false", "语音播报：关")
    await board.call(3)
    await wait_for_call(page, "A001", timeout_ms=2000)
    assert await page.evaluate("window.__spoken") == []  # off until someone at the screen turns it on

    await toggle.click()
    assert (await toggle.get_attribute("aria-pressed"), await toggle.inner_text()) == ("true", "语音播报：开")
    await board.call(3)
    await wait_for_call(page, "A002", timeout_ms=2000)
    await page.wait_for_function("() => window.__spoken.length >= 2")
    await board.call(3, "recall")  # a recall is announced again
    await page.wait_for_function("() => window.__spoken.length >= 3")
    spoken = await page.evaluate("window.__spoken")
    assert [s["text"] for s in spoken] == ["语音播报已开启", "请A002号到3号窗口办理", "请A002号到3号窗口办理"]
    assert {s["lang"] for s in spoken} == {"zh-CN"}

    await page.reload()  # the screen remembers the setting
    await page.wait_for_selector("#conn[data-state=live]")
    assert await page.locator("#speech-toggle").get_attribute("aria-pressed") == "true"
    await page.locator("#speech-toggle").click()
    await board.call(3)
    await wait_for_call(page, "A003", timeout_ms=2000)
    await page.wait_for_timeout(300)
    assert await page.evaluate("window.__spoken") == []
    assert page.errors == []


async def test_an_unknown_hall_says_so_and_opens_no_stream(live: Live, board: Board, browser) -> None:
    page = await new_page(browser, viewport=DESK_VIEWPORT)
    streams: list[str] = []
    page.on("request", lambda req: streams.append(req.url) if "/queue/stream" in req.url else None)
    await page.goto(f"{live.url}/board/{board.hall_id + 1000}")
    message = page.locator("#board-message")
    await message.wait_for()
    assert f"未找到编号为 {board.hall_id + 1000} 的服务大厅" in await message.inner_text()
    assert await page.locator("#board").is_hidden()
    await page.wait_for_timeout(1500)
    assert streams == []
    await screenshot(page, "board-unknown-hall")
    await assert_accessible(page, "/board unknown hall")
    assert page.errors == []

