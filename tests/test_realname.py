"""HttpRealNameVerifier against the fake provider on loopback: signatures, outcomes, and no personal data leaks."""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from sanic import Sanic

from backend.errors import DomainError
from backend.identity.realname import HttpRealNameVerifier, RealNameResult, sign
from backend.identity.realname_fake import FakeRealName, blueprint
from backend.logs import JsonFormatter
from tests.conftest import free_socket, start_app, stop_app

NAME, ID_NUMBER, PHONE = "张三", "11010519491231002X", "13800138000"
PERSONAL = (NAME, ID_NUMBER, PHONE, "19491231002")


@dataclass
class Fake:
    state: FakeRealName
    url: str


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    Sanic.test_mode = True
    state = FakeRealName(app_id="palmhall")
    app = Sanic(f"fake_{uuid.uuid4().hex[:8]}")
    app.blueprint(blueprint(state, url_prefix="/realname"))
    server, url = await start_app(app)
    try:
        yield Fake(state=state, url=url + "/realname")
    finally:
        await stop_app(server)
        Sanic._app_registry.pop(app.name, None)


@pytest.fixture
async def verifier(fake: Fake) -> AsyncIterator[HttpRealNameVerifier]:
    v = HttpRealNameVerifier(fake.url, "palmhall", fake.state.secret)
    yield v
    await v.aclose()


def leaks(err: DomainError) -> list[str]:
    """Personal data found anywhere an exception is shown: text, repr, details, traceback."""
    shown = " ".join([
        str(err), repr(err), err.message, json.dumps(err.details, ensure_ascii=False),
        "".join(traceback.format_exception(err)),
    ])
    return [p for p in PERSONAL if p in shown]


async def verify_failure(v: HttpRealNameVerifier) -> DomainError:
    with pytest.raises(DomainError) as info:
        await v.verify(name=NAME, id_number=ID_NUMBER, phone=PHONE)
    return info.value


async def test_a_matching_person_is_matched(fake: Fake, verifier: HttpRealNameVerifier) -> None:
    result = await verifier.verify(name=NAME, id_number=ID_NUMBER, phone=PHONE)
    assert result == RealNameResult(matched=True, reason=None)
    assert fake.state.calls == {"verify": 1, "matched": 1}


async def test_a_registered_mismatch_is_not_matched(fake: Fake, verifier: HttpRealNameVerifier) -> None:
    fake.state.mismatch(NAME, ID_NUMBER)
    result = await verifier.verify(name=NAME, id_number=ID_NUMBER, phone=PHONE)
    assert result == RealNameResult(matched=False, reason="name_id_mismatch")
    # Someone else with the same name is still matched.
    assert (await verifier.verify(name=NAME, id_number="110105194912310037", phone=PHONE)).matched
    assert fake.state.calls["mismatched"] == 1


async def test_a_provider_that_is_down_is_unavailable_and_retryable(
    fake: Fake, verifier: HttpRealNameVerifier
) -> None:
    fake.state.down = True
    err = await verify_failure(verifier)
    assert (err.code, err.status) == ("identity.realname_unavailable", 503)
    assert err.details == {"retryable": True, "cause": "http_503"}
    assert fake.state.calls["unavailable"] == 1
    assert leaks(err) == []


async def test_a_wrong_secret_is_refused_by_the_provider(fake: Fake) -> None:
    v = HttpRealNameVerifier(fake.url, "palmhall", "not-the-shared-secret")
    try:
        err = await verify_failure(v)
    finally:
        await v.aclose()
    assert (err.code, err.status) == ("identity.realname_unavailable", 503)
    # Not worth retrying: an operator must fix the configuration.
    assert err.details == {"retryable": False, "cause": "signature_refused"}
    assert fake.state.calls["unauthorized"] == 1
    assert fake.state.calls["matched"] == 0
    assert leaks(err) == []


async def test_a_wrong_app_id_is_refused_by_the_provider(fake: Fake) -> None:
    v = HttpRealNameVerifier(fake.url, "someone-else", fake.state.secret)
    try:
        err = await verify_failure(v)
    finally:
        await v.aclose()
    assert err.details["cause"] == "signature_refused"
    assert fake.state.calls["unauthorized"] == 1


async def test_the_fake_refuses_a_replayed_or_tampered_request(fake: Fake) -> None:
    body = json.dumps({"name": NAME, "id_number": ID_NUMBER, "phone": PHONE}, ensure_ascii=False).encode()
    timestamp, nonce = str(int(time.time())), "nonce-0001"
    headers = {
        "Content-Type": "application/json", "X-App-Id": "palmhall", "X-Timestamp": timestamp, "X-Nonce": nonce,
        "X-Signature": sign(fake.state.secret, timestamp=timestamp, nonce=nonce, body=body),
    }
    async with httpx.AsyncClient() as http:
        first = await http.post(fake.url + "/v1/verify", content=body, headers=headers)
        replayed = await http.post(fake.url + "/v1/verify", content=body, headers=headers)
        tampered = await http.post(
            fake.url + "/v1/verify", content=body.replace(PHONE.encode(), b"13900139000"),
            headers={**headers, "X-Nonce": "nonce-0002"},
        )
    assert (first.status_code, first.json()) == (200, {"matched": True, "reason": None})
    assert replayed.status_code == 401
    assert tampered.status_code == 401
    assert fake.state.calls["unauthorized"] == 2


async def test_an_unreachable_provider_is_unavailable() -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    v = HttpRealNameVerifier(f"http://127.0.0.1:{port}", "palmhall", "secret-value")
    try:
        err = await verify_failure(v)
    finally:
        await v.aclose()
    assert err.code == "identity.realname_unavailable"
    assert err.details["retryable"] is True
    # The failed request (which holds the personal data) is not chained to the error.
    assert err.__cause__ is None and err.__context__ is None
    assert leaks(err) == []


async def test_personal_data_never_reaches_a_log_or_the_fake(
    fake: Fake, verifier: HttpRealNameVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    palmhall_log = logging.getLogger("palmhall")
    palmhall_log.addHandler(caplog.handler)
    try:
        fake.state.mismatch(NAME, ID_NUMBER)
        await verifier.verify(name=NAME, id_number=ID_NUMBER, phone=PHONE)
        fake.state.down = True
        await verify_failure(verifier)
        bad = HttpRealNameVerifier(fake.url, "palmhall", "wrong")
        await verify_failure(bad)
        await bad.aclose()
    finally:
        palmhall_log.removeHandler(caplog.handler)
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "refused our signature" in logged  # the logs were captured
    assert [p for p in PERSONAL if p in logged] == []
    # The fake keeps counts and digests, never the data it was sent.
    assert [p for p in PERSONAL if p in repr(fake.state)] == []
