"""Notifications end to end: events from the outbox to the fake WeChat, Alipay and SMS servers on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sanic import Sanic

from backend import clock, db, qr
from backend.cases.models import Case, CaseChannel
from backend.catalog import service as catalog
from backend.catalog.models import ServiceItem, ServiceItemVersion
from backend.catalog.schemas import ItemIn
from backend.identity.models import ChannelIdentity, StaffRole
from backend.jobs import outbox
from backend.jobs.models import OutboxEvent, OutboxStatus
from backend.jobs.outbox import Event, Registry
from backend.jobs.worker import Worker, WorkerConfig
from backend.ratelimit import Limit
from notifications import alipay_fake, handlers, render, service, sms_fake
from notifications.models import Notification, NotifyChannel, NotifyStatus, Subscription
from notifications.politeness import TokenBucket
from tests.cases_support import RESIDENCE, item_row, staff_headers
from tests.conftest import REDIS_URL, ROOT, TEST_SECRETS, Live, Platforms, real_redis_only, start_app, stop_app
from tests.test_identity import ZHANG, alipay_login, auth, wechat_login

SECRET = TEST_SECRETS["secret_key"]
LONG_ITEM = "城乡居民基本养老保险参保登记及待遇领取资格认证"  # 24 characters: longer than a WeChat thing
HALL = "转塘街道便民服务中心"
T = {topic: t for topic, t in render.load().templates.items()}


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def sms() -> AsyncIterator[tuple[sms_fake.FakeSms, str]]:
    Sanic.test_mode = True
    app = Sanic(f"fake_sms_{uuid.uuid4().hex[:8]}")
    state = sms_fake.FakeSms()
    app.blueprint(sms_fake.blueprint(state, url_prefix="/sms"))
    server, url = await start_app(app)
    try:
        yield state, f"{url}/sms/"
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


@pytest.fixture
def notify_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
def settings_overrides(sms: tuple[sms_fake.FakeSms, str], notify_overrides: dict[str, Any]) -> dict[str, Any]:
    state, url = sms
    return {"sms_endpoint": url, "sms_access_key_id": state.access_key_id,
            "sms_access_key_secret": state.access_key_secret, **notify_overrides}


@dataclass
class World:
    live: Live
    platforms: Platforms
    sms: sms_fake.FakeSms
    alipay: alipay_fake.AlipayMessages
    worker: Worker
    hall_id: int
    item_id: int
    item_code: str

    async def drain(self, rounds: int = 30) -> None:
        for _ in range(rounds):
            if not await self.worker.run_once():
                return

    async def resident(self, *, bind: bool = True) -> tuple[int, str, dict[str, str]]:
        """(resident id, openid, auth headers) of a WeChat resident, real-name bound (phone known)."""
        openid = f"o_{uuid.uuid4().hex[:12]}"
        headers = auth(await wechat_login(self.live, self.platforms, openid))
        if bind:
            r = await self.live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=headers)
            assert r.status_code == 200, r.text
        ident = await ChannelIdentity.get(subject=openid)
        return ident.resident_id, openid, headers  # type: ignore[attr-defined]

    async def consent(self, headers: dict[str, str], *topics: str, answer: str = "accept",
                      channel: str = "wechat") -> dict[str, Any]:
        results = {T[t].wechat["template_id"] if channel == "wechat" else T[t].alipay["template_id"]: answer
                   for t in topics}  # type: ignore[index]
        r = await self.live.client.post("/api/v1/mp/subscriptions", json={"channel": channel, "results": results},
                                        headers=headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def emit(self, topic: str, payload: dict[str, Any]) -> uuid.UUID:
        async with db.transaction() as tx:
            return await outbox.emit(topic, payload, using_db=tx)

    def appointment(self, resident_id: int, appointment_id: int = 41) -> dict[str, Any]:
        return {"appointment_id": appointment_id, "resident_id": resident_id, "hall_id": self.hall_id,
                "item_code": self.item_code, "starts_at": "2026-03-03T01:30:00+00:00",
                "ends_at": "2026-03-03T02:00:00+00:00"}

    async def case(self, resident_id: int | None, fee_fen: int = 0) -> Case:
        version = await ServiceItemVersion.filter(item_id=self.item_id).first()
        assert version is not None
        return await Case.create(
            case_no=f"330106011-20260302-{uuid.uuid4().int % 10000:04d}", resident_id=resident_id,
            applicant_hash="0" * 64, applicant_name_enc="x", applicant_id_number_enc="x", hall_id=self.hall_id,
            item_id=self.item_id, item_version_id=version.id, channel=CaseChannel.MINI_PROGRAM, form_enc="x",
            statutory_days=10, promised_days=5, created_by=f"resident:{resident_id}", fee_total_fen=fee_fen,
            has_fees=fee_fen > 0,
        )


@pytest.fixture
async def world(live: Live, platforms: Platforms, sms: tuple[sms_fake.FakeSms, str],
                frozen_clock: clock.FrozenClock) -> AsyncIterator[World]:
    # 09:00 in Shanghai: outside quiet hours unless a test moves the clock.
    hall = await catalog.create_hall(code="HX", name=HALL, region_code="330106011")
    await catalog.upsert_item(row=ItemIn.model_validate(item_row(RESIDENCE, LONG_ITEM, halls=["HX"])))
    item = await ServiceItem.get(code=RESIDENCE)
    reg = Registry()
    handlers.register(reg)
    worker = Worker(WorkerConfig(lease_seconds=30, backoff_base=0, backoff_max=0, poll_seconds=0.05), handlers=reg)
    w = World(live=live, platforms=platforms, sms=sms[0], alipay=alipay_fake.install(platforms.alipay),
              worker=worker, hall_id=hall.id, item_id=item.id, item_code=RESIDENCE)
    try:
        yield w
    finally:
        await handlers.current()[1].aclose()


async def rows(**filters: Any) -> list[Notification]:
    return await Notification.filter(**filters).order_by("id")


def token_of(page: str) -> tuple[str, int]:
    _path, _, query = page.partition("?token=")
    return qr.read_token(SECRET, query)


# ---- what each event sends --------------------------------------------------------------------


async def test_each_event_sends_its_template_with_fitted_values_and_a_signed_page(world: World) -> None:
    rid, openid, headers = await world.resident()
    case = await world.case(rid, fee_fen=1250)
    events: list[tuple[str, dict[str, Any]]] = [
        ("appointment.booked", world.appointment(rid)),
        ("appointment.reminder_due", world.appointment(rid)),
        ("ticket.called", {"ticket_id": 9, "code": "A017", "hall_id": world.hall_id, "counter": 3,
                           "appointment_id": None}),
        ("case.correction_needed", {"case_id": case.id, "case_no": case.case_no, "round": 1, "codes": ["ID", "LEASE"]}),
        ("case.awaiting_payment", {"case_id": case.id, "case_no": case.case_no}),
        ("case.approved", {"case_id": case.id, "case_no": case.case_no}),
        ("case.rejected", {"case_id": case.id, "case_no": case.case_no}),
        ("case.certificate_issued", {"case_id": case.id, "case_no": case.case_no, "certificate_id": 5}),
    ]
    await world.consent(headers, *(t for t, _ in events))
    for topic, payload in events:
        await world.emit(topic, payload)
    await world.drain()

    sent = {m["template_id"]: m for m in world.platforms.wechat.sent}
    thing = LONG_ITEM[:19] + "…"
    at = "2026年03月02日 09:00"  # the event's commit time, in Beijing time
    expected: dict[str, tuple[str | None, dict[str, str]]] = {
        "appointment.booked": ("appointment", {"thing1": thing, "time2": "2026年03月03日 09:30", "thing3": HALL,
                                               "thing4": "请携带身份证件按时到场"}),
        "appointment.reminder_due": ("appointment", {"thing1": thing, "time2": "2026年03月03日 09:30",
                                                     "thing3": HALL, "thing4": "明天办理，请勿迟到"}),
        "case.correction_needed": ("case", {"character_string1": case.case_no, "thing2": thing, "phrase3": "待补正",
                                            "thing4": "需补正材料2项，请尽快提交"}),
        "case.awaiting_payment": ("case", {"character_string1": case.case_no, "thing2": thing,
                                           "amount3": "12.50元", "thing4": "请在小程序中完成缴费"}),
        "case.approved": ("case", {"character_string1": case.case_no, "thing2": thing, "phrase3": "已通过",
                                   "time4": at}),
        "case.rejected": ("case", {"character_string1": case.case_no, "thing2": thing, "phrase3": "未通过",
                                   "time4": at}),
        "case.certificate_issued": ("case", {"character_string1": case.case_no, "thing2": thing,
                                             "phrase3": "已出证", "time4": at}),
    }
    for topic, (kind, data) in expected.items():
        message = sent[T[topic].wechat["template_id"]]  # type: ignore[index]
        assert message["touser"] == openid
        assert {k: v["value"] for k, v in message["data"].items()} == data, topic
        assert message["page"].startswith(T[topic].page["path"] + "?token=")  # type: ignore[index]
        object_id = case.id if kind == "case" else 41
        assert token_of(message["page"]) == (kind, object_id)
        # The page carries only the signed token (a raw id such as 41 would be a second parameter); a check for
        # "41" in the token's text would fail whenever the random token happened to contain it.
        assert list(parse_qs(message["page"].split("?", 1)[1])) == ["token"]
        assert message["miniprogram_state"] == "formal" and message["lang"] == "zh_CN"
    assert (await rows(channel=NotifyChannel.WECHAT, resident_id=rid))[0].status == NotifyStatus.SENT
    # ticket.called without an appointment concerns no resident: nothing planned for it.
    assert T["ticket.called"].wechat["template_id"] not in sent  # type: ignore[index]
    assert len(world.platforms.wechat.sent) == 7
    # The inbox has every message too, newest first, with the same signed page.
    r = await world.live.client.get("/api/v1/mp/inbox", headers=headers)
    assert r.status_code == 200
    items = r.json()["items"]
    # Events of one batch are handled concurrently: the inbox holds each once, newest row first.
    assert sorted(i["topic"] for i in items) == sorted(t for t, _ in events if t != "ticket.called")
    assert [i["id"] for i in items] == sorted((i["id"] for i in items), reverse=True)
    assert r.json()["unread"] == 7
    booked = next(i for i in items if i["topic"] == "appointment.booked")
    assert booked["title"] == "预约成功" and LONG_ITEM in booked["body"] and HALL in booked["body"]
    assert token_of(booked["page"]) == ("appointment", 41)


# ---- consent ------------------------------------------------------------------------------------


async def test_without_consent_nothing_goes_to_wechat_and_the_inbox_has_it(world: World) -> None:
    rid, _, headers = await world.resident()
    await world.emit("appointment.booked", world.appointment(rid))
    await world.drain()
    assert world.platforms.wechat.sent == []
    assert world.platforms.wechat.calls["subscribe_send"] == 0
    (push,) = await rows(channel=NotifyChannel.WECHAT)
    assert (push.status, push.reason) == (NotifyStatus.CANCELLED, "no_consent")
    inbox = (await world.live.client.get("/api/v1/mp/inbox", headers=headers)).json()
    assert [i["title"] for i in inbox["items"]] == ["预约成功"]
    # Marking read: one, then all; another resident's message is not found.
    item_id = inbox["items"][0]["id"]
    _, _, other = await world.resident(bind=False)
    assert (await world.live.client.post(f"/api/v1/mp/inbox/{item_id}/read", headers=other)).status_code == 404
    assert (await world.live.client.post(f"/api/v1/mp/inbox/{item_id}/read", headers=headers)).status_code == 200
    assert (await world.live.client.get("/api/v1/mp/inbox?unread=true", headers=headers)).json() == {
        "items": [], "unread": 0, "total": 0, "limit": 50, "before_id": None, "next_before_id": None}


async def test_one_time_consent_allows_one_message_and_the_next_goes_to_inbox_or_sms(world: World) -> None:
    rid, _openid, headers = await world.resident()
    answer = await world.consent(headers, "appointment.reminder_due", "case.approved")
    assert {s["remaining"] for s in answer["subscriptions"]} == {1}
    case = await world.case(rid)
    for _ in range(2):
        await world.emit("appointment.reminder_due", world.appointment(rid))
        await world.emit("case.approved", {"case_id": case.id, "case_no": case.case_no})
    await world.drain()
    # One of each on WeChat: each acceptance was used up by one message.
    assert sorted(m["template_id"] for m in world.platforms.wechat.sent) == sorted(
        [T["appointment.reminder_due"].wechat["template_id"], T["case.approved"].wechat["template_id"]])  # type: ignore[index]
    # The second reminder stays in the inbox only; the second decision, required by law, goes by text.
    second = await rows(channel=NotifyChannel.WECHAT, status=NotifyStatus.CANCELLED)
    assert sorted(r.topic for r in second) == ["appointment.reminder_due", "case.approved"]
    assert [(m["phone"], m["template_code"]) for m in world.sms.sent] == [("13812345678", "SMS_CASE_DECISION")]
    assert world.sms.sent[0]["params"] == {"case_no": case.case_no, "item": LONG_ITEM, "result": "审批通过"}
    assert await Notification.filter(channel=NotifyChannel.INBOX, resident_id=rid).count() == 4
    assert all(s.remaining == 0 for s in await Subscription.filter(resident_id=rid))


async def test_unknown_templates_and_filtered_answers_are_ignored(world: World) -> None:
    _rid, _, headers = await world.resident()
    r = await world.live.client.post("/api/v1/mp/subscriptions", headers=headers, json={
        "results": {"unknown-template": "accept", T["case.approved"].wechat["template_id"]: "filter"}})  # type: ignore[index]
    assert r.status_code == 200
    assert r.json()["recorded"] == [] and len(r.json()["ignored"]) == 2
    bad = await world.live.client.post("/api/v1/mp/subscriptions", headers=headers, json={"results": {"x": "maybe"}})
    assert bad.status_code == 422


class TestLongTermSubscriptions:
    @pytest.fixture
    def notify_overrides(self, tmp_path: Path) -> dict[str, Any]:
        # An operator marks a template long-term (open to government services) in its file.
        for f in render.PACKAGED.glob("*.json"):
            (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
        path = tmp_path / "case.certificate_issued.json"
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["wechat"]["subscription"] = "long_term"
        path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
        return {"notify_templates_dir": str(tmp_path)}

    async def test_a_long_term_subscription_is_kept_until_revoked(self, world: World) -> None:
        rid, _, headers = await world.resident()
        answer = await world.consent(headers, "case.certificate_issued")
        assert answer["subscriptions"][0]["kind"] == "long_term" and answer["subscriptions"][0]["active"]
        case = await world.case(rid)
        for _ in range(3):
            await world.emit("case.certificate_issued", {"case_id": case.id, "case_no": case.case_no})
        await world.drain()
        assert len(world.platforms.wechat.sent) == 3
        await world.consent(headers, "case.certificate_issued", answer="reject")
        await world.emit("case.certificate_issued", {"case_id": case.id, "case_no": case.case_no})
        await world.drain()
        assert len(world.platforms.wechat.sent) == 3
        assert (await rows(status=NotifyStatus.CANCELLED))[0].reason == "no_consent"


async def test_wechat_43101_falls_back_to_sms_for_a_required_message(world: World) -> None:
    rid, openid, headers = await world.resident()
    await world.consent(headers, "case.correction_needed")
    world.platforms.wechat.refused.add(openid)  # the user switched messages off in WeChat itself
    case = await world.case(rid)
    await world.emit("case.correction_needed", {"case_id": case.id, "case_no": case.case_no, "round": 1,
                                                "codes": ["ID"]})
    await world.drain()
    (wx,) = await rows(channel=NotifyChannel.WECHAT)
    assert (wx.status, wx.reason, wx.attempts) == (NotifyStatus.PERMANENT_FAILURE, "no_consent", 1)
    assert wx.provider_answer["errcode"] == 43101
    (text,) = await rows(channel=NotifyChannel.SMS)
    assert text.status == NotifyStatus.SENT and text.provider_id == "biz1"
    assert world.sms.sent == [{"phone": "13812345678", "sign_name": "掌上办", "template_code": "SMS_CASE_CORRECTION",
                               "params": {"case_no": case.case_no, "item": LONG_ITEM, "count": "1"}}]
    assert (await Subscription.get(resident_id=rid)).remaining == 0


async def test_a_required_message_without_consent_goes_by_sms(world: World) -> None:
    rid, _, _headers = await world.resident()
    case = await world.case(rid)
    await world.emit("case.rejected", {"case_id": case.id, "case_no": case.case_no})
    await world.drain()
    assert world.platforms.wechat.calls["subscribe_send"] == 0
    assert [m["params"]["result"] for m in world.sms.sent] == ["未获批准"]


# ---- retries --------------------------------------------------------------------------------------


async def test_busy_then_success_is_sent_after_one_retry(world: World) -> None:
    rid, _, headers = await world.resident()
    await world.consent(headers, "appointment.booked")
    world.platforms.wechat.fail_next(-1, endpoint="subscribe_send")
    await world.emit("appointment.booked", world.appointment(rid))
    await world.worker.run_once()  # plans
    await world.worker.run_once()  # first try: busy
    (row,) = await rows(channel=NotifyChannel.WECHAT)
    assert (row.status, row.attempts, row.provider_answer["errcode"]) == (NotifyStatus.TEMPORARY_FAILURE, 1, -1)
    await world.drain()
    await row.refresh_from_db()
    assert (row.status, row.attempts) == (NotifyStatus.SENT, 2)
    assert len(world.platforms.wechat.sent) == 1
    assert (await Subscription.get(resident_id=rid)).remaining == 0  # one acceptance, one message


async def test_47003_is_permanent_and_not_retried(world: World) -> None:
    rid, _, headers = await world.resident()
    await world.consent(headers, "appointment.booked")
    world.platforms.wechat.fail_next(47003, endpoint="subscribe_send")
    await world.emit("appointment.booked", world.appointment(rid))
    await world.drain()
    (row,) = await rows(channel=NotifyChannel.WECHAT)
    assert (row.status, row.reason, row.attempts) == (NotifyStatus.PERMANENT_FAILURE, "bad_data", 1)
    assert world.platforms.wechat.calls["subscribe_send"] == 1
    assert world.sms.sent == []  # not required: no fallback to a text
    assert await OutboxEvent.filter(topic=service.DELIVER, status=OutboxStatus.DONE).count() == 1


@pytest.mark.parametrize("notify_overrides", [{"notify_max_attempts": 2}])
async def test_exhausted_retries_end_permanent_fall_back_and_the_dead_row_shows_the_answer(world: World) -> None:
    rid, _, headers = await world.resident()
    await world.consent(headers, "case.approved")
    world.platforms.wechat.fail_next(-1, times=5, endpoint="subscribe_send")
    case = await world.case(rid)
    await world.emit("case.approved", {"case_id": case.id, "case_no": case.case_no})
    await world.drain()
    (wx,) = await rows(channel=NotifyChannel.WECHAT)
    assert (wx.status, wx.reason, wx.attempts) == (NotifyStatus.PERMANENT_FAILURE, "retries_exhausted", 2)
    dead = await OutboxEvent.get(topic=service.DELIVER, status=OutboxStatus.DEAD)
    assert "'errcode': -1" in (dead.last_error or "") and "system error" in (dead.last_error or "")
    assert [m["template_code"] for m in world.sms.sent] == ["SMS_CASE_DECISION"]
    # The operator's retry queues it once more; WeChat answers now.
    world.platforms.wechat.failures.clear()
    again = await service.retry_failed(since=datetime(2026, 3, 1, tzinfo=UTC),
                                       policy=handlers.current()[0])
    assert again == [wx.id]
    await world.drain()
    await wx.refresh_from_db()
    assert wx.status == NotifyStatus.SENT and len(world.platforms.wechat.sent) == 1
    stats = await service.stats(since=datetime(2026, 3, 1, tzinfo=UTC))
    assert {"channel": "sms", "template": "case.approved", "status": "sent", "n": 1} in stats["counts"]
    assert stats["lag"]["wechat"]["sent"] == 1 and stats["lag"]["sms"]["p50_seconds"] >= 0


async def test_a_refused_access_token_is_refreshed_once(world: World) -> None:
    rid, _, headers = await world.resident()
    await world.consent(headers, "appointment.booked")
    await world.emit("appointment.booked", world.appointment(rid))
    await world.worker.run_once()  # plans
    await handlers.current()[1].get(NotifyChannel.WECHAT).client.access_token()  # type: ignore[attr-defined]
    world.platforms.wechat.revoke(world.platforms.wechat.current_token)
    await world.drain()
    assert len(world.platforms.wechat.sent) == 1
    assert world.platforms.wechat.forced_refreshes == 1


# ---- idempotency ----------------------------------------------------------------------------------


async def test_the_same_event_delivered_twice_sends_one_message(world: World) -> None:
    rid, _, headers = await world.resident()
    await world.consent(headers, "appointment.booked")
    await world.consent(headers, "appointment.booked")  # two acceptances: a second send would be possible
    event_id = await world.emit("appointment.booked", world.appointment(rid))
    event = Event(id=event_id, topic="appointment.booked", payload=world.appointment(rid), attempt=1)
    await handlers.plan(event)
    await handlers.plan(Event(id=event_id, topic=event.topic, payload=event.payload, attempt=2))
    await world.drain()  # and the outbox delivers it a third time
    assert len(world.platforms.wechat.sent) == 1
    assert [r.channel for r in await rows()] == [NotifyChannel.INBOX, NotifyChannel.WECHAT]
    assert (await Subscription.get(resident_id=rid)).remaining == 1


# ---- politeness -------------------------------------------------------------------------------------


async def test_quiet_hours_hold_a_reminder_until_eight_but_not_a_ticket_call(world: World,
                                                                            frozen_clock: clock.FrozenClock) -> None:
    from backend.booking.models import Appointment, Slot

    rid, _, headers = await world.resident()
    await world.consent(headers, "appointment.reminder_due", "ticket.called")
    frozen_clock.set(datetime(2026, 3, 2, 15, 0, tzinfo=UTC))  # 23:00 in Shanghai
    await world.emit("appointment.reminder_due", world.appointment(rid))
    slot = await Slot.create(hall_id=world.hall_id, item_id=world.item_id, day=datetime(2026, 3, 2).date(),
                             starts_at=frozen_clock.now(), ends_at=frozen_clock.now(), capacity=1)
    appt = await Appointment.create(resident_id=rid, person_hash="p" * 64, hall_id=world.hall_id,
                                    item_id=world.item_id, slot=slot, day=slot.day, idempotency_key="k" * 10,
                                    request_hash="h" * 64)
    await world.emit("ticket.called", {"ticket_id": 1, "code": "A001", "hall_id": world.hall_id, "counter": 2,
                                       "appointment_id": appt.id})
    await world.drain()
    assert [m["template_id"] for m in world.platforms.wechat.sent] == [T["ticket.called"].wechat["template_id"]]  # type: ignore[index]
    (held,) = await rows(channel=NotifyChannel.WECHAT, topic="appointment.reminder_due")
    assert held.status == NotifyStatus.CREATED
    assert held.hold_until_ms == int(datetime(2026, 3, 3, 0, 0, tzinfo=UTC).timestamp() * 1000)
    frozen_clock.set(datetime(2026, 3, 2, 23, 59, tzinfo=UTC))  # 07:59
    await world.drain()
    assert len(world.platforms.wechat.sent) == 1
    frozen_clock.set(datetime(2026, 3, 3, 0, 0, tzinfo=UTC))  # 08:00
    await world.drain()
    assert len(world.platforms.wechat.sent) == 2
    await held.refresh_from_db()
    assert held.status == NotifyStatus.SENT


@pytest.mark.parametrize("notify_overrides", [{"notify_daily_cap": 2}])
async def test_daily_cap_stops_the_third_message_but_not_a_required_one(world: World) -> None:
    rid, _, headers = await world.resident()
    case = await world.case(rid)
    for _ in range(3):
        await world.consent(headers, "appointment.booked")
    await world.consent(headers, "case.approved")
    for i in range(3):
        await world.emit("appointment.booked", world.appointment(rid, 100 + i))
    await world.emit("case.approved", {"case_id": case.id, "case_no": case.case_no})
    await world.drain()
    assert len(world.platforms.wechat.sent) == 3  # two bookings and the decision
    (capped,) = await rows(channel=NotifyChannel.WECHAT, status=NotifyStatus.CANCELLED)
    assert capped.reason == "daily_cap"
    # The acceptance it did not use is still there for the next one.
    sub = await Subscription.get(resident_id=rid, template_id=T["appointment.booked"].wechat["template_id"])  # type: ignore[index]
    assert sub.remaining == 1


async def test_categories_can_be_switched_off_except_required_ones(world: World) -> None:
    rid, _, headers = await world.resident()
    r = await world.live.client.get("/api/v1/mp/notification-settings", headers=headers)
    cats = {c["key"]: c for c in r.json()["categories"]}
    assert cats["decision"] == {"key": "decision", "name": "审批结果", "required": True, "enabled": True}
    r = await world.live.client.put("/api/v1/mp/notification-settings", headers=headers,
                                    json={"categories": {"decision": False}})
    assert r.status_code == 409 and r.json()["error"]["code"] == "notify.category_required"
    r = await world.live.client.put("/api/v1/mp/notification-settings", headers=headers,
                                    json={"categories": {"nope": False}})
    assert r.status_code == 422
    r = await world.live.client.put("/api/v1/mp/notification-settings", headers=headers,
                                    json={"categories": {"appointment": False}})
    assert r.status_code == 200
    assert {c["key"]: c["enabled"] for c in r.json()["categories"]}["appointment"] is False
    await world.consent(headers, "appointment.booked")
    await world.emit("appointment.booked", world.appointment(rid))
    await world.drain()
    assert world.platforms.wechat.sent == []
    assert [r.channel for r in await rows()] == [NotifyChannel.INBOX]


async def test_alipay_residents_get_template_messages_with_consent(world: World) -> None:
    tokens = await alipay_login(world.live, world.platforms, open_id="ali_open_1")
    headers = auth(tokens)
    ident = await ChannelIdentity.get(subject="ali_open_1")
    rid = ident.resident_id  # type: ignore[attr-defined]
    await world.consent(headers, "appointment.booked", channel="alipay")
    await world.emit("appointment.booked", world.appointment(rid))
    await world.drain()
    (message,) = world.alipay.sent
    assert message["to_open_id"] == "ali_open_1"
    assert message["user_template_id"] == "AP_APPT_BOOKED_0001"
    assert message["data"]["keyword1"]["value"] == LONG_ITEM
    assert token_of(message["page"]) == ("appointment", 41)


async def test_staff_get_deadline_warnings_and_complaint_alerts_for_their_hall(world: World) -> None:
    other = await catalog.create_hall(code="HY", name="双浦镇便民服务中心", region_code="330106012")
    clerk = await staff_headers(world.live, "hx.clerk", "HX", StaffRole.CLERK)
    other_clerk = await staff_headers(world.live, "hy.clerk", "HY", StaffRole.CLERK)
    await world.emit("case.deadline_warning", {"case_id": 1, "case_no": "330106011-20260302-0001",
                                               "hall_id": world.hall_id, "level": "red",
                                               "promised_due": "2026-03-09"})
    await world.emit("evaluation.received", {"evaluation_id": 1, "case_id": 1, "case_no": "C1",
                                             "hall_id": world.hall_id, "level": 1, "rectification_id": 3})
    await world.emit("evaluation.received", {"evaluation_id": 2, "case_id": 2, "case_no": "C2",
                                             "hall_id": world.hall_id, "level": 5, "rectification_id": None})
    await world.emit("complaint.deadline_warning", {"id": 7, "hall_id": other.id, "level": "yellow",
                                                    "due_on": "2026-03-05"})
    await world.drain()
    mine = (await world.live.client.get("/api/v1/staff/inbox", headers=clerk)).json()
    assert sorted(i["title"] for i in mine["items"]) == sorted(["差评提醒", "办件时限预警（红灯）"])
    assert mine["unread"] == 2
    theirs = (await world.live.client.get("/api/v1/staff/inbox", headers=other_clerk)).json()
    assert [i["title"] for i in theirs["items"]] == ["投诉答复时限预警（黄灯）"]
    r = await world.live.client.get(f"/api/v1/staff/inbox?hall_id={world.hall_id}", headers=other_clerk)
    assert r.status_code == 403
    first = mine["items"][0]["id"]
    assert (await world.live.client.post(f"/api/v1/staff/inbox/{first}/read", headers=other_clerk)).status_code == 404
    assert (await world.live.client.post(f"/api/v1/staff/inbox/{first}/read", headers=clerk)).status_code == 200


# ---- the shared rate limit --------------------------------------------------------------------


async def test_two_workers_draw_from_one_token_bucket(redis: Any) -> None:
    a = TokenBucket(redis, "wechat-test", Limit(5, 3600))
    b = TokenBucket(redis, "wechat-test", Limit(5, 3600))
    granted = [await (a if i % 2 else b).try_take() == 0 for i in range(12)]
    assert sum(granted) == 5
    assert await a.try_take() > 0


_TAKER = """
import asyncio, sys
from backend.ratelimit import Limit
from backend.stores import make_redis
from notifications.politeness import TokenBucket

async def main():
    redis = make_redis(sys.argv[1])
    bucket = TokenBucket(redis, "two-processes", Limit(10, 3600))
    got = 0
    for _ in range(20):
        got += await bucket.try_take() == 0
        await asyncio.sleep(0.001)
    print(got)
    await redis.aclose()

asyncio.run(main())
"""


@real_redis_only
async def test_rate_limit_is_shared_by_two_worker_processes(redis: Any) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _TAKER, REDIS_URL], cwd=ROOT, stdout=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for _ in range(2)]
    outs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
    counts = [int(out[0].decode().strip()) for out in outs]
    assert sum(counts) == 10, counts


async def test_sms_busy_is_retried_and_a_bad_number_is_final(world: World) -> None:
    rid, _, _headers = await world.resident()
    case = await world.case(rid)
    world.sms.fail_next("isv.BUSINESS_LIMIT_CONTROL")
    await world.emit("case.approved", {"case_id": case.id, "case_no": case.case_no})
    await world.drain()
    (text,) = await rows(channel=NotifyChannel.SMS)
    assert (text.status, text.attempts, world.sms.calls) == (NotifyStatus.SENT, 2, 2)
    world.sms.fail_next("isv.MOBILE_NUMBER_ILLEGAL")
    await world.emit("case.rejected", {"case_id": case.id, "case_no": case.case_no})
    await world.drain()
    (bad,) = await rows(channel=NotifyChannel.SMS, topic="case.rejected")
    assert (bad.status, bad.reason, bad.attempts) == (NotifyStatus.PERMANENT_FAILURE, "isv.MOBILE_NUMBER_ILLEGAL", 1)
    assert len(world.sms.sent) == 1


async def test_a_resident_without_phone_or_consent_still_has_the_notice_in_the_inbox(world: World) -> None:
    rid, _, headers = await world.resident(bind=False)
    case = await world.case(rid)
    await world.emit("case.correction_needed", {"case_id": case.id, "case_no": case.case_no, "round": 1,
                                                "codes": ["ID"]})
    await world.drain()
    assert [(r.channel, r.status, r.reason) for r in await rows()] == [
        (NotifyChannel.INBOX, NotifyStatus.SENT, None),
        (NotifyChannel.WECHAT, NotifyStatus.CANCELLED, "no_consent"),
        (NotifyChannel.SMS, NotifyStatus.CANCELLED, "no_address"),
    ]
    inbox = (await world.live.client.get("/api/v1/mp/inbox", headers=headers)).json()
    assert inbox["items"][0]["title"] == "补正材料告知" and world.sms.calls == 0


async def test_an_attempt_that_died_mid_call_is_not_repeated_unless_the_law_requires_it(world: World) -> None:
    rid, _, headers = await world.resident()
    await world.consent(headers, "appointment.booked", "case.approved")
    case = await world.case(rid)
    await world.emit("appointment.booked", world.appointment(rid))
    await world.emit("case.approved", {"case_id": case.id, "case_no": case.case_no})
    await world.worker.run_once()  # plans both
    # As if a worker had died after asking WeChat: the rows say "sending", their events come back.
    await Notification.filter(channel=NotifyChannel.WECHAT).update(status=NotifyStatus.SENDING, attempts=1,
                                                                   consent_taken=True)
    await world.drain()
    booked = (await rows(channel=NotifyChannel.WECHAT, topic="appointment.booked"))[0]
    approved = (await rows(channel=NotifyChannel.WECHAT, topic="case.approved"))[0]
    assert (booked.status, booked.reason) == (NotifyStatus.PERMANENT_FAILURE, "outcome_unknown")
    assert approved.status == NotifyStatus.SENT
    assert [m["template_id"] for m in world.platforms.wechat.sent] == [T["case.approved"].wechat["template_id"]]  # type: ignore[index]


async def test_a_folded_resident_is_reached_as_the_one_kept_and_a_walk_in_gets_nothing(world: World) -> None:
    from backend.identity.models import Resident

    kept, kept_openid, headers = await world.resident(bind=False)
    folded, _, _ = await world.resident(bind=False)
    await Resident.filter(id=folded).update(merged_into_id=kept)  # bound on a second platform, then folded
    await world.consent(headers, "case.approved")
    case = await world.case(folded)
    walk_in = await world.case(None)
    for c in (case, walk_in):
        await world.emit("case.approved", {"case_id": c.id, "case_no": c.case_no})
    await world.drain()
    assert [(r.channel, r.resident_id) for r in await rows()] == [
        (NotifyChannel.INBOX, kept), (NotifyChannel.WECHAT, kept)]
    (message,) = world.platforms.wechat.sent
    assert message["touser"] == kept_openid and message["data"]["thing2"]["value"] == LONG_ITEM[:19] + "…"
