"""Staff accounts scoped to halls, lockout, and signed kiosk requests, through HTTP and the CLI."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from backend import clock
from backend.audit.models import AuditEntry
from backend.catalog import service as catalog
from backend.identity import service as identity
from backend.identity.models import Kiosk, Staff, StaffRole
from kiosks.signing import signed_headers
from tests.cases_support import settled_staff
from tests.conftest import ROOT, Live


async def make_staff(username: str, hall: str, role: StaffRole) -> str:
    """A new account; returns its one-time password."""
    _, password = await identity.create_staff(username=username, display_name=username, hall_code=hall, role=role)
    return password


async def login(live: Live, username: str, password: str):
    return await live.client.post("/api/v1/staff/auth/login", json={"username": username, "password": password})


@pytest.fixture
async def halls(live: Live) -> dict[str, int]:
    x = await catalog.create_hall(code="HX", name="转塘街道便民服务中心", region_code="330106011")
    y = await catalog.create_hall(code="HY", name="双浦镇便民服务中心", region_code="330106012")
    return {"HX": x.id, "HY": y.id}


async def test_staff_login_and_hall_scope(live: Live, halls: dict[str, int]) -> None:
    admin_pw = await settled_staff(live.client, "wang.admin", "HX", StaffRole.HALL_ADMIN)
    clerk_pw = await settled_staff(live.client, "li.clerk", "HX", StaffRole.CLERK)
    r = await login(live, "wang.admin", admin_pw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["must_change_password"] is False
    assert body["staff"]["grants"] == [{"hall_id": halls["HX"], "roles": ["hall_admin"]}]
    admin = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await live.client.get(f"/api/v1/staff/halls/{halls['HX']}/kiosks", headers=admin)).status_code == 200
    # A hall admin of X is refused in hall Y.
    r = await live.client.get(f"/api/v1/staff/halls/{halls['HY']}/kiosks", headers=admin)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    # A clerk of X lacks the role even in X.
    clerk = {"Authorization": f"Bearer {(await login(live, 'li.clerk', clerk_pw)).json()['access_token']}"}
    r = await live.client.get(f"/api/v1/staff/halls/{halls['HX']}/kiosks", headers=clerk)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    # A resident's token is not a staff token.
    from backend.identity.tokens import issue

    resident = issue(secret=live.app.ctx.settings.secret_key, kind="resident", subject=1, ttl_seconds=60)[0]
    r = await live.client.get("/api/v1/staff/me", headers={"Authorization": f"Bearer {resident}"})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.token_invalid")


async def test_role_change_takes_effect_at_once_and_is_audited(live: Live, halls: dict[str, int]) -> None:
    pw = await settled_staff(live.client, "zhao", "HX", StaffRole.HALL_ADMIN)
    headers = {"Authorization": f"Bearer {(await login(live, 'zhao', pw)).json()['access_token']}"}
    await identity.change_grant(username="zhao", hall_code="HY", role=StaffRole.HALL_ADMIN, grant=True,
                                actor_kind="operator", actor_id="test")
    # The old token carried the old version: it no longer works.
    r = await live.client.get(f"/api/v1/staff/halls/{halls['HY']}/kiosks", headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.token_invalid")
    headers = {"Authorization": f"Bearer {(await login(live, 'zhao', pw)).json()['access_token']}"}
    assert (await live.client.get(f"/api/v1/staff/halls/{halls['HY']}/kiosks", headers=headers)).status_code == 200
    actions = [a.action for a in await AuditEntry.all().order_by("seq")]
    # Two here, one more when the one-time password was replaced.
    assert actions.count("staff.role_granted") == 1 and actions.count("staff.login") == 3


async def test_five_wrong_passwords_lock_for_fifteen_minutes(live: Live, halls: dict[str, int], frozen_clock) -> None:
    pw = await make_staff("sun", "HX", StaffRole.CLERK)
    codes = [(await login(live, "sun", "wrong-password")).json()["error"]["code"] for _ in range(5)]
    assert codes == ["auth.bad_credentials"] * 4 + ["auth.account_locked"]
    r = await login(live, "sun", pw)  # even the right password waits out the lock
    assert (r.status_code, r.json()["error"]["code"]) == (423, "auth.account_locked")
    assert int(r.headers["retry-after"]) > 800
    frozen_clock.advance(14 * 60)
    assert (await login(live, "sun", pw)).status_code == 423
    frozen_clock.advance(61)
    assert (await login(live, "sun", pw)).status_code == 200
    failed = await AuditEntry.filter(action="staff.login_failed").count()
    assert failed == 5
    # An unknown name answers exactly like a wrong password.
    r = await login(live, "nobody", "whatever")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "auth.bad_credentials")


class TestConcurrentLogins:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        return {"rate_login_account": "100/60", "rate_login_ip": "100/60"}

    async def test_ten_simultaneous_logins_with_nine_wrong_end_locked_and_refuse_the_right_one(
            self, live: Live, halls: dict[str, int]) -> None:
        pw = await settled_staff(live.client, "zhou", "HX", StaffRole.CLERK)
        # The account's password hashed at production cost (the suite's is the smallest): each check takes as
        # long as in a real hall, so the ten logins are all in flight together, as in an attack.
        from argon2 import PasswordHasher

        await Staff.filter(username="zhou").update(password_hash=PasswordHasher().hash(pw))
        passwords = ["wrong-password"] * 4 + [pw] + ["wrong-password"] * 5
        logins_before = await AuditEntry.filter(action="staff.login").count()
        # Ten connections opened first, then the ten logins sent at once.
        async with httpx.AsyncClient(base_url=live.url, timeout=30,
                                     limits=httpx.Limits(max_connections=10, max_keepalive_connections=10)) as client:
            await asyncio.gather(*(client.get("/api/v1/health") for _ in range(10)))
            answers = await asyncio.gather(*(client.post("/api/v1/staff/auth/login",
                                                         json={"username": "zhou", "password": p}) for p in passwords))
        statuses = [a.status_code for a in answers]
        assert set(statuses) <= {401, 423}, statuses
        assert statuses[4] == 423 and answers[4].json()["error"]["code"] == "auth.account_locked"
        assert "access_token" not in answers[4].text
        row = await Staff.get(username="zhou")
        assert row.locked_until is not None and row.locked_until > clock.now()
        # The lock holds for the right password afterwards too.
        r = await login(live, "zhou", pw)
        assert (r.status_code, r.json()["error"]["code"]) == (423, "auth.account_locked")
        # No login went through during the burst or after it.
        assert await AuditEntry.filter(action="staff.login").count() == logins_before


async def test_one_time_password_allows_only_me_and_the_change(live: Live, halls: dict[str, int]) -> None:
    pw = await make_staff("qian", "HX", StaffRole.HALL_ADMIN)
    r = await login(live, "qian", pw)
    assert r.status_code == 200 and r.json()["must_change_password"] is True
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    # Who am I: allowed, and says a change is due.
    r = await live.client.get("/api/v1/staff/me", headers=headers)
    assert r.status_code == 200 and r.json()["must_change_password"] is True and r.json()["username"] == "qian"
    # Anything else: refused with its own code, even where the role would allow it.
    for path in ("/api/v1/staff/cases", f"/api/v1/staff/halls/{halls['HX']}/kiosks",
                 f"/api/v1/staff/halls/{halls['HX']}/dashboard"):
        r = await live.client.get(path, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "staff.password_change_required"), path
        assert r.json()["error"]["message"] == "首次登录请先修改密码，修改后才能使用其他功能"
    r = await live.client.post("/api/v1/staff/scan", headers=headers, json={"code": "anything"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "staff.password_change_required")

    async def change(old: str, new: str):
        return await live.client.post("/api/v1/staff/auth/password", headers=headers,
                                      json={"old_password": old, "new_password": new})

    refusals = [
        (("not-the-old-one-1", "窗口-new-passw0rd"), 401, "auth.bad_credentials"),
        ((pw, "short1"), 422, "staff.password_weak"),
        ((pw, "onlylettersandmore"), 422, "staff.password_weak"),
        ((pw, pw), 422, "staff.password_reused"),
        ((pw, "QIAN-2026-window"), 422, "staff.password_has_username"),
    ]
    for (old, new), status, code in refusals:
        r = await change(old, new)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), (old, new)
    assert (await live.client.get("/api/v1/staff/me", headers=headers)).status_code == 200  # still the same token
    assert (await live.client.get("/api/v1/staff/cases", headers=headers)).status_code == 403

    assert (await change(pw, "窗口-new-passw0rd")).status_code == 204
    assert (await live.client.get("/api/v1/staff/me", headers=headers)).status_code == 401  # old token ended
    assert (await login(live, "qian", pw)).status_code == 401  # the one-time password is spent
    r = await login(live, "qian", "窗口-new-passw0rd")
    assert r.status_code == 200 and r.json()["must_change_password"] is False
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    r = await live.client.get("/api/v1/staff/cases", headers=headers)
    assert r.status_code == 200, r.text
    assert (await live.client.get(f"/api/v1/staff/halls/{halls['HX']}/kiosks", headers=headers)).status_code == 200
    assert (await live.client.get("/api/v1/staff/me", headers=headers)).json()["must_change_password"] is False
    changed = await AuditEntry.filter(action="staff.password_changed").values_list("target_id", flat=True)
    assert len(changed) == 1


# ---- kiosks ---------------------------------------------------------------------------------


class KioskClient:
    def __init__(self, live: Live, device_id: str, secret: str) -> None:
        self.live, self.device_id, self.secret = live, device_id, secret

    def headers(self, method: str, path: str, body: bytes, *, nonce: str | None = None, ts: int | None = None,
                secret: str | None = None) -> dict[str, str]:
        h = signed_headers(device_id=self.device_id, secret=secret or self.secret, method=method,
                           path_with_query=path, body=body, timestamp=ts or int(clock.now().timestamp()),
                           nonce=nonce or secrets.token_urlsafe(16))
        return {**h, "Content-Type": "application/json"}

    async def post(self, path: str, payload: dict, **kw):
        body = json.dumps(payload).encode()
        return await self.live.client.post(path, content=body, headers=self.headers("POST", path, body, **kw))


@pytest.fixture
async def kiosk(live: Live, halls: dict[str, int]) -> KioskClient:
    device, secret = await identity.register_kiosk(hall_code="HX", name="一楼自助机", keyring=live.app.ctx.keyring)
    return KioskClient(live, device.device_id, secret)


async def test_signed_heartbeat_is_recorded(live: Live, kiosk: KioskClient) -> None:
    r = await kiosk.post("/api/v1/kiosk/heartbeat", {"software_version": "kiosk-2.3.1"})
    assert r.status_code == 200, r.text
    assert r.json()["device_id"] == kiosk.device_id
    row = await Kiosk.get(device_id=kiosk.device_id)
    assert row.software_version == "kiosk-2.3.1" and row.last_seen_at is not None
    assert "kiosk.registered" in [a.action for a in await AuditEntry.all()]


async def test_replayed_request_is_refused_and_a_fresh_nonce_passes(live: Live, kiosk: KioskClient) -> None:
    body = json.dumps({"software_version": "1.0"}).encode()
    headers = kiosk.headers("POST", "/api/v1/kiosk/heartbeat", body)
    first = await live.client.post("/api/v1/kiosk/heartbeat", content=body, headers=headers)
    assert first.status_code == 200
    replay = await live.client.post("/api/v1/kiosk/heartbeat", content=body, headers=headers)
    assert (replay.status_code, replay.json()["error"]["code"]) == (401, "kiosk.replayed")
    fresh = await kiosk.post("/api/v1/kiosk/heartbeat", {"software_version": "1.0"})
    assert fresh.status_code == 200


async def test_body_altered_after_signing_is_refused(live: Live, kiosk: KioskClient) -> None:
    body = json.dumps({"software_version": "1.0"}).encode()
    headers = kiosk.headers("POST", "/api/v1/kiosk/heartbeat", body)
    altered = json.dumps({"software_version": "6.6"}).encode()
    r = await live.client.post("/api/v1/kiosk/heartbeat", content=altered, headers=headers)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk.signature_invalid")
    assert (await Kiosk.get(device_id=kiosk.device_id)).software_version is None
    # The refused request did not spend its nonce: the genuine one still goes through.
    assert (await live.client.post("/api/v1/kiosk/heartbeat", content=body, headers=headers)).status_code == 200


async def test_wrong_key_stale_time_missing_headers_and_unknown_device(live: Live, kiosk: KioskClient) -> None:
    r = await kiosk.post("/api/v1/kiosk/heartbeat", {"software_version": "1"}, secret="not-the-secret")
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk.signature_invalid")
    stale = int(clock.now().timestamp()) - 301
    r = await kiosk.post("/api/v1/kiosk/heartbeat", {"software_version": "1"}, ts=stale)
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk.timestamp_skew")
    r = await live.client.post("/api/v1/kiosk/heartbeat", json={"software_version": "1"})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk.signature_missing")
    ghost = KioskClient(live, "KSK000000000000", kiosk.secret)
    r = await ghost.post("/api/v1/kiosk/heartbeat", {"software_version": "1"})
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk.signature_invalid")


async def test_disabled_kiosk_is_refused(live: Live, kiosk: KioskClient) -> None:
    await identity.set_kiosk_enabled(device_id=kiosk.device_id, enabled=False)
    r = await kiosk.post("/api/v1/kiosk/heartbeat", {"software_version": "1"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "kiosk.disabled")


class TestKioskRateLimit:
    @pytest.fixture
    def settings_overrides(self) -> dict:
        return {"rate_kiosk": "3/60"}

    async def test_a_kiosk_over_its_limit_gets_429(self, live: Live, kiosk: KioskClient) -> None:
        codes = [(await kiosk.post("/api/v1/kiosk/heartbeat", {"software_version": "1"})).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]


# ---- the operator's command line ------------------------------------------------------------


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


async def test_cli_creates_staff_and_registers_kiosks(orm: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": orm, "PALMHALL_ENV": "test", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "SECRETS_FILE": str(tmp_path / "s.json"), "LOG_LEVEL": "WARNING"}
    assert cli(env, "hall", "create", "--code", "HZ", "--name", "测试中心", "--region", "330106").returncode == 0
    made = cli(env, "staff", "create", "--username", "zhou", "--name", "周", "--hall", "HZ", "--role", "clerk")
    assert made.returncode == 0, made.stderr
    password = made.stdout.split("one-time password: ")[1].strip()
    assert len(password) == 16
    assert cli(env, "staff", "create", "--username", "zhou", "--name", "周", "--hall", "HZ",
               "--role", "clerk").returncode == 1
    reg = cli(env, "kiosk", "register", "--hall", "HZ", "--name", "大厅一号机")
    assert reg.returncode == 0, reg.stderr
    device_id = reg.stdout.split("device id: ")[1].split()[0]
    listed = cli(env, "kiosk", "list")
    assert device_id in listed.stdout and "SILENT" in listed.stdout and "never" in listed.stdout
    row = await Kiosk.get(device_id=device_id)
    assert reg.stdout.split("secret:")[1].strip() not in row.secret_enc  # stored encrypted
    actions = [a.action for a in await AuditEntry.all().order_by("seq")]
    assert actions == ["hall.created", "staff.created", "kiosk.registered", "kiosk.enrollment_issued"]
