"""What every HTTP surface shares: body parsing into pydantic schemas, bearer tokens, client IP, limits."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sanic import Request
from sanic.exceptions import BadRequest
from sanic.response import HTTPResponse
from sanic_ext import openapi

from backend import ratelimit
from backend.errors import DomainError, FieldErrors

M = TypeVar("M", bound=BaseModel)
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


def body(model: type[BaseModel]) -> Callable[[View], View]:
    """Validate the JSON body into `model` (every bad field listed) and pass it as `payload`;
    the same model documents the route in OpenAPI."""

    def wrap(view: View) -> View:
        @functools.wraps(view)
        async def inner(request: Request, *args: Any, **kwargs: Any) -> HTTPResponse:
            return await view(request, *args, payload=parse(model, json_body(request)), **kwargs)

        return openapi.body({"application/json": model.model_json_schema()})(inner)

    return wrap


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise DomainError("auth.token_missing")
    return token.strip()


def client_ip(request: Request) -> str:
    # request.ip honours Sanic's PROXIES_COUNT / FORWARDED_SECRET when a proxy is configured.
    return str(request.remote_addr or request.ip or "unknown")


async def limit(request: Request, key: str, spec: str) -> None:
    await ratelimit.enforce(request.app.ctx.redis, key, ratelimit.Limit.parse(spec))


def is_public(request: Request) -> bool:
    """Routes declared with `ctx_public=True` skip their surface's authentication."""
    return bool(request.route and getattr(request.route.ctx, "public", False))
