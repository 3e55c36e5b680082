"""Real-name verification (name, ID number, phone) behind one interface, with an HMAC-signed HTTP client."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import httpx

from backend.errors import DomainError, register_codes

log = logging.getLogger("palmhall.identity.realname")

register_codes({
    "identity.realname_unavailable": (503, "实名核验服务暂不可用，请稍后再试"),
})

# A provider's reason is passed on only when it looks like a code, so nothing it echoes
# (a name, a number) can travel further through our answers.
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class RealNameResult:
    matched: bool
    reason: str | None = None


class RealNameVerifier(ABC):
    """Checks that a name, an ID number and a phone belong together; never logs or echoes them."""

    @abstractmethod
    async def verify(self, *, name: str, id_number: str, phone: str) -> RealNameResult: ...

    async def aclose(self) -> None:
        # An optional hook: a verifier that holds no connection has nothing to close.
        return None


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sign(secret: str, *, timestamp: str, nonce: str, body: bytes) -> str:
    """HMAC-SHA256 (hex) over `timestamp\\nnonce\\nsha256(body)`; the provider computes the same."""
    message = f"{timestamp}\n{nonce}\n{body_digest(body)}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _unavailable(cause: str, *, retryable: bool = True) -> DomainError:
    return DomainError("identity.realname_unavailable", details={"retryable": retryable, "cause": cause})


class HttpRealNameVerifier(RealNameVerifier):
    """The provider's `POST {base}/v1/verify`, each request signed with our app id and secret."""

    def __init__(
        self,
        base_url: str,
        app_id: str,
        secret: str,
        http: httpx.AsyncClient | None = None,
        *,
        timeout: float = 5.0,
    ) -> None:
        self._url = base_url.rstrip("/") + "/v1/verify"
        self._app_id = app_id
        self._secret = secret
        self._timeout = timeout
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def verify(self, *, name: str, id_number: str, phone: str) -> RealNameResult:
        body = json.dumps({"name": name, "id_number": id_number, "phone": phone}, ensure_ascii=False).encode()
        # Wall-clock time, not backend.clock: the provider checks it against its own clock.
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-App-Id": self._app_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": sign(self._secret, timestamp=timestamp, nonce=nonce, body=body),
        }
        failure: str | None = None
        try:
            response = await self._http.post(self._url, content=body, headers=headers, timeout=self._timeout)
        except httpx.TimeoutException:
            failure = "timeout"
        except httpx.HTTPError as exc:
            failure = type(exc).__name__
        # Raised outside the except block: the httpx exception holds the request, and with it
        # the personal data, so it must not ride along as __context__.
        if failure is not None:
            log.warning("real-name provider unreachable", extra={"error": failure})
            raise _unavailable(failure)
        status = response.status_code
        if status == 401:
            # Our app id or secret is wrong (or our clock is off): an operator must act, retrying won't help.
            log.error("real-name provider refused our signature; check REALNAME_APP_ID, REALNAME_SECRET and the clock")
            raise _unavailable("signature_refused", retryable=False)
        if status >= 500:
            log.warning("real-name provider answered a server error", extra={"status": status})
            raise _unavailable(f"http_{status}")
        if status != 200:
            log.error("real-name provider refused the request", extra={"status": status})
            raise _unavailable(f"http_{status}", retryable=False)
        return self._result(response.content)

    @staticmethod
    def _result(content: bytes) -> RealNameResult:
        try:
            answer: Any = json.loads(content)
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("matched"), bool):
            log.warning("real-name provider answered something unexpected")
            raise _unavailable("invalid_answer")
        reason = answer.get("reason")
        if answer["matched"]:
            return RealNameResult(matched=True, reason=None)
        if not isinstance(reason, str) or not _REASON.match(reason):
            reason = "mismatch"
        return RealNameResult(matched=False, reason=reason)
