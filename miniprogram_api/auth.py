"""Resident authentication for every mini-program route: one place, run by the surface's group."""

from __future__ import annotations

from sanic import Request

from backend.errors import DomainError
from backend.http import bearer, is_public
from backend.identity import service as identity
from backend.identity import tokens
from miniprogram_api import limits


async def authenticate_resident(request: Request) -> None:
    """Every route but login and refresh (`ctx_public=True`) needs a resident's access token; every write
    is counted against the resident's rate limits (miniprogram_api.limits)."""
    if is_public(request):
        return
    ctx = request.app.ctx
    claims = tokens.verify(bearer(request), secret=ctx.settings.secret_key, kind="resident")
    if await identity.family_revoked(redis=ctx.redis, family=claims.family):
        raise DomainError("auth.token_invalid")
    request.ctx.resident_id = claims.subject
    request.ctx.session_family = claims.family
    await limits.spend(request, claims.subject)


def resident_id(request: Request) -> int:
    return int(request.ctx.resident_id)
