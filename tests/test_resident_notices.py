"""Residents hear about everything that concerns them: each event from the flow that makes it, through the
HTTP API where there is one, to the resident's inbox (title and body with the values), their WeChat when
they consented, and a text message when the notice is required and nothing else may carry it."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from backend import clock, db
from backend.booking import handlers as booking_tasks
from backend.catalog.models import Hall, OpeningHours
from backend.jobs import outbox
from backend.jobs.models import OutboxEvent
from backend.jobs.outbox import Registry
from backend.jobs.topics import catalogue
from backend.jobs.worker import Worker, WorkerConfig
from notifications import handlers, render
from payments import events as payment_events
from payments import handlers as payment_handlers
from tests.cases_support import LI, LICENCE, SIMPLE, ZHANG, World, act, application, build_world, upload_id
from tests.conftest import Live, Platforms
from tests.payments_support import payer, start_payment, wire
from tests.test_identity import auth, wechat_login

HALL = "转塘街道便民服务中心"  # hall HX of build_world
T = render.load().templates
MONDAY_9AM = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # Monday 2 March 2026, 09:00 in Shanghai
TUESDAY = date(2026, 3, 3)


@dataclass
class Resident:
    headers: dict[str, str]
    openid: str


@dataclass
class Day:
    live: Live
    platforms: Platforms
    world: World
    worker: Worker
    clock: clock.FrozenClock

    @property
    def hall_id(self) -> int:
        return self.world.halls["HX"]

    async def drain(self, rounds: int = 40) -> None:
        for _ in range(rounds):
            if not await self.worker.run_once():
                return

    async def resident(self, person: dict[str, str] = ZHANG) -> Resident:
        """A WeChat resident with verified real-name data (ZHANG: phone 138 1234 5678 on record)."""
        openid = f"o_{uuid.uuid4().hex[:12]}"
        headers = auth(await wechat_login(self.live, self.platforms, openid))
        r = await self.live.client.put("/api/v1/mp/me/real-name", json=person, headers=headers)
        assert r.status_code == 200, r.text
        return Resident(headers=headers, openid=openid)

    async def consent(self, who: Resident, *keys: str) -> None:
        results = {T[k].wechat["template_id"]: "accept" for k in keys}  # type: ignore[index]
        r = await self.live.client.post("/api/v1/mp/subscriptions", json={"channel": "wechat", "results": results},
                                        headers=who.headers)
        assert r.status_code == 200, r.text

    async def inbox(self, who: Resident, topic: str | None = None) -> list[dict[str, Any]]:
        r = await self.live.client.get("/api/v1/mp/inbox", headers=who.headers)
        assert r.status_code == 200, r.text
        return [i for i in r.json()["items"] if topic is None or i["topic"] == topic]

    async def slot(self, day: date = TUESDAY, at: str = "09:00") -> int:
        r = await self.live.client.get(f"/api/v1/halls/{self.hall_id}/availability",
                                       params={"item": SIMPLE, "date": day.isoformat()})
        assert r.status_code == 200, r.text
        return next(int(s["slot_id"]) for s in r.json()["slots"] if s["starts_at"][11:16] == at)

    async def book(self, who: Resident, day: date = TUESDAY) -> dict[str, Any]:
        r = await self.live.client.post("/api/v1/mp/appointments", json={"slot_id": await self.slot(day)},
                                        headers={**who.headers, "Idempotency-Key": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        return dict(r.json())

    def wechat_sent(self, key: str) -> list[dict[str, str]]:
        template_id = T[key].wechat["template_id"]  # type: ignore[index]
        return [{k: v["value"] for k, v in m["data"].items()} for m in self.platforms.wechat.sent
                if m["template_id"] == template_id]


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    # The day runs on a frozen clock across days: logins last the whole test (their lifetime is not under test).
    return {"files_dir": str(tmp_path / "files"), "access_token_ttl": 14 * 86400, "staff_token_ttl": 14 * 86400}


@pytest.fixture
async def day(live: Live, platforms: Platforms, frozen_clock: clock.FrozenClock) -> AsyncIterator[Day]:
    frozen_clock.set(MONDAY_9AM)
    wire(platforms, live)
    world = await build_world(live)
    hall = await Hall.get(id=world.halls["HX"])
    for weekday in range(5):  # set-up data: the hall's hours (the hall set-up API is another part's)
        await OpeningHours.create(hall=hall, weekday=weekday, opens=time(9), closes=time(12))
    reg = Registry()
    handlers.register(reg)
    # Payments' own reactions: a paid case goes on, a requested refund goes to the platform.
    reg.on(payment_events.PAYMENT_SUCCEEDED)(payment_handlers.case_paid)
    reg.on(payment_events.PAYMENT_REFUND_REQUESTED)(payment_handlers.refund_requested)
    worker = Worker(WorkerConfig(lease_seconds=30, backoff_base=0, backoff_max=0, poll_seconds=0.05), handlers=reg)
    try:
        yield Day(live=live, platforms=platforms, world=world, worker=worker, clock=frozen_clock)
        await assert_payloads_as_listed()
    finally:
        await handlers.current()[1].aclose()


async def assert_payloads_as_listed() -> None:
    """Every event the flow wrote carries only the payload keys its events.py lists, and no personal data."""
    cat = catalogue()
    for event in await OutboxEvent.all():
        topic = cat[event.topic]
        assert set(event.payload) <= set(topic.payload), (event.topic, sorted(set(event.payload) - set(topic.payload)))
        text = json.dumps(event.payload, ensure_ascii=False)
        for personal in (ZHANG["name"], ZHANG["id_number"], ZHANG["phone"], "SF1234567890", "象山路"):
            assert personal not in text, event.topic


def sms_to_zhang(platforms: Platforms, code: str) -> list[dict[str, str]]:
    return [m["params"] for m in platforms.sms.sent if m["template_code"] == code and m["phone"] == ZHANG["phone"]]


# ---- appointments --------------------------------------------------------------------------------


async def test_a_resident_cancelling_is_told_it_was_their_own_doing_and_no_text_is_sent(day: Day) -> None:
    me = await day.resident()
    appointment = await day.book(me)
    day.clock.advance(3600)  # 10:00
    r = await day.live.client.delete(f"/api/v1/mp/appointments/{appointment['id']}", headers=me.headers)
    assert r.status_code == 204
    await day.drain()
    (entry,) = await day.inbox(me, "appointment.cancelled")
    assert entry["title"] == "预约已取消"
    assert entry["body"] == (f"您已于2026年03月02日 10:00取消了“困难证明开具”的预约（2026年03月03日 09:00，{HALL}）。"
                             "如仍需办理，可在小程序中重新预约。")
    event = await OutboxEvent.get(topic="appointment.cancelled")
    assert event.payload["by"] == "resident"
    assert sms_to_zhang(day.platforms, "SMS_APPT_CANCELLED_BY_HALL") == []


async def test_the_hall_cancelling_is_a_required_urgent_notice_with_its_reason_and_a_rebooking_link(
        day: Day) -> None:
    """The hall's side (closures cancelling their appointments) emits the agreed payload; this is the notice."""
    me, consenting = await day.resident(), await day.resident(LI)
    await day.consent(consenting, "appointment.cancelled.by_hall")
    mine, theirs = await day.book(me), await day.book(consenting)
    day.clock.set(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))  # 23:00: quiet hours, but they must not come
    for who, appointment in ((me, mine), (consenting, theirs)):
        resident_id = (await day.live.client.get("/api/v1/mp/me", headers=who.headers)).json()["id"]
        async with db.transaction() as tx:
            await outbox.emit("appointment.cancelled", {
                "appointment_id": appointment["id"], "resident_id": resident_id, "hall_id": day.hall_id,
                "item_code": SIMPLE, "starts_at": "2026-03-03T01:00:00+00:00", "ends_at": "2026-03-03T01:30:00+00:00",
                "by": "hall", "reason": "停电检修"}, using_db=tx)
    await day.drain()
    for who in (me, consenting):
        (entry,) = await day.inbox(who, "appointment.cancelled")
        assert entry["title"] == "大厅已取消您的预约"
        assert entry["body"] == (f"因停电检修，{HALL}取消了您预约的“困难证明开具”（2026年03月03日 09:00），请勿前往。"
                                 "给您带来不便，敬请谅解。您可点此重新预约其他时段。")
        path, _, query = entry["page"].partition("?")
        assert path == "pages/appointment/book"
        assert parse_qs(query) == {"hall_id": [str(day.hall_id)], "item": [SIMPLE]}
    # Without consent it goes by text, at once despite the hour; with consent, on WeChat only.
    assert sms_to_zhang(day.platforms, "SMS_APPT_CANCELLED_BY_HALL") == [
        {"hall": HALL, "item": "困难证明开具", "time": "2026年03月03日 09:00", "reason": "停电检修"}]
    assert day.wechat_sent("appointment.cancelled.by_hall") == [
        {"thing1": "困难证明开具", "time2": "2026年03月03日 09:00", "thing3": "停电检修",
         "thing4": "大厅已取消，请重新预约"}]
    # The resident cannot switch such notices off.
    r = await day.live.client.put("/api/v1/mp/notification-settings", headers=me.headers,
                                  json={"categories": {"booking_change": False}})
    assert (r.status_code, r.json()["error"]["code"]) == (409, "notify.category_required")


async def test_the_reminder_the_day_before_reaches_the_inbox_and_wechat_once(day: Day) -> None:
    me = await day.resident()
    await day.consent(me, "appointment.reminder_due")
    await day.book(me)
    for hour in (10, 11):  # the hourly task; the second run finds nothing new
        day.clock.set(datetime(2026, 3, 2, hour - 8, 0, tzinfo=UTC))
        await booking_tasks.reminders(day.clock.now())
    await day.drain()
    (entry,) = await day.inbox(me, "appointment.reminder_due")
    assert entry["title"] == "明日预约提醒"
    assert entry["body"] == f"您预约的“困难证明开具”将于 2026年03月03日 09:00 在 {HALL} 办理，请勿迟到。"
    assert day.wechat_sent("appointment.reminder_due") == [
        {"thing1": "困难证明开具", "time2": "2026年03月03日 09:00", "thing3": HALL, "thing4": "明天办理，请勿迟到"}]


async def test_no_shows_are_told_and_the_bar_they_bring_says_until_when_by_text_too(day: Day) -> None:
    me = await day.resident()
    days = [TUESDAY, TUESDAY + timedelta(days=1), TUESDAY + timedelta(days=2)]
    for d in days:
        await day.book(me, d)
    for d in days:
        day.clock.set(datetime.combine(d, time(10, 1), tzinfo=clock.SHANGHAI))  # 09:00–09:30 plus 30 min grace
        await booking_tasks.no_shows(day.clock.now())
        await day.drain()
    entries = await day.inbox(me, "appointment.no_show")
    assert [e["title"] for e in entries] == ["网上预约已暂停", "预约未到记录", "预约未到记录"]
    assert entries[2]["body"] == (f"您预约的“困难证明开具”（2026年03月03日 09:00，{HALL}）未按时签到，已记为预约未到，"
                                  "90天内第1次。90天内累计3次将暂停网上预约。如不能前往，请提前在小程序中取消预约。")
    assert "90天内第2次" in entries[1]["body"]
    assert entries[0]["body"] == (f"您预约的“困难证明开具”（2026年03月05日 09:00，{HALL}）未按时签到，"
                                  "90天内已预约未到3次，2026年04月04日 10:01前暂停网上预约。"
                                  "暂停期间仍可到大厅现场取号办理。")
    # The end in the notice is the bar's end the booking API answers with.
    listed = (await day.live.client.get("/api/v1/mp/appointments", headers=me.headers)).json()
    assert listed["bar"]["until"].startswith("2026-04-04T10:01")
    # Only the bar is required: one text, with its end; the no-shows stay in the inbox.
    assert [(m["template_code"], m["params"]) for m in day.platforms.sms.sent] == [
        ("SMS_BOOKING_BARRED", {"count": "3", "until": "2026年04月04日 10:01"})]


# ---- cases ---------------------------------------------------------------------------------------------


async def _approved_case(day: Day, me: Resident, item: str, **body: Any) -> str:
    codes = ["FORM"] if item == SIMPLE else ["ID", "FORM", "LEASE"]
    mats = [{"code": c, "upload_id": await upload_id(day.live, me.headers)} for c in codes]
    r = await day.live.client.post("/api/v1/mp/cases", headers=me.headers,
                                   json=application(day.hall_id, item, mats, **body))
    assert r.status_code == 201, r.text
    case_no = str(r.json()["case_no"])
    for action in ("accept", "start_review", "approve"):
        r = await act(day.live, day.world.clerk, case_no, action)
        assert r.status_code == 200, r.text
    return case_no


async def test_a_posted_result_is_told_with_its_tracking_number_and_a_picked_up_one_as_picked_up(day: Day) -> None:
    me = await day.resident()
    await day.consent(me, "case.delivered.post")
    posted = await _approved_case(day, me, SIMPLE, delivery={
        "method": "post", "recipient": "张三丰", "phone": "13812345678", "address": "杭州市西湖区象山路1号3幢201室"})
    picked = await _approved_case(day, me, SIMPLE)
    r = await act(day.live, day.world.clerk, posted, "deliver", tracking_no="SF1234567890")
    assert r.status_code == 200, r.text
    day.clock.advance(1800)
    assert (await act(day.live, day.world.clerk, picked, "deliver")).status_code == 200
    await day.drain()
    by_case = {e["body"].split("办件编号 ")[1][:len(posted)]: e for e in await day.inbox(me, "case.delivered")}
    assert by_case[posted]["title"] == "办理结果已寄出"
    assert by_case[posted]["body"] == (f"您申请的“困难证明开具”（办件编号 {posted}）的办理结果已于2026年03月02日 09:00"
                                       f"由{HALL}邮寄寄出，快递单号 SF1234567890，请注意查收。")
    assert by_case[picked]["title"] == "办理结果已领取"
    assert by_case[picked]["body"] == (f"您申请的“困难证明开具”（办件编号 {picked}）的办理结果已于2026年03月02日 09:30"
                                       f"在{HALL}领取。如非您本人或您委托的人领取，请尽快联系大厅。")
    assert day.wechat_sent("case.delivered.post") == [
        {"character_string1": posted, "thing2": "困难证明开具", "character_string3": "SF1234567890",
         "time4": "2026年03月02日 09:00"}]
    assert [e.payload["method"] for e in await OutboxEvent.filter(topic="case.delivered").order_by("seq")] == [
        "post", "pickup"]


async def test_an_answered_question_reaches_the_resident_and_by_text_without_consent(day: Day) -> None:
    me = await day.resident()
    r = await day.live.client.post("/api/v1/mp/complaints", headers=me.headers, json={
        "kind": "question", "hall_id": day.hall_id, "content": "居住证明可以邮寄吗？"})
    assert r.status_code == 201, r.text
    day.clock.advance(86400)
    r = await day.live.client.post(f"/api/v1/staff/complaints/{r.json()['id']}/answer", headers=day.world.clerk,
                                   json={"answer": "可以，申请时选择邮寄送达即可。"})
    assert r.status_code == 200, r.text
    await day.drain()
    (entry,) = await day.inbox(me, "complaint.answered")
    assert entry["title"] == "您的咨询已答复"
    assert entry["body"] == f"您于2026年03月02日向{HALL}提出的咨询已答复：可以，申请时选择邮寄送达即可。"
    assert sms_to_zhang(day.platforms, "SMS_COMPLAINT_ANSWERED") == [{"hall": HALL, "kind": "咨询"}]


async def test_a_closed_rectification_tells_the_rater_the_response(day: Day) -> None:
    me = await day.resident()
    await day.consent(me, "rectification.closed")
    case_no = await _approved_case(day, me, SIMPLE)
    r = await day.live.client.post(f"/api/v1/mp/cases/{case_no}/evaluation", headers=me.headers,
                                   json={"level": "不满意", "comment": "等待时间太长"})
    assert r.status_code == 201, r.text
    r = await day.live.client.post(f"/api/v1/staff/rectifications/{r.json()['rectification']['id']}/close",
                                   headers=day.world.admin, json={"response": "已增设取件窗口，缩短等候时间。"})
    assert r.status_code == 200, r.text
    await day.drain()
    (entry,) = await day.inbox(me, "rectification.closed")
    assert entry["title"] == "差评整改结果"
    assert entry["body"] == (f"您对“困难证明开具”（办件编号 {case_no}）的评价，{HALL}已整改并答复："
                             "已增设取件窗口，缩短等候时间。")
    assert day.wechat_sent("rectification.closed") == [
        {"character_string1": case_no, "thing2": "困难证明开具", "thing3": "已增设取件窗口，缩短等候时间。",
         "phrase4": "已整改"}]
    assert sms_to_zhang(day.platforms, "SMS_RECTIFICATION_CLOSED") == []  # WeChat carried it


# ---- money -------------------------------------------------------------------------------------------


async def test_a_refund_through_the_wechat_pay_fake_tells_the_payer_the_amount(day: Day) -> None:
    me = await payer(day.live, day.platforms, "wechat")
    who = Resident(headers=me.headers, openid=me.subject)
    case_no = await _case_awaiting_fee(day, who)
    order = (await start_payment(day.live, me, case_no)).json()["order"]
    await day.platforms.wechatpay.pay(order["out_trade_no"])
    await day.drain()
    r = await day.live.client.post(f"/api/v1/staff/payments/{order['id']}/refunds", headers={
        **day.world.admin, "Idempotency-Key": uuid.uuid4().hex}, json={"reason": "多收退还", "amount_fen": 500})
    assert r.status_code == 201 and r.json()["refund"]["state"] == "processing", r.text
    await day.drain()
    assert await day.inbox(who, "payment.refunded") == []  # not until WeChat Pay says the money went back
    answer = await day.platforms.wechatpay.finish_refund(r.json()["refund"]["out_refund_no"])
    assert answer is not None and answer.status_code == 204
    await day.drain()
    (entry,) = await day.inbox(who, "payment.refunded")
    assert entry["title"] == "退款成功"
    assert entry["body"] == (f"您为办件 {case_no}（摊位经营许可）缴纳的费用已退款 5.00元，原路退回您的微信支付账户，"
                             "到账时间以支付平台为准。退款原因：多收退还。")
    assert entry["page"].startswith("pages/case/detail?token=")
    assert day.platforms.sms.sent == []  # not a required notice


async def _case_awaiting_fee(day: Day, me: Resident) -> str:
    mats = [{"code": c, "upload_id": await upload_id(day.live, me.headers)} for c in ("ID", "FORM", "LEASE")]
    r = await day.live.client.post("/api/v1/mp/cases", headers=me.headers, json=application(day.hall_id, LICENCE, mats))
    assert r.status_code == 201, r.text
    case_no = str(r.json()["case_no"])
    assert (await act(day.live, day.world.clerk, case_no, "accept")).status_code == 200
    assert (await act(day.live, day.world.clerk, case_no, "start_review")).json()["status"] == "awaiting_payment"
    return case_no
