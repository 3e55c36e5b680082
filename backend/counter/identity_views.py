"""Staff routes for login, password and own account, and the hall's kiosks."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from backend.bounds import Input
from backend.counter.auth import staff
from backend.errors import DomainError
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


class NewStaff(Input):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: str = Field(pattern=r"^[A-Za-z0-9._-]{3,64}$", description="登录名：3至64位字母、数字或 . _ -")
    display_name: str = Field(min_length=1, max_length=64, description="显示的姓名")
    role: StaffRole = Field(description="clerk 窗口人员 / auditor 审计 / hall_admin 大厅管理员（仅系统管理员可设）")


@bp.post("/halls/<hall_id:int32>/staff")
@openapi.summary("A new staff account with a role in this hall; the answer carries its one-time password")
@openapi.description("Hall admins add clerks and auditors; admins add hall admins too. The one-time password is "
                     "shown in this answer only and must be replaced at first login.")
@openapi.tag("counter")
@openapi.secured("staff")
@body(NewStaff)
async def add_staff(request: Request, hall_id: int, payload: NewStaff) -> HTTPResponse:
    me = staff(request)
    me.require_manager(hall_id)
    if payload.role in (StaffRole.HALL_ADMIN, StaffRole.ADMIN) and not me.is_admin:
        raise DomainError("auth.forbidden", message="只有系统管理员可以设立大厅管理员",
                          details={"needs": ["admin"]})
    if payload.role == StaffRole.ADMIN:
        raise DomainError("auth.forbidden", message="系统管理员账号请在服务器上用 palmhall staff 命令设立",
                          details={"needs": ["operator"]})
    answer = await identity.create_hall_staff(hall_id=hall_id, username=payload.username,
                                              display_name=payload.display_name, role=payload.role,
                                              actor_staff_id=me.id)
    return json(answer, status=201, headers={"Cache-Control": "no-store"}, ensure_ascii=False)


@bp.get("/halls/<hall_id:int32>/staff")
@openapi.summary("The accounts holding a role in this hall")
@openapi.tag("counter")
@openapi.secured("staff")
async def list_staff(request: Request, hall_id: int) -> HTTPResponse:
    staff(request).require_manager(hall_id)
    return json({"hall_id": hall_id, "staff": await identity.hall_staff(hall_id=hall_id)}, ensure_ascii=False)
