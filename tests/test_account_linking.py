"""Joining a second platform's login to an existing resident needs the code texted to that resident's phone:
the takeover through real-name binding is refused, the owner can join and is told, channels can be detached."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backend import clock
from backend.audit.models import AuditEntry
from backend.identity.models import ChannelIdentity, LinkChallenge, Resident
from backend.jobs.models import OutboxEvent
from backend.jobs.outbox import Registry
from backend.jobs.worker import Worker, WorkerConfig
from notifications import handlers
from notifications.models import Notification, NotifyChannel
from tests.cases_support import upload_id
from tests.conftest import Live, Platforms
from tests.test_identity import LI, ZHANG, alipay_login, auth, wechat_login

LINK_TEMPLATE = "SMS_ACCOUNT_LINK_CODE"


async def owner_on_wechat(live: Live, platforms: Platforms, person: dict[str, str] = ZHANG) -> dict[str, Any]:
    tokens = await wechat_login(live, platforms)
    r = await live.client.put("/api/v1/mp/me/real-name", json=person, headers=auth(tokens))
    assert r.status_code == 200 and r.json()["merged"] is False, r.text
    return tokens


def codes_sent(platforms: Platforms) -> list[dict[str, Any]]:
    return [m for m in platforms.sms.sent if m["template_code"] == LINK_TEMPLATE]


async def ask_to_join(live: Live, tokens: dict[str, Any], person: dict[str, str] = ZHANG) -> dict[str, Any]:
    r = await live.client.put("/api/v1/mp/me/real-name", json=person, headers=auth(tokens))
    assert r.status_code == 202, r.text
    return dict(r.json())


async def confirm(live: Live, tokens: dict[str, Any], challenge: str, code: str) -> Any:
    return await live.client.post("/api/v1/mp/me/real-name/confirm", json={"challenge_id": challenge, "code": code},
                                  headers=auth(tokens))


def wrong(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 1_000_000:06d}"


async def actions() -> list[str]:
    return [a.action for a in await AuditEntry.all().order_by("seq")]


async def drain_notifications() -> None:
    reg = Registry()
    handlers.register(reg)
    worker = Worker(WorkerConfig(lease_seconds=30, backoff_base=0, backoff_max=0, poll_seconds=0.05), handlers=reg)
    try:
        for _ in range(30):
            if not await worker.run_once():
                return
    finally:
        await handlers.current()[1].aclose()


async def test_a_stranger_with_the_owners_details_gets_nothing_and_the_owner_gets_the_code(
        live: Live, platforms: Platforms) -> None:
    owner = await owner_on_wechat(live, platforms)
    owners_file = await upload_id(live, auth(owner))
    stranger = await alipay_login(live, platforms)

    answer = await ask_to_join(live, stranger)
    assert answer["merged"] is False and "tokens" not in answer
    assert answer["link"]["phone"] == "138****5678" and answer["link"]["expires_in"] == 300
    assert answer["profile"]["id"] == stranger["resident_id"]  # still the stranger's own, empty account
    assert answer["profile"]["real_name"] == {"verified": False}
    # The code went to the owner's phone on record, never to the caller.
    (text,) = codes_sent(platforms)
    assert text["phone"] == ZHANG["phone"] and len(text["params"]["code"]) == 6 and text["params"]["code"].isdigit()
    stored = await LinkChallenge.get(handle=answer["link"]["challenge_id"])
    assert text["params"]["code"] not in stored.code_hash  # only a keyed hash is kept

    # The stranger's token still reaches only the stranger's (empty) account.
    me = await live.client.get("/api/v1/mp/me", headers=auth(stranger))
    assert me.json()["id"] == stranger["resident_id"] and me.json()["channels"] == ["alipay"]
    r = await live.client.get(f"/api/v1/mp/uploads/{owners_file}", headers=auth(stranger))
    assert r.status_code == 404
    assert await ChannelIdentity.filter(resident_id=owner["resident_id"]).count() == 1

    # Guessing: four wrong codes say how many tries are left, the fifth ends the code, the right one is then refused.
    challenge, code = answer["link"]["challenge_id"], text["params"]["code"]
    for left in (4, 3, 2, 1):
        r = await confirm(live, stranger, challenge, wrong(code, left))
        assert (r.status_code, r.json()["error"]["code"]) == (422, "identity.link_code_wrong")
        assert r.json()["error"]["details"] == {"attempts_left": left}
    r = await confirm(live, stranger, challenge, wrong(code, 7))
    assert (r.status_code, r.json()["error"]["code"]) == (423, "identity.link_code_exhausted")
    r = await confirm(live, stranger, challenge, code)
    assert (r.status_code, r.json()["error"]["code"]) == (423, "identity.link_code_exhausted")
    assert (await Resident.get(id=stranger["resident_id"])).merged_into_id is None  # type: ignore[attr-defined]
    assert await ChannelIdentity.filter(resident_id=owner["resident_id"]).count() == 1
    assert not await OutboxEvent.filter(topic="resident.channel_attached").exists()
    done = await actions()
    assert {"resident.link_requested", "resident.link_code_sent", "resident.link_code_refused"} <= set(done)
    assert "resident.merged" not in done


async def test_the_owner_joins_with_the_code_and_is_told_on_the_other_channel(
        live: Live, platforms: Platforms) -> None:
    owner = await owner_on_wechat(live, platforms)
    ali = await alipay_login(live, platforms)
    answer = await ask_to_join(live, ali)
    code = codes_sent(platforms)[0]["params"]["code"]

    r = await confirm(live, ali, answer["link"]["challenge_id"], code)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["merged"] is True and body["profile"]["id"] == owner["resident_id"]
    assert body["profile"]["channels"] == ["alipay", "wechat"]
    assert (await live.client.get("/api/v1/mp/me", headers=auth(ali))).status_code == 401
    assert (await live.client.get("/api/v1/mp/me", headers=auth(body["tokens"]))).json()["id"] == owner["resident_id"]
    # The code is spent.
    again = await confirm(live, body["tokens"], answer["link"]["challenge_id"], code)
    assert again.status_code in (404, 409)
    assert "resident.merged" in await actions()

    # The owner is told: a required notice in the inbox and on WeChat (their channel before), not via the new
    # Alipay login; without a WeChat subscription it falls back to a text.
    (event,) = await OutboxEvent.filter(topic="resident.channel_attached")
    assert event.payload["resident_id"] == owner["resident_id"] and event.payload["channel"] == "alipay"
    await drain_notifications()
    notices = await Notification.filter(topic="resident.channel_attached").order_by("id")
    assert {n.channel for n in notices} == {NotifyChannel.INBOX, NotifyChannel.WECHAT, NotifyChannel.SMS}
    assert all(n.resident_id == owner["resident_id"] and n.required for n in notices)
    inbox = next(n for n in notices if n.channel == NotifyChannel.INBOX)
    assert "新增了支付宝登录方式" in inbox.content["body"]
    texts = [m for m in platforms.sms.sent if m["template_code"] == "SMS_ACCOUNT_CHANNEL_ADDED"]
    assert texts == [{"phone": ZHANG["phone"], "sign_name": "掌上办", "template_code": "SMS_ACCOUNT_CHANNEL_ADDED",
                      "params": {"channel": "支付宝", "time": texts[0]["params"]["time"]}}]


async def test_ten_concurrent_guesses_compare_at_most_five_codes(live: Live, platforms: Platforms) -> None:
    await owner_on_wechat(live, platforms)
    ali = await alipay_login(live, platforms)
    answer = await ask_to_join(live, ali)
    challenge, code = answer["link"]["challenge_id"], codes_sent(platforms)[0]["params"]["code"]
    answers = await asyncio.gather(*(confirm(live, ali, challenge, wrong(code, n)) for n in range(1, 11)))
    assert {a.status_code for a in answers} <= {422, 423}
    assert sum(a.status_code == 423 for a in answers) >= 5
    assert (await LinkChallenge.get(handle=challenge)).attempts == 5
    wrong_tries = [a for a in await AuditEntry.filter(action="resident.link_code_refused")
                   if a.details.get("reason") == "wrong_code"]
    assert len(wrong_tries) == 5
    assert (await Resident.get(id=ali["resident_id"])).merged_into_id is None  # type: ignore[attr-defined]


async def test_a_code_lasts_five_minutes(live: Live, platforms: Platforms) -> None:
    from datetime import UTC, datetime

    fixed = clock.FrozenClock(datetime.now(UTC))
    previous = clock.use(fixed)
    try:
        await owner_on_wechat(live, platforms)
        ali = await alipay_login(live, platforms)
        answer = await ask_to_join(live, ali)
        code = codes_sent(platforms)[0]["params"]["code"]
        fixed.advance(5 * 60 + 1)
        r = await confirm(live, ali, answer["link"]["challenge_id"], code)
        assert (r.status_code, r.json()["error"]["code"]) == (410, "identity.link_code_expired")
    finally:
        clock.use(previous)


async def test_another_residents_challenge_is_not_found(live: Live, platforms: Platforms) -> None:
    await owner_on_wechat(live, platforms)
    ali = await alipay_login(live, platforms)
    answer = await ask_to_join(live, ali)
    other = await alipay_login(live, platforms)
    r = await confirm(live, other, answer["link"]["challenge_id"], codes_sent(platforms)[0]["params"]["code"])
    assert (r.status_code, r.json()["error"]["code"]) == (404, "identity.link_not_found")


async def test_a_second_login_on_the_same_platform_cannot_join(live: Live, platforms: Platforms) -> None:
    await owner_on_wechat(live, platforms)
    other_wechat = await wechat_login(live, platforms)
    r = await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(other_wechat))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "identity.id_number_taken")
    assert codes_sent(platforms) == []


class TestTextsAreLimited:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, Any]:
        return {"rate_link_id_number": "2/86400", "rate_link_account": "5/3600"}

    async def test_per_id_number(self, live: Live, platforms: Platforms) -> None:
        await owner_on_wechat(live, platforms)
        statuses = []
        for _ in range(3):
            stranger = await alipay_login(live, platforms)
            r = await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(stranger))
            statuses.append((r.status_code, r.json().get("error", {}).get("code")))
        assert statuses == [(202, None), (202, None), (429, "rate_limited")]
        assert len(codes_sent(platforms)) == 2


async def test_a_failed_text_leaves_no_usable_challenge(live: Live, platforms: Platforms) -> None:
    await owner_on_wechat(live, platforms)
    ali = await alipay_login(live, platforms)
    platforms.sms.fail_next("isv.BUSINESS_LIMIT_CONTROL")
    r = await live.client.put("/api/v1/mp/me/real-name", json=ZHANG, headers=auth(ali))
    assert (r.status_code, r.json()["error"]["code"]) == (503, "identity.sms_unavailable")
    assert await LinkChallenge.filter(expires_at__gt=clock.now()).count() == 0


# ---- channels ---------------------------------------------------------------------------------------------


async def joined(live: Live, platforms: Platforms) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the owner's WeChat tokens, the joined account's Alipay tokens)."""
    owner = await owner_on_wechat(live, platforms)
    ali = await alipay_login(live, platforms)
    answer = await ask_to_join(live, ali)
    r = await confirm(live, ali, answer["link"]["challenge_id"], codes_sent(platforms)[0]["params"]["code"])
    assert r.status_code == 200, r.text
    return owner, r.json()["tokens"]


async def test_channels_are_listed_and_one_can_be_detached(live: Live, platforms: Platforms) -> None:
    owner, ali = await joined(live, platforms)
    r = await live.client.get("/api/v1/mp/me/channels", headers=auth(owner))
    assert r.status_code == 200
    listed = r.json()["channels"]
    assert [(c["channel"], c["name"], c["current"]) for c in listed] == [("wechat", "微信", True),
                                                                        ("alipay", "支付宝", False)]
    alipay_id = listed[1]["id"]
    assert (await live.client.delete(f"/api/v1/mp/me/channels/{alipay_id}", headers=auth(owner))).status_code == 204
    # The Alipay session ends at once; logging in with Alipay again is a fresh, empty account.
    assert (await live.client.get("/api/v1/mp/me", headers=auth(ali))).status_code == 401
    ident = await ChannelIdentity.get(id=alipay_id)
    assert ident.resident_id != owner["resident_id"]  # type: ignore[attr-defined]
    again = await alipay_login(live, platforms, open_id=ident.subject)
    assert again["resident_id"] != owner["resident_id"]
    me = await live.client.get("/api/v1/mp/me", headers=auth(again))
    assert me.json()["real_name"] == {"verified": False}
    r = await live.client.get("/api/v1/mp/me/channels", headers=auth(owner))
    assert [c["channel"] for c in r.json()["channels"]] == ["wechat"]
    # The last way in cannot be detached; another account's login is not found.
    wechat_id = r.json()["channels"][0]["id"]
    last = await live.client.delete(f"/api/v1/mp/me/channels/{wechat_id}", headers=auth(owner))
    assert (last.status_code, last.json()["error"]["code"]) == (409, "identity.last_channel")
    foreign = await live.client.delete(f"/api/v1/mp/me/channels/{wechat_id}", headers=auth(again))
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "identity.channel_not_found")
    assert "resident.channel_detached" in await actions()
    assert await OutboxEvent.filter(topic="resident.channel_detached").count() == 1


async def test_a_bound_resident_still_cannot_take_another_persons_number(live: Live, platforms: Platforms) -> None:
    owner = await owner_on_wechat(live, platforms)
    r = await live.client.put("/api/v1/mp/me/real-name", json=LI, headers=auth(owner))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "identity.already_bound")
