"""Every resident write is rate-limited per resident: proven over every write route of the mini-program surface,
enumerated from the app's own router, so a new write route cannot slip past."""

from __future__ import annotations

import re
from typing import Any

import pytest

from backend.catalog import service as catalog
from backend.settings import Settings
from miniprogram_api import limits
from tests.cases_support import resident
from tests.conftest import Live, Platforms
from tests.test_identity import ZHANG
from tests.test_input_bounds import FITS

PARAM = re.compile(r"<([a-z_]+):([a-z0-9_]+)>")


def mp_writes(live: Live) -> list[tuple[str, str, str]]:
    """(method, path with its parameters filled, route name) of every authenticated write under /api/v1/mp."""
    out = []
    for route in live.app.router.routes:
        path = "/" + route.path
        if not path.startswith("/api/v1/mp/") or getattr(route.ctx, "public", False):
            continue
        for method in route.methods - limits.READS:
            filled = PARAM.sub(lambda m: FITS[m.group(2)], path)  # values of the right shape: the route is found
            out.append((method, filled, route.name))
    return sorted(out)


def test_every_bucket_names_a_setting() -> None:
    fields = set(Settings.model_fields)
    for bucket, setting in [*limits.WRITE_LIMITS.values(), limits.DEFAULT]:
        assert setting in fields, (bucket, setting)


class TestEveryWriteIsLimited:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        # Every resident limit at 2 a minute: the third write of a route is refused whatever the route.
        return {setting: "2/60" for _, setting in [*limits.WRITE_LIMITS.values(), limits.DEFAULT]}

    async def test_the_third_write_of_every_route_is_refused(self, live: Live, platforms: Platforms) -> None:
        writes = mp_writes(live)
        assert len(writes) >= 17, writes  # the surface's writes, found from the router
        for method, path, name in writes:
            headers = await resident(live, platforms)  # a fresh resident per route: buckets are per resident
            answers = [await live.client.request(method, path, json={}, headers=headers) for _ in range(3)]
            assert [a.status_code == 429 for a in answers] == [False, False, True], (name, answers)
            refused = answers[2].json()["error"]
            assert refused["code"] == "rate_limited" and 1 <= int(answers[2].headers["retry-after"]) <= 60, name


class TestLimitsArePerResidentNotPerAddress:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"rate_complaint_resident": "2/3600"}

    async def test_one_residents_limit_does_not_stop_another_behind_the_same_address(
            self, live: Live, platforms: Platforms) -> None:
        hall = await catalog.create_hall(code="HX", name="转塘街道便民服务中心", region_code="330106011")
        body = {"kind": "question", "hall_id": hall.id, "content": "请问居住证明需要带什么材料？"}
        a = await resident(live, platforms, ZHANG)
        b = await resident(live, platforms)
        statuses = [(await live.client.post("/api/v1/mp/complaints", json=body, headers=a)).status_code
                    for _ in range(3)]
        assert statuses == [201, 201, 429]
        # The same client address, another resident: their own budget.
        assert (await live.client.post("/api/v1/mp/complaints", json=body, headers=b)).status_code == 201


async def test_sixty_complaints_in_a_row_are_not_accepted(live: Live, platforms: Platforms) -> None:
    hall = await catalog.create_hall(code="HX", name="转塘街道便民服务中心", region_code="330106011")
    headers = await resident(live, platforms)
    body = {"kind": "complaint", "hall_id": hall.id, "content": "窗口排队时间太长了，希望改进。"}
    statuses = [(await live.client.post("/api/v1/mp/complaints", json=body, headers=headers)).status_code
                for _ in range(6)]
    assert statuses == [201] * 5 + [429]  # RATE_COMPLAINT_RESIDENT defaults to 5 an hour
