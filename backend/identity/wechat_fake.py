"""A fake WeChat API (code2Session, stable_token, subscribe messages) that speaks the same HTTP on loopback."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response

from backend import clock

_blueprints = itertools.count(1)


class AnyCode(dict[str, tuple[str, str | None]]):
    """Development logins: every code not used before logs in as openid `demo-<code>`, without unionid."""

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and bool(code)

    def __missing__(self, code: str) -> tuple[str, str | None]:
        return f"demo-{code}", None


@dataclass
class IssuedToken:
    token: str
    expires_at: float  # clock seconds (backend.clock), so tests can move time instead of sleeping
    revoked: bool = False


@dataclass
class InjectedFailure:
    errcode: int
    endpoint: str | None  # None: the next call to any endpoint
    status: int = 200


@dataclass
class FakeWeChat:
    """What the fake accepts, what it has issued and what it was asked; tests read and steer it."""

    app_id: str = "wx0fake000000000000"
    app_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    codes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # js_code -> (openid, unionid)
    token_ttl: int = 7200
    delay: float = 0.0  # seconds every answer waits: widens race windows, provokes client timeouts
    refused: set[str] = field(default_factory=set)  # openids that have not accepted a subscription
    calls: Counter[str] = field(default_factory=Counter)  # code2session, stable_token, subscribe_send
    forced_refreshes: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    failures: list[InjectedFailure] = field(default_factory=list)
    used_codes: set[str] = field(default_factory=set)
    current_token: str | None = None

    # ---- steering ------------------------------------------------------

    def issue_code(self, openid: str, unionid: str | None = None) -> str:
        """A fresh wx.login code that logs in as `openid`."""
        code = "code_" + secrets.token_hex(8)
        self.codes[code] = (openid, unionid)
        return code

    def fail_next(self, errcode: int, times: int = 1, *, endpoint: str | None = None, status: int = 200) -> None:
        """The next `times` calls (to `endpoint`, or to any) answer `errcode` with HTTP `status`."""
        self.failures.extend(InjectedFailure(errcode, endpoint, status) for _ in range(times))

    def revoke(self, token: str) -> None:
        """Later calls with `token` answer 40001 (invalid credential)."""
        self.tokens[token].revoked = True

    def expire(self, token: str) -> None:
        """Later calls with `token` answer 42001 (access_token expired)."""
        self.tokens[token].expires_at = _now() - 1

    # ---- what the handlers share ----------------------------------------

    def take_failure(self, endpoint: str) -> InjectedFailure | None:
        for i, failure in enumerate(self.failures):
            if failure.endpoint in (None, endpoint):
                return self.failures.pop(i)
        return None

    def check_token(self, token: str | None) -> int:
        """0 when `token` is good, otherwise the errcode WeChat answers for it."""
        if not token:
            return 41001
        issued = self.tokens.get(token)
        if issued is None or issued.revoked:
            return 40001
        if issued.expires_at <= _now():
            return 42001
        return 0

    def stable_token(self, *, force_refresh: bool) -> tuple[str, int]:
        current = self.tokens.get(self.current_token or "")
        if not force_refresh and current is not None and self.check_token(current.token) == 0:
            # Normal mode hands out the token still in force, with the seconds it has left.
            return current.token, int(current.expires_at - _now())
        if force_refresh:
            self.forced_refreshes += 1
            # Forced mode invalidates the previous token at once.
            if current is not None:
                current.revoked = True
        token = "tok_" + secrets.token_urlsafe(24)
        self.tokens[token] = IssuedToken(token=token, expires_at=_now() + self.token_ttl)
        self.current_token = token
        return token, self.token_ttl


def _now() -> float:
    return clock.now().timestamp()


def _answer(body: dict[str, Any], status: int = 200) -> HTTPResponse:
    return json_response(body, status=status, ensure_ascii=False)


def _error(errcode: int, errmsg: str, status: int = 200) -> HTTPResponse:
    # WeChat answers its errors with HTTP 200 and an errcode; only gateway trouble is a 5xx.
    return _answer({"errcode": errcode, "errmsg": f"{errmsg} rid: {secrets.token_hex(6)}"}, status)


_MESSAGES = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40013: "invalid appid",
    40029: "invalid code",
    40125: "invalid appsecret",
    40163: "code been used",
    41001: "access_token missing",
    41008: "missing code",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45011: "api minute-quota reach limit mustslower retry next minute",
    47001: "data format error",
}


def _failure(errcode: int, status: int = 200) -> HTTPResponse:
    return _error(errcode, _MESSAGES.get(errcode, "injected error"), status)


def _json_body(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(request.body or b"")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def blueprint(state: FakeWeChat, *, url_prefix: str = "") -> Blueprint:
    """The fake's routes, answering from `state`; mount on any Sanic app (a unique name per call)."""
    bp = Blueprint(f"fake_wechat_{id(state):x}_{next(_blueprints)}", url_prefix=url_prefix or None)

    async def begin(endpoint: str) -> HTTPResponse | None:
        state.calls[endpoint] += 1
        if state.delay:
            await asyncio.sleep(state.delay)
        injected = state.take_failure(endpoint)
        return _failure(injected.errcode, injected.status) if injected else None

    @bp.get("/sns/jscode2session")
    async def code2session(request: Request) -> HTTPResponse:
        if (injected := await begin("code2session")) is not None:
            return injected
        args = request.args
        if args.get("grant_type") != "authorization_code":
            return _failure(40002)
        if args.get("appid") != state.app_id:
            return _failure(40013)
        if args.get("secret") != state.app_secret:
            return _failure(40125)
        code = args.get("js_code")
        if not code:
            return _failure(41008)
        if code in state.used_codes:
            return _failure(40163)
        if code not in state.codes:
            return _failure(40029)
        state.used_codes.add(code)
        openid, unionid = state.codes[code]
        state.codes.pop(code, None)
        answer: dict[str, Any] = {
            "openid": openid,
            "session_key": base64.b64encode(secrets.token_bytes(16)).decode(),
        }
        if unionid is not None:
            answer["unionid"] = unionid
        return _answer(answer)

    @bp.post("/cgi-bin/stable_token")
    async def stable_token(request: Request) -> HTTPResponse:
        if (injected := await begin("stable_token")) is not None:
            return injected
        body = _json_body(request)
        if body is None:
            return _failure(47001)
        if body.get("grant_type") != "client_credential":
            return _failure(40002)
        if body.get("appid") != state.app_id:
            return _failure(40013)
        if body.get("secret") != state.app_secret:
            return _failure(40125)
        token, expires_in = state.stable_token(force_refresh=body.get("force_refresh") is True)
        return _answer({"access_token": token, "expires_in": expires_in})

    @bp.post("/cgi-bin/message/subscribe/send")
    async def subscribe_send(request: Request) -> HTTPResponse:
        if (injected := await begin("subscribe_send")) is not None:
            return injected
        if bad := state.check_token(request.args.get("access_token")):
            return _failure(bad)
        body = _json_body(request)
        if body is None or not body.get("touser") or not body.get("template_id"):
            return _failure(47001)
        if body["touser"] in state.refused:
            return _failure(43101)
        state.sent.append(body)
        return _answer({"errcode": 0, "errmsg": "ok", "msgid": len(state.sent)})

    return bp
