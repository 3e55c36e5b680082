"""The Alipay gateway client against the fake gateway served over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sanic import Sanic

from backend import clock
from backend.errors import DomainError
from backend.identity.alipay import (
    AlipayClient,
    AlipayError,
    AlipayUser,
    load_private_key,
    load_public_key,
    rsa2_sign,
    rsa2_verify,
    sign_content,
)
from backend.identity.alipay_fake import FakeAlipay, blueprint
from tests.conftest import free_socket, start_app, stop_app

APP_ID = "2021004100000001"


@dataclass
class Gateway:
    fake: FakeAlipay
    url: str  # the gateway endpoint, .../gateway.do

    def client(self, **overrides: Any) -> AlipayClient:
        options: dict[str, Any] = {
            "gateway": self.url,
            "app_id": APP_ID,
            "app_private_key": self.fake.app_private_key_b64,
            "alipay_public_key": self.fake.alipay_public_key_b64,
        }
        options.update(overrides)
        return AlipayClient(**options)


@pytest.fixture(scope="module")
def keys() -> FakeAlipay:
    """Both key pairs, made once: RSA key generation would otherwise dominate the run."""
    return FakeAlipay.generate(app_id=APP_ID)


@pytest.fixture(scope="module")
def stranger() -> rsa.RSAPrivateKey:
    """A key pair nobody configured: neither ours nor Alipay's."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def gateway(keys: FakeAlipay) -> AsyncIterator[Gateway]:
    Sanic.test_mode = True
    fake = keys.with_same_keys()
    app = Sanic(f"fake_alipay_{uuid.uuid4().hex[:8]}")
    app.blueprint(blueprint(fake, url_prefix="/openapi"))
    server, url = await start_app(app)
    try:
        yield Gateway(fake=fake, url=f"{url}/openapi/gateway.do")
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AlipayClient]:
    c = gateway.client()
    try:
        yield c
    finally:
        await c.aclose()


def b64_private(key: rsa.RSAPrivateKey) -> str:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return base64.b64encode(der).decode()


def b64_public(key: rsa.RSAPrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


async def failure(call: Any) -> DomainError:
    with pytest.raises(DomainError) as info:
        await call
    return info.value


# ---- login by auth code ----------------------------------------------------------


async def test_valid_code_gives_user_id_and_open_id(gateway: Gateway, client: AlipayClient) -> None:
    code = gateway.fake.add_code(user_id="2088102150477652", open_id="074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5")

    user = await client.oauth_token(code)

    assert isinstance(user, AlipayUser)
    assert user.user_id == "2088102150477652"
    assert user.open_id == "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"
    assert user.access_token.startswith("authusrB")
    assert gateway.fake.requests == ["alipay.system.oauth.token"]
    sent = gateway.fake.last_params
    assert (sent["app_id"], sent["sign_type"], sent["charset"], sent["version"]) == (APP_ID, "RSA2", "utf-8", "1.0")
    assert (sent["grant_type"], sent["code"]) == ("authorization_code", code)
    # Alipay reads the timestamp as Beijing time.
    sent_at = datetime.strptime(sent["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=clock.SHANGHAI)
    assert abs(sent_at - clock.now()) < timedelta(minutes=1)


async def test_newer_app_gets_only_open_id(gateway: Gateway, client: AlipayClient) -> None:
    code = gateway.fake.add_code(open_id="074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5")

    user = await client.oauth_token(code)

    assert user.user_id is None
    assert user.open_id == "074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5"


async def test_code_is_one_use(gateway: Gateway, client: AlipayClient) -> None:
    code = gateway.fake.add_code(user_id="2088102150477652")
    await client.oauth_token(code)

    err = await failure(client.oauth_token(code))

    assert (err.code, err.status) == ("auth.alipay_code_invalid", 400)
    assert err.message == "支付宝授权码无效或已使用，请重新授权登录"
    assert isinstance(err, AlipayError) and err.sub_code == "isv.code-invalid"


async def test_unknown_code_is_invalid(client: AlipayClient) -> None:
    err = await failure(client.oauth_token("never-issued"))

    assert (err.code, err.status) == ("auth.alipay_code_invalid", 400)


@pytest.mark.parametrize("sub_code", ["isv.invalid-auth-code", "invalid-auth-code"])
async def test_other_spellings_of_an_invalid_code(gateway: Gateway, client: AlipayClient, sub_code: str) -> None:
    gateway.fake.fail_next(sub_code)

    err = await failure(client.oauth_token(gateway.fake.add_code(user_id="2088102150477652")))

    assert err.code == "auth.alipay_code_invalid"


# ---- signatures --------------------------------------------------------------------


async def test_gateway_refuses_a_request_signed_with_another_key(gateway: Gateway,
                                                                stranger: rsa.RSAPrivateKey) -> None:
    code = gateway.fake.add_code(user_id="2088102150477652")
    impostor = gateway.client(app_private_key=b64_private(stranger))
    try:
        err = await failure(impostor.oauth_token(code))
    finally:
        await impostor.aclose()

    # The refusal itself is signed by the gateway, so its sub code is trusted and passed on.
    assert (err.code, err.status) == ("auth.alipay_failed", 502)
    assert err.details == {"sub_code": "isv.invalid-signature"}
    # A refused request spends nothing: the resident's code still works with the right key.
    good = gateway.client()
    try:
        assert (await good.oauth_token(code)).user_id == "2088102150477652"
    finally:
        await good.aclose()


async def test_answer_signed_by_another_key_is_refused(gateway: Gateway, stranger: rsa.RSAPrivateKey) -> None:
    code = gateway.fake.add_code(user_id="2088102150477652")
    misconfigured = gateway.client(alipay_public_key=b64_public(stranger))
    try:
        err = await failure(misconfigured.oauth_token(code))
    finally:
        await misconfigured.aclose()

    assert (err.code, err.status) == ("auth.alipay_signature_invalid", 502)
    assert err.message == "支付宝返回的数据未通过验签，请稍后重试"


async def test_answer_tampered_in_transit_is_refused(gateway: Gateway, client: AlipayClient) -> None:
    gateway.fake.tamper = True

    err = await failure(client.oauth_token(gateway.fake.add_code(user_id="2088102150477652")))

    assert err.code == "auth.alipay_signature_invalid"


async def test_unsigned_answer_is_refused(gateway: Gateway, client: AlipayClient) -> None:
    gateway.fake.sign_answers = False

    err = await failure(client.oauth_token(gateway.fake.add_code(user_id="2088102150477652")))

    assert err.code == "auth.alipay_signature_invalid"


async def test_unsigned_error_is_not_believed(gateway: Gateway, client: AlipayClient) -> None:
    # Even an error is not acted on unsigned: "code invalid" would tell the resident to log in again.
    gateway.fake.sign_answers = False

    err = await failure(client.oauth_token("never-issued"))

    assert err.code == "auth.alipay_signature_invalid"


@pytest.mark.parametrize("form", ["pem_pkcs1", "pem_pkcs8", "dev_marked_base64"])
async def test_keys_are_accepted_as_pem_or_bare_base64(gateway: Gateway, form: str) -> None:
    app_key = serialization.load_der_private_key(base64.b64decode(gateway.fake.app_private_key_b64), password=None)
    alipay_pub = serialization.load_der_public_key(base64.b64decode(gateway.fake.alipay_public_key_b64))
    public_pem = alipay_pub.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    private = {
        "pem_pkcs1": app_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()).decode(),
        "pem_pkcs8": app_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode(),
        "dev_marked_base64": "dev-" + gateway.fake.app_private_key_b64,
    }[form]
    public = public_pem if form.startswith("pem") else "dev-" + gateway.fake.alipay_public_key_b64
    c = gateway.client(app_private_key=private, alipay_public_key=public)
    try:
        user = await c.oauth_token(gateway.fake.add_code(user_id="2088102150477652"))
    finally:
        await c.aclose()

    assert user.user_id == "2088102150477652"


@pytest.mark.parametrize("field", ["app_private_key", "alipay_public_key"])
def test_a_key_that_is_no_rsa_key_stops_construction(keys: FakeAlipay, field: str) -> None:
    options: dict[str, Any] = {"gateway": "http://127.0.0.1:9/gateway.do", "app_id": APP_ID,
                               "app_private_key": keys.app_private_key_b64,
                               "alipay_public_key": keys.alipay_public_key_b64}
    options[field] = "dev-QBhEwmeYyHcS1lxK0Yh8xTyXqUO5d9gxWwZtfMlvXC4"

    with pytest.raises(ValueError) as info:
        AlipayClient(**options)

    assert "QBhE" not in str(info.value)


# ---- failures of the gateway -------------------------------------------------------


async def test_gateway_down_is_unavailable(gateway: Gateway) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there any more
    c = gateway.client(gateway=f"http://127.0.0.1:{port}/gateway.do")
    try:
        err = await failure(c.oauth_token("any"))
    finally:
        await c.aclose()

    assert (err.code, err.status) == ("auth.alipay_unavailable", 503)
    assert err.headers == {"Retry-After": "2"}


async def test_gateway_5xx_is_unavailable(gateway: Gateway, client: AlipayClient) -> None:
    gateway.fake.fail_next_http(502)

    err = await failure(client.oauth_token(gateway.fake.add_code(user_id="2088102150477652")))

    assert (err.code, err.status) == ("auth.alipay_unavailable", 503)


async def test_alipay_service_unavailable_code_is_retryable(gateway: Gateway, client: AlipayClient) -> None:
    gateway.fake.fail_next("isp.unknow-error", "服务暂不可用")

    err = await failure(client.oauth_token(gateway.fake.add_code(user_id="2088102150477652")))

    assert (err.code, err.status) == ("auth.alipay_unavailable", 503)


async def test_slow_gateway_times_out_as_unavailable(gateway: Gateway) -> None:
    gateway.fake.delay = 1.0
    c = gateway.client(timeout=0.2)
    try:
        err = await failure(c.oauth_token(gateway.fake.add_code(user_id="2088102150477652")))
    finally:
        await c.aclose()

    assert err.code == "auth.alipay_unavailable"


async def test_other_errors_pass_only_the_sub_code(gateway: Gateway, client: AlipayClient) -> None:
    gateway.fake.fail_next("isv.app-unauthorized", "应用未开通获取会员信息权限", code="40006")

    err = await failure(client.oauth_token(gateway.fake.add_code(user_id="2088102150477652")))

    assert (err.code, err.status) == ("auth.alipay_failed", 502)
    assert err.details == {"sub_code": "isv.app-unauthorized"}
    assert err.message == "支付宝登录失败，请稍后重试"


async def test_wrong_app_id_is_refused_by_the_gateway(gateway: Gateway) -> None:
    c = gateway.client(app_id="2021000000009999")
    try:
        err = await failure(c.oauth_token(gateway.fake.add_code(user_id="2088102150477652")))
    finally:
        await c.aclose()

    assert err.details == {"sub_code": "isv.invalid-app-id"}


async def test_waiting_for_alipay_does_not_block_the_loop(gateway: Gateway, client: AlipayClient) -> None:
    gateway.fake.delay = 0.5
    code = gateway.fake.add_code(open_id="074a1CcTG1LelxKe4xQC0zgNdId0nxi95b5lsNpazWYoCo5")
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        user = await client.oauth_token(code)
    finally:
        task.cancel()

    assert user.open_id is not None
    # Half a second of waiting leaves room for dozens of 10 ms ticks, none of them held up.
    assert len(gaps) >= 20
    assert max(gaps) < 0.25


async def test_development_fake_accepts_any_code_once(gateway: Gateway, client: AlipayClient) -> None:
    gateway.fake.accept_any_code = True

    user = await client.oauth_token("whatever-the-simulator-sent")
    err = await failure(client.oauth_token("whatever-the-simulator-sent"))

    assert (user.user_id, user.open_id) == (None, "demo-whatever-the-simulator-sent")
    assert err.code == "auth.alipay_code_invalid"


# ---- the fake's wire format, read raw ------------------------------------------------


async def test_fake_answers_get_in_alipay_layout(gateway: Gateway) -> None:
    code = gateway.fake.add_code(user_id="2088102150477652")
    app_key = load_private_key(gateway.fake.app_private_key_b64)
    params = {"app_id": APP_ID, "method": "alipay.system.oauth.token", "format": "json", "charset": "utf-8",
              "sign_type": "RSA2", "timestamp": "2026-03-02 09:00:00", "version": "1.0",
              "grant_type": "authorization_code", "code": code}
    params["sign"] = rsa2_sign(app_key, sign_content(params))

    async with httpx.AsyncClient() as http:
        answer = await http.get(gateway.url, params=params)
        refused = await http.get(gateway.url, params={**params, "code": "other"})

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html;charset=utf-8"
    body = answer.text
    assert body.startswith('{"alipay_system_oauth_token_response":{"user_id":"2088102150477652",')
    node_text = body[len('{"alipay_system_oauth_token_response":'):body.index(',"sign":"')]
    signature = json.loads(body)["sign"]
    assert rsa2_verify(load_public_key(gateway.fake.alipay_public_key_b64), node_text.encode(), signature)
    # Changing any parameter breaks our signature; the refusal comes back signed, in error_response.
    assert json.loads(refused.text)["error_response"]["sub_code"] == "isv.invalid-signature"
    assert "sign" in json.loads(refused.text)


# ---- the generic call that payments reuse ------------------------------------------------


async def test_execute_returns_the_verified_node_of_a_registered_method(gateway: Gateway,
                                                                        client: AlipayClient) -> None:
    seen: list[dict[str, Any]] = []

    def trade_query(params: dict[str, str], biz: dict[str, Any]) -> dict[str, Any]:
        seen.append(biz)
        return {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"],
                "trade_no": "2026030222001400000000000001", "trade_status": "TRADE_SUCCESS",
                "total_amount": "12.50", "subject": "不动产登记费"}

    gateway.fake.handlers["alipay.trade.query"] = trade_query

    node = await client.execute("alipay.trade.query", {"out_trade_no": "PH202603020001", "备注": "中文"},
                                notify_url="https://palmhall.example/api/v1/payments/callbacks/alipay")

    assert node["trade_status"] == "TRADE_SUCCESS"
    assert node["subject"] == "不动产登记费"
    # Chinese in biz_content survived signing and form encoding byte for byte.
    assert seen == [{"out_trade_no": "PH202603020001", "备注": "中文"}]
    assert gateway.fake.last_params["notify_url"] == "https://palmhall.example/api/v1/payments/callbacks/alipay"


async def test_execute_business_failure_carries_sub_code(gateway: Gateway, client: AlipayClient) -> None:
    gateway.fake.handlers["alipay.trade.query"] = lambda params, biz: {"code": "10000"}
    gateway.fake.fail_next("ACQ.TRADE_NOT_EXIST", "交易不存在")

    err = await failure(client.execute("alipay.trade.query", {"out_trade_no": "PH404"}))

    assert isinstance(err, AlipayError)
    assert (err.code, err.sub_code, err.sub_msg, err.alipay_code) == (
        "auth.alipay_failed", "ACQ.TRADE_NOT_EXIST", "交易不存在", "40004")


async def test_execute_unknown_method_is_refused(client: AlipayClient) -> None:
    err = await failure(client.execute("alipay.trade.nonexistent"))

    assert err.details == {"sub_code": "isv.invalid-method"}


async def test_execute_refuses_parameters_the_client_sets(client: AlipayClient) -> None:
    with pytest.raises(ValueError):
        await client.execute("alipay.trade.query", sign="forged")


# ---- the official SDK as an independent check of the wire format ---------------------


def sdk_client(gateway: Gateway, *, monkeypatch: pytest.MonkeyPatch) -> Any:
    """alipay-sdk-python's DefaultAlipayClient pointed at the fake, with its port bug patched."""
    pytest.importorskip("alipay.aop.api")
    import http.client
    from urllib.parse import urlsplit

    import alipay.aop.api.util.WebUtils as web_utils
    from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
    from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient

    def connection(url: str, query_string: str, timeout: float) -> tuple[str, http.client.HTTPConnection]:
        # The SDK connects to port 80 whatever the URL says; this is the one thing changed.
        parts = urlsplit(url)
        return f"{parts.path}?{query_string}", http.client.HTTPConnection(parts.hostname or "", parts.port,
                                                                        timeout=timeout)

    monkeypatch.setattr(web_utils, "get_http_connection", connection)
    key = serialization.load_der_private_key(base64.b64decode(gateway.fake.app_private_key_b64), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    config = AlipayClientConfig()
    config.server_url = gateway.url
    config.app_id = APP_ID
    # The SDK signs with PKCS#1 keys only.
    config.app_private_key = base64.b64encode(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )).decode()
    config.alipay_public_key = gateway.fake.alipay_public_key_b64
    return DefaultAlipayClient(config)


async def test_official_sdk_and_fake_agree_on_the_wire_format(gateway: Gateway,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sdk = sdk_client(gateway, monkeypatch=monkeypatch)
    from alipay.aop.api.exception.Exception import ResponseException
    from alipay.aop.api.request.AlipaySystemOauthTokenRequest import AlipaySystemOauthTokenRequest

    def request(code: str) -> Any:
        r = AlipaySystemOauthTokenRequest()
        r.grant_type, r.code = "authorization_code", code
        return r

    # The SDK is blocking: in a thread, or the fake on this loop could never answer it.
    node = json.loads(await asyncio.to_thread(sdk.execute, request(gateway.fake.add_code(user_id="2088102150477652"))))
    assert node["user_id"] == "2088102150477652"

    gateway.fake.tamper = True
    with pytest.raises(ResponseException):
        await asyncio.to_thread(sdk.execute, request(gateway.fake.add_code(user_id="2088102150477652")))
