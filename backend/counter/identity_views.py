"""Staff routes for login, password and own account, and the hall's kiosks."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from backend.bounds import Input
from backend.counter.auth import staff
from backend.http import body, client_ip, limit
from backend.identity import service as identity
from backend.identity.models import StaffRole

bp = Blueprint("staff_identity")


class Login(Input):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


class PasswordChange(Input):
    model_config = ConfigDict(extra="forbid")
    old_password: str = Field(min_length=1, max_length=200)
    new_password: str = Field(min_length=1, max_length=200)


@bp.post("/auth/login", ctx_public=True)
@openapi.summary("Staff login; five wrong passwords lock the account for a while")
@openapi.tag("counter")
@body(Login)
async def login(request: Request, payload: Login) -> HTTPResponse:
    s = request.app.ctx.settings
    await limit(request, f"login:ip:{client_ip(request)}", s.rate_login_ip)
    await limit(request, f"login:staff:{payload.username.lower()}", s.rate_login_account)
    answer = await identity.staff_login(
        username=payload.username, password=payload.password, config=request.app.ctx.token_config,
        lockout_attempts=s.staff_lockout_attempts, lockout_minutes=s.staff_lockout_minutes,
        ip=client_ip(request),
    )
    return json(answer, ensure_ascii=False)


@bp.post("/auth/password")
@openapi.summary("Change own password (required after the one-time password)")
@openapi.tag("counter")
@openapi.secured("staff")
@body(PasswordChange)
async def change_password(request: Request, payload: PasswordChange) -> HTTPResponse:
    """204, and every token of the account ends (this one too): log in again with the new password."""
    me = staff(request)
    # Limited like logins: a token alone must not allow unlimited guesses at the current password.
    await limit(request, f"password:staff:{me.id}", request.app.ctx.settings.rate_login_account)
    await identity.change_password(staff_id=me.id, old=payload.old_password, new=payload.new_password)
    return empty()


@bp.get("/me")
@openapi.summary("Own account and the roles held in each hall")
@openapi.tag("counter")
@openapi.secured("staff")
async def me(request: Request) -> HTTPResponse:
    return json(identity.describe_staff(staff(request)), ensure_ascii=False)


@bp.get("/halls/<hall_id:int32>/kiosks")
@openapi.summary("The hall's kiosks, with those gone silent marked")
@openapi.tag("counter")
@openapi.secured("staff")
async def hall_kiosks(request: Request, hall_id: int) -> HTTPResponse:
    staff(request).require(hall_id, StaffRole.HALL_ADMIN, StaffRole.ADMIN, StaffRole.AUDITOR)
    return json({"kiosks": await identity.list_kiosks(hall_id=hall_id)}, ensure_ascii=False)
