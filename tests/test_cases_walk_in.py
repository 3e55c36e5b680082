"""A case opened at the counter belongs to its resident: the verified holder of the applicant's ID number sees it,
pays it from the mini program, hears about it, rates it and holds its certificate, whether they had bound their
real name before the walk-in or bind it afterwards (and on another platform, joined to the first)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.audit.models import AuditEntry
from backend.cases import service as cases
from backend.cases.models import Case, CaseStatus, Certificate
from backend.identity.models import Resident
from notifications.models import Notification
from tests.cases_support import (
    LICENCE,
    RESIDENCE,
    WANG,
    ZHANG,
    World,
    act,
    application,
    build_world,
    drain_without_main_hall,
    resident,
)
from tests.conftest import Live, Platforms
from tests.payments_support import FEE, Payer, payer, start_payment, wire
from tests.test_identity import alipay_login, auth, join_with_code, wechat_login

MP = "/api/v1/mp"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live, platforms: Platforms) -> World:
    wire(platforms, live)
    return await build_world(live)


async def walk_in(live: Live, world: World, person: dict[str, str], item: str = LICENCE) -> str:
    """The clerk of HX opens a complete case on paper for `person`, standing at the counter."""
    paper = [{"code": code, "paper": True} for code in ("ID", "FORM", "LEASE")]
    body = {**application(world.halls["HX"], item, paper), "applicant_name": person["name"],
            "applicant_id_number": person["id_number"]}
    r = await live.client.post("/api/v1/staff/cases", json=body, headers=world.clerk)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "submitted", r.text
    return str(r.json()["case_no"])


async def to_payment(live: Live, world: World, case_no: str) -> None:
    for action in ("accept", "start_review"):
        r = await act(live, world.clerk, case_no, action)
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "awaiting_payment"


async def inbox_topics(live: Live, headers: dict[str, str], case_no: str) -> list[str]:
    """The resident's inbox about this case, oldest first."""
    await drain_without_main_hall()
    r = await live.client.get(f"{MP}/inbox", headers=headers)
    assert r.status_code == 200, r.text
    return [i["topic"] for i in reversed(r.json()["items"]) if case_no in i["body"]]


async def pay_and_finish(live: Live, platforms: Platforms, world: World, me: Payer, case_no: str) -> None:
    """Paid from the mini program through the platform's fake, then approved (the certificate is issued)."""
    r = await start_payment(live, me, case_no)
    assert r.status_code == 201, r.text
    order = r.json()["order"]
    assert (order["amount_fen"], order["channel"]) == (FEE, me.channel)
    fake = platforms.wechatpay if me.channel == "wechat" else platforms.alipay_trades
    answer = await fake.pay(order["out_trade_no"])
    assert answer is not None and answer.status_code in (200, 204), answer
    await drain_without_main_hall()
    assert (await Case.get(case_no=case_no)).status == CaseStatus.IN_REVIEW
    shown = await live.client.get(f"{MP}/payments/{order['id']}", headers=me.headers)
    assert shown.status_code == 200 and shown.json()["order"]["state"] == "paid", shown.text
    r = await act(live, world.clerk, case_no, "approve", reason="符合条件")
    assert r.status_code == 200 and r.json()["status"] == "certificate_issued", r.text


async def rated_and_certified(live: Live, headers: dict[str, str], case_no: str) -> None:
    r = await live.client.post(f"{MP}/cases/{case_no}/evaluation", json={"level": "满意"}, headers=headers)
    assert r.status_code == 201, r.text
    certs = (await live.client.get(f"{MP}/certificates", headers=headers)).json()["certificates"]
    assert [c["cert_no"][2:-2] for c in certs] == [case_no]
    assert certs[0]["status"] == "genuine"


async def linked(case_no: str) -> list[dict[str, Any]]:
    rows = await AuditEntry.filter(action="case.owner_linked", target_id=case_no).order_by("seq")
    return [r.details for r in rows]


async def test_a_walk_in_for_a_verified_resident_is_theirs_in_every_way(live: Live, platforms: Platforms,
                                                                        world: World) -> None:
    me = await payer(live, platforms, "wechat")  # 张三丰, bound on WeChat
    case_no = await walk_in(live, world, ZHANG)
    resident_id = (await live.client.get(f"{MP}/me", headers=me.headers)).json()["id"]
    assert (await Case.get(case_no=case_no)).resident_id == resident_id
    assert await linked(case_no) == [{"resident_id": resident_id, "how": "opened_for_verified_resident"}]
    listed = (await live.client.get(f"{MP}/cases", headers=me.headers)).json()["cases"]
    assert [(c["case_no"], c["channel"]) for c in listed] == [(case_no, "counter")]

    await to_payment(live, world, case_no)
    assert await inbox_topics(live, me.headers, case_no) == ["case.awaiting_payment"]
    await pay_and_finish(live, platforms, world, me, case_no)
    assert await inbox_topics(live, me.headers, case_no) == [
        "case.awaiting_payment", "case.approved", "case.certificate_issued"]
    await rated_and_certified(live, me.headers, case_no)
    # Someone else is still refused this case everywhere.
    other = await payer(live, platforms, "alipay")
    r = await start_payment(live, other, case_no)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "case.not_found")


async def test_the_resident_who_binds_after_the_walk_in_gets_it_once_and_pays_it_from_the_other_platform(
        live: Live, platforms: Platforms, world: World) -> None:
    case_no = await walk_in(live, world, WANG)
    assert (await Case.get(case_no=case_no)).resident_id is None
    await to_payment(live, world, case_no)
    await drain_without_main_hall()
    assert await Notification.filter(resident_id__isnull=False).count() == 0  # nobody to tell yet

    # 王小明 binds on WeChat: the binding's event links the case to him, once.
    wechat = auth(await wechat_login(live, platforms, openid="o_wang_0001"))
    r = await live.client.put(f"{MP}/me/real-name", json=WANG, headers=wechat)
    assert r.status_code == 200, r.text
    await drain_without_main_hall()
    me = await Resident.get(id=(await live.client.get(f"{MP}/me", headers=wechat)).json()["id"])
    assert (await Case.get(case_no=case_no)).resident_id == me.id
    assert await linked(case_no) == [{"resident_id": me.id, "how": "real_name_bound"}]
    assert await cases.link_to_resident(resident_id=me.id) == []  # again: nothing more linked, nothing audited
    assert len(await linked(case_no)) == 1
    staff_view = (await live.client.get(f"/api/v1/staff/cases/{case_no}", headers=world.clerk)).json()
    assert [h["step"] for h in staff_view["history"] if h["internal"]] == ["办件已关联到申请人账号"]
    mine = (await live.client.get(f"{MP}/cases/{case_no}", headers=wechat)).json()
    assert "办件已关联到申请人账号" not in [h["step"] for h in mine["history"]]

    # He joins his Alipay login to the account (a code to his phone) and pays from Alipay, as the account kept.
    open_id = "ali_wang_0001"
    tokens = await alipay_login(live, platforms, open_id=open_id)
    joined = await join_with_code(live, platforms, tokens, WANG)
    alipay = Payer(headers=auth(joined["tokens"]), channel="alipay", subject=open_id)
    listed = (await live.client.get(f"{MP}/cases", headers=alipay.headers)).json()["cases"]
    assert [c["case_no"] for c in listed] == [case_no]
    await pay_and_finish(live, platforms, world, alipay, case_no)
    # Every notice about the case since the binding reached him (the one before it found nobody to tell).
    assert await inbox_topics(live, alipay.headers, case_no) == ["case.approved", "case.certificate_issued"]
    await rated_and_certified(live, alipay.headers, case_no)
    # The WeChat login still reaches the same account and case.
    wechat_again = auth(await wechat_login(live, platforms, openid="o_wang_0001"))
    assert [c["case_no"] for c in (await live.client.get(f"{MP}/cases", headers=wechat_again)).json()["cases"]] \
        == [case_no]


async def test_certificates_issued_before_the_binding_become_the_residents(live: Live, platforms: Platforms,
                                                                           world: World) -> None:
    case_no = await walk_in(live, world, WANG, RESIDENCE)
    for action in ("accept", "start_review", "approve"):
        r = await act(live, world.clerk, case_no, action)
        assert r.status_code == 200, r.text
    cert = await Certificate.get(case__case_no=case_no)
    assert cert.holder_resident_id is None
    wang = await resident(live, platforms, WANG)
    await drain_without_main_hall()
    me = (await live.client.get(f"{MP}/me", headers=wang)).json()["id"]
    assert (await Certificate.get(id=cert.id)).holder_resident_id == me
    await rated_and_certified(live, wang, case_no)
