"""Cases through the HTTP API: the whole life of a case, pre-review and the one-time notice, reuse,
the state machine's refusals, walk-ins, kiosks, privacy between residents, statistics and events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backend import db
from backend.audit.models import AuditEntry
from backend.cases import service as cases
from backend.cases.models import Case, CaseHistory, CaseMaterial, CaseStatus, CorrectionNotice, Evaluation
from backend.cases.statemachine import PAYMENT, RESIDENT, STAFF, SYSTEM, TABLE, Actor, transition
from backend.errors import DomainError
from backend.identity import service as identity
from backend.jobs.models import OutboxEvent
from tests.cases_support import (
    LI,
    LICENCE,
    RESIDENCE,
    SIMPLE,
    WANG,
    ZHANG,
    World,
    act,
    application,
    build_world,
    dumps,
    kiosk_code,
    kiosk_headers,
    png_bytes,
    resident,
    upload_id,
)
from tests.conftest import Live, Platforms


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    return {"files_dir": str(tmp_path / "files")}


@pytest.fixture
async def world(live: Live) -> World:
    return await build_world(live)


def this_year() -> dict[str, str]:
    from backend.cases.deadlines import today

    return {"from": f"{today().year}-01-01", "to": f"{today().year}-12-31"}


async def topics(case_no: str) -> list[str]:
    rows = await OutboxEvent.filter(ordering_key=f"case:{case_no}").order_by("seq")
    return [r.topic for r in rows]


# ---- the whole life -------------------------------------------------------------------------


async def test_whole_life_of_a_case_from_upload_to_evaluation(live: Live, platforms: Platforms, world: World
                                                              ) -> None:
    me = await resident(live, platforms, ZHANG)
    form, lease = await upload_id(live, me), await upload_id(live, me, png_bytes(1), "lease.png")
    body = application(world.halls["HX"], materials=[{"code": "FORM", "upload_id": form},
                                                     {"code": "LEASE", "upload_id": lease}],
                       delivery={"method": "post", "recipient": "张三丰", "phone": "13812345678",
                                 "address": "杭州市西湖区象山路1号3幢201室"})
    r = await live.client.post("/api/v1/mp/cases", json=body, headers=me)
    assert r.status_code == 201, r.text
    case = r.json()
    case_no = case["case_no"]
    assert case_no.startswith("330106011") and len(case_no) == 9 + 8 + 5
    # Pre-review: the ID card is missing, and the notice says so at once.
    assert case["status"] == "needs_correction"
    assert [i["code"] for i in case["corrections"][0]["items"]] == ["ID"]

    # The clerk adds to the same round's notice (the lease copy is unreadable)...
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "LEASE", "reason": "复印件不清晰"}],
                  reason="请一并带原件到窗口核对")
    assert r.status_code == 200, r.text
    notices = r.json()["corrections"]
    assert len(notices) == 1 and [i["code"] for i in notices[0]["items"]] == ["ID", "LEASE"]
    # The clerk's own words travel with the notice, and the resident sees them.
    r = await act(live, world.clerk, case_no, "request_correction", items=[{"code": "LEASE"}], reason="周六不办公")
    mine = (await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me)).json()
    assert mine["corrections"][0]["note"] == "请一并带原件到窗口核对\n周六不办公"
    assert len(mine["corrections"]) == 1

    # ...and an answer that leaves something out is refused with the list.
    id_card = await upload_id(live, me, png_bytes(2), "id.png")
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/corrections", headers=me,
                               json={"materials": [{"code": "ID", "upload_id": id_card}]})
    assert (r.status_code, r.json()["error"]["code"]) == (422, "case.correction_incomplete")
    assert [m["code"] for m in r.json()["error"]["details"]["missing"]] == ["LEASE"]
    new_lease = await upload_id(live, me, png_bytes(3), "lease2.png")
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/corrections", headers=me, json={
        "materials": [{"code": "ID", "upload_id": id_card}, {"code": "LEASE", "upload_id": new_lease}]})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "submitted"
    assert [m["superseded"] for m in r.json()["materials"] if m["code"] == "LEASE"] == [True, False]

    # Counter work: accept (at the hall's counter 3), review, approve (the certificate is issued), deliver by
    # post, close.
    from backend.catalog.models import Counter

    counter = await Counter.create(hall_id=world.halls["HX"], number=3, name="综合受理3号窗口", groups=["A"])
    r = await act(live, world.clerk, case_no, "accept", counter_id=counter.id)
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert r.json()["deadline"]["promised_due"] is not None
    assert (await act(live, world.clerk, case_no, "start_review")).json()["status"] == "in_review"
    r = await act(live, world.clerk, case_no, "approve", reason="符合条件")
    assert r.json()["status"] == "certificate_issued"
    cert = r.json()["certificates"][0]
    assert cert["cert_type"] == "居住证明" and cert["status"] == "genuine"
    r = await act(live, world.clerk, case_no, "deliver")
    assert (r.status_code, r.json()["error"]["code"]) == (422, "case.tracking_required")
    r = await act(live, world.clerk, case_no, "deliver", tracking_no="SF1234567890")
    assert r.json()["status"] == "delivered"
    assert (await act(live, world.clerk, case_no, "close")).json()["status"] == "closed"

    # The owner sees it whole: history with steps, reasons, tracking number and the certificate.
    mine = (await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me)).json()
    assert [h["to"] for h in mine["history"]] == [
        "submitted", "needs_correction", "submitted", "accepted", "in_review", "approved", "certificate_issued",
        "delivered", "closed"]
    assert mine["delivery"]["tracking_no"] == "SF1234567890"
    assert mine["delivery"]["address"] == "杭州市西湖区象山路1号3幢201室"
    assert mine["form"] == {"居住地址": "象山路1号3幢201室"}
    listed = (await live.client.get("/api/v1/mp/cases", headers=me)).json()["cases"]
    assert [c["case_no"] for c in listed] == [case_no]
    certs = (await live.client.get("/api/v1/mp/certificates", headers=me)).json()["certificates"]
    assert [c["cert_no"] for c in certs] == [cert["cert_no"]]

    # Rating: once; a bad one opens a rectification the hall admin closes in writing.
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/evaluation", headers=me,
                               json={"level": "不满意", "comment": "等待时间太长"})
    assert r.status_code == 201, r.text
    rect = r.json()["rectification"]
    assert rect["state"] == "open"
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/evaluation", headers=me, json={"level": "满意"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "evaluation.already_given")
    r = await live.client.post(f"/api/v1/staff/rectifications/{rect['id']}/close", headers=world.clerk,
                               json={"response": "已增设取件窗口，缩短等候时间。"})
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")  # hall admins only
    r = await live.client.post(f"/api/v1/staff/rectifications/{rect['id']}/close", headers=world.admin,
                               json={"response": "已增设取件窗口，缩短等候时间。"})
    assert r.status_code == 200, r.text
    mine = (await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me)).json()
    assert mine["evaluation"]["rectification"]["response"] == "已增设取件窗口，缩短等候时间。"
    stats = (await live.client.get("/api/v1/staff/evaluations", headers=world.admin,
                                   params={"hall_id": world.halls["HX"], **this_year()}))
    assert stats.status_code == 200, stats.text
    s = stats.json()
    assert s["hall"]["total"] == 1 and s["hall"]["levels"]["不满意"] == 1 and s["hall"]["satisfaction_rate"] == 0
    assert s["items"][0]["item_code"] == RESIDENCE and s["counters"][0]["counter_id"] == counter.id

    # Rows and events: every step in history and audit; events in order, keyed by case, no personal data.
    row = await Case.get(case_no=case_no)
    assert await CaseHistory.filter(case_id=row.id).count() == 9
    assert await AuditEntry.filter(action="case.transition", target_id=case_no).count() == 9
    assert await Evaluation.filter(case_id=row.id).count() == 1
    seen = await topics(case_no)
    for topic in ("case.submitted", "case.correction_needed", "case.approved", "case.certificate_issued",
                  "evaluation.received"):
        assert topic in seen
    assert seen.count("case.status_changed") == 9
    assert seen.count("case.correction_needed") == 3  # the notice, and its two amendments (a material, then a note)
    payloads = json.dumps([e.payload for e in await OutboxEvent.all()], ensure_ascii=False)
    for personal in (ZHANG["name"], ZHANG["id_number"], ZHANG["phone"], "象山路"):
        assert personal not in payloads


async def test_one_time_notice_lists_every_missing_material(live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    r = await live.client.post("/api/v1/mp/cases", json=application(world.halls["HX"]), headers=me)
    assert r.status_code == 201, r.text
    notice = r.json()["corrections"]
    # Every required entry, none of the optional ones, in one notice.
    assert len(notice) == 1
    assert [(i["code"], i["name"]) for i in notice[0]["items"]] == [("ID", "居民身份证"), ("FORM", "申请表"),
                                                                    ("LEASE", "租赁合同")]
    history = r.json()["history"]
    assert history[-1]["reason"] == "请补正：居民身份证、申请表、租赁合同"
    row = await Case.get(case_no=r.json()["case_no"])
    assert await CorrectionNotice.filter(case_id=row.id).count() == 1
    event = await OutboxEvent.get(topic="case.correction_needed")
    assert event.payload["codes"] == ["ID", "FORM", "LEASE"] and event.ordering_key == f"case:{row.case_no}"


async def test_complete_application_waits_for_acceptance_and_can_be_withdrawn_before(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    r = await live.client.post("/api/v1/mp/cases", headers=me,
                               json=application(world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))
    assert r.json()["status"] == "submitted"
    case_no = r.json()["case_no"]
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/withdraw", headers=me, json={"reason": "不需要了"})
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    # Once accepted, withdrawal is no longer the resident's to make.
    r = await live.client.post("/api/v1/mp/cases", headers=me,
                               json=application(world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))
    case_no = r.json()["case_no"]
    assert (await act(live, world.clerk, case_no, "accept")).status_code == 200
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/withdraw", headers=me, json={})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "case.illegal_transition")
    assert (await Case.get(case_no=case_no)).status == CaseStatus.ACCEPTED


# ---- material reuse and e-certificates ------------------------------------------------------


async def test_accepted_materials_are_reused_and_certificates_stand_for_materials(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    ids = {code: await upload_id(live, me) for code in ("ID", "FORM", "LEASE")}
    first = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], materials=[{"code": c, "upload_id": u} for c, u in ids.items()]))).json()
    # Not offered before a clerk accepted them.
    library = (await live.client.get("/api/v1/mp/materials", headers=me)).json()
    assert library["materials"] == []
    for action in ("accept", "start_review", "approve"):
        assert (await act(live, world.clerk, first["case_no"], action)).status_code == 200
    library = (await live.client.get("/api/v1/mp/materials", headers=me, params={"item": LICENCE})).json()
    offered = {m["name"]: m for m in library["materials"]}
    assert set(offered) == {"居民身份证", "申请表", "租赁合同"}
    assert offered["租赁合同"]["suggested_for"] == ["LEASE"] and offered["租赁合同"]["from_case"] == first["case_no"]
    assert library["certificates"][0]["cert_type"] == "居住证明"

    # A second case reuses the lease and form without uploading again.
    r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(world.halls["HX"], LICENCE, [
        {"code": "LEASE", "reuse_id": offered["租赁合同"]["reuse_id"]},
        {"code": "FORM", "reuse_id": offered["申请表"]["reuse_id"]},
        {"code": "ID", "upload_id": ids["ID"]},
    ]))
    assert r.status_code == 201, r.text
    second = r.json()
    assert second["status"] == "submitted"
    assert {m["code"]: m["source"] for m in second["materials"]} == {"LEASE": "reuse", "FORM": "reuse",
                                                                     "ID": "upload"}
    assert [m["file"]["upload_id"] for m in second["materials"] if m["code"] == "LEASE"] == [ids["LEASE"]]

    # A certificate of the type a checklist entry names stands for it; another type does not.
    cert_id = library["certificates"][0]["id"]
    r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(world.halls["HX"], materials=[
        {"code": "ID", "certificate_id": cert_id}]))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "case.certificate_not_usable")

    # Another resident can neither reuse nor attach what is not theirs.
    li = await resident(live, platforms, LI)
    r = await live.client.post("/api/v1/mp/cases", headers=li, json=application(world.halls["HX"], materials=[
        {"code": "LEASE", "reuse_id": offered["租赁合同"]["reuse_id"]}]))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "case.material_not_found")
    r = await live.client.post("/api/v1/mp/cases", headers=li, json=application(world.halls["HX"], materials=[
        {"code": "LEASE", "upload_id": ids["LEASE"]}]))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "upload.not_found")
    # Not even "not usable": another person's certificate is as unknown as one that does not exist.
    for someone_elses in (cert_id, cert_id + 1000):
        r = await live.client.post("/api/v1/mp/cases", headers=li, json=application(
            world.halls["HX"], materials=[{"code": "ID", "certificate_id": someone_elses}]))
        assert (r.status_code, r.json()["error"]["code"]) == (404, "case.certificate_not_found")

    # Statistics: the second case met two required materials by reuse and one fresh.
    stats = await live.client.get("/api/v1/staff/stats/materials", headers=world.admin,
                                  params={"hall_id": world.halls["HX"], **this_year()})
    assert stats.status_code == 200, stats.text
    per_item = {i["item_code"]: i for i in stats.json()["items"]}
    assert (per_item[LICENCE]["reused"], per_item[LICENCE]["fresh"], per_item[LICENCE]["certificate"]) == (2, 1, 0)
    assert per_item[RESIDENCE]["fresh"] == 3
    r = await live.client.get("/api/v1/staff/stats/materials", headers=world.clerk,
                              params={"hall_id": world.halls["HX"], **this_year()})
    assert r.status_code == 403


async def test_an_e_certificate_satisfies_a_material_and_counts_as_such(
        live: Live, platforms: Platforms, world: World) -> None:
    """A certificate of the type the checklist names (here 居民身份证, made directly) stands in for the card."""
    me = await resident(live, platforms, ZHANG)
    uploads = {c: await upload_id(live, me) for c in ("ID", "FORM", "LEASE")}
    # First a certificate of type 居住证明; then an item whose ID entry accepts that type.
    first = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], materials=[{"code": c, "upload_id": u} for c, u in uploads.items()]))).json()
    for action in ("accept", "start_review", "approve"):
        await act(live, world.clerk, first["case_no"], action)
    cert_id = (await live.client.get("/api/v1/mp/certificates", headers=me)).json()["certificates"][0]["id"]
    from backend.catalog import service as catalog
    from backend.catalog.schemas import ItemIn
    from tests.cases_support import item_row

    await catalog.upsert_item(row=ItemIn.model_validate(item_row(SIMPLE, "困难证明开具", materials=[
        {"code": "RES", "name": "居住证明", "form": "original", "certificate_type": "居住证明"}],
        statutory_days=3, promised_days=2)))
    r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], SIMPLE, [{"code": "RES", "certificate_id": cert_id}]))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "submitted" and r.json()["materials"][0]["source"] == "certificate"
    stats = (await live.client.get("/api/v1/staff/stats/materials", headers=world.admin, params={
        "hall_id": world.halls["HX"], **this_year()})).json()
    assert {i["item_code"]: i["certificate"] for i in stats["items"]}[SIMPLE] == 1


# ---- walk-ins and kiosks --------------------------------------------------------------------


async def test_walk_in_case_reaches_the_residents_mini_program(live: Live, platforms: Platforms, world: World
                                                               ) -> None:
    body = {**application(world.halls["HX"], materials=[{"code": "ID", "paper": True},
                                                        {"code": "FORM", "paper": True}]),
            "applicant_name": WANG["name"], "applicant_id_number": WANG["id_number"]}
    r = await live.client.post("/api/v1/staff/cases", json=body, headers=world.other_clerk)
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")  # not their hall
    r = await live.client.post("/api/v1/staff/cases", json=body, headers=world.clerk)
    assert r.status_code == 201, r.text
    case_no = r.json()["case_no"]
    assert r.json()["status"] == "needs_correction" and r.json()["applicant"]["id_number"].count("*") == 10
    # Wang binds his ID number later; the case is in his mini program, and he answers the correction there.
    wang = await resident(live, platforms, WANG)
    listed = (await live.client.get("/api/v1/mp/cases", headers=wang)).json()["cases"]
    assert [c["case_no"] for c in listed] == [case_no] and listed[0]["channel"] == "counter"
    lease = await upload_id(live, wang)
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/corrections", headers=wang,
                               json={"materials": [{"code": "LEASE", "upload_id": lease}]})
    assert r.status_code == 200 and r.json()["status"] == "submitted", r.text
    # Paper is for the counter only.
    r = await live.client.post("/api/v1/mp/cases", headers=wang, json=application(
        world.halls["HX"], SIMPLE, [{"code": "FORM", "paper": True}]))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "case.paper_counter_only")


async def test_kiosk_applies_for_the_resident_who_shows_their_kiosk_code_and_shows_progress(
        live: Live, platforms: Platforms, world: World) -> None:
    device, secret = await identity.register_kiosk(hall_code="HX", name="一楼自助机", keyring=live.app.ctx.keyring)
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    body = dumps(application(world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))
    r = await live.client.post("/api/v1/kiosk/cases", content=body,
                               headers=kiosk_headers(device.device_id, secret, "POST", "/api/v1/kiosk/cases", body))
    assert (r.status_code, r.json()["error"]["code"]) == (401, "kiosk_code.missing")
    r = await live.client.post("/api/v1/kiosk/cases", content=body, headers=kiosk_headers(
        device.device_id, secret, "POST", "/api/v1/kiosk/cases", body, {"X-Resident-Code": await kiosk_code(live, me)}))
    assert r.status_code == 201, r.text
    assert r.json()["channel"] == "kiosk" and r.json()["status"] == "submitted"
    path = f"/api/v1/kiosk/progress/{r.json()['progress_token']}"
    shown = await live.client.get(path, headers=kiosk_headers(device.device_id, secret, "GET", path))
    assert shown.status_code == 200, shown.text
    assert shown.json()["applicant"] == "张*丰" and ZHANG["id_number"] not in shown.text
    # A kiosk applies only in its own hall.
    other = dumps(application(world.halls["HY"], SIMPLE, [{"code": "FORM", "upload_id": form}]))
    code = await kiosk_code(live, me)
    r = await live.client.post("/api/v1/kiosk/cases", content=other, headers=kiosk_headers(
        device.device_id, secret, "POST", "/api/v1/kiosk/cases", other, {"X-Resident-Code": code}))
    assert (r.status_code, r.json()["error"]["code"]) == (422, "case.hall_not_serving")


# ---- privacy between residents and halls ----------------------------------------------------


async def test_a_resident_cannot_read_or_act_on_another_residents_case_or_upload(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    li = await resident(live, platforms, LI)
    mine = await upload_id(live, me)
    case_no = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": mine}]))).json()["case_no"]
    attempts = [
        ("GET", f"/api/v1/mp/cases/{case_no}", None, "case.not_found"),
        ("POST", f"/api/v1/mp/cases/{case_no}/withdraw", {}, "case.not_found"),
        ("POST", f"/api/v1/mp/cases/{case_no}/corrections", {"materials": [{"code": "FORM", "upload_id": mine}]},
         "case.not_found"),
        ("POST", f"/api/v1/mp/cases/{case_no}/evaluation", {"level": "满意"}, "case.not_found"),
        ("GET", f"/api/v1/mp/uploads/{mine}", None, "upload.not_found"),
        ("GET", f"/api/v1/mp/uploads/{mine}/content", None, "upload.not_found"),
        ("POST", "/api/v1/mp/complaints", {"kind": "complaint", "hall_id": world.halls["HX"], "case_no": case_no,
                                           "content": "别人的办件"}, "case.not_found"),
    ]
    for method, path, payload, code in attempts:
        r = await live.client.request(method, path, json=payload, headers=li)
        assert (r.status_code, r.json()["error"]["code"]) == (404, code), (path, r.text)
    assert (await live.client.get("/api/v1/mp/cases", headers=li)).json()["cases"] == []
    assert (await Case.get(case_no=case_no)).status == CaseStatus.SUBMITTED
    # The owner reads both.
    assert (await live.client.get(f"/api/v1/mp/cases/{case_no}", headers=me)).status_code == 200
    content = await live.client.get(f"/api/v1/mp/uploads/{mine}/content", headers=me)
    assert content.status_code == 200 and content.content.startswith(b"%PDF-")
    # A resident without real-name binding cannot apply.
    anonymous = await resident(live, platforms)
    r = await live.client.post("/api/v1/mp/cases", headers=anonymous, json=application(world.halls["HX"], SIMPLE))
    assert (r.status_code, r.json()["error"]["code"]) == (403, "identity.not_verified")


async def test_staff_act_only_in_their_hall_and_the_work_list_filters(live: Live, platforms: Platforms,
                                                                       world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    nos = []
    for _ in range(2):
        r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(
            world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))
        nos.append(r.json()["case_no"])
    r = await act(live, world.other_clerk, nos[0], "accept")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "auth.forbidden")
    r = await live.client.get(f"/api/v1/staff/cases/{nos[0]}", headers=world.other_clerk)
    assert r.status_code == 403
    assert (await act(live, world.clerk, nos[0], "accept")).status_code == 200
    listing = await live.client.get("/api/v1/staff/cases", headers=world.clerk, params={"status": "accepted"})
    assert [c["case_no"] for c in listing.json()["cases"]] == [nos[0]]
    listing = await live.client.get("/api/v1/staff/cases", headers=world.clerk, params={"item": SIMPLE})
    assert listing.json()["total"] == 2
    assert (await live.client.get("/api/v1/staff/cases", headers=world.other_clerk)).json()["total"] == 0
    r = await live.client.get("/api/v1/staff/cases", headers=world.other_clerk, params={"hall_id": world.halls["HX"]})
    assert r.status_code == 403
    await Case.filter(case_no=nos[0]).update(warning_level="yellow")
    listing = await live.client.get("/api/v1/staff/cases", headers=world.clerk, params={"warning": "yellow"})
    assert [c["case_no"] for c in listing.json()["cases"]] == [nos[0]]
    # Scanning the case QR at the counter resolves to the case and what may be done.
    token = (await live.client.get(f"/api/v1/mp/cases/{nos[1]}", headers=me)).json()["progress_token"]
    scan = await live.client.post("/api/v1/staff/scan", json={"code": f"https://x/q/{token}"}, headers=world.clerk)
    assert scan.status_code == 200, scan.text
    assert scan.json()["kind"] == "case" and scan.json()["case"]["actions"] == ["accept", "request_correction",
                                                                                 "reject"]
    assert (await live.client.post("/api/v1/staff/scan", json={"code": token},
                                   headers=world.other_clerk)).status_code == 403


async def test_a_case_is_accepted_only_at_a_counter_of_its_own_hall(live: Live, platforms: Platforms,
                                                                    world: World) -> None:
    """The accepting counter is kept for the ratings per counter: another hall's counter (or none at all) is
    refused as not found in this hall, and the case stays as it was."""
    from backend.catalog.models import Counter

    mine = await Counter.create(hall_id=world.halls["HX"], number=1, name="综合受理1号窗口", groups=["A"])
    theirs = await Counter.create(hall_id=world.halls["HY"], number=1, name="综合受理1号窗口", groups=["A"])
    me = await resident(live, platforms, ZHANG)
    case_no = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": await upload_id(live, me)}]))).json()["case_no"]
    for counter_id in (theirs.id, theirs.id + mine.id + 1):
        r = await act(live, world.clerk, case_no, "accept", counter_id=counter_id)
        assert (r.status_code, r.json()["error"]["code"]) == (404, "catalog.counter_not_found"), r.text
    case = await Case.get(case_no=case_no)
    assert (case.status, case.counter_id) == (CaseStatus.SUBMITTED, None)
    r = await act(live, world.clerk, case_no, "accept", counter_id=mine.id)
    assert r.status_code == 200, r.text
    case = await Case.get(case_no=case_no)
    assert (case.status, case.counter_id) == (CaseStatus.ACCEPTED, mine.id)


# ---- the state machine ----------------------------------------------------------------------


ACTION_TARGET = {
    "accept": CaseStatus.ACCEPTED, "start_review": CaseStatus.IN_REVIEW, "approve": CaseStatus.APPROVED,
    "reject": CaseStatus.REJECTED, "issue_certificate": CaseStatus.CERTIFICATE_ISSUED,
    "deliver": CaseStatus.DELIVERED, "close": CaseStatus.CLOSED,
}


async def _case_in(status: CaseStatus, world: World, live: Live, platforms: Platforms, me: dict[str, str],
                   form: int) -> str:
    r = await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))
    case_no = str(r.json()["case_no"])
    await Case.filter(case_no=case_no).update(status=status)
    return case_no


async def test_every_illegal_counter_action_is_refused_and_changes_nothing(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    refused = 0
    for status in CaseStatus:
        case_no = await _case_in(status, world, live, platforms, me, form)
        before = await Case.get(case_no=case_no)
        history = await CaseHistory.filter(case_id=before.id).count()
        events = await OutboxEvent.all().count()
        if status not in (CaseStatus.SUBMITTED, CaseStatus.NEEDS_CORRECTION, CaseStatus.ACCEPTED,
                          CaseStatus.IN_REVIEW):
            r = await act(live, world.clerk, case_no, "request_correction", items=[])
            assert (r.status_code, r.json()["error"]["code"]) == (409, "case.illegal_transition"), status
            refused += 1
        for action, target in ACTION_TARGET.items():
            legal = (status, target) in TABLE and STAFF in TABLE[(status, target)].actors
            if action == "start_review":
                legal = status == CaseStatus.ACCEPTED
            if action == "issue_certificate":
                legal = False  # SIMPLE issues no certificate
            if action == "deliver" and status == CaseStatus.APPROVED:
                legal = True
            if legal:
                continue
            r = await act(live, world.clerk, case_no, action, reason="理由")
            assert (r.status_code, r.json()["error"]["code"]) == (409, "case.illegal_transition"), (status, action)
            refused += 1
        after = await Case.get(case_no=case_no)
        assert (after.status, after.updated_at) == (before.status, before.updated_at)
        assert await CaseHistory.filter(case_id=before.id).count() == history
        assert await OutboxEvent.all().count() == events
    assert refused > 60


async def test_transition_table_refuses_every_pair_and_actor_it_does_not_list(
        live: Live, platforms: Platforms, world: World) -> None:
    """Every (from, to, actor) outside the table, straight through the one function."""
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    case_no = await _case_in(CaseStatus.DRAFT, world, live, platforms, me, form)
    checked = 0
    for frm in CaseStatus:
        for to in CaseStatus:
            for kind in (RESIDENT, STAFF, SYSTEM, PAYMENT):
                rule = TABLE.get((frm, to))
                if rule is not None and kind in rule.actors:
                    continue
                await Case.filter(case_no=case_no).update(status=frm)
                case = await Case.get(case_no=case_no)
                async with db.transaction() as tx:
                    with pytest.raises(DomainError) as exc:
                        await transition(case, to, actor=Actor(kind, "1"), using_db=tx)
                assert exc.value.code == "case.illegal_transition"
                assert (await Case.get(case_no=case_no)).status == frm
                checked += 1
    assert checked > 500
    # Guards: a withdrawal after acceptance and an in_review without the fee paid are refused too.
    await Case.filter(case_no=case_no).update(status=CaseStatus.NEEDS_CORRECTION, accepted_at=db_now())
    case = await Case.get(case_no=case_no)
    async with db.transaction() as tx:
        with pytest.raises(DomainError):
            await transition(case, CaseStatus.WITHDRAWN, actor=Actor(RESIDENT, "1"), using_db=tx)
    await Case.filter(case_no=case_no).update(status=CaseStatus.ACCEPTED, has_fees=True)
    case = await Case.get(case_no=case_no)
    async with db.transaction() as tx:
        with pytest.raises(DomainError):
            await transition(case, CaseStatus.IN_REVIEW, actor=Actor(STAFF, "1"), using_db=tx)


def db_now() -> Any:
    from backend import clock

    return clock.now()


async def test_fees_wait_for_payment_and_mark_paid_resumes(live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    mats = [{"code": c, "upload_id": await upload_id(live, me)} for c in ("ID", "FORM", "LEASE")]
    case_no = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], LICENCE, mats))).json()["case_no"]
    await act(live, world.clerk, case_no, "accept")
    r = await act(live, world.clerk, case_no, "start_review")
    assert r.json()["status"] == "awaiting_payment" and r.json()["deadline"]["paused"] is True
    event = await OutboxEvent.get(topic="case.awaiting_payment")
    assert event.payload == {"case_id": event.payload["case_id"], "case_no": case_no, "amount_fen": 1250}
    r = await act(live, world.clerk, case_no, "approve")
    assert (r.status_code, r.json()["error"]["code"]) == (409, "case.illegal_transition")
    async with db.transaction() as tx:
        await cases.mark_paid(case_no=case_no, actor="order:P1", using_db=tx)
    row = await Case.get(case_no=case_no)
    assert row.status == CaseStatus.IN_REVIEW and row.paid_at is not None and row.paused_since is None
    last = await CaseHistory.filter(case_id=row.id).order_by("-id").first()
    assert last is not None and (last.actor_kind, last.actor_id, last.step) == ("payment", "order:P1", "已缴费，审查")
    # A retried payment notification changes nothing.
    async with db.transaction() as tx:
        await cases.mark_paid(case_no=case_no, actor="order:P1", using_db=tx)
    assert await CaseHistory.filter(case_id=row.id).count() == 4
    async with db.transaction() as tx:
        with pytest.raises(DomainError) as exc:
            await cases.mark_paid(case_no="nope", actor="order:P2", using_db=tx)
    assert exc.value.code == "case.not_found"
    assert (await act(live, world.clerk, case_no, "approve")).json()["status"] == "certificate_issued"


async def test_case_numbers_are_unique_per_hall_and_day(live: Live, platforms: Platforms, world: World) -> None:
    import asyncio

    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    body = application(world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}])
    answers = await asyncio.gather(*[live.client.post("/api/v1/mp/cases", headers=me, json=body) for _ in range(8)])
    numbers = sorted(a.json()["case_no"] for a in answers)
    assert len(set(numbers)) == 8
    assert [int(n[-5:]) for n in numbers] == list(range(1, 9))
    other = await live.client.post("/api/v1/mp/cases", headers=me, json={**body, "hall_id": world.halls["HY"]})
    assert other.json()["case_no"].startswith("330106012") and other.json()["case_no"].endswith("00001")


async def test_complaints_are_answered_and_warned_about(live: Live, platforms: Platforms, world: World) -> None:
    from datetime import timedelta

    from backend.cases import evaluation

    me = await resident(live, platforms, ZHANG)
    r = await live.client.post("/api/v1/mp/complaints", headers=me, json={
        "kind": "question", "hall_id": world.halls["HX"], "content": "居住证明可以邮寄吗？"})
    assert r.status_code == 201, r.text
    complaint = r.json()
    due = complaint["due_on"]
    from datetime import date

    warned = await evaluation.warn_replies(on=date.fromisoformat(due) + timedelta(days=1))
    assert warned["complaints"] == [(complaint["id"], "yellow"), (complaint["id"], "red")]
    assert await evaluation.warn_replies(on=date.fromisoformat(due) + timedelta(days=2)) == {
        "complaints": [], "rectifications": []}
    listing = await live.client.get("/api/v1/staff/complaints", headers=world.clerk,
                                    params={"hall_id": world.halls["HX"], "warning": "red"})
    assert [c["id"] for c in listing.json()["complaints"]] == [complaint["id"]]
    r = await live.client.post(f"/api/v1/staff/complaints/{complaint['id']}/answer", headers=world.other_clerk,
                               json={"answer": "可以。"})
    assert r.status_code == 403
    r = await live.client.post(f"/api/v1/staff/complaints/{complaint['id']}/answer", headers=world.clerk,
                               json={"answer": "可以，申请时选择邮寄送达即可。"})
    assert r.status_code == 200 and r.json()["state"] == "closed"
    mine = (await live.client.get("/api/v1/mp/complaints", headers=me)).json()["complaints"]
    assert mine[0]["answer"] == "可以，申请时选择邮寄送达即可。"
    assert await OutboxEvent.filter(topic="complaint.deadline_warning").count() == 2


async def test_rating_waits_for_completion(live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    form = await upload_id(live, me)
    case_no = (await live.client.post("/api/v1/mp/cases", headers=me, json=application(
        world.halls["HX"], SIMPLE, [{"code": "FORM", "upload_id": form}]))).json()["case_no"]
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/evaluation", headers=me, json={"level": "非常满意"})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "evaluation.not_completed")
    for action in ("accept", "start_review", "approve"):
        await act(live, world.clerk, case_no, action)
    r = await live.client.post(f"/api/v1/mp/cases/{case_no}/evaluation", headers=me, json={"level": "非常满意"})
    assert r.status_code == 201 and r.json()["rectification"] is None
    event = await OutboxEvent.get(topic="evaluation.received")
    assert event.payload["level"] == 5 and event.payload["case_no"] == case_no
    assert await CaseMaterial.filter(case__case_no=case_no).count() == 1


# ---- progress behind the QR code ------------------------------------------------------------


async def test_public_progress_is_masked_and_forged_tokens_are_404_then_limited(
        live: Live, platforms: Platforms, world: World) -> None:
    me = await resident(live, platforms, ZHANG)
    mats = [{"code": c, "upload_id": await upload_id(live, me)} for c in ("ID", "FORM", "LEASE")]
    body = application(world.halls["HX"], materials=mats, delivery={
        "method": "post", "recipient": "张三丰", "phone": "13812345678", "address": "杭州市西湖区象山路1号3幢201室"})
    case = (await live.client.post("/api/v1/mp/cases", headers=me, json=body)).json()
    for action, extra in (("accept", {}), ("start_review", {}), ("approve", {}),
                          ("deliver", {"tracking_no": "SF1234567890"})):
        assert (await act(live, world.clerk, case["case_no"], action, **extra)).status_code == 200
    r = await live.client.get(f"/api/v1/progress/{case['progress_token']}")
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["item"] == {"name": "居住证明开具"} and shown["status"] == "delivered"
    assert shown["applicant"] == "张*丰" and shown["tracking_no"] == "SF1******890"
    assert [h["step"] for h in shown["history"]] == ["提交申请", "受理", "审查", "审批通过", "电子证照已签发",
                                                     "办理结果已送达"]
    assert all(set(h) == {"at", "step", "status"} for h in shown["history"])  # dates and steps, no reasons
    assert shown["deadline"]["promised_days"] == 5 and shown["deadline"]["promised_due"]
    for personal in (ZHANG["name"], ZHANG["id_number"], ZHANG["phone"], "象山路", "居住地址"):
        assert personal not in r.text
    # The owner sees the same case whole in the mini program.
    whole = (await live.client.get(f"/api/v1/mp/cases/{case['case_no']}", headers=me)).json()
    assert whole["applicant"]["id_number"] == ZHANG["id_number"] and whole["form"]["居住地址"]
    # The case number alone opens nothing: there is no route by number outside the owner's own.
    assert (await live.client.get(f"/api/v1/progress/{case['case_no']}")).status_code == 404
    token = case["progress_token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    codes = [(await live.client.get(f"/api/v1/progress/{forged}")).status_code for _ in range(19)]
    assert set(codes) == {404}
    r = await live.client.get(f"/api/v1/progress/{token}")
    assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")


async def test_every_cases_route_is_documented(live: Live) -> None:
    spec = (await live.client.get("/docs/openapi.json")).json()
    wanted = {
        "/api/v1/mp/uploads": "post", "/api/v1/mp/materials": "get", "/api/v1/mp/cases": "post",
        "/api/v1/mp/cases/{case_no}": "get", "/api/v1/mp/cases/{case_no}/corrections": "post",
        "/api/v1/mp/cases/{case_no}/withdraw": "post", "/api/v1/mp/cases/{case_no}/evaluation": "post",
        "/api/v1/mp/complaints": "post", "/api/v1/mp/certificates": "get",
        "/api/v1/staff/cases": "get", "/api/v1/staff/cases/{case_no}/transitions": "post",
        "/api/v1/staff/stats/materials": "get", "/api/v1/staff/evaluations": "get",
        "/api/v1/staff/rectifications/{rectification_id}/close": "post",
        "/api/v1/progress/{token}": "get", "/api/v1/certificates/verify/{token}": "get",
        "/api/v1/kiosk/progress/{token}": "get", "/api/v1/kiosk/cases": "post",
    }
    for path, method in wanted.items():
        operation = spec["paths"][path][method]
        assert operation["summary"] and operation["tags"], path
