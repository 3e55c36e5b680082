"""What every HTTP surface shares: body parsing into pydantic schemas, bearer tokens, client IP, limits."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from sanic import Request
from sanic.exceptions import BadRequest
from sanic.response import HTTPResponse
from sanic_ext import openapi

from backend import ratelimit
from backend.bounds import Input
from backend.errors import DomainError, FieldErrors

# Only schemas deriving from Input (backend.bounds) may be parsed from a request: they carry the bounds.
M = TypeVar("M", bound=Input)
MAX_TOKEN = 4096  # longer than any token we issue
View = Callable[..., Awaitable[HTTPResponse]]


def parse(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise FieldErrors.from_pydantic(exc) from None


def json_body(request: Request) -> Any:
    if not request.body:
        return {}
    try:
        return request.json
    except BadRequest:
        raise DomainError("request.invalid", message="请求内容不是有效的 JSON") from None


def body(model: type[Input]) -> Callable[[View], View]:
    """Validate the JSON body into `model` (every bad field listed) and pass it as `payload`;
    the same model documents the route in OpenAPI."""

    def wrap(view: View) -> View:
        @functools.wraps(view)
        async def inner(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            return await view(request, *args, payload=parse(model, json_body(request)), **kwargs)

        inner.body_model = model  # type: ignore[attr-defined]  # how tests find every route's body schema
        return openapi.body({"application/json": model.model_json_schema()})(inner)

    return wrap


def token_shaped(token: str) -> str:
    """A token from a header as it was issued (printable ASCII, bounded), or `auth.token_invalid`: headers
    arrive with undecodable bytes as lone surrogates, which no token of ours holds."""
    if len(token) > MAX_TOKEN or not (token.isascii() and token.isprintable()):
        raise DomainError("auth.token_invalid")
    return token


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DomainError("auth.token_missing")
    return token_shaped(token.strip())


def idempotency_key(request: Request, *, missing: str) -> str:
    """The Idempotency-Key header: 8 to 100 printable characters (it is stored), else DomainError(missing)."""
    key = request.headers.get("idempotency-key", "").strip()
    if not 8 <= len(key) <= 100 or not key.isprintable():
        raise DomainError(missing)
    return key


def client_ip(request: Request) -> str:
    # request.ip honours Sanic's PROXIES_COUNT / FORWARDED_SECRET when a proxy is configured.
    return str(request.remote_addr or request.ip or "unknown")


async def limit(request: Request, key: str, spec: str) -> None:
    await ratelimit.enforce(request.app.ctx.redis, key, ratelimit.Limit.parse(spec))


def is_public(request: Request) -> bool:
    """Routes declared with `ctx_public=True` skip their surface's authentication."""
    return bool(request.route and getattr(request.route.ctx, "public", False))
