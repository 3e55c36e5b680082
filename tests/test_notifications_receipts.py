"""Delivery receipts: WeChat's encrypted message push and Aliyun's SMS status reports, over real HTTP on loopback."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from backend import clock
from backend.audit.models import AuditEntry
from notifications import service
from notifications.models import Notification, NotifyChannel, NotifyStatus
from notifications.wechat_push import PushCrypto, sign
from notifications.wechat_push_fake import REFUSED, FakeWeChatPush, generate_aes_key
from tests.test_notifications import LONG_ITEM, T, World, rows, settings_overrides, sms, world

# The end-to-end world of the notification tests (fake WeChat, Alipay and SMS on loopback, a worker).
SHARED_FIXTURES = (settings_overrides, sms, world)

PUSH_TOKEN = "palmhallPushToken2026"
AES_KEY = generate_aes_key()
REPORT_TOKEN = "sms-report-token-0123456789abcdef"
PUSH_PATH = "/api/v1/notifications/callbacks/wechat"
SMS_PATH = "/api/v1/notifications/callbacks/sms"


@pytest.fixture
def notify_overrides() -> dict[str, Any]:
    return {"wechat_push_token": PUSH_TOKEN, "wechat_push_aes_key": AES_KEY, "sms_report_token": REPORT_TOKEN}


def wechat(world: World, **changes: str) -> FakeWeChatPush:
    values = {"url": world.live.url + PUSH_PATH, "token": PUSH_TOKEN, "aes_key": AES_KEY,
              "app_id": world.live.app.ctx.settings.wechat_app_id, **changes}
    return FakeWeChatPush(**values)


def template_id(topic: str) -> str:
    return str(T[topic].wechat["template_id"])  # type: ignore[index]


async def sent_wechat(world: World, topic: str = "appointment.booked", *, bind: bool = False
                      ) -> tuple[Notification, dict[str, Any]]:
    """A resident who consented, one event, its WeChat message sent: (the row, the event's payload).
    `bind`: real-name bound, so a text can reach them (one such resident per test: one ID number)."""
    rid, _openid, headers = await world.resident(bind=bind)
    await world.consent(headers, topic)
    if topic.startswith("appointment."):
        payload = world.appointment(rid)
    else:
        case = await world.case(rid)
        payload = {"case_id": case.id, "case_no": case.case_no}
    await world.emit(topic, payload)
    await world.drain()
    (row,) = await rows(channel=NotifyChannel.WECHAT, resident_id=rid)
    assert row.status == NotifyStatus.SENT and row.provider_id == str(len(world.platforms.wechat.sent))
    return row, payload


async def receipt_audits() -> list[AuditEntry]:
    return await AuditEntry.filter(action__startswith="notification.").order_by("seq")


# ---- WeChat: the push URL -----------------------------------------------------------------------


async def test_the_console_verifies_the_push_url_with_a_signed_get(world: World) -> None:
    push = wechat(world)
    r = await push.verify_url("echo-5f1c8a")
    assert (r.status_code, r.text) == (200, "echo-5f1c8a")
    # Signed with another Token, or not signed: no echo, so the console would refuse to save the URL.
    forged = await push.verify_url("echo-5f1c8a", token="notOurToken")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "notify.push_refused"
    assert "echo-5f1c8a" not in forged.text
    async with httpx.AsyncClient() as client:
        bare = await client.get(push.url, params={"echostr": "x", "timestamp": "1", "nonce": "2"})
    assert bare.status_code == 401


class TestPushNotConfigured:
    @pytest.fixture
    def notify_overrides(self) -> dict[str, Any]:
        return {}

    async def test_without_token_and_key_every_push_is_refused(self, world: World) -> None:
        r = await wechat(world, token="", aes_key=AES_KEY).verify_url("e")
        assert r.status_code == 503 and r.json()["error"]["message"] == "消息推送未配置"


# ---- WeChat: receipts ---------------------------------------------------------------------------


async def test_an_encrypted_receipt_marks_the_message_delivered_in_xml_and_json(world: World) -> None:
    booked, _ = await sent_wechat(world, "appointment.booked")
    approved, _ = await sent_wechat(world, "case.approved")
    push = wechat(world)

    r = await push.receipt(booked.provider_id or "", template_id("appointment.booked"))
    assert (r.status_code, r.text) == (200, "success")
    r = await push.receipt(approved.provider_id or "", template_id("case.approved"), as_json=True)
    assert (r.status_code, r.text) == (200, "success")

    for row in (booked, approved):
        await row.refresh_from_db()
        assert (row.status, row.reason) == (NotifyStatus.DELIVERED, None)
        # The send's answer is kept, the receipt beside it.
        assert row.provider_answer["errcode"] == 0 and row.provider_answer["msgid"] == int(row.provider_id or 0)
        assert row.provider_answer["receipt"] == {"MsgID": row.provider_id, "TemplateId": template_id(row.topic),
                                                  "ErrorCode": 0, "ErrorStatus": "success"}
    assert [(a.action, a.actor_kind, a.actor_id, a.target_id) for a in await receipt_audits()] == [
        ("notification.delivered", "platform", "wechat", str(booked.id)),
        ("notification.delivered", "platform", "wechat", str(approved.id))]

    # Operators see them counted.
    stats = await service.stats(since=clock.now() - timedelta(days=1))
    assert {"channel": "wechat", "template": "appointment.booked", "status": "delivered", "n": 1} in stats["counts"]
    assert {"channel": "wechat", "template": "case.approved", "status": "delivered", "n": 1} in stats["counts"]
    assert stats["lag"]["wechat"]["sent"] == 2 and stats["lag"]["wechat"]["delivered"] == 2


async def test_forged_unsigned_stale_and_replayed_pushes_change_nothing(world: World) -> None:
    row, _ = await sent_wechat(world)
    msg_id, tid = row.provider_id or "", template_id(row.topic)
    push = wechat(world)
    event = push.sent_event([{"msg_id": msg_id, "template_id": tid}])

    async def refused(body: bytes, query: dict[str, str], code: str = "notify.push_refused") -> None:
        r = await push.post(body, query)
        assert r.status_code == 401 and r.json()["error"]["code"] == code, r.text
        await row.refresh_from_db()
        assert row.status == NotifyStatus.SENT and "receipt" not in row.provider_answer
        assert await receipt_audits() == []

    # Signed with another Token.
    await refused(*wechat(world, token="someoneElsesToken").sealed(event))
    # Our Token but another key: the signature holds, the ciphertext does not open.
    await refused(*wechat(world, aes_key=generate_aes_key()).sealed(event))
    # Sealed for another mini program (its AppID inside the ciphertext).
    await refused(*wechat(world, app_id="wx9999999999999999").sealed(event))
    # No msg_signature at all, and a tampered one.
    body, query = push.sealed(event)
    await refused(body, {k: v for k, v in query.items() if k != "msg_signature"})
    await refused(body, {**query, "msg_signature": sign(PUSH_TOKEN, "other", "parts")})
    # The ciphertext changed after signing.
    await refused(body.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[A"), query)
    # Plain (not safe-mode) XML with only the URL signature: nothing to decrypt, nothing believed.
    plain = (f"<xml><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_sent_event]]></Event>"
             f"<SubscribeMsgSentEvent><List><MsgID>{msg_id}</MsgID><ErrorCode>0</ErrorCode></List>"
             f"</SubscribeMsgSentEvent></xml>").encode()
    await refused(plain, {"signature": query["signature"], "timestamp": query["timestamp"], "nonce": query["nonce"]})
    # Genuine but from ten minutes ago.
    old = int((clock.now() - timedelta(minutes=10)).timestamp())
    await refused(*push.sealed(event, timestamp=old), code="notify.push_stale")

    # The genuine push is applied once; the very same request again is a replay.
    genuine = push.sealed(event)
    assert (await push.post(*genuine)).status_code == 200
    await row.refresh_from_db()
    assert row.status == NotifyStatus.DELIVERED
    again = await push.post(*genuine)
    assert again.status_code == 401 and again.json()["error"]["code"] == "notify.push_replayed"
    assert len(await receipt_audits()) == 1


async def test_a_refusal_fails_the_message_and_a_required_one_goes_by_sms_once(world: World) -> None:
    row, payload = await sent_wechat(world, "case.approved", bind=True)
    push = wechat(world)
    code, status = REFUSED
    r = await push.receipt(row.provider_id or "", template_id("case.approved"), error_code=code, error_status=status)
    assert r.status_code == 200
    await row.refresh_from_db()
    assert (row.status, row.reason) == (NotifyStatus.PERMANENT_FAILURE, "user_refused")
    assert row.provider_answer["receipt"]["ErrorStatus"] == "failed:user refuse to accept the msg"
    await world.drain()
    (text,) = await rows(channel=NotifyChannel.SMS)
    assert text.status == NotifyStatus.SENT
    assert [(m["phone"], m["template_code"]) for m in world.sms.sent] == [("13812345678", "SMS_CASE_DECISION")]
    assert world.sms.sent[0]["params"] == {"case_no": payload["case_no"], "item": LONG_ITEM, "result": "审批通过"}

    # WeChat pushes the same receipt again (a new request, new nonce, as its retries are): one change only.
    for as_json in (False, True):
        r = await push.receipt(row.provider_id or "", template_id("case.approved"), error_code=code,
                               error_status=status, as_json=as_json)
        assert r.status_code == 200
    await world.drain()
    assert len(world.sms.sent) == 1 and await Notification.filter(channel=NotifyChannel.SMS).count() == 1
    assert [a.action for a in await receipt_audits()] == ["notification.undelivered"]


async def test_a_refusal_of_a_message_the_law_does_not_require_sends_no_text(world: World) -> None:
    row, _ = await sent_wechat(world, "appointment.booked")
    r = await wechat(world).receipt(row.provider_id or "", template_id("appointment.booked"), error_code=REFUSED[0],
                                    error_status=REFUSED[1])
    assert r.status_code == 200
    await world.drain()
    await row.refresh_from_db()
    assert row.status == NotifyStatus.PERMANENT_FAILURE
    assert world.sms.sent == [] and await Notification.filter(channel=NotifyChannel.SMS).count() == 0


async def test_a_receipt_that_overtakes_the_send_is_applied_when_the_send_is_recorded(world: World) -> None:
    rid, _openid, headers = await world.resident()
    await world.consent(headers, "appointment.booked")
    await world.emit("appointment.booked", world.appointment(rid))
    # WeChat's receipt for the msgid it is about to give arrives before our worker records the send.
    next_msg_id = str(len(world.platforms.wechat.sent) + 1)
    r = await wechat(world).receipt(next_msg_id, template_id("appointment.booked"))
    assert r.status_code == 200
    assert await receipt_audits() == []
    await world.drain()
    (row,) = await rows(channel=NotifyChannel.WECHAT, resident_id=rid)
    assert (row.provider_id, row.status) == (next_msg_id, NotifyStatus.DELIVERED)


async def test_receipts_for_messages_we_never_sent_change_nothing(world: World) -> None:
    row, _ = await sent_wechat(world)
    push = wechat(world)
    event = push.sent_event([{"msg_id": "999999", "template_id": template_id(row.topic)},
                             {"msg_id": row.provider_id, "template_id": template_id(row.topic)}])
    assert (await push.post(*push.sealed(event))).status_code == 200
    await row.refresh_from_db()
    assert row.status == NotifyStatus.DELIVERED  # the known one of the two
    assert len(await receipt_audits()) == 1
    # Other events on the same push URL are acknowledged and ignored.
    other = {"ToUserName": push.origin, "FromUserName": "o_x", "CreateTime": 1, "MsgType": "event",
             "Event": "user_authorization_revoke"}
    assert (await push.post(*push.sealed(other))).text == "success"


def test_push_crypto_round_trips_with_wechatpy() -> None:
    crypto = PushCrypto(token=PUSH_TOKEN, aes_key=AES_KEY, app_id="wx0000000000000000")
    for as_json in (False, True):
        body, q = crypto.seal({"MsgType": "event", "Event": "subscribe_msg_sent_event",
                               "SubscribeMsgSentEvent": {"List": [{"MsgID": "1", "ErrorCode": 0},
                                                                  {"MsgID": "2", "ErrorCode": 43101}]}},
                              nonce="n1", timestamp="1700000000", as_json=as_json)
        event = crypto.open(body=body, content_type="application/json" if as_json else "text/xml",
                            msg_signature=q["msg_signature"], timestamp=q["timestamp"], nonce=q["nonce"])
        items = event["SubscribeMsgSentEvent"]["List"]
        assert [str(i["MsgID"]) for i in items] == ["1", "2"]


# ---- SMS: Aliyun status reports -----------------------------------------------------------------


async def sent_text(world: World, rid: int | None = None) -> Notification:
    """A required decision without WeChat consent: it goes by text."""
    if rid is None:
        rid, _, _ = await world.resident()
    case = await world.case(rid)
    await world.emit("case.rejected", {"case_id": case.id, "case_no": case.case_no})
    await world.drain()
    text = (await rows(channel=NotifyChannel.SMS, resident_id=rid))[-1]
    assert text.status == NotifyStatus.SENT
    return text


async def test_sms_status_reports_mark_texts_delivered_or_failed(world: World) -> None:
    world.sms.report_url = f"{world.live.url}{SMS_PATH}?token={REPORT_TOKEN}"
    first = await sent_text(world)
    second = await sent_text(world, first.resident_id)
    assert (first.provider_id, second.provider_id) == ("biz1", "biz2")

    # Aliyun merges reports and may repeat them: the same report twice in one push is one change.
    assert await world.sms.report(0, copies=2) == 200
    assert await world.sms.report(1, success=False, err_code="UNDELIV", err_msg="用户停机") == 200
    assert await world.sms.report(1, success=False, err_code="UNDELIV", err_msg="用户停机") == 200
    await first.refresh_from_db()
    await second.refresh_from_db()
    assert (first.status, first.reason) == (NotifyStatus.DELIVERED, None)
    assert (second.status, second.reason) == (NotifyStatus.PERMANENT_FAILURE, "UNDELIV")
    assert first.provider_answer["Code"] == "OK" and first.provider_answer["receipt"]["err_code"] == "DELIVERED"
    # The phone number in the report is not kept.
    assert "13812345678" not in json.dumps(second.provider_answer, ensure_ascii=False)
    assert [(a.action, a.actor_id, a.target_id) for a in await receipt_audits()] == [
        ("notification.delivered", "sms", str(first.id)), ("notification.undelivered", "sms", str(second.id))]
    stats = await service.stats(since=clock.now() - timedelta(days=1))
    assert {"channel": "sms", "template": "case.rejected", "status": "delivered", "n": 1} in stats["counts"]
    assert stats["lag"]["sms"]["delivered"] == 1


async def test_sms_reports_with_a_wrong_token_or_bad_body_change_nothing(world: World) -> None:
    text = await sent_text(world)
    url = f"{world.live.url}{SMS_PATH}"
    for bad in (url, f"{url}?token=guess", f"{url}?token={REPORT_TOKEN[:-1]}"):
        assert await world.sms.report(0, url=bad) == 403
    async with httpx.AsyncClient() as client:
        for body in (b"{}", b"not json", b'[{"success": true}]'):
            r = await client.post(f"{url}?token={REPORT_TOKEN}", content=body,
                                  headers={"Content-Type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["message"] == "状态报告格式不正确"
        # A well-formed report naming a BizId we never got is acknowledged (Aliyun would push it again) and dropped.
        r = await client.post(f"{url}?token={REPORT_TOKEN}", json=[{"biz_id": "nope^0", "success": True}])
        assert r.json() == {"code": 0, "msg": "接收成功"}
    await text.refresh_from_db()
    assert text.status == NotifyStatus.SENT and await receipt_audits() == []


async def test_each_receipt_is_counted_once_as_a_change(world: World) -> None:
    row, _ = await sent_wechat(world)
    report = service.DeliveryReport(channel=NotifyChannel.WECHAT, provider_id=row.provider_id or "", delivered=True,
                                    reason=None, answer={"MsgID": row.provider_id})
    unknown = service.DeliveryReport(channel=NotifyChannel.WECHAT, provider_id="424242", delivered=True, reason=None,
                                     answer={})
    policy = service.Policy.from_settings(world.live.app.ctx.settings)
    counts = await service.record_receipts([report, report, unknown], policy=policy, redis=world.live.app.ctx.redis)
    assert counts == {"delivered": 1, "failed": 0, "unchanged": 1, "early": 1}
