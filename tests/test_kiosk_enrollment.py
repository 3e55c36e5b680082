"""Kiosk enrollment from a one-time link: the redeem API (once, hashed, expiring, rate-limited, audited),
the operator's `palmhall kiosk register` / `kiosk link`, the demo kiosk's link, and the kiosk's own hall."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest

from backend.audit.models import AuditEntry
from backend.catalog import service as catalog
from backend.catalog.models import Counter, ServiceItem
from backend.errors import DomainError
from backend.identity import service as identity
from backend.identity.models import Kiosk
from backend.settings import VARS
from tests.conftest import ROOT, Live
from tests.test_staff_and_kiosks import KioskClient

LINK = re.compile(r"(https?://\S+)/kiosk/enroll#([A-Za-z0-9_-]{40,})")


@pytest.fixture
async def hall(live: Live) -> int:
    return (await catalog.create_hall(code="HX", name="转塘街道便民服务中心", region_code="330106011")).id


async def registered(live: Live) -> KioskClient:
    device, secret = await identity.register_kiosk(hall_code="HX", name="一楼自助机", keyring=live.app.ctx.keyring)
    return KioskClient(live, device.device_id, secret)


async def redeem(live: Live, code: str) -> Any:
    return await live.client.post("/api/v1/kiosk/enroll", json={"code": code})


async def beat(kiosk: KioskClient, secret: str | None = None) -> Any:
    return await kiosk.post("/api/v1/kiosk/heartbeat", {"software_version": "t"}, secret=secret)


async def test_a_link_enrolls_once_with_a_new_secret_and_the_old_one_stops(live: Live, hall: int) -> None:
    kiosk = await registered(live)
    assert (await beat(kiosk)).status_code == 200
    code, expires = await identity.issue_enrollment(device_id=kiosk.device_id, actor="test")
    row = await Kiosk.get(device_id=kiosk.device_id)
    # Only the code's hash is stored, with a 24-hour expiry.
    assert row.enroll_code_hash == hashlib.sha256(code.encode()).hexdigest()
    assert code not in str(row.__dict__)
    assert row.enroll_expires_at is not None and abs((row.enroll_expires_at - expires).total_seconds()) < 1
    assert timedelta(hours=23, minutes=59) < expires - row.created_at <= timedelta(hours=24, minutes=1)

    r = await redeem(live, code)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert (answer["device_id"], answer["name"], answer["hall"]) == (
        kiosk.device_id, "一楼自助机", {"id": hall, "name": "转塘街道便民服务中心"})
    assert r.headers["cache-control"] == "no-store"
    new_secret = answer["secret"]
    assert len(new_secret) >= 40 and new_secret != kiosk.secret

    old = await beat(kiosk)
    assert (old.status_code, old.json()["error"]["code"]) == (401, "kiosk.signature_invalid")
    assert (await beat(kiosk, secret=new_secret)).status_code == 200

    again = await redeem(live, code)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "kiosk.enroll_used")
    assert "已使用" in again.json()["error"]["message"]
    assert (await beat(kiosk, secret=new_secret)).status_code == 200  # a refused reuse changes nothing

    wrong = await redeem(live, "x" * 43)
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (404, "kiosk.enroll_invalid")
    malformed = await redeem(live, "not a code!")
    assert malformed.status_code == 422

    audit = [(a.action, a.actor_kind, a.target_id) for a in await AuditEntry.all().order_by("seq")]
    assert ("kiosk.enrollment_issued", "operator", kiosk.device_id) in audit
    assert ("kiosk.enrolled", "kiosk", kiosk.device_id) in audit
    assert ("kiosk.enroll_refused", "kiosk", kiosk.device_id) in audit


async def test_ten_browsers_racing_with_one_link_get_one_secret(live: Live, hall: int) -> None:
    kiosk = await registered(live)
    code, _ = await identity.issue_enrollment(device_id=kiosk.device_id)
    answers = await asyncio.gather(*(redeem(live, code) for _ in range(10)))
    assert sorted(a.status_code for a in answers) == [200] + [409] * 9
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"kiosk.enroll_used"}
    (won,) = [a.json() for a in answers if a.status_code == 200]
    # The one secret answered is the one the device now signs with.
    assert (await beat(KioskClient(live, kiosk.device_id, won["secret"]))).status_code == 200
    assert await AuditEntry.filter(action="kiosk.enrolled").count() == 1


async def test_expired_superseded_and_disabled_links_are_refused(live: Live, hall: int, frozen_clock) -> None:
    kiosk = await registered(live)
    stale, _ = await identity.issue_enrollment(device_id=kiosk.device_id)
    frozen_clock.advance(24 * 3600 + 1)
    r = await redeem(live, stale)
    assert (r.status_code, r.json()["error"]["code"]) == (410, "kiosk.enroll_expired")
    assert "过期" in r.json()["error"]["message"]

    first, _ = await identity.issue_enrollment(device_id=kiosk.device_id)
    second, _ = await identity.issue_enrollment(device_id=kiosk.device_id)
    r = await redeem(live, first)  # a fresh link replaces any earlier one
    assert (r.status_code, r.json()["error"]["code"]) == (404, "kiosk.enroll_invalid")

    await identity.set_kiosk_enabled(device_id=kiosk.device_id, enabled=False)
    r = await redeem(live, second)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "kiosk.enroll_disabled")
    assert (await Kiosk.get(device_id=kiosk.device_id)).enroll_used_at is None
    with pytest.raises(DomainError) as refused:
        await identity.issue_enrollment(device_id=kiosk.device_id)
    assert refused.value.code == "kiosk.enroll_disabled"
    with pytest.raises(DomainError) as unknown:
        await identity.issue_enrollment(device_id="KSKNOSUCHDEVICE")
    assert unknown.value.code == "kiosk.not_found"


class TestEnrollmentRateLimit:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"rate_login_ip": "3/60"}

    async def test_guessing_codes_is_rate_limited_per_address(self, live: Live, hall: int) -> None:
        codes = [(await redeem(live, f"guess{i:02d}" + "x" * 30)).status_code for i in range(4)]
        assert codes == [404, 404, 404, 429]


async def test_the_kiosk_reads_its_hall_and_queue_groups(live: Live, hall: int) -> None:
    kiosk = await registered(live)
    for code, name, group in (("I-1", "居住证明开具", "A"), ("I-2", "养老保险参保登记", "B"),
                              ("I-3", "医保参保登记", "B")):
        item = await ServiceItem.create(code=code, name=name, department="街道", subject_type="person",
                                        queue_group=group)
        await item.halls.add(await catalog.get_hall(code="HX"))
    await Counter.create(hall_id=hall, number=1, name="综合1号窗口", groups=["A", "B"])
    await Counter.create(hall_id=hall, number=2, name="社保2号窗口", groups=["B"])
    path = "/api/v1/kiosk/hall"
    r = await live.client.get(path, headers=kiosk.headers("GET", path, b""))
    assert r.status_code == 200, r.text
    assert r.json() == {"hall": {"id": hall, "name": "转塘街道便民服务中心"}, "device_id": kiosk.device_id,
                        "name": "一楼自助机", "groups": [
                            {"group": "A", "items": ["居住证明开具"], "counters": [1]},
                            {"group": "B", "items": ["养老保险参保登记", "医保参保登记"], "counters": [1, 2]}]}
    unsigned = await live.client.get(path)
    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "kiosk.signature_missing")


# ---- the operator's command line ------------------------------------------------------------


def cli_env(live: Live, **extra: str) -> dict[str, str]:
    settings = live.app.ctx.settings
    env = {k: v for k, v in os.environ.items() if k not in {v.name for v in VARS}}
    env.update({v.name: str(getattr(settings, v.field)) for v in VARS})
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


async def test_register_and_link_print_one_time_links_that_enroll(live: Live, hall: int) -> None:
    env = cli_env(live, PUBLIC_BASE_URL="https://zt.example.gov.cn")
    reg = cli(env, "kiosk", "register", "--hall", "HX", "--name", "二楼自助机")
    assert reg.returncode == 0, reg.stderr
    device_id = reg.stdout.split("device id: ")[1].split()[0]
    found = LINK.search(reg.stdout)
    assert found and found.group(1) == "https://zt.example.gov.cn", reg.stdout
    assert "one use" in reg.stdout and "Beijing time" in reg.stdout
    first_code = found.group(2)

    link = cli(env, "kiosk", "link", device_id)
    assert link.returncode == 0, link.stderr
    fresh = LINK.search(link.stdout)
    assert fresh and fresh.group(2) != first_code and "secret" not in link.stdout

    assert (await redeem(live, first_code)).json()["error"]["code"] == "kiosk.enroll_invalid"  # superseded
    r = await redeem(live, fresh.group(2))
    assert r.status_code == 200 and r.json()["device_id"] == device_id

    missing = cli(env, "kiosk", "link", "KSKNOSUCHDEVICE")
    assert missing.returncode == 1 and "kiosk.not_found" in missing.stderr and missing.stdout == ""
    assert cli(env, "kiosk", "disable", device_id).returncode == 0
    disabled = cli(env, "kiosk", "link", device_id)
    assert disabled.returncode == 1 and "kiosk.enroll_disabled" in disabled.stderr
    actions = [a.action for a in await AuditEntry.filter(target_id=device_id).order_by("seq")]
    assert actions == ["kiosk.registered", "kiosk.enrollment_issued", "kiosk.enrollment_issued", "kiosk.enrolled",
                       "kiosk.disabled"]


async def test_demo_load_prints_the_demo_kiosk_link(live: Live) -> None:
    env = cli_env(live)
    loaded = cli(env, "demo", "load")
    assert loaded.returncode == 0, loaded.stderr
    line = next(line for line in loaded.stdout.splitlines() if "enrollment link" in line)
    device = await Kiosk.get(name="演示自助终端")
    assert line.strip().startswith(f"demo kiosk {device.device_id} enrollment link (one use, 24 h): ")
    found = LINK.search(line)
    assert found and found.group(1) == live.app.ctx.settings.public_base_url
    r = await redeem(live, found.group(2))
    assert r.status_code == 200 and r.json()["hall"]["name"] == "西湖区转塘街道便民服务中心"
