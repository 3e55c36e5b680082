"""Staff authentication for every counter route: one place, run by the surface's group."""

from __future__ import annotations

from sanic import Request

from backend.errors import DomainError
from backend.http import bearer, is_public
from backend.identity import service as identity
from backend.identity import tokens
from backend.identity.service import StaffPrincipal

# All an account still on its one-time password may do: see who it is, and choose its own password.
# Listed here (not flagged on the routes) so that a new route is closed to such accounts unless added here.
BEFORE_PASSWORD_CHANGE = frozenset({
    ("GET", "api/v1/staff/me"),
    ("POST", "api/v1/staff/auth/password"),
})


async def authenticate_staff(request: Request) -> None:
    """Every route but login needs a staff token whose version is still current, and an account
    that has replaced its one-time password (but for the routes that replace it)."""
    if is_public(request):
        return
    ctx = request.app.ctx
    claims = tokens.verify(bearer(request), secret=ctx.settings.secret_key, kind="staff")
    principal = await identity.staff_principal(staff_id=claims.subject, version=claims.version)
    request.ctx.staff = principal
    if principal.must_change_password:
        route = (request.method, request.route.path.strip("/") if request.route else "")
        if route not in BEFORE_PASSWORD_CHANGE:
            raise DomainError("staff.password_change_required")


def staff(request: Request) -> StaffPrincipal:
    """The caller; views then check role and hall with `staff(request).require(hall_id, *roles)`."""
    principal: StaffPrincipal = request.ctx.staff
    return principal
