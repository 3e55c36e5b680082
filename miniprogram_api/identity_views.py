"""Mini-program routes for login, profile, real-name binding and sessions."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from backend.http import body, client_ip, limit
from backend.identity import linking
from backend.identity import service as identity
from backend.identity.models import Channel
from miniprogram_api.auth import resident_id
from miniprogram_api.schemas import AlipayLogin, LinkConfirm, RealName, Refresh, WeChatLogin

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
@openapi.description(
    "Verified through the real-name service, stored encrypted; answers 200 with the profile. When another "
    "account holds this ID number already (the same person on the other platform), nothing is merged: the "
    "answer is 202 with `link` (a challenge id and the masked phone on record of that account), a six-digit "
    "code is texted to that phone, and `POST /api/v1/mp/me/real-name/confirm` with the code joins this login "
    "to that account. Its owner is told on their other channels.")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(RealName)
async def bind_real_name(request: Request, payload: RealName) -> HTTPResponse:
    ctx = request.app.ctx
    rid = resident_id(request)
    result = await identity.bind_real_name(
        resident_id=rid, name=payload.name, id_number=payload.id_number, phone=payload.phone,
        verifier=ctx.providers.realname, keyring=ctx.keyring, hash_key=ctx.settings.hash_key, redis=ctx.redis,
        secret=ctx.settings.secret_key, sender=ctx.providers.link_codes,
        link_rates=linking.LinkRates(per_account=ctx.settings.rate_link_account,
                                     per_id_number=ctx.settings.rate_link_id_number),
    )
    answer: dict[str, Any] = {
        "merged": False,
        "profile": await identity.profile(resident_id=result.resident_id, keyring=ctx.keyring),
    }
    if result.link is not None:
        answer["link"] = result.link.as_dict()
        return json(answer, status=202, ensure_ascii=False)
    return json(answer, ensure_ascii=False)


@bp.post("/me/real-name/confirm")
@openapi.summary("Join this login to the account holding the ID number, with the texted code")
@openapi.description("At most 5 tries per code, 5 minutes; answers the joined account's profile and new "
                     "tokens (`tokens`): the old tokens of this login stop working.")
@openapi.tag("mini program")
@openapi.secured("resident")
@body(LinkConfirm)
async def confirm_real_name(request: Request, payload: LinkConfirm) -> HTTPResponse:
    ctx = request.app.ctx
    rid = resident_id(request)
    result = await identity.confirm_link(resident_id=rid, challenge_id=payload.challenge_id, code=payload.code,
                                         secret=ctx.settings.secret_key, config=ctx.token_config, redis=ctx.redis)
    answer: dict[str, Any] = {
        "merged": True,
        "profile": await identity.profile(resident_id=result.resident_id, keyring=ctx.keyring),
    }
    if result.tokens is not None:
        answer["tokens"] = result.tokens.as_dict()
    return json(answer, ensure_ascii=False)


@bp.get("/me/channels")
@openapi.summary("The platforms (WeChat, Alipay) this account logs in with")
@openapi.tag("mini program")
@openapi.secured("resident")
async def channels(request: Request) -> HTTPResponse:
    rows = await linking.list_channels(resident_id=resident_id(request),
                                       family=getattr(request.ctx, "session_family", None))
    return json({"channels": rows}, ensure_ascii=False)


@bp.delete("/me/channels/<identity_id:int>")
@openapi.summary("Detach one platform's login from this account")
@openapi.description("The detached login becomes an empty account of its own and its sessions end; the last "
                     "login of an account cannot be detached (409 identity.last_channel).")
@openapi.tag("mini program")
@openapi.secured("resident")
async def detach_channel(request: Request, identity_id: int) -> HTTPResponse:
    ctx = request.app.ctx
    rid = resident_id(request)
    await identity.detach_channel(resident_id=rid, identity_id=identity_id, redis=ctx.redis,
                                  config=ctx.token_config)
    return empty()


@bp.get("/me/sessions")
@openapi.summary("Devices this resident is logged in on")
@openapi.tag("mini program")
@openapi.secured("resident")
async def sessions(request: Request) -> HTTPResponse:
    return json({"sessions": await identity.list_sessions(resident_id=resident_id(request))})


@bp.delete("/me/sessions/<session_id:session_id>")
@openapi.summary("Log out one device")
@openapi.tag("mini program")
@openapi.secured("resident")
async def end_session(request: Request, session_id: str) -> HTTPResponse:
    ctx = request.app.ctx
    await identity.end_session(resident_id=resident_id(request), family=session_id, redis=ctx.redis,
                               config=ctx.token_config)
    return empty()
