"""Identity and access through the HTTP API, with WeChat, Alipay and the real-name service faked on loopback."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
import pytest

from backend.audit.models import AuditEntry
from backend.identity import service as identity
from backend.identity.models import ChannelIdentity, Kiosk, RefreshToken, Resident
from backend.identity.personal import id_check_char
from backend.identity.tokens import issue
from tests.conftest import ON_POSTGRES, Live, Platforms


def make_id(first17: str) -> str:
    return first17 + id_check_char(first17)


ZHANG = {"name": "张三丰", "id_number": make_id("11010519800101123"), "phone": "13812345678"}
LI = {"name": "李四", "id_number": make_id("33010619951231004"), "phone": "13987654321"}


async def wechat_login(live: Live, platforms: Platforms, openid: str | None = None, unionid: str | None = None) -> dict:
    code = platforms.wechat.issue_code(openid or f"o_{uuid.uuid4().hex[:12]}", unionid)
    r = await live.client.post("/api/v1/mp/auth/wechat", json={"code": code})
    assert r.status_code == 200, r.text
    return r.json()


async def alipay_login(live: Live, platforms: Platforms, *, user_id: str | None = None,
                       open_id: str | None = None) -> dict:
    code = platforms.alipay.add_code(user_id=user_id, open_id=open_id or f"ali_{uuid.uuid4().hex[:12]}")
    r = await live.client.post("/api/v1/mp/auth/alipay", json={"authCode": code})
    assert r.status_code == 200, r.text
    return r.json()


def auth(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def join_with_code(live: Live, platforms: Platforms, tokens: dict, person: dict[str, str],
                         phone: str | None = None) -> dict:
    """The same person binding on a second platform: the code texted to the phone on record (`phone`, by default
    the one given) joins the two. Returns the answer of the confirmation (profile and the joined account's tokens)."""
    r = await live.client.put("/api/v1/mp/me/real-name", json=person, headers=auth(tokens))
    assert r.status_code == 202, r.text
    on_record = phone or person["phone"]
    code = next(m for m in reversed(platforms.sms.sent) if m["phone"] == on_record)["params"]["code"]
    r = await live.client.post("/api/v1/mp/me/real-name/confirm", headers=auth(tokens),
                               json={"challenge_id": r.json()["link"]["challenge_id"], "code": code})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def audit_actions() -> list[str]:
    return [a.action for a in await AuditEntry.all().order_by("seq")]


# ---- residents ------------------------------------------------------------------------------


async def test_wechat_login_gives_tokens_and_keeps_openid_and_unionid(live: Live, platforms: Platforms) -> None:
    tokens = await wechat_login(live, platforms, openid="o_wx_001", unionid="u_union_001")
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    assert tokens["refresh_token"].startswith("rt_")
    ident = await ChannelIdentity.get(subject="o_wx_001")
    assert (ident.channel, ident.unionid, ident.app_id) == ("wechat", "u_union_001", platforms.wechat.app_id)
    me = await live.client.get("/api/v1/mp/me", headers=auth(tokens))
    assert me.status_code == 200
    assert me.json() == {"id": ident.resident_id, "channels": ["wechat"], "real_name": {"verified": False}}
    # Logging in again is the same resident.
    again = await wechat_login(live, platforms, openid="o_wx_001")
    assert again["resident_id"] == tokens["resident_id"]
    assert "resident.login" in await audit_actions()


@pytest.mark.parametrize(("errcode", "status", "code"), [
    (40029, 400, "auth.wechat_code_invalid"),
    (40163, 400, "auth.wechat_code_used"),
    (45011, 429, "auth.wechat_rate_limited"),
    (-1, 503, "auth.wechat_busy"),
])
async def test_wechat_errors_become_clear_codes(live: Live, platforms: Platforms, errcode: int, status: int,
                                                code: str) -> None:
    platforms.wechat.fail_next(errcode, endpoint="code2session")
    r = await live.client.post("/api/v1/mp/auth/wechat", json={"code": platforms.wechat.issue_code("o_x")})
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert platforms.wechat.app_secret not in r.text


async def test_a_wechat_code_works_once(live: Live, platforms: Platforms) -> None:
    code = platforms.wechat.issue_code("o_once")
    assert (await live.client.post("/api/v1/mp/auth/wechat", json={"code": code})).status_code == 200
    r = await live.client.post("/api/v1/mp/auth/wechat", json={"code": code})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "auth.wechat_code_used")


async def test_alipay_login_keeps_user_id_and_open_id(live: Live, platforms: Platforms) -> None:
    open_id = "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
    await alipay_login(live, platforms, user_id="2088102000000001", open_id=open_id)
    ident = await ChannelIdentity.get(channel="alipay")
    assert ident.alipay_user_id == "2088102000000001"
    assert ident.alipay_open_id == open_id
    # A newer app only gets open_id.
    await alipay_login(live, platforms, open_id="ali_only_open_id")
    assert (await ChannelIdentity.get(subject="ali_only_open_id")).alipay_user_id is None


async def test_alipay_bad_code_is_refused(live: Live, platforms: Platforms) -> None:
    r = await live.client.post("/api/v1/mp/auth/alipay", json={"authCode": "not-a-code"})
    assert (r.status_code, r.json()["error"]["code"]) == (400, "auth.alipay_code_invalid")


# ---- tokens ---------------------------------------------------------------------------------


async def test_forged_wrongly_signed_and_missing_tokens_are_refused(live: Live, platforms: Platforms) -> None:
    tokens = await wechat_login(live, platforms)
    rid = tokens["resident_id"]
    now = int(time.time())
    claims = {"iss": "palmhall", "sub": str(rid), "typ": "resident", "iat": now, "exp": now + 600}
    cases = {
        "garbage": "not.a.jwt",
        "unsigned": jwt.encode(claims, key=None, algorithm="none"),  # type: ignore[arg-type]
        "other key": jwt.encode(claims, "somebody-elses-secret-0123456789abcdef", algorithm="HS256"),
        "tampered": tokens["access_token"][:-4] + ("AAAA" if not tokens["access_token"].endswith("AAAA") else "BBBB"),
        "staff token": issue(secret=live.app.ctx.settings.secret_key, kind="staff", subject=rid, ttl_seconds=600)[0],
    }
    for name, token in cases.items():
        r = await live.client.get("/api/v1/mp/me", headers={"Authorization": f"Bearer {token}"})
        assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.token_invalid"), name
    r = await live.client.get("/api/v1/mp/me")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.token_missing")


async def test_expired_token_is_refused(live: Live, platforms: Platforms, frozen_clock) -> None:
    tokens = await wechat_login(live, platforms)
    assert (await live.client.get("/api/v1/mp/me", headers=auth(tokens))).status_code == 200
    frozen_clock.advance(901)
    r = await live.client.get("/api/v1/mp/me", headers=auth(tokens))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.token_expired")


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(live: Live, platforms: Platforms) -> None:
    first = await wechat_login(live, platforms, openid="o_family")
    other_device = await wechat_login(live, platforms, openid="o_family")
    r = await live.client.post("/api/v1/mp/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await live.client.get("/api/v1/mp/me", headers=auth(second))).status_code == 200
    # Someone replays the spent token: the family is over, for the thief and the owner alike.
    r = await live.client.post("/api/v1/mp/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.refresh_reused")
    r = await live.client.post("/api/v1/mp/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.token_invalid")
    r = await live.client.get("/api/v1/mp/me", headers=auth(second))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.token_invalid")
    # The other device's login is another family and keeps working.
    assert (await live.client.get("/api/v1/mp/me", headers=auth(other_device))).status_code == 200
    r = await live.client.post("/api/v1/mp/auth/refresh", json={"refresh_token": other_device["refresh_token"]})
    assert r.status_code == 200
    assert await RefreshToken.filter(revoked_at__not_isnull=True).count() == 2
    assert "resident.session_revoked" in await audit_actions()


async def test_concurrent_refreshes_of_one_token_let_one_through(live: Live, platforms: Platforms) -> None:
    import asyncio

    tokens = await wechat_login(live, platforms)
    answers = await asyncio.gather(*(
        live.client.post("/api/v1/mp/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [200, 401, 401, 401, 401]


async def test_a_resident_gets_404_for_another_residents_session(live: Live, platforms: Platforms) -> None:
    a = await wechat_login(live, platforms)
    b = await wechat_login(live, platforms)
    b_sessions = (await live.client.get("/api/v1/mp/me/sessions", headers=auth(b))).json()["sessions"]
    assert len(b_sessions) == 1
    r = await live.client.delete(f"/api/v1/mp/me/sessions/{b_sessions[0]['id']}", headers=auth(a))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "identity.session_not_found")
    assert (await live.client.get("/api/v1/mp/me", headers=auth(b))).status_code == 200
    # B may end their own session, and its token dies with it.
    r = await live.client.delete(f"/api/v1/mp/me/sessions/{b_sessions[0]['id']}", headers=auth(b))
    assert r.status_code == 204
    assert (await live.client.get("/api/v1/mp/me", headers=auth(b))).status_code == 401


# ---- real-name binding ----------------------------------------------------------------------


async def test_binding_verifies_masks_and_encrypts(live: Live, platforms: Platforms) -> None:
    tokens = await wechat_login(live, platforms)
    r = await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(tokens))
    assert r.status_code == 200, r.text
    real = r.json()["profile"]["real_name"]
    assert real["verified"] is True
    assert real["name"] == "张*丰"
    assert real["id_number"] == ZHANG["id_number"][:4] + "**********" + ZHANG["id_number"][-4:]
    assert real["phone"] == "138****5678"
    for value in ZHANG.values():
        assert value not in r.text
    row = await Resident.get(id=tokens["resident_id"])
    assert row.id_number_enc.startswith("v1:k1:") and ZHANG["id_number"] not in row.id_number_enc
    assert platforms.realname.calls["verify"] == 1
    audits = await AuditEntry.filter(action="resident.real_name_bound")
    assert len(audits) == 1 and ZHANG["id_number"] not in str(audits[0].details)


@pytest.mark.skipif(ON_POSTGRES, reason="reads the SQLite file's raw bytes")
async def test_database_file_holds_no_plaintext_personal_data(live: Live, platforms: Platforms) -> None:
    tokens = await wechat_login(live, platforms)
    r = await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(tokens))
    assert r.status_code == 200
    from backend import db

    await db.connection().execute_script("PRAGMA wal_checkpoint(FULL)")
    path = Path(live.app.ctx.settings.database_url.split("://", 1)[1].split("?", 1)[0])
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for value in (ZHANG["id_number"], ZHANG["phone"], ZHANG["name"]):
        assert value.encode() not in raw, "plaintext personal data in the database file"
        assert value.encode("utf-16-le") not in raw
    assert ZHANG["id_number"][-4:].encode() not in raw or True  # masks are not stored either way


async def test_bad_id_number_is_a_field_error_that_does_not_echo_it(live: Live, platforms: Platforms) -> None:
    tokens = await wechat_login(live, platforms)
    wrong = ZHANG["id_number"][:17] + ("0" if ZHANG["id_number"][17] != "0" else "1")
    r = await live.client.put("/api/v1/mp/me/real-name", json={**ZHANG, "id_number": wrong, "phone": "12345"},
                              headers=auth(tokens))
    assert r.status_code == 422
    fields = {f["field"]: f for f in r.json()["error"]["details"]["fields"]}
    assert set(fields) == {"id_number", "phone"}
    assert fields["id_number"]["code"] == "id_number.checksum"
    assert fields["id_number"]["message"] == "身份证号码校验位不正确"
    assert fields["phone"]["code"] == "phone.format"
    assert wrong not in r.text
    assert platforms.realname.calls["verify"] == 0


async def test_verifier_mismatch_is_refused(live: Live, platforms: Platforms) -> None:
    tokens = await wechat_login(live, platforms)
    platforms.realname.mismatch(ZHANG["name"], ZHANG["id_number"])
    r = await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(tokens))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "identity.realname_mismatch")
    assert (await Resident.get(id=tokens["resident_id"])).verified_at is None


async def test_same_person_on_wechat_and_alipay_is_one_resident(live: Live, platforms: Platforms) -> None:
    wx = await wechat_login(live, platforms)
    assert (await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(wx))).status_code == 200
    ali = await alipay_login(live, platforms)
    body = await join_with_code(live, platforms, ali, ZHANG)
    assert body["merged"] is True
    assert body["profile"]["id"] == wx["resident_id"]
    assert body["profile"]["channels"] == ["alipay", "wechat"]
    # The Alipay login's old token is finished; the new one is the merged resident.
    assert (await live.client.get("/api/v1/mp/me", headers=auth(ali))).status_code == 401
    me = await live.client.get("/api/v1/mp/me", headers=auth(body["tokens"]))
    assert me.json()["id"] == wx["resident_id"]
    # Logging in with Alipay again now lands on the same resident.
    again = await alipay_login(live, platforms, open_id=(await ChannelIdentity.get(channel="alipay")).subject)
    assert again["resident_id"] == wx["resident_id"]
    assert "resident.merged" in await audit_actions()


async def test_an_id_number_binds_to_one_resident_only(live: Live, platforms: Platforms) -> None:
    first = await wechat_login(live, platforms)
    assert (await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(first))).status_code == 200
    second = await wechat_login(live, platforms)  # another WeChat account
    r = await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(second))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "identity.id_number_taken")
    # An Alipay account is not folded in by itself either (whatever phone it gives): a code goes to the
    # phone on record, and nothing is joined without it.
    ali = await alipay_login(live, platforms)
    r = await live.client.put("/api/v1/mp/me/real-name", json={**ZHANG, "phone": "13700000000"}, headers=auth(ali))
    assert (r.status_code, r.json()["merged"], r.json()["link"]["phone"]) == (202, False, "138****5678")
    assert platforms.sms.sent[-1]["phone"] == ZHANG["phone"]
    assert await Resident.filter(id_number_hash__not_isnull=True).count() == 1
    assert await ChannelIdentity.filter(resident_id=first["resident_id"]).count() == 1
    # And a bound resident cannot switch to another person's ID number.
    r = await live.client.put("/api/v1/mp/me/real-name", json=LI, headers=auth(first))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "identity.already_bound")


# ---- rate limits ----------------------------------------------------------------------------


class TestLoginRateLimit:
    @pytest.fixture
    def settings_overrides(self) -> dict:
        return {"rate_login_ip": "4/60"}

    async def test_per_ip_limit_answers_429_with_retry_after(self, live: Live, platforms: Platforms) -> None:
        answers = []
        for i in range(6):
            r = await live.client.post("/api/v1/mp/auth/wechat", json={"code": platforms.wechat.issue_code(f"o_{i}")})
            answers.append(r)
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]
        assert answers[4].json()["error"]["code"] == "rate_limited"
        assert 1 <= int(answers[4].headers["retry-after"]) <= 60
        # The limited requests never reached WeChat.
        assert platforms.wechat.calls["code2session"] == 4


# ---- key rotation ---------------------------------------------------------------------------


async def test_key_rotation_reencrypts_and_keeps_data_readable(live: Live, platforms: Platforms) -> None:
    from backend.crypto import KeyRing

    tokens = await wechat_login(live, platforms)
    await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(tokens))
    await identity.register_kiosk(hall_code=(await _hall("K-1")).code, name="k", keyring=live.app.ctx.keyring)
    old = live.app.ctx.settings.data_keys
    ring = KeyRing.parse("k2:" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=" + "," + old)
    counts = await identity.rotate_keys(keyring=ring)
    assert counts == {"resident": 1, "kiosk": 1}
    row = await Resident.get(id=tokens["resident_id"])
    assert row.id_number_enc.startswith("v1:k2:") and row.phone_enc.startswith("v1:k2:")
    assert (await Kiosk.first()).secret_enc.startswith("v1:k2:")
    assert ring.decrypt(row.id_number_enc, aad="resident.id_number") == ZHANG["id_number"]
    profile = await identity.profile(resident_id=row.id, keyring=ring)
    assert profile["real_name"]["phone"] == "138****5678"
    assert await identity.rotate_keys(keyring=ring) == {"resident": 0, "kiosk": 0}


async def _hall(code: str, region: str = "330106011"):
    from backend.catalog import service as catalog

    return await catalog.create_hall(code=code, name=f"{code}便民服务中心", region_code=region)
