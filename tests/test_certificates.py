"""E-certificates: issued on approval, signed with the hall's Ed25519 key, verified from their QR code."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backend.cases.models import Certificate, HallSigningKey
from backend.jobs.models import OutboxEvent
from tests.cases_support import (
    LI,
    RESIDENCE,
    ZHANG,
    World,
    act,
    application,
    build_world,
    resident,
    upload_id,
)
from tests.conftest import Live, Platforms


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files"), "rate_qr_miss_ip": "4/600"}


@pytest.fixture
async def world(live: Live) -> World:
    return await build_world(live)


async def issued(live: Live, platforms: Platforms, world: World, person: dict[str, str] = ZHANG,
                 **approve: Any) -> tuple[dict[str, str], dict[str, Any]]:
    me = await resident(live, platforms, person)
    mats = [{"code": c, "upload_id": await upload_id(live, me)} for c in ("ID", "FORM", "LEASE")]
    case_no = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], RESIDENCE, mats))).json()["case_no"]
    for action in ("accept", "start_review"):
        assert (await act(live, world.clerk, case_no, action)).status_code == 200
    r = await act(live, world.clerk, case_no, "approve", **approve)
    assert r.status_code == 200, r.text
    certs = (await live.client.get("/api/v1/mp/certificates", headers=me)).json()["certificates"]
    return me, certs[-1]


async def verify(live: Live, token: str) -> Any:
    return await live.client.get(f"/api/v1/certificates/verify/{token}")


async def test_approval_issues_a_signed_certificate_that_verifies_genuine(live: Live, platforms: Platforms,
                                                                          world: World) -> None:
    _, cert = await issued(live, platforms, world)
    assert cert["algorithm"] == "Ed25519" and cert["cert_no"].startswith("DZ330106011")
    meta = cert["metadata"]
    assert meta["证照类型名称"] == "居住证明" and meta["持证主体"] == ZHANG["name"]
    assert meta["证照颁发机构"] == "转塘街道办事处" and meta["证照有效期截止日期"] == "长期"
    assert meta["持证主体代码"] == ZHANG["id_number"][:4] + "*" * 10 + ZHANG["id_number"][-4:]
    r = await verify(live, cert["verify_token"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["result"] == "genuine" and body["result_label"] == "真实有效"
    assert body["certificate"]["holder"] == "张*丰" and ZHANG["id_number"] not in r.text
    # The full QR URL works too, and the event says which certificate was issued.
    assert (await verify(live, cert["verify_url"].rsplit("/", 1)[-1])).json()["result"] == "genuine"
    event = await OutboxEvent.get(topic="case.certificate_issued")
    assert event.payload["certificate_id"] == cert["id"]
    # The key is the hall's, its private half stored encrypted.
    key = await HallSigningKey.get(hall_id=world.halls["HX"])
    assert key.algorithm == "Ed25519" and key.private_key_enc.startswith("v1:")
    assert len(base64.b64decode(key.public_key)) == 32


@pytest.mark.parametrize("field", ["cert_type", "valid_until", "issuing_department", "extra", "holder_name_enc",
                                   "item_code", "signature"])
async def test_a_certificate_whose_stored_fields_were_altered_fails_verification(
        live: Live, platforms: Platforms, world: World, field: str) -> None:
    _, cert = await issued(live, platforms, world)
    _, other = await issued(live, platforms, world, LI)
    row = await Certificate.get(id=cert["id"])
    donor = await Certificate.get(id=other["id"])
    changes: dict[str, Any] = {
        "cert_type": "营业执照", "valid_until": date(2099, 1, 1), "issuing_department": "某某局",
        "extra": {**row.extra, "备注": "伪造"}, "holder_name_enc": donor.holder_name_enc,
        "item_code": "X" * 30, "signature": donor.signature,
    }
    await Certificate.filter(id=row.id).update(**{field: changes[field]})
    r = await verify(live, cert["verify_token"])
    assert r.status_code == 200
    assert r.json()["result"] == "not_genuine" and "certificate" not in r.json()
    # The untouched one is still genuine.
    assert (await verify(live, other["verify_token"])).json()["result"] == "genuine"


async def test_a_swapped_public_key_does_not_make_a_forgery_genuine(live: Live, platforms: Platforms,
                                                                    world: World) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    _, cert = await issued(live, platforms, world)
    row = await Certificate.get(id=cert["id"])
    forger = Ed25519PrivateKey.generate()
    public = forger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    await HallSigningKey.filter(id=row.signing_key_id).update(public_key=base64.b64encode(public).decode())  # type: ignore[attr-defined]
    await Certificate.filter(id=row.id).update(cert_type="营业执照",
                                               signature=base64.b64encode(forger.sign(b"anything")).decode())
    assert (await verify(live, cert["verify_token"])).json()["result"] == "not_genuine"


async def test_revoked_and_expired_certificates_say_so(live: Live, platforms: Platforms, world: World,
                                                       frozen_clock: Any) -> None:
    frozen_clock.set(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))
    _, lasting = await issued(live, platforms, world)
    _, short = await issued(live, platforms, world, LI, valid_until="2026-03-10")
    assert short["metadata"]["证照有效期截止日期"] == "2026-03-10"
    # Revocation is the hall admin's.
    r = await live.client.post(f"/api/v1/staff/certificates/{lasting['cert_no']}/revoke", headers=world.clerk,
                               json={"reason": "申请人户籍迁出"})
    assert r.status_code == 403
    r = await live.client.post(f"/api/v1/staff/certificates/{lasting['cert_no']}/revoke", headers=world.admin,
                               json={"reason": "申请人户籍迁出"})
    assert r.status_code == 200, r.text
    body = (await verify(live, lasting["verify_token"])).json()
    assert body["result"] == "revoked" and body["certificate"]["revoked_at"]
    r = await live.client.post(f"/api/v1/staff/certificates/{lasting['cert_no']}/revoke", headers=world.admin,
                               json={"reason": "again"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "certificate.already_revoked")
    assert (await verify(live, short["verify_token"])).json()["result"] == "genuine"
    frozen_clock.advance(timedelta(days=9).total_seconds())
    assert (await verify(live, short["verify_token"])).json()["result"] == "expired"


async def test_unknown_and_forged_tokens_are_404_then_rate_limited(live: Live, platforms: Platforms,
                                                                    world: World) -> None:
    _, cert = await issued(live, platforms, world)
    token = cert["verify_token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for bad in ("nonsense", forged, "A" * 50):
        r = await verify(live, bad)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "qr.invalid")
    assert (await verify(live, token)).json()["result"] == "genuine"
    # A genuine token of another kind (a case) is no certificate either.
    from backend import qr

    case_token = qr.make_token(live.app.ctx.settings.secret_key, "case", 1)
    r = await verify(live, case_token)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "qr.invalid")
    # Over the limit of misses, every look-up from this address waits, even a genuine one.
    r = await verify(live, token)
    assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
    assert int(r.headers["retry-after"]) > 0


async def test_a_clerk_scanning_a_certificate_sees_its_verification(live: Live, platforms: Platforms,
                                                                    world: World) -> None:
    _, cert = await issued(live, platforms, world)
    r = await live.client.post("/api/v1/staff/scan", json={"code": cert["verify_url"]}, headers=world.other_clerk)
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "certificate" and r.json()["verification"]["result"] == "genuine"
