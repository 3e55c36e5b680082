"""A kiosk acts for a resident with a code the resident's mini program shows, never with their access token:
one purpose, one use, two minutes, optionally one hall; through the HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend import clock
from backend.audit.models import AuditEntry
from backend.cases.models import Case
from backend.identity import service as identity
from backend.identity import tokens
from backend.identity.models import KioskCode
from tests.cases_support import (
    LI,
    SIMPLE,
    ZHANG,
    World,
    application,
    build_world,
    dumps,
    kiosk_code,
    kiosk_headers,
    resident,
    upload_id,
)
from tests.conftest import Live, Platforms
from tests.test_identity import auth, wechat_login

PATH = "/api/v1/kiosk/cases"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live, frozen_clock: clock.FrozenClock) -> World:
    return await build_world(live)


async def kiosk(hall: str, live: Live) -> tuple[str, str]:
    device, secret = await identity.register_kiosk(hall_code=hall, name="一楼自助机", keyring=live.app.ctx.keyring)
    return device.device_id, secret


async def apply_at(live: Live, device: tuple[str, str], body: bytes, code: str | None) -> httpx.Response:
    extra = {"X-Resident-Code": code} if code is not None else {}
    return await live.client.post(PATH, content=body, headers=kiosk_headers(*device, "POST", PATH, body, extra))


async def form_application(live: Live, headers: dict[str, str], hall_id: int) -> bytes:
    form = await upload_id(live, headers)
    return dumps(application(hall_id, SIMPLE, [{"code": "FORM", "upload_id": form}]))


async def test_a_kiosk_code_applies_once_for_its_resident(live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    hx = await kiosk("HX", live)
    r = await live.client.post("/api/v1/mp/kiosk-codes", json={}, headers=me)
    assert r.status_code == 201, r.text
    issued = r.json()
    assert (issued["purpose"], issued["hall_id"], issued["expires_in"]) == ("kiosk_application", None, 120)
    assert issued["expires_at"] == "2026-03-02T09:02:00+08:00" and issued["code"].startswith("kc_")
    # Only its hash is kept.
    row = await KioskCode.get()
    assert row.code_hash == hashlib.sha256(issued["code"].encode()).hexdigest()
    assert issued["code"] not in str(await KioskCode.all().values())

    body = await form_application(live, me, world.halls["HX"])
    r = await apply_at(live, hx, body, issued["code"])
    assert r.status_code == 201, r.text
    case_no = r.json()["case_no"]
    assert r.json()["channel"] == "kiosk"
    listed = (await live.client.get("/api/v1/mp/cases", headers=me)).json()["cases"]
    assert [c["case_no"] for c in listed] == [case_no]
    used = await AuditEntry.get(action="kiosk_code.used")
    assert (used.actor_kind, used.actor_id, used.target_id) == ("kiosk", hx[0], str(row.resident_id))  # type: ignore[attr-defined]

    # Spent: the same code applies no more.
    r = await apply_at(live, hx, body, issued["code"])
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk_code.used")
    assert await Case.all().count() == 1


async def test_the_access_token_opens_nothing_at_a_kiosk_and_a_code_nothing_elsewhere(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    hx = await kiosk("HX", live)
    body = await form_application(live, me, world.halls["HX"])
    token = me["Authorization"].split()[1]
    r = await live.client.post(PATH, content=body, headers=kiosk_headers(*hx, "POST", PATH, body,
                                                                         {"X-Resident-Token": token}))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk_code.missing")
    for wrong in (token, "kc_" + "A" * 32, "kc_short", "x" * 500):
        r = await apply_at(live, hx, body, wrong)
        assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk_code.invalid"), wrong[:20]
    # A code is no bearer token of the mini program.
    code = await kiosk_code(live, me)
    r = await live.client.get("/api/v1/mp/me", headers={"Authorization": f"Bearer {code}"})
    assert r.status_code == 401
    assert await Case.all().count() == 0


async def test_a_code_lasts_two_minutes_and_binds_to_its_hall_and_session(
        live: Live, platforms: Platforms, world: World, frozen_clock: clock.FrozenClock) -> None:
    me = await resident(live, platforms, ZHANG)
    hx, hy = await kiosk("HX", live), await kiosk("HY", live)
    body = await form_application(live, me, world.halls["HX"])

    code = await kiosk_code(live, me)
    frozen_clock.advance(121)
    r = await apply_at(live, hx, body, code)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk_code.expired")

    # Named for HY: HX's kiosks refuse it (and do not spend it), HY's accept it.
    code = await kiosk_code(live, me, hall_id=world.halls["HY"])
    r = await apply_at(live, hx, body, code)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk_code.invalid")
    in_hy = await form_application(live, me, world.halls["HY"])
    r = await apply_at(live, hy, in_hy, code)
    assert r.status_code == 201, r.text

    # Ending the session that made a code ends the code.
    code = await kiosk_code(live, me)
    family = tokens.verify(me["Authorization"].split()[1], secret=live.app.ctx.settings.secret_key,
                           kind="resident").family
    other_phone = auth(await wechat_login(live, platforms, openid=(await _openid(me, live))))
    assert (await live.client.delete(f"/api/v1/mp/me/sessions/{family}", headers=other_phone)).status_code == 204
    r = await apply_at(live, hx, body, code)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk_code.invalid")

    # A hall that is not there, and a resident without a real name, get no code.
    r = await live.client.post("/api/v1/mp/kiosk-codes", json={"hall_id": 2_000_000}, headers=other_phone)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "catalog.hall_not_found")
    stranger = await resident(live, platforms)
    r = await live.client.post("/api/v1/mp/kiosk-codes", json={}, headers=stranger)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "identity.not_verified")
    assert await Case.all().count() == 1


async def _openid(headers: dict[str, str], live: Live) -> str:
    from backend.identity.models import ChannelIdentity

    claims = tokens.verify(headers["Authorization"].split()[1], secret=live.app.ctx.settings.secret_key,
                           kind="resident")
    return str((await ChannelIdentity.get(resident_id=claims.subject)).subject)


async def test_two_kiosks_racing_with_one_code_apply_once(live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    first, second = await kiosk("HX", live), await kiosk("HX", live)
    body = await form_application(live, me, world.halls["HX"])
    code = await kiosk_code(live, me)
    answers = await asyncio.gather(apply_at(live, first, body, code), apply_at(live, second, body, code))
    assert sorted(a.status_code for a in answers) == [201, 401]
    assert await Case.all().count() == 1
    assert await KioskCode.filter(used_at__isnull=False).count() == 1


async def test_a_code_is_its_residents_own(live: Live, platforms: Platforms, world: World) -> None:
    zhang, li = await resident(live, platforms, ZHANG), await resident(live, platforms, LI)
    hx = await kiosk("HX", live)
    code = await kiosk_code(live, li)
    # Zhang's upload in a body sent with Li's code: the kiosk applies for Li, who may not use Zhang's file.
    body = await form_application(live, zhang, world.halls["HX"])
    r = await apply_at(live, hx, body, code)
    assert r.status_code == 404 and r.json()["error"]["code"] == "upload.not_found", r.text
    assert await Case.all().count() == 0
