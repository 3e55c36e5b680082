"""WeChat mini-program client: code2Session login and one shared stable access_token per app."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis

from backend.errors import DomainError, register_codes

log = logging.getLogger("palmhall.identity.wechat")

register_codes({
    "auth.wechat_code_invalid": (400, "登录凭证无效，请重新登录"),
    "auth.wechat_code_used": (400, "登录凭证已使用，请重新登录"),
    "auth.wechat_rate_limited": (429, "微信登录过于频繁，请稍后再试"),
    "auth.wechat_busy": (503, "微信服务繁忙，请稍后再试"),
    "auth.wechat_unavailable": (503, "暂时无法连接微信服务，请稍后再试"),
    "auth.wechat_failed": (502, "微信服务返回错误，请稍后再试"),
})

# WeChat's errcodes that say "this access_token is no longer good" (invalid, expired).
TOKEN_ERRCODES = frozenset({40001, 42001})

# errcode -> (our code, may the caller retry later?)
_ERRCODES: dict[int, tuple[str, bool]] = {
    40029: ("auth.wechat_code_invalid", False),
    40163: ("auth.wechat_code_used", False),
    45011: ("auth.wechat_rate_limited", True),
    -1: ("auth.wechat_busy", True),
}

# The cached token must die before WeChat's copy does, so no request leaves with a token
# that expires on the way.
TOKEN_SAFETY_MARGIN = 300

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

# openid and unionid as WeChat issues them (28-29 characters today), within their 128-wide columns.
_IDENTITY = re.compile(r"[A-Za-z0-9_-]{1,128}")

# Query values that are credentials; httpx logs full URLs at INFO.
_CREDENTIALS_IN_URL = re.compile(r"\b(secret|js_code|access_token)=[^&\s\"']+")


def error_for(errcode: int, errmsg: str = "") -> DomainError:
    """The DomainError for a WeChat errcode; details carry the errcode, never a credential."""
    code, retryable = _ERRCODES.get(errcode, ("auth.wechat_failed", False))
    details: dict[str, Any] = {"errcode": errcode}
    if retryable:
        details["retryable"] = True
    return DomainError(code, details=details)


def _unavailable(reason: str) -> DomainError:
    return DomainError("auth.wechat_unavailable", details={"retryable": True, "reason": reason})


class _RedactCredentials(logging.Filter):
    """Rewrites httpx's request log line so app secrets, login codes and tokens never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _CREDENTIALS_IN_URL.sub(r"\1=***", message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def _install_redaction() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactCredentials) for f in httpx_log.filters):
        httpx_log.addFilter(_RedactCredentials())


@dataclass(frozen=True)
class WeChatSession:
    openid: str
    unionid: str | None
    # Kept out of repr so logging a session never logs the key that decrypts the user's data.
    session_key: str = field(repr=False)


class WeChatClient:
    """One mini program's view of the WeChat API; safe to create in many processes sharing one Redis."""

    def __init__(
        self,
        *,
        base_url: str,
        app_id: str,
        app_secret: str,
        redis: Redis,
        http: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._app_id = app_id
        self._secret = app_secret
        self._redis = redis
        self._timeout = timeout
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)
        self._token_key = f"palmhall:wechat:access_token:{app_id}"
        self._lock_key = f"palmhall:wechat:access_token_lock:{app_id}"
        self._failure_key = f"palmhall:wechat:access_token_failure:{app_id}"
        # The lock outlives one stable_token call even when every httpx phase takes its full timeout.
        self._lock_ttl = max(10.0, 4 * timeout)
        self._poll = 0.05
        _install_redaction()

    @property
    def app_id(self) -> str:
        return self._app_id

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    # ---- login ---------------------------------------------------------

    async def code2session(self, code: str) -> WeChatSession:
        """Exchange a mini program's wx.login code for the user's openid (and unionid, if bound)."""
        if not code or not code.strip():
            raise DomainError("auth.wechat_code_invalid")
        params = {
            "appid": self._app_id,
            "secret": self._secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        answer = await self._request("GET", "/sns/jscode2session", params=params)
        self._raise_for_errcode(answer, "code2session")
        openid, session_key = answer.get("openid"), answer.get("session_key")
        if not isinstance(openid, str) or not openid or not isinstance(session_key, str) or not session_key:
            log.warning("wechat code2session answer without openid or session_key")
            raise DomainError("auth.wechat_failed", details={"errcode": None, "reason": "incomplete_answer"})
        unionid = answer.get("unionid") or None
        # Stored as they come (ChannelIdentity.subject and .unionid): an identity that cannot be is WeChat's fault.
        if not _IDENTITY.fullmatch(openid) or not (unionid is None or
                                                    (isinstance(unionid, str) and _IDENTITY.fullmatch(unionid))):
            log.warning("wechat code2session answer with a malformed identity",
                        extra={"openid_length": len(openid), "unionid_type": type(unionid).__name__})
            raise DomainError("auth.wechat_failed", details={"errcode": None, "reason": "malformed_identity"})
        return WeChatSession(openid=openid, unionid=unionid, session_key=session_key)

    # ---- access token --------------------------------------------------

    async def access_token(self) -> str:
        """The app's current access_token, from Redis when cached; fetched once for all processes."""
        return await self._token(bad=None)

    async def call_with_token(self, fn: Callable[[str], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run `fn(token)`; if WeChat refuses the token, refresh it once and retry once.

        WeChat's answer is returned as it is, errcode included, except that a token refused
        again after the refresh raises: a second refusal means something is wrong on our side,
        and retrying in a loop would only burn the forced-refresh quota.
        """
        token = await self.access_token()
        answer = await fn(token)
        if _errcode(answer) not in TOKEN_ERRCODES:
            return answer
        log.info("wechat refused the access_token; refreshing once", extra={"errcode": _errcode(answer)})
        token = await self._token(bad=token)
        answer = await fn(token)
        errcode = _errcode(answer)
        if errcode in TOKEN_ERRCODES:
            log.error("wechat refused a freshly refreshed access_token", extra={"errcode": errcode})
            raise error_for(errcode)
        return answer

    async def post_with_token(self, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST JSON to `{base}{path}?access_token=…` through `call_with_token`; returns WeChat's answer."""

        async def send(token: str) -> dict[str, Any]:
            return await self._request("POST", path, params={"access_token": token}, body=payload)

        return await self.call_with_token(send)

    async def _token(self, *, bad: str | None) -> str:
        """A cached token other than `bad`; refreshes under the Redis lock when there is none.

        `bad` is a token WeChat just refused: it is replaced with force_refresh, unless another
        process has already put a different one in Redis.
        """
        deadline = asyncio.get_running_loop().time() + self._lock_ttl + self._timeout
        waited_on: str | None = None  # the lock token of the refresh we are waiting for
        while True:
            cached = _text(await self._redis.get(self._token_key))
            if cached is not None and cached != bad:
                return cached
            if waited_on is not None:
                # The refresh we waited on failed: share its failure rather than have every
                # waiter hit WeChat in turn during an outage.
                failure = _failure_of(_text(await self._redis.get(self._failure_key)), waited_on)
                if failure is not None:
                    raise failure
            mine = secrets.token_hex(16)
            if await self._redis.set(self._lock_key, mine, nx=True, px=int(self._lock_ttl * 1000)):
                try:
                    return await self._refresh_locked(bad=bad, lock=mine)
                finally:
                    await self._redis.eval(_RELEASE, 1, self._lock_key, mine)
            # Someone else is refreshing: wait for their result instead of calling WeChat too.
            waited_on = _text(await self._redis.get(self._lock_key)) or waited_on
            if asyncio.get_running_loop().time() > deadline:
                log.warning("gave up waiting for another process to refresh the wechat access_token")
                raise _unavailable("token_lock_timeout")
            await asyncio.sleep(self._poll)

    async def _refresh_locked(self, *, bad: str | None, lock: str) -> str:
        # Re-read under the lock: the previous holder may have just stored a good token.
        cached = _text(await self._redis.get(self._token_key))
        if cached is not None and cached != bad:
            return cached
        try:
            token, expires_in = await self._fetch_stable_token(force_refresh=bad is not None)
        except DomainError as exc:
            record = json.dumps({"lock": lock, "code": exc.code, "details": exc.details})
            await self._redis.set(self._failure_key, record, px=int(self._lock_ttl * 1000))
            raise
        ttl = expires_in - TOKEN_SAFETY_MARGIN
        if ttl <= 0:
            # A token shorter-lived than the margin (never seen from WeChat itself): keep half its life.
            ttl = max(expires_in // 2, 1)
        await self._redis.set(self._token_key, token, ex=ttl)
        return token

    async def _fetch_stable_token(self, *, force_refresh: bool) -> tuple[str, int]:
        body = {
            "grant_type": "client_credential",
            "appid": self._app_id,
            "secret": self._secret,
            "force_refresh": force_refresh,
        }
        answer = await self._request("POST", "/cgi-bin/stable_token", body=body)
        self._raise_for_errcode(answer, "stable_token")
        token, expires_in = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(expires_in, int) or expires_in <= 0:
            log.warning("wechat stable_token answer without access_token or expires_in")
            raise DomainError("auth.wechat_failed", details={"errcode": None, "reason": "incomplete_answer"})
        log.info("wechat access_token refreshed", extra={"force_refresh": force_refresh, "expires_in": expires_in})
        return token, expires_in

    # ---- transport -----------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        content = None
        headers = {}
        if body is not None:
            # UTF-8 as is: WeChat shows \\uXXXX escapes literally in some message fields.
            content = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json; charset=utf-8"
        failure: str | None = None
        try:
            response = await self._http.request(
                method, self._base + path, params=params, content=content, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException:
            failure = "timeout"
        except httpx.HTTPError as exc:
            # The exception's text may carry the URL, and with it the secret: only its class is kept.
            failure = type(exc).__name__
        # Raised outside the except block so no httpx exception (and its URL) rides along as context.
        if failure is not None:
            log.warning("wechat unreachable", extra={"endpoint": path, "error": failure})
            raise _unavailable(failure)
        if response.status_code >= 500:
            log.warning("wechat answered a server error", extra={"endpoint": path, "status": response.status_code})
            raise _unavailable(f"http_{response.status_code}")
        if response.status_code != 200:
            log.warning("wechat answered an unexpected status",
                        extra={"endpoint": path, "status": response.status_code})
            raise DomainError("auth.wechat_failed", details={"errcode": None, "http_status": response.status_code})
        try:
            answer = json.loads(response.content)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            # A gateway's HTML page or a truncated body: WeChat did not really answer.
            log.warning("wechat answered something that is not a JSON object", extra={"endpoint": path})
            raise _unavailable("invalid_answer")
        return answer

    def _raise_for_errcode(self, answer: Mapping[str, Any], endpoint: str) -> None:
        errcode = _errcode(answer)
        if errcode == 0:
            return
        errmsg = str(answer.get("errmsg", ""))[:200]
        if self._secret:
            errmsg = errmsg.replace(self._secret, "***")
        log.warning("wechat refused", extra={"endpoint": endpoint, "errcode": errcode, "errmsg": errmsg})
        raise error_for(errcode, errmsg)


def _errcode(answer: Mapping[str, Any]) -> int:
    value = answer.get("errcode", 0)
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return -1


def _text(value: bytes | str | None) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return value


def _failure_of(record: str | None, lock: str) -> DomainError | None:
    """The failure stored by the refresh that held `lock`, if that refresh failed."""
    if record is None:
        return None
    try:
        stored = json.loads(record)
    except ValueError:
        return None
    if stored.get("lock") != lock:
        return None
    return DomainError(str(stored["code"]), details=stored.get("details"))
