"""Every paged list of the mini program answers its `total` and the paging it used, in a number of queries that
does not grow with the page: proven over the lists' routes, through the HTTP API."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any

import pytest

from backend import clock
from backend.booking.models import BookingRule
from backend.catalog.models import OpeningHours
from miniprogram_api import limits
from tests.cases_support import RESIDENCE, ZHANG, World, act, application, build_world, resident, upload_id
from tests.conftest import Live, Platforms
from tests.test_authz_matrix import _drain_notifications

MP = "/api/v1/mp"
# Each paged list: its path, the key of its items, and what names an item.
LISTS = {
    "cases": (f"{MP}/cases", "cases", "case_no"),
    "appointments": (f"{MP}/appointments", "appointments", "id"),
    "inbox": (f"{MP}/inbox", "items", "id"),
    "complaints": (f"{MP}/complaints", "complaints", "id"),
    "certificates": (f"{MP}/certificates", "certificates", "id"),
    "materials": (f"{MP}/materials", "materials", "reuse_id"),
}


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    # Growing the lists writes more than a resident's usual minute allows.
    return {"files_dir": str(tmp_path / "files"),
            **{setting: "1000/60" for _, setting in [*limits.WRITE_LIMITS.values(), limits.DEFAULT]}}


class QueryCount(logging.Handler):
    """Counts the SQL statements tortoise sends (it logs each one on its client's logger at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@contextmanager
def counting() -> Iterator[QueryCount]:
    logger = logging.getLogger("tortoise.db_client")
    handler, level = QueryCount(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class Resident:
    """Zhang, with `n` of everything each list shows, made the way the product makes them."""

    def __init__(self, live: Live, world: World, headers: dict[str, str]) -> None:
        self.live, self.world, self.headers, self.n = live, world, headers, 0

    async def grow(self, by: int) -> None:
        c, hx = self.live.client, self.world.halls["HX"]
        for _ in range(by):
            self.n += 1
            # A case the clerk approves: its three materials reusable, its 居住证明 a certificate.
            mats = [{"code": code, "upload_id": await upload_id(self.live, self.headers)}
                    for code in ("ID", "FORM", "LEASE")]
            r = await c.post(f"{MP}/cases", json=application(hx, RESIDENCE, mats), headers=self.headers)
            assert r.status_code == 201, r.text
            for action in ("accept", "start_review", "approve"):
                assert (await act(self.live, self.world.clerk, r.json()["case_no"], action)).status_code == 200
            r = await c.post(f"{MP}/complaints", headers=self.headers, json={
                "kind": "question", "hall_id": hx, "content": f"第{self.n}个问题：周六是否办理？"})
            assert r.status_code == 201, r.text
            # An appointment on the n-th day (booked and cancelled, so the limits never stop the next one).
            day = f"2026-03-{2 + self.n:02d}"
            r = await c.get(f"/api/v1/halls/{hx}/availability", params={"item": RESIDENCE, "date": day})
            slot = r.json()["slots"][0]["slot_id"]
            r = await c.post(f"{MP}/appointments", json={"slot_id": slot},
                             headers={**self.headers, "Idempotency-Key": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            assert (await c.delete(f"{MP}/appointments/{r.json()['id']}", headers=self.headers)).status_code == 204
        await _drain_notifications()  # the inbox: what these events tell the resident


@pytest.fixture
async def zhang(live: Live, platforms: Platforms, frozen_clock: clock.FrozenClock) -> Resident:
    frozen_clock.set(datetime(2026, 3, 2, 0, 0, tzinfo=UTC))  # Monday 08:00 in Shanghai
    world = await build_world(live)
    for weekday in range(7):
        await OpeningHours.create(hall_id=world.halls["HX"], weekday=weekday, opens=time(9), closes=time(17))
    await BookingRule.create(hall_id=world.halls["HX"], item=None, slot_minutes=60, seats_per_slot=4,
                             horizon_days=14, min_notice_minutes=30, cancel_cutoff_minutes=60,
                             max_active_per_person=3, release_cooldown_minutes=30)
    return Resident(live, world, await resident(live, platforms, ZHANG))


async def test_every_paged_list_answers_its_total_and_paging(live: Live, zhang: Resident) -> None:
    await zhang.grow(3)
    for name, (path, key, names) in LISTS.items():
        whole = (await live.client.get(path, headers=zhang.headers)).json()
        assert whole["total"] == len(whole[key]) >= 3, name
        every = [item[names] for item in whole[key]]
        r = await live.client.get(path, headers=zhang.headers, params={"limit": 2})
        assert r.status_code == 200, r.text
        first = r.json()
        assert (len(first[key]), first["total"], first["limit"]) == (2, whole["total"], 2), name
        assert [item[names] for item in first[key]] == every[:2], name
        if name == "inbox":  # a cursor: the next page starts below the last message shown
            assert first["before_id"] is None and first["next_before_id"] == first[key][-1]["id"]
            r = await live.client.get(path, headers=zhang.headers,
                                      params={"limit": 2, "before_id": first["next_before_id"]})
        else:
            assert first["offset"] == 0, name
            r = await live.client.get(path, headers=zhang.headers, params={"limit": 2, "offset": 2})
            assert r.json()["offset"] == 2, name
        assert [item[names] for item in r.json()[key]] == every[2:4] and r.json()["total"] == whole["total"], name
    # The inbox's total follows its filter; the end of the list has no next page.
    unread = (await live.client.get(f"{MP}/inbox", headers=zhang.headers, params={"unread": "true"})).json()
    assert unread["total"] == unread["unread"] and unread["next_before_id"] is None
    # Paging out of bounds is refused, every field named.
    r = await live.client.get(f"{MP}/appointments", headers=zhang.headers, params={"limit": 0, "offset": -1})
    assert r.status_code == 422
    assert {f["field"] for f in r.json()["error"]["details"]["fields"]} == {"limit", "offset"}


async def test_no_list_asks_the_database_once_per_row(live: Live, zhang: Resident) -> None:
    async def queries() -> dict[str, int]:
        out = {}
        for name, (path, key, _) in LISTS.items():
            await live.client.get(path, headers=zhang.headers)  # anything cached on a first read is cached now
            with counting() as n:
                r = await live.client.get(path, headers=zhang.headers)
            assert r.status_code == 200 and r.json()["total"] == len(r.json()[key]) > 0, (name, r.text)
            out[name] = n.count
        return out

    await zhang.grow(1)
    one = await queries()
    assert all(n > 0 for n in one.values()), one  # the statements are seen
    await zhang.grow(3)
    assert await queries() == one
