"""WeChatClient against the fake WeChat on loopback: login, errors, and one shared access_token."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from sanic import Sanic

from backend.errors import DomainError
from backend.identity.wechat import WeChatClient
from backend.identity.wechat_fake import AnyCode, FakeWeChat, blueprint
from backend.logs import JsonFormatter
from tests.conftest import free_socket, start_app, stop_app

TOKEN_KEY = "palmhall:wechat:access_token:wx0fake000000000000"


@dataclass
class Fake:
    state: FakeWeChat
    url: str


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    Sanic.test_mode = True
    state = FakeWeChat()
    app = Sanic(f"fake_{uuid.uuid4().hex[:8]}")
    app.blueprint(blueprint(state))
    server, url = await start_app(app)
    try:
        yield Fake(state=state, url=url)
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


MakeClient = Callable[..., WeChatClient]


@pytest.fixture
async def make_client(fake: Fake, redis: Redis) -> AsyncIterator[MakeClient]:
    """WeChatClients on the fake (one per simulated process), all sharing the test's Redis."""
    made: list[WeChatClient] = []

    def make(**overrides: Any) -> WeChatClient:
        options: dict[str, Any] = {
            "base_url": fake.url,
            "app_id": fake.state.app_id,
            "app_secret": fake.state.app_secret,
            "redis": redis,
        }
        options.update(overrides)
        client = WeChatClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


async def raises(awaitable: Any) -> DomainError:
    with pytest.raises(DomainError) as info:
        await awaitable
    return info.value


def subscribe_message(openid: str = "o_resident_1") -> dict[str, Any]:
    return {
        "touser": openid,
        "template_id": "tmpl_appointment_reminder",
        "data": {"thing1": {"value": "户籍业务预约提醒"}, "time2": {"value": "2026-03-03 09:30"}},
    }


# ---- login -------------------------------------------------------------------


async def test_code2session_returns_openid_unionid_and_session_key(fake: Fake, make_client: MakeClient) -> None:
    client = make_client()
    code = fake.state.issue_code("o_resident_1", "u_union_1")
    session = await client.code2session(code)
    assert session.openid == "o_resident_1"
    assert session.unionid == "u_union_1"
    assert len(session.session_key) == 24  # base64 of 16 bytes
    # A logged session never shows its key.
    assert session.session_key not in repr(session)
    assert fake.state.calls["code2session"] == 1


async def test_code2session_without_unionid_gives_none(fake: Fake, make_client: MakeClient) -> None:
    session = await make_client().code2session(fake.state.issue_code("o_resident_2"))
    assert session.openid == "o_resident_2"
    assert session.unionid is None


async def test_a_code_works_once(fake: Fake, make_client: MakeClient) -> None:
    client = make_client()
    code = fake.state.issue_code("o_resident_1")
    await client.code2session(code)
    err = await raises(client.code2session(code))
    assert (err.code, err.status) == ("auth.wechat_code_used", 400)
    assert err.details == {"errcode": 40163}


async def test_an_unknown_code_is_invalid(fake: Fake, make_client: MakeClient) -> None:
    err = await raises(make_client().code2session("never-issued"))
    assert (err.code, err.status, err.message) == ("auth.wechat_code_invalid", 400, "登录凭证无效，请重新登录")
    assert err.details == {"errcode": 40029}


async def test_the_development_fake_logs_any_code_in_once(fake: Fake, make_client: MakeClient) -> None:
    fake.state.codes = AnyCode()
    client = make_client()
    session = await client.code2session("0a1B2c")
    assert (session.openid, session.unionid) == ("demo-0a1B2c", None)
    assert (await raises(client.code2session("0a1B2c"))).code == "auth.wechat_code_used"


async def test_an_empty_code_is_refused_without_asking_wechat(fake: Fake, make_client: MakeClient) -> None:
    err = await raises(make_client().code2session("  "))
    assert err.code == "auth.wechat_code_invalid"
    assert fake.state.calls["code2session"] == 0


@pytest.mark.parametrize(
    ("errcode", "code", "status", "details"),
    [
        (45011, "auth.wechat_rate_limited", 429, {"errcode": 45011, "retryable": True}),
        (-1, "auth.wechat_busy", 503, {"errcode": -1, "retryable": True}),
        (40029, "auth.wechat_code_invalid", 400, {"errcode": 40029}),
        (40163, "auth.wechat_code_used", 400, {"errcode": 40163}),
        (40226, "auth.wechat_failed", 502, {"errcode": 40226}),
    ],
)
async def test_each_wechat_errcode_maps_to_its_code_and_status(
    fake: Fake, make_client: MakeClient, errcode: int, code: str, status: int, details: dict[str, Any]
) -> None:
    login = fake.state.issue_code("o_resident_1")
    fake.state.fail_next(errcode, endpoint="code2session")
    err = await raises(make_client().code2session(login))
    assert (err.code, err.status, err.details) == (code, status, details)
    # The injected failure did not consume the code: the resident's retry works.
    assert (await make_client().code2session(login)).openid == "o_resident_1"


async def test_a_wrong_app_secret_is_a_failure_that_never_shows_the_secret(
    fake: Fake, make_client: MakeClient
) -> None:
    wrong = "wrong-secret-do-not-show-0123456789"
    client = make_client(app_secret=wrong)
    for attempt in (client.code2session(fake.state.issue_code("o_resident_1")), client.access_token()):
        err = await raises(attempt)
        assert (err.code, err.status, err.details) == ("auth.wechat_failed", 502, {"errcode": 40125})
        assert wrong not in f"{err} {err!r} {err.details}"


async def test_wechat_5xx_is_unavailable_and_retryable(fake: Fake, make_client: MakeClient) -> None:
    fake.state.fail_next(-1, endpoint="code2session", status=502)
    err = await raises(make_client().code2session(fake.state.issue_code("o_resident_1")))
    assert (err.code, err.status) == ("auth.wechat_unavailable", 503)
    assert err.details["retryable"] is True


async def test_connection_refused_is_unavailable(redis: Redis) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nobody listens there now: connection refused
    client = WeChatClient(base_url=f"http://127.0.0.1:{port}", app_id="wx_app", app_secret="s3cret-value", redis=redis)
    try:
        for attempt in (client.code2session("abc"), client.access_token()):
            err = await raises(attempt)
            assert (err.code, err.status) == ("auth.wechat_unavailable", 503)
            assert err.details["retryable"] is True
            # Nothing from the failed request (whose URL holds the secret) rides along.
            assert err.__cause__ is None and err.__context__ is None
            assert "s3cret-value" not in str(err.details)
    finally:
        await client.aclose()


async def test_a_slow_wechat_times_out_as_unavailable(fake: Fake, make_client: MakeClient) -> None:
    fake.state.delay = 0.5
    err = await raises(make_client(timeout=0.1).code2session(fake.state.issue_code("o_resident_1")))
    assert err.code == "auth.wechat_unavailable"
    assert err.details == {"retryable": True, "reason": "timeout"}


async def test_secrets_codes_and_keys_never_reach_a_log(
    fake: Fake, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # palmhall's logger may not propagate once the app's logging is set up: listen to it directly.
    palmhall_log = logging.getLogger("palmhall")
    palmhall_log.addHandler(caplog.handler)
    try:
        client = make_client()
        code = fake.state.issue_code("o_resident_1")
        session = await client.code2session(code)
        await raises(client.code2session(code))  # a logged refusal
        token = await client.access_token()
        fake.state.revoke(token)
        await client.post_with_token("/cgi-bin/message/subscribe/send", subscribe_message())
    finally:
        palmhall_log.removeHandler(caplog.handler)
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "wechat refused" in logged and "HTTP Request" in logged  # the logs were captured
    for secret in (fake.state.app_secret, session.session_key, code, token):
        assert secret not in logged


# ---- access token ------------------------------------------------------------


async def test_twenty_concurrent_callers_in_five_processes_fetch_the_token_once(
    fake: Fake, make_client: MakeClient, redis: Redis
) -> None:
    fake.state.delay = 0.05  # keep the first fetch in flight while everyone else asks
    clients = [make_client() for _ in range(5)]
    tokens = await asyncio.gather(*(clients[i % 5].access_token() for i in range(20)))
    assert fake.state.calls["stable_token"] == 1
    assert set(tokens) == {fake.state.current_token}
    # Cached with WeChat's 7200 s less the 5 min margin.
    assert 6890 <= await redis.ttl(TOKEN_KEY) <= 6900
    # Later callers, in any process, are served from Redis.
    assert await make_client().access_token() == tokens[0]
    assert fake.state.calls["stable_token"] == 1


async def test_an_expired_cache_entry_is_refreshed(fake: Fake, make_client: MakeClient, redis: Redis) -> None:
    client = make_client()
    first = await client.access_token()
    fake.state.expire(first)
    await redis.pexpire(TOKEN_KEY, 1)
    await asyncio.sleep(0.01)
    second = await client.access_token()
    assert second != first
    assert fake.state.calls["stable_token"] == 2
    assert fake.state.forced_refreshes == 0  # an ordinary refresh, not a forced one


async def test_a_refused_token_is_force_refreshed_once_and_the_call_retried_once(
    fake: Fake, make_client: MakeClient
) -> None:
    client = make_client()
    first = await client.access_token()
    fake.state.fail_next(40001, endpoint="subscribe_send")
    answer = await client.post_with_token("/cgi-bin/message/subscribe/send", subscribe_message())
    assert answer["errcode"] == 0
    assert fake.state.calls["stable_token"] == 2
    assert fake.state.forced_refreshes == 1
    assert fake.state.calls["subscribe_send"] == 2
    assert len(fake.state.sent) == 1
    assert await client.access_token() == fake.state.current_token != first


@pytest.mark.parametrize("spoil", ["revoke", "expire"])
async def test_a_token_wechat_no_longer_honours_is_replaced(fake: Fake, make_client: MakeClient, spoil: str) -> None:
    client = make_client()
    first = await client.access_token()
    getattr(fake.state, spoil)(first)  # answers 40001 (revoked) or 42001 (expired)
    answer = await client.post_with_token("/cgi-bin/message/subscribe/send", subscribe_message())
    assert answer["errcode"] == 0
    assert fake.state.forced_refreshes == 1
    assert fake.state.sent[0]["touser"] == "o_resident_1"


async def test_a_second_refusal_after_the_retry_is_an_error_not_a_loop(fake: Fake, make_client: MakeClient) -> None:
    client = make_client()
    fake.state.fail_next(40001, times=2, endpoint="subscribe_send")
    err = await raises(client.post_with_token("/cgi-bin/message/subscribe/send", subscribe_message()))
    assert (err.code, err.status, err.details) == ("auth.wechat_failed", 502, {"errcode": 40001})
    assert fake.state.calls["subscribe_send"] == 2
    assert fake.state.forced_refreshes == 1
    assert fake.state.sent == []


async def test_many_callers_refused_the_same_token_force_refresh_once(fake: Fake, make_client: MakeClient) -> None:
    clients = [make_client() for _ in range(5)]
    first = await clients[0].access_token()
    fake.state.revoke(first)
    fake.state.delay = 0.02
    answers = await asyncio.gather(*(
        clients[i % 5].post_with_token("/cgi-bin/message/subscribe/send", subscribe_message(f"o_{i}"))
        for i in range(10)
    ))
    assert [a["errcode"] for a in answers] == [0] * 10
    # Only the first to hold the lock forced a new token; the rest found it already replaced.
    assert fake.state.forced_refreshes == 1
    assert fake.state.calls["stable_token"] == 2
    assert len(fake.state.sent) == 10


async def test_waiters_share_a_failed_refresh_instead_of_each_calling_wechat(
    fake: Fake, make_client: MakeClient
) -> None:
    fake.state.delay = 0.05
    fake.state.fail_next(-1, endpoint="stable_token")
    clients = [make_client() for _ in range(5)]
    results = await asyncio.gather(*(c.access_token() for c in clients * 2), return_exceptions=True)
    assert all(isinstance(r, DomainError) and r.code == "auth.wechat_busy" for r in results)
    assert fake.state.calls["stable_token"] == 1
    # The outage is over: the next caller gets a token.
    assert await clients[0].access_token() == fake.state.current_token
    assert fake.state.calls["stable_token"] == 2


async def test_other_errcodes_come_back_to_the_caller(fake: Fake, make_client: MakeClient) -> None:
    fake.state.refused.add("o_not_subscribed")
    answer = await make_client().post_with_token(
        "/cgi-bin/message/subscribe/send", subscribe_message("o_not_subscribed")
    )
    assert answer["errcode"] == 43101
    assert fake.state.forced_refreshes == 0
    assert fake.state.calls["subscribe_send"] == 1


async def test_call_with_token_hands_the_token_to_any_call(fake: Fake, make_client: MakeClient) -> None:
    client = make_client()
    seen: list[str] = []

    async def call(token: str) -> dict[str, Any]:
        seen.append(token)
        return {"errcode": 42001} if len(seen) == 1 else {"errcode": 0, "echo": json.dumps(token)}

    answer = await client.call_with_token(call)
    assert answer["errcode"] == 0
    assert len(seen) == 2 and seen[0] != seen[1] == fake.state.current_token
