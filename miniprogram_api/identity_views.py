"""Mini-program routes for login, profile, real-name binding and sessions."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from backend.http import body, client_ip, limit
from backend.identity import service as identity
from backend.identity.models import Channel
from miniprogram_api.auth import resident_id
from miniprogram_api.schemas import AlipayLogin, RealName, Refresh, WeChatLogin

bp = Blueprint("mp_identity")


@bp.post("/auth/wechat", ctx_public=True)
@openapi.summary("Log in from the WeChat mini program with the code from wx.login")
@openapi.tag("mini program")
@body(WeChatLogin)
async def login_wechat(request: Request, payload: WeChatLogin) -> HTTPResponse:
    ctx = request.app.ctx
    await limit(request, f"login:ip:{client_ip(request)}", ctx.settings.rate_login_ip)
    session = await ctx.providers.wechat.code2session(payload.code)
    await limit(request, f"login:account:wechat:{session.openid}", ctx.settings.rate_login_account)
    pair = await identity.login_channel(
        channel=Channel.WECHAT, app_id=ctx.settings.wechat_app_id, subject=session.openid,
        unionid=session.unionid, config=ctx.token_config, ip=client_ip(request),
    )
    return json(pair.as_dict())


@bp.post("/auth/alipay", ctx_public=True)
@openapi.summary("Log in from the Alipay mini program with the authCode from my.getAuthCode")
@openapi.tag("mini program")
@body(AlipayLogin)
async def login_alipay(request: Request, payload: AlipayLogin) -> HTTPResponse:
    ctx = request.app.ctx
    await limit(request, f"login:ip:{client_ip(request)}", ctx.settings.rate_login_ip)
    user = await ctx.providers.alipay.oauth_token(payload.auth_code)
    # Newer apps only receive open_id; older ones user_id. Either names the person in this app.
    subject = user.open_id or user.user_id
    await limit(request, f"login:account:alipay:{subject}", ctx.settings.rate_login_account)
    pair = await identity.login_channel(
        channel=Channel.ALIPAY, app_id=ctx.settings.alipay_app_id, subject=subject,
        alipay_user_id=user.user_id, alipay_open_id=user.open_id, config=ctx.token_config,
        ip=client_ip(request),
    )
    return json(pair.as_dict())


@bp.post("/auth/refresh", ctx_public=True)
@openapi.summary("Exchange a refresh token (single use) for a new pair")
@openapi.tag("mini program")
@body(Refresh)
async def refresh(request: Request, payload: Refresh) -> HTTPResponse:
    ctx = request.app.ctx
    await limit(request, f"login:ip:{client_ip(request)}", ctx.settings.rate_login_ip)
    pair = await identity.refresh(token=payload.refresh_token, config=ctx.token_config, redis=ctx.redis)
    return json(pair.as_dict())


@bp.get("/me")
@openapi.summary("Own profile, real-name data masked")
@openapi.tag("mini program")
@openapi.secured("resident")
async def me(request: Request) -> HTTPResponse:
    return json(await identity.profile(resident_id=resident_id(request), keyring=request.app.ctx.keyring),
                ensure_ascii=False)


@bp.put("/me/real-name")
@openapi.summary("Bind and verify name, ID number and mobile number")
@openapi.description("Verified through the real-name service, stored encrypted. When this ID number is "
                     "already bound to the same person's account on the other platform, this account "
                     "joins it and the answer carries new tokens (`tokens`).")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(RealName)
async def bind_real_name(request: Request, payload: RealName) -> HTTPResponse:
    ctx = request.app.ctx
    rid = resident_id(request)
    await limit(request, f"realname:{rid}", ctx.settings.rate_realname_resident)
    result = await identity.bind_real_name(
        resident_id=rid, name=payload.name, id_number=payload.id_number, phone=payload.phone,
        verifier=ctx.providers.realname, keyring=ctx.keyring, hash_key=ctx.settings.hash_key,
        config=ctx.token_config, redis=ctx.redis,
    )
    answer: dict[str, Any] = {
        "merged": result.merged,
        "profile": await identity.profile(resident_id=result.resident_id, keyring=ctx.keyring),
    }
    if result.tokens is not None:
        answer["tokens"] = result.tokens.as_dict()
    return json(answer, ensure_ascii=False)


@bp.get("/me/sessions")
@openapi.summary("Devices this resident is logged in on")
@openapi.tag("mini program")
@openapi.secured("resident")
async def sessions(request: Request) -> HTTPResponse:
    return json({"sessions": await identity.list_sessions(resident_id=resident_id(request))})


@bp.delete("/me/sessions/<session_id:str>")
@openapi.summary("Log out one device")
@openapi.tag("mini program")
@openapi.secured("resident")
async def end_session(request: Request, session_id: str) -> HTTPResponse:
    ctx = request.app.ctx
    await identity.end_session(resident_id=resident_id(request), family=session_id, redis=ctx.redis,
                               config=ctx.token_config)
    return empty()
