"""Staff authentication for every counter route: one place, run by the surface's group."""

from __future__ import annotations

from sanic import Request

from backend.http import bearer, is_public
from backend.identity import service as identity
from backend.identity import tokens
from backend.identity.service import StaffPrincipal


async def authenticate_staff(request: Request) -> None:
    """Every route but login needs a staff token whose version is still current."""
    if is_public(request):
        return
    ctx = request.app.ctx
    claims = tokens.verify(bearer(request), secret=ctx.settings.secret_key, kind="staff")
    request.ctx.staff = await identity.staff_principal(staff_id=claims.subject, version=claims.version)


def staff(request: Request) -> StaffPrincipal:
    """The caller; views then check role and hall with `staff(request).require(hall_id, *roles)`."""
    principal: StaffPrincipal = request.ctx.staff
    return principal
