"""一次性告知 holds: once a clerk's correction notice was answered, a further notice is a hall admin's call, with a
reason, in the history and the audit log; an open notice completed before the answer stays one notice and one
message; the dashboard counts the repeat notices per item and per clerk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backend.audit.models import AuditEntry
from backend.cases.models import Case, CaseStatus, CorrectionNotice, CorrectionRequest
from backend.identity.models import StaffRole
from backend.jobs.models import OutboxEvent
from notifications.models import Notification, NotifyChannel
from tests.cases_support import (
    RESIDENCE,
    SIMPLE,
    ZHANG,
    World,
    act,
    application,
    build_world,
    drain_without_main_hall,
    png_bytes,
    resident,
    staff_headers,
    upload_id,
)
from tests.conftest import Live, Platforms

STAFF, MP = "/api/v1/staff", "/api/v1/mp"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live) -> World:
    return await build_world(live)


async def accepted_case(live: Live, world: World, me: dict[str, str]) -> str:
    """A complete RESIDENCE application of 张三丰, accepted by the clerk of HX."""
    mats = [{"code": c, "upload_id": await upload_id(live, me)} for c in ("ID", "FORM", "LEASE")]
    r = await live.client.post(f"{MP}/cases", json=application(world.halls["HX"], RESIDENCE, mats), headers=me)
    assert r.status_code == 201 and r.json()["status"] == "submitted", r.text
    case_no = str(r.json()["case_no"])
    assert (await act(live, world.clerk, case_no, "accept")).json()["status"] == "accepted"
    return case_no


async def answer(live: Live, me: dict[str, str], case_no: str, *codes: str) -> dict[str, Any]:
    mats = [{"code": c, "upload_id": await upload_id(live, me, png_bytes(i), f"{c}.png")}
            for i, c in enumerate(codes)]
    r = await live.client.post(f"{MP}/cases/{case_no}/corrections", json={"materials": mats}, headers=me)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def answered_case(live: Live, world: World, me: dict[str, str]) -> str:
    """Accepted, told once by the clerk that the lease copy is unreadable, answered: back where it was."""
    case_no = await accepted_case(live, world, me)
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "LEASE", "reason": "复印件不清晰"}])
    assert r.status_code == 200 and r.json()["status"] == "needs_correction", r.text
    assert (await answer(live, me, case_no, "LEASE"))["status"] == "accepted"
    return case_no


async def ask(live: Live, headers: dict[str, str], case_no: str, **over: Any) -> Any:
    body = {"items": [{"code": "FORM", "reason": "申请表签名与身份证姓名不一致"}], "note": "请重新签名后上传",
            "reason": "审查时发现签名不一致，首次告知时未能发现", **over}
    return await live.client.post(f"{STAFF}/cases/{case_no}/notice-requests", json=body, headers=headers)


async def decide(live: Live, headers: dict[str, str], request_id: int, approve: bool, reason: str) -> Any:
    return await live.client.post(f"{STAFF}/notice-requests/{request_id}/decision",
                                  json={"approve": approve, "reason": reason}, headers=headers)


async def correction_inbox(live: Live, me: dict[str, str]) -> list[dict[str, Any]]:
    await drain_without_main_hall()
    items = (await live.client.get(f"{MP}/inbox", headers=me)).json()["items"]
    return [i for i in items if i["topic"] == "case.correction_needed"]


async def audit_of(case_no: str) -> list[str]:
    return [a.action for a in await AuditEntry.filter(target_id=case_no).order_by("seq")]


async def test_a_further_notice_after_an_answer_needs_a_hall_admins_approval_with_a_reason(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    case_no = await answered_case(live, world, me)
    assert len(await correction_inbox(live, me)) == 1

    # The clerk alone cannot tell the resident again: refused with a stable code and a Chinese message.
    events_before = await OutboxEvent.filter(ordering_key=f"case:{case_no}").count()
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "FORM"}])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "case.notice_needs_approval")
    assert "须经大厅管理员批准" in r.json()["error"]["message"]
    case = await Case.get(case_no=case_no)
    assert (case.status, case.correction_round) == (CaseStatus.ACCEPTED, 1)
    assert await CorrectionNotice.filter(case_id=case.id).count() == 1
    assert await OutboxEvent.filter(ordering_key=f"case:{case_no}").count() == events_before
    shown = (await live.client.get(f"{STAFF}/cases/{case_no}", headers=world.clerk)).json()
    assert shown["further_notice_needs_approval"] is True

    # The clerk asks, saying why; one request at a time; the hall admins hear of it in the hall's inbox.
    r = await ask(live, world.clerk, case_no, reason="短")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation.failed")
    r = await ask(live, world.clerk, case_no)
    assert r.status_code == 201, r.text
    request = r.json()
    assert (request["state"], request["case_no"], request["requested_by"]["name"]) == ("pending", case_no, "hx.clerk")
    assert [i["code"] for i in request["items"]] == ["FORM"]
    r = await ask(live, world.clerk, case_no)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "case.notice_request_pending")
    await drain_without_main_hall()
    staff_inbox = (await live.client.get(f"{STAFF}/inbox", headers=world.admin)).json()["items"]
    assert [i["title"] for i in staff_inbox if i["topic"] == "case.notice_approval_requested"] == ["再次告知待审批"]
    assert len(await correction_inbox(live, me)) == 1  # nothing reached the resident yet
    pending = await live.client.get(f"{STAFF}/notice-requests", headers=world.admin,
                                    params={"hall_id": world.halls["HX"], "state": "pending"})
    assert [x["id"] for x in pending.json()["requests"]] == [request["id"]]

    # Only a hall admin of the case's hall decides.
    for who in (world.clerk, world.other_clerk):
        r = await decide(live, who, request["id"], True, "同意")
        assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    r = await decide(live, world.admin, request["id"], True, "")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "validation.failed")
    r = await decide(live, world.admin, request["id"], True, "签名不一致确需补正，同意再次告知")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["decided_by"]["name"], r.json()["decision_reason"]) == (
        "approved", "hx.admin", "签名不一致确需补正，同意再次告知")
    r = await decide(live, world.admin, request["id"], False, "重复处理")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "case.notice_request_decided")

    # The notice is the case's second round, a repeat, and the resident is told.
    case = await Case.get(case_no=case_no)
    assert (case.status, case.correction_round) == (CaseStatus.NEEDS_CORRECTION, 2)
    notice = await CorrectionNotice.get(case_id=case.id, round=2)
    assert (notice.repeat, notice.request_id) == (True, request["id"])  # type: ignore[attr-defined]
    assert notice.created_by == f"staff:{request['requested_by']['id']}"  # the clerk's notice, the admin's consent
    assert notice.note == "请重新签名后上传" and [i["code"] for i in notice.items] == ["FORM"]
    mine = (await live.client.get(f"{MP}/cases/{case_no}", headers=me)).json()
    assert [(n["round"], n["repeat"]) for n in mine["corrections"]] == [(1, False), (2, True)]
    assert mine["history"][-1]["reason"] == "经大厅管理员批准再次告知。请补正：申请表"
    steps = [h["step"] for h in mine["history"]]
    assert "申请再次补正告知（待大厅管理员审批）" not in steps and "批准再次补正告知" not in steps
    assert len(await correction_inbox(live, me)) == 2
    # The staff see the whole story in the case history, and the audit log has it.
    shown = (await live.client.get(f"{STAFF}/cases/{case_no}", headers=world.clerk)).json()
    internal = [(h["step"], h["reason"]) for h in shown["history"] if h["internal"]]
    assert internal == [
        ("申请再次补正告知（待大厅管理员审批）", "审查时发现签名不一致，首次告知时未能发现（拟告知补正：申请表）"),
        ("批准再次补正告知", "签名不一致确需补正，同意再次告知")]
    assert [x["state"] for x in shown["notice_requests"]] == ["approved"]
    assert [a for a in await audit_of(case_no) if a.startswith("case.notice")] == [
        "case.notice_requested", "case.notice_approved"]
    # Answered, the case goes on; a third notice would need another approval.
    assert (await answer(live, me, case_no, "FORM"))["status"] == "accepted"
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "ID"}])
    assert (r.status_code, r.json()["error"]["code"]) == (409, "case.notice_needs_approval")


async def test_a_refused_request_sends_nothing_and_no_one_approves_their_own(live: Live, platforms: Platforms,
                                                                              world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    case_no = await answered_case(live, world, me)
    request = (await ask(live, world.clerk, case_no)).json()
    why = "首次告知已列明全部材料，不同意再次告知，请按现有材料审查"
    r = await decide(live, world.admin, request["id"], False, why)
    assert r.status_code == 200 and r.json()["state"] == "refused", r.text
    case = await Case.get(case_no=case_no)
    assert (case.status, case.correction_round) == (CaseStatus.ACCEPTED, 1)
    assert len(await correction_inbox(live, me)) == 1
    shown = (await live.client.get(f"{STAFF}/cases/{case_no}", headers=world.clerk)).json()
    assert [(h["step"], h["reason"]) for h in shown["history"] if h["internal"]][-1] == (
        "不批准再次补正告知", why)
    assert "case.notice_refused" in await audit_of(case_no)

    # A hall admin who asks (they may act as a clerk) needs another hall admin's approval.
    request = (await ask(live, world.admin, case_no)).json()
    r = await decide(live, world.admin, request["id"], True, "同意")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "case.notice_own_request")
    second_admin = await staff_headers(live, "hx.admin2", "HX", StaffRole.HALL_ADMIN)
    r = await decide(live, second_admin, request["id"], True, "同意再次告知")
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    assert (await Case.get(case_no=case_no)).status == CaseStatus.NEEDS_CORRECTION


async def test_the_pre_reviews_notice_and_an_open_notice_need_no_approval(live: Live, platforms: Platforms,
                                                                           world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    # The automatic pre-review asks for the missing ID card; answered, the clerk's first notice is still the first.
    r = await live.client.post(f"{MP}/cases", headers=me, json=application(
        world.halls["HX"], RESIDENCE, [{"code": "FORM", "upload_id": form}, {"code": "LEASE", "upload_id": form}]))
    case_no = r.json()["case_no"]
    assert r.json()["status"] == "needs_correction"
    r = await ask(live, world.clerk, case_no)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "case.notice_approval_not_needed")
    assert (await answer(live, me, case_no, "ID"))["status"] == "submitted"
    assert (await act(live, world.clerk, case_no, "accept")).status_code == 200
    r = await ask(live, world.clerk, case_no)
    assert (r.status_code, r.json()["error"]["code"]) == (409, "case.notice_approval_not_needed")
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "LEASE"}])
    assert r.status_code == 200 and r.json()["status"] == "needs_correction", r.text
    assert [n["repeat"] for n in r.json()["corrections"]] == [False, False]
    assert await CorrectionRequest.all().count() == 0


async def test_amending_an_open_notice_keeps_one_notice_and_one_message(live: Live, platforms: Platforms,
                                                                        world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    case_no = await accepted_case(live, world, me)
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "LEASE", "reason": "复印件不清晰"}])
    assert r.status_code == 200, r.text
    (first,) = await correction_inbox(live, me)
    assert first["title"] == "补正材料告知" and "共 1 项" in first["body"]
    r = await live.client.post(f"{MP}/inbox/{first['id']}/read", headers=me)
    assert r.status_code in (200, 204), r.text

    # Before the resident answers, the clerk adds the form to the same notice: no approval, no second message.
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "FORM", "reason": "缺少签名"}],
                  reason="请一并签名")
    assert r.status_code == 200, r.text
    notices = r.json()["corrections"]
    assert len(notices) == 1 and [i["code"] for i in notices[0]["items"]] == ["LEASE", "FORM"]
    assert notices[0]["amended_at"] is not None
    (amended,) = await correction_inbox(live, me)
    assert amended["id"] == first["id"]
    assert (amended["title"], amended["read"]) == ("补正材料告知（已更新）", False)
    assert "共 2 项" in amended["body"]
    case = await Case.get(case_no=case_no)
    rows = await Notification.filter(topic="case.correction_needed", resident_id__isnull=False)
    assert len({r.event_id for r in rows}) == 1  # the first event's messages, rewritten; none of a second
    assert [r.channel for r in rows].count(NotifyChannel.INBOX) == 1
    assert "case.notice_amended" in await audit_of(case_no)
    # The same words again change nothing at all.
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "FORM"}], reason="请一并签名")
    assert r.status_code == 200
    assert (await audit_of(case_no)).count("case.notice_amended") == 1
    # One answer to the one notice.
    assert (await answer(live, me, case_no, "LEASE", "FORM"))["status"] == "accepted"
    assert (await Case.get(id=case.id)).correction_round == 1


async def test_the_dashboard_counts_repeat_notices_per_item_and_per_clerk(live: Live, platforms: Platforms,
                                                                          world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    approved = await answered_case(live, world, me)
    refused = await answered_case(live, world, me)
    request = (await ask(live, world.clerk, approved)).json()
    assert (await decide(live, world.admin, request["id"], True, "同意再次告知")).status_code == 200
    request = (await ask(live, world.clerk, refused)).json()
    assert (await decide(live, world.admin, request["id"], False, "不同意")).status_code == 200
    # Another item, told once: no repeat.
    form = await upload_id(live, me)
    simple = (await live.client.post(f"{MP}/cases", headers=me, json=application(
        world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))).json()["case_no"]
    assert (await act(live, world.clerk, simple, "request_correction", items=[{"code": "FORM"}])).status_code == 200

    r = await live.client.get(f"{STAFF}/halls/{world.halls['HX']}/dashboard", headers=world.admin)
    assert r.status_code == 200, r.text
    p = r.json()["period"]
    assert (p["notices"], p["repeat_notices"], p["repeat_requests_refused"], p["repeat_requests_pending"]) == (
        4, 1, 1, 0)
    assert [(i["item_code"], i["notices"], i["repeats"]) for i in p["notices_by_item"]] == [
        (RESIDENCE, 3, 1), (SIMPLE, 1, 0)]
    assert [(c["name"], c["notices"], c["repeats"], c["refused"]) for c in p["notices_by_clerk"]] == [
        ("hx.clerk", 4, 1, 1)]
    assert r.json()["today"]["repeat_notices"] == 1
    chart = r.json()["charts"]["notice_clerks"]
    assert "hx.clerk" in chart and "本期间再次告知（按工作人员）" in chart
    assert "居住证明开具" in r.json()["charts"]["notice_items"]
