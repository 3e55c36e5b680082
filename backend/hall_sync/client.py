"""HallGateway: the main hall's HTTP API, signed with HMAC-SHA256, behind a Redis circuit breaker."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis

from backend import clock
from backend.signatures import hex_digest_equal

# Both directions sign the same way: our pushes to the hall and the hall's callbacks to us.
H_APP, H_TS, H_NONCE, H_SIG = "X-Hall-App-Id", "X-Hall-Timestamp", "X-Hall-Nonce", "X-Hall-Signature"
_NONCE = re.compile(r"[\x21-\x7e]{8,128}")  # printable ASCII: it is signed and kept in Redis


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, timestamp, nonce, hashlib.sha256(body).hexdigest()])


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    msg = string_to_sign(method, path, timestamp, nonce, body).encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def signed_headers(*, app_id: str, secret: str, method: str, path: str, body: bytes,
                   timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    ts = str(int(clock.now().timestamp()) if timestamp is None else timestamp)
    nc = nonce or secrets.token_urlsafe(16)
    return {H_APP: app_id, H_TS: ts, H_NONCE: nc, H_SIG: sign(secret, method, path, ts, nc, body),
            "Content-Type": "application/json"}


def verify_signature(*, secret: str, method: str, path: str, headers: Any, body: bytes) -> bool:
    ts, nonce, given = headers.get(H_TS, ""), headers.get(H_NONCE, ""), headers.get(H_SIG, "")
    if not (ts and nonce and given) or not _NONCE.fullmatch(nonce):
        return False
    return hex_digest_equal(sign(secret, method, path, ts, nonce, body), given)


class HallError(Exception):
    """The hall did not acknowledge; `retryable` says whether trying later may succeed."""

    retryable = True


class HallUnavailable(HallError):
    """5xx, timeout or refused connection: the hall is (for now) not there."""


class BreakerOpen(HallError):
    """The breaker is open: the hall was not called at all."""


class HallRejected(HallError):
    """A 4xx: the hall understood and refused; retried too (an operator sees it dead in the end)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"hall refused with {status}: {body}")


class HallOutOfOrder(HallRejected):
    """The hall holds a case's steps only up to `expected - 1` (it lost some: a restore, a restart) and wants
    `expected` next: sending the same step again would be refused again, the steps from `expected` are due."""

    def __init__(self, status: int, body: Any, expected: int) -> None:
        super().__init__(status, body)
        self.expected = expected


def _out_of_order(status: int, data: Any) -> HallOutOfOrder | None:
    """409 {"error": "out_of_order", "expected": N}: the sequence the hall wants, if it said one."""
    if status != 409 or not isinstance(data, dict) or data.get("error") != "out_of_order":
        return None
    expected = data.get("expected")
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 1:
        return None
    return HallOutOfOrder(status, data, expected)


# ---- circuit breaker ------------------------------------------------------------------------

BREAKER_KEY = "palmhall:hall:breaker"


@dataclass
class Breaker:
    """Shared by every worker through Redis. Times come from the injectable clock, so tests can
    let an hour pass without waiting for it."""

    redis: Redis
    failures: int = 5
    pause_seconds: float = 30.0

    async def state(self) -> dict[str, Any]:
        raw = await self.redis.hgetall(BREAKER_KEY)
        data = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()}
        failures = int(data.get("failures", 0))
        open_until = float(data.get("open_until", 0))
        now = clock.now().timestamp()
        if open_until and now < open_until:
            name = "open"
        elif open_until:
            name = "half_open"
        else:
            name = "closed"
        return {"state": name, "failures": failures, "open_until": open_until or None}

    async def before_call(self) -> None:
        """Refuse without calling while open; after the pause let exactly one probe through."""
        open_until = await self.redis.hget(BREAKER_KEY, "open_until")
        if not open_until:
            return
        now = clock.now().timestamp()
        until = float(open_until)
        if now < until:
            raise BreakerOpen("hall circuit breaker is open")
        # Half open: the first caller to move the deadline on is the probe; the others wait a pause.
        if not await self.redis.hsetnx(BREAKER_KEY, f"probe:{until}", "1"):
            raise BreakerOpen("hall circuit breaker is half open; a probe is under way")
        await self.redis.hset(BREAKER_KEY, "open_until", str(now + self.pause_seconds))

    async def success(self) -> None:
        if await self.redis.exists(BREAKER_KEY):
            await self.redis.delete(BREAKER_KEY)

    async def failure(self) -> None:
        n = await self.redis.hincrby(BREAKER_KEY, "failures", 1)
        if n >= self.failures:
            now = clock.now().timestamp()
            current = await self.redis.hget(BREAKER_KEY, "open_until")
            if not current or float(current) < now + self.pause_seconds:
                await self.redis.hset(BREAKER_KEY, "open_until", str(now + self.pause_seconds))


# ---- the client -----------------------------------------------------------------------------


class HallGateway:
    """The hall's API. Every call is signed, has a timeout, and verifies TLS."""

    def __init__(self, *, base_url: str, app_id: str, secret: str, timeout: float = 5.0,
                 breaker: Breaker | None = None, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self.secret = secret
        self.breaker = breaker
        self._prefix = httpx.URL(self.base_url).path.rstrip("/")
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=httpx.Timeout(timeout), verify=True,
                                        transport=transport)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _call(self, method: str, path: str, payload: Any = None,
                    headers: dict[str, str] | None = None) -> Any:
        if self.breaker is not None:
            await self.breaker.before_call()
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()
        signed_path = self._prefix + path.split("?", 1)[0]
        h = signed_headers(app_id=self.app_id, secret=self.secret, method=method, path=signed_path, body=body)
        try:
            r = await self.client.request(method, path, content=body, headers={**h, **(headers or {})})
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            await self._failed()
            raise HallUnavailable(f"hall unreachable: {type(exc).__name__}") from exc
        if r.status_code >= 500:
            await self._failed()
            raise HallUnavailable(f"hall answered {r.status_code}")
        if self.breaker is not None:
            await self.breaker.success()
        try:
            data = r.json()
        except ValueError:
            data = {"raw": r.text[:200]}
        if r.status_code >= 400:
            raise _out_of_order(r.status_code, data) or HallRejected(r.status_code, data)
        return data

    async def _failed(self) -> None:
        if self.breaker is not None:
            await self.breaker.failure()

    async def push_case(self, *, idempotency_key: str, push: dict[str, Any]) -> dict[str, Any]:
        """One step of a case; the hall answers {hall_case_id, seq} once it holds it."""
        data: dict[str, Any] = await self._call("POST", "/v1/cases/push", push,
                                                {"Idempotency-Key": idempotency_key})
        return data

    async def push_appointment(self, *, idempotency_key: str, push: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("POST", "/v1/appointments/push", push,
                                                {"Idempotency-Key": idempotency_key})
        return data

    async def changes(self, *, cursor: str, limit: int = 200) -> dict[str, Any]:
        """The hall's own status changes after `cursor`: {changes: [...], cursor}."""
        data: dict[str, Any] = await self._call("GET", f"/v1/changes?cursor={cursor}&limit={limit}")
        return data

    async def case_states(self, *, case_nos: list[str]) -> dict[str, str]:
        """The hall's status of each case it holds, by our case number."""
        data = await self._call("POST", "/v1/cases/states", {"case_nos": case_nos})
        return {str(k): str(v) for k, v in (data.get("states") or {}).items()}
