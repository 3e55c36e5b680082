"""Signed access tokens (JWT, HS256) for residents and staff, and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt

from backend import clock
from backend.errors import DomainError, register_codes

register_codes({
    "auth.token_missing": (401, "请先登录"),
    "auth.token_invalid": (401, "登录凭证无效，请重新登录"),
    "auth.token_expired": (401, "登录已过期，请重新登录"),
    "auth.refresh_reused": (401, "登录凭证已被使用，为保护账号安全已退出所有相关登录，请重新登录"),
    "auth.forbidden": (403, "没有权限进行此操作"),
})

ISSUER = "palmhall"
ALGORITHM = "HS256"


@dataclass(frozen=True)
class Claims:
    subject: int
    kind: str  # "resident" or "staff"
    version: int  # staff token version; 0 for residents
    family: str | None  # resident: the login session (refresh family) this token belongs to
    raw: dict[str, Any]


def issue(*, secret: str, kind: str, subject: int, ttl_seconds: int, version: int = 0,
          family: str | None = None) -> tuple[str, int]:
    now = clock.now()
    claims: dict[str, Any] = {
        "iss": ISSUER, "sub": str(subject), "typ": kind, "ver": version,
        "iat": int(now.timestamp()), "exp": int((now + timedelta(seconds=ttl_seconds)).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if family:
        claims["fam"] = family
    return jwt.encode(claims, secret, algorithm=ALGORITHM), ttl_seconds


def verify(token: str, *, secret: str, kind: str) -> Claims:
    """Refuse anything not signed by us with HS256, expired, or meant for another audience."""
    try:
        raw = _decode(token, secret)
    except jwt.ExpiredSignatureError:
        raise DomainError("auth.token_expired") from None
    except jwt.PyJWTError:
        raise DomainError("auth.token_invalid") from None
    if raw.get("typ") != kind:
        raise DomainError("auth.token_invalid")
    try:
        return Claims(subject=int(raw["sub"]), kind=kind, version=int(raw.get("ver", 0)),
                      family=raw.get("fam"), raw=raw)
    except (TypeError, ValueError):
        raise DomainError("auth.token_invalid") from None


def _decode(token: str, secret: str) -> dict[str, Any]:
    # Expiry is checked against our clock, not the library's, so tests can move time.
    raw: dict[str, Any] = jwt.decode(
        token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
        options={"require": ["exp", "iat", "sub", "typ", "iss"], "verify_exp": False},
    )
    if int(raw["exp"]) <= int(clock.now().timestamp()):
        raise jwt.ExpiredSignatureError("expired")
    return raw


def new_refresh_token() -> tuple[str, str]:
    """(token for the client, hash we keep): a database leak yields no usable token."""
    token = "rt_" + secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
